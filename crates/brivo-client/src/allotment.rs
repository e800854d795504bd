//! The account's Brivo Mobile Pass (Wallet Pass) allotment: creating a digital invitation with
//! none left answers 412, so a caller reads this to know when inviting makes sense again.

use crate::client::{BrivoClient, Call};
use crate::error::BrivoError;
use serde::Deserialize;

const ALLOTMENT: &str = "GET /credentials/digital/allotment";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Allotment {
    pub allotted: u64,
    pub assigned: u64,
}

impl Allotment {
    pub fn left(&self) -> u64 {
        self.allotted.saturating_sub(self.assigned)
    }
}

impl BrivoClient {
    /// `GET /credentials/digital/allotment`: `{"allotted": 500, "assigned": 388}`.
    pub async fn digital_allotment(&self) -> Result<Allotment, BrivoError> {
        self.json(&Call::get(
            ALLOTMENT,
            "/credentials/digital/allotment".into(),
        ))
        .await
    }
}

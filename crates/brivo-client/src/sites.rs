//! Sites and access points (doors), and remote unlock.

use crate::client::{BrivoClient, Call};
use crate::error::BrivoError;
use crate::filter::Filter;
use crate::model::{AccessPoint, Group, Schedule, Site};
use crate::paging::Pager;

const LIST_SITES: &str = "GET /sites";
const GET_SITE: &str = "GET /sites/{id}";
const LIST_ACCESS_POINTS: &str = "GET /access-points";
const GET_ACCESS_POINT: &str = "GET /access-points/{id}";
const ACTIVATE: &str = "POST /access-points/{id}/activate";
const ACCESS_POINT_GROUPS: &str = "GET /access-points/{id}/groups";
const LIST_SCHEDULES: &str = "GET /schedules";

impl BrivoClient {
    pub async fn list_sites(&self, filter: Option<&Filter>) -> Result<Vec<Site>, BrivoError> {
        Pager::new(self, LIST_SITES, "/sites".into(), filter)
            .all()
            .await
    }

    /// One site, with its time zone and address (which the list leaves out).
    pub async fn get_site(&self, id: u64) -> Result<Site, BrivoError> {
        self.json(&Call::get(GET_SITE, format!("/sites/{id}")))
            .await
    }

    /// Every access point matching `filter` (e.g. `Filter::new().eq("name", ["Front"])`).
    pub async fn list_access_points(
        &self,
        filter: Option<&Filter>,
    ) -> Result<Vec<AccessPoint>, BrivoError> {
        Pager::new(self, LIST_ACCESS_POINTS, "/access-points".into(), filter)
            .all()
            .await
    }

    pub async fn get_access_point(&self, id: u64) -> Result<AccessPoint, BrivoError> {
        self.json(&Call::get(GET_ACCESS_POINT, format!("/access-points/{id}")))
            .await
    }

    /// The groups that open the door (`id` and `name` only).
    pub async fn access_point_groups(
        &self,
        access_point_id: u64,
    ) -> Result<Vec<Group>, BrivoError> {
        Pager::new(
            self,
            ACCESS_POINT_GROUPS,
            format!("/access-points/{access_point_id}/groups"),
            None,
        )
        .all()
        .await
    }

    /// The account's schedules matching `filter` (`name__eq` means "name contains"), to find the
    /// id a group permission needs.
    pub async fn list_schedules(
        &self,
        filter: Option<&Filter>,
    ) -> Result<Vec<Schedule>, BrivoError> {
        Pager::new(self, LIST_SCHEDULES, "/schedules".into(), filter)
            .all()
            .await
    }

    /// Unlocks the door for its pulse time (an administrator's remote unlock). Brivo answers 200
    /// with no JSON; 412 when the door's panel is offline, 403 when remote unlock is off for the
    /// door. Opening a door is an action, not a state, so it is not repeated after an unknown
    /// outcome: nobody wants a door to open twice because an answer was slow.
    pub async fn activate_access_point(&self, id: u64) -> Result<(), BrivoError> {
        self.no_content(&Call::post(
            ACTIVATE,
            format!("/access-points/{id}/activate"),
        ))
        .await
    }
}

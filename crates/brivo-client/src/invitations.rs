//! Brivo Mobile Pass digital invitations: one per user at a time, e-mailed by Brivo.

use crate::client::{BrivoClient, Call};
use crate::error::{BrivoError, ErrorKind};
use crate::filter::Filter;
use crate::model::{DigitalInvitation, InvitationBody, InvitationStatus, NewInvitation};
use crate::paging::Pager;

const CREATE: &str = "POST /users/{id}/credentials/digital-invitations";
const LIST: &str = "GET /users/{id}/credentials/digital-invitations";
const CANCEL: &str = "DELETE /users/{id}/credentials/digital-invitations";

impl BrivoClient {
    /// Creates (and, with `send_email`, has Brivo e-mail) a Mobile Pass invitation.
    ///
    /// Like [`BrivoClient::create_user`], a create with an unknown outcome is not simply sent
    /// again: the client first looks for a pending invitation of the user and returns it if
    /// there is one, and creates again only if there is none. A `Conflict` (an invitation is
    /// already pending) after such a failure is answered the same way.
    pub async fn create_invitation(
        &self,
        user_id: u64,
        invitation: &NewInvitation,
    ) -> Result<DigitalInvitation, BrivoError> {
        let call = Call::post(
            CREATE,
            format!("/users/{user_id}/credentials/digital-invitations"),
        )
        .query([
            ("sendInvitationEmail", invitation.send_email.to_string()),
            ("language", invitation.language.as_str().to_owned()),
        ])
        .json(&InvitationBody {
            reference_id: &invitation.reference_id,
        })?;
        let mut retries = 0;
        let mut unknown_outcome = false;
        loop {
            let err = match self.json::<DigitalInvitation>(&call).await {
                Ok(created) => return Ok(created),
                Err(err) => err,
            };
            if unknown_outcome && err.kind() == ErrorKind::Conflict {
                return match self.pending_invitation(user_id).await? {
                    Some(pending) => Ok(pending),
                    None => Err(err),
                };
            }
            if !err.retryable() || retries >= self.config().max_retries {
                return Err(err);
            }
            let Some(wait) = self.backoff_for(retries, &err) else {
                return Err(err);
            };
            unknown_outcome = true;
            tokio::time::sleep(wait).await;
            retries += 1;
            if let Some(pending) = self.pending_invitation(user_id).await? {
                return Ok(pending);
            }
        }
    }

    async fn pending_invitation(
        &self,
        user_id: u64,
    ) -> Result<Option<DigitalInvitation>, BrivoError> {
        let pending = self
            .list_invitations(user_id, Some(InvitationStatus::Pending))
            .await?;
        Ok(pending
            .into_iter()
            .find(|i| i.status == InvitationStatus::Pending))
    }

    /// The user's invitations, all of them (`None`) or only those in `status`.
    ///
    /// The filter is always sent: without one Brivo lists only the pending invitations, so
    /// "all" has to be asked for (`status__eq:all`).
    pub async fn list_invitations(
        &self,
        user_id: u64,
        status: Option<InvitationStatus>,
    ) -> Result<Vec<DigitalInvitation>, BrivoError> {
        let value = status.map_or("all", InvitationStatus::filter_value);
        let filter = Filter::new().eq("status", [value]);
        Pager::new(
            self,
            LIST,
            format!("/users/{user_id}/credentials/digital-invitations"),
            Some(&filter),
        )
        .all()
        .await
    }

    /// Cancels the user's invitation (there is at most one). Returns the cancelled invitation
    /// when the server sends it back.
    pub async fn cancel_invitation(
        &self,
        user_id: u64,
    ) -> Result<Option<DigitalInvitation>, BrivoError> {
        let call = Call::delete(
            CANCEL,
            format!("/users/{user_id}/credentials/digital-invitations"),
        );
        self.maybe_json(&call).await
    }
}

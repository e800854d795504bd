//! Users (cardholders): create, read, find by external id, list, update, suspend, delete.

use crate::client::{BrivoClient, Call};
use crate::error::{BrivoError, ErrorKind};
use crate::filter::{Filter, path_segment};
use crate::model::{NewUser, SuspendedState, User, UserPatch};
use crate::paging::Pager;

pub(crate) const CREATE: &str = "POST /users";
pub(crate) const GET: &str = "GET /users/{id}";
pub(crate) const BY_EXTERNAL_ID: &str = "GET /users/{externalId}/external";
const LIST: &str = "GET /users";
const PUT: &str = "PUT /users/{id}";
const PATCH: &str = "PATCH /users/{id}";
pub(crate) const DELETE: &str = "DELETE /users/{id}";
pub(crate) const GET_SUSPENDED: &str = "GET /users/{id}/suspended";
pub(crate) const PUT_SUSPENDED: &str = "PUT /users/{id}/suspended";

#[derive(serde::Serialize)]
struct SuspendedBody {
    suspended: bool,
}

impl BrivoClient {
    /// Creates a user, never twice.
    ///
    /// Brivo has no upsert and a create is not idempotent, so a create whose outcome is unknown
    /// (5xx, timeout, broken connection) is never simply sent again. Instead, when the user has
    /// an `externalId`, the client looks it up (`GET /users/{externalId}/external`): if the
    /// user exists (the lost create did happen), that user is returned; only if it is absent is
    /// the create sent again, within `max_retries` and with backoff. If a repeated create is
    /// refused (e.g. as a duplicate), one more look-up decides. Without an `externalId` nothing
    /// identifies the user, so the create is not repeated and the error is returned.
    ///
    /// Failures where the server certainly did nothing (over-QPS, 429, no connection) are
    /// retried directly, as for every call.
    pub async fn create_user(&self, user: &NewUser) -> Result<User, BrivoError> {
        let call = Call::post(CREATE, "/users".into()).json(user)?;
        let external_id = user.external_id.as_deref().filter(|id| !id.is_empty());
        let mut retries = 0;
        let mut unknown_outcome = false;
        loop {
            let err = match self.json::<User>(&call).await {
                Ok(created) => return Ok(created),
                Err(err) => err,
            };
            let Some(external_id) = external_id else {
                return Err(err);
            };
            if unknown_outcome && !err.retryable() {
                // A repeated create refused (duplicate, conflict...): an earlier attempt may
                // have created the user after all.
                return match self.find_user_by_external_id(external_id).await? {
                    Some(existing) => Ok(existing),
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
            tracing::warn!(error = %err, "user create failed with an unknown outcome; looking it up by externalId");
            tokio::time::sleep(wait).await;
            retries += 1;
            if let Some(existing) = self.find_user_by_external_id(external_id).await? {
                return Ok(existing);
            }
        }
    }

    pub async fn get_user(&self, id: u64) -> Result<User, BrivoError> {
        self.json(&Call::get(GET, format!("/users/{id}"))).await
    }

    /// The user whose `externalId` is `external_id`, or `None` (a 404).
    pub async fn find_user_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<User>, BrivoError> {
        let segment = path_segment(external_id).ok_or_else(|| {
            BrivoError::new(
                ErrorKind::InvalidInput,
                BY_EXTERNAL_ID,
                "this externalId cannot be looked up by path",
            )
        })?;
        match self
            .json(&Call::get(
                BY_EXTERNAL_ID,
                format!("/users/{segment}/external"),
            ))
            .await
        {
            Ok(user) => Ok(Some(user)),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Every user matching `filter` (e.g. `Filter::new().eq("user_status", ["suspended"])`).
    pub async fn list_users(&self, filter: Option<&Filter>) -> Result<Vec<User>, BrivoError> {
        self.users(filter).all().await
    }

    /// Users one page at a time.
    pub fn users(&self, filter: Option<&Filter>) -> Pager<User> {
        Pager::new(self, LIST, "/users".into(), filter)
    }

    /// Replaces the user (`PUT`): fields left unset in `user` are removed.
    pub async fn update_user(&self, id: u64, user: &NewUser) -> Result<User, BrivoError> {
        self.json(&Call::put(PUT, format!("/users/{id}")).json(user)?)
            .await
    }

    /// Changes only the fields set in `patch`. Setting fields to given values is idempotent,
    /// so this is retried like a `PUT`.
    pub async fn patch_user(&self, id: u64, patch: &UserPatch) -> Result<User, BrivoError> {
        let call = Call::patch(PATCH, format!("/users/{id}"))
            .idempotent()
            .json(patch)?;
        self.json(&call).await
    }

    /// Deletes the user. A retried delete whose first attempt went through answers `NotFound`.
    pub async fn delete_user(&self, id: u64) -> Result<(), BrivoError> {
        self.no_content(&Call::delete(DELETE, format!("/users/{id}")))
            .await
    }

    pub async fn is_suspended(&self, id: u64) -> Result<bool, BrivoError> {
        let state: SuspendedState = self
            .json(&Call::get(GET_SUSPENDED, format!("/users/{id}/suspended")))
            .await?;
        Ok(state.suspended)
    }

    /// Suspends (`true`) or reinstates (`false`) the user; a suspended user opens no door.
    pub async fn set_suspended(
        &self,
        id: u64,
        suspended: bool,
    ) -> Result<SuspendedState, BrivoError> {
        let call = Call::put(PUT_SUSPENDED, format!("/users/{id}/suspended"))
            .json(&SuspendedBody { suspended })?;
        match self.maybe_json::<SuspendedState>(&call).await? {
            Some(state) => Ok(state),
            // Tolerate an empty answer: the PUT succeeded.
            None => Ok(SuspendedState { id, suspended }),
        }
    }
}

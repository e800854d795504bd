//! The seam between the engine and an access-control system. Brivo is the first implementation;
//! the reconciler knows only this trait.

use async_trait::async_trait;
use doorsync_core::Connection;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// A user as the provider holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUser {
    pub id: String,
    pub external_id: Option<String>,
    pub suspended: bool,
    pub emails: Vec<String>,
}

/// What doorsync writes about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    pub external_id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
}

impl UserProfile {
    /// Providers want a first and a last name; a one-word name fills both parts.
    pub fn new(external_id: String, name: &str, email: Option<String>) -> Self {
        let name = name.trim();
        let (first, last) = match name.rsplit_once(' ') {
            Some((f, l)) if !f.trim().is_empty() => (f.trim(), l),
            _ => (name, "-"),
        };
        UserProfile {
            external_id,
            first_name: first.to_owned(),
            last_name: last.to_owned(),
            email,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    pub id: String,
    pub name: String,
    /// A door's site.
    pub parent_id: Option<String>,
}

/// An access event at a door, as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEvent {
    /// The provider's id of the event: events are kept once by it.
    pub id: String,
    pub occurred: jiff::Timestamp,
    pub door_id: Option<String>,
    pub door_name: Option<String>,
    /// The user whose credential opened (or failed to open) the door; for a remote unlock, the
    /// administrator.
    pub user_id: Option<String>,
    /// Whether the door let the user through.
    pub granted: bool,
    /// An administrator opened the door remotely (doorsync's own unlocks for members among them).
    pub remote_unlock: bool,
    /// The provider's words for what happened ("Open", "Failed Access: Unknown Credential").
    pub action: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The provider cannot be reached or is failing: pause the whole connection.
    Unavailable,
    /// The credentials are refused: pause the connection until they change.
    Auth,
    /// The thing is gone (a user deleted by hand).
    NotFound,
    /// The provider refused this request; retry this subject later.
    Rejected,
    /// The connection's administrator lacks a permission the sync needs (Brivo's group
    /// endpoints are for Account Config Tool Administrators): pause the connection.
    Permission,
    /// The account has no Mobile Passes left to invite with: stop inviting, keep granting.
    NoPassesLeft,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "provider_unavailable",
            ErrorKind::Auth => "provider_auth",
            ErrorKind::NotFound => "provider_not_found",
            ErrorKind::Rejected => "provider_rejected",
            ErrorKind::Permission => "provider_permission",
            ErrorKind::NoPassesLeft => "no_mobile_passes_left",
        }
    }

    /// Whether the error says the provider as a whole is unusable.
    pub fn pauses_connection(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable | ErrorKind::Auth | ErrorKind::Permission
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

pub type ProviderResult<T> = Result<T, ProviderError>;

/// Where a user's Mobile Pass invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationState {
    Pending,
    Redeemed,
    /// Expired, cancelled, or never sent: a new one may go out.
    Lapsed,
}

impl InvitationState {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationState::Pending => "pending",
            InvitationState::Redeemed => "redeemed",
            InvitationState::Lapsed => "lapsed",
        }
    }
}

/// What became of a request to open a door remotely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlock {
    Opened,
    /// The door's panel is not connected to the provider.
    Offline,
    /// The door does not allow remote unlocking.
    NotAllowed,
}

/// A user's Mobile Pass invitation, as the provider holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MobilePass {
    /// The code the member redeems in the provider's app (or an SDK redeems for them).
    pub code: String,
    pub state: InvitationState,
    pub expires_at: Option<jiff::Timestamp>,
    /// Where the member can redeem it in a browser, when the provider has such a page.
    pub redeem_url: Option<String>,
}

/// The account's Mobile Passes: how many it may hand out and how many it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassAllotment {
    pub allotted: u64,
    pub assigned: u64,
}

#[async_trait]
pub trait Provider: Send + Sync {
    async fn find_user_by_external_id(
        &self,
        external_id: &str,
    ) -> ProviderResult<Option<RemoteUser>>;
    async fn find_user_by_email(
        &self,
        email: &str,
        last_name: &str,
    ) -> ProviderResult<Option<RemoteUser>>;
    async fn create_user(&self, profile: &UserProfile) -> ProviderResult<RemoteUser>;
    async fn update_user(&self, user_id: &str, profile: &UserProfile) -> ProviderResult<()>;
    async fn delete_user(&self, user_id: &str) -> ProviderResult<()>;
    async fn set_suspended(&self, user_id: &str, suspended: bool) -> ProviderResult<()>;
    async fn add_to_group(&self, group_id: &str, user_id: &str) -> ProviderResult<()>;
    async fn remove_from_group(&self, group_id: &str, user_id: &str) -> ProviderResult<()>;
    async fn user_groups(&self, user_id: &str) -> ProviderResult<BTreeSet<String>>;
    async fn group_members(&self, group_id: &str) -> ProviderResult<Vec<RemoteUser>>;
    /// Sends the user a Mobile Pass invitation; one already pending counts as sent.
    async fn invite(&self, user_id: &str, email: &str) -> ProviderResult<()>;
    /// Where the user's invitation stands, read from the provider.
    async fn invitation_state(&self, _user_id: &str) -> ProviderResult<InvitationState> {
        Ok(InvitationState::Pending)
    }
    /// Cancels the user's pending invitation, if any, so that a new one can be sent.
    async fn cancel_invitation(&self, _user_id: &str) -> ProviderResult<()> {
        Ok(())
    }
    /// The account's Mobile Pass allotment; `None` when the provider has none.
    async fn pass_allotment(&self) -> ProviderResult<Option<PassAllotment>> {
        Ok(None)
    }
    async fn groups(&self) -> ProviderResult<Vec<RemoteEntry>>;
    async fn sites(&self) -> ProviderResult<Vec<RemoteEntry>>;
    async fn doors(&self) -> ProviderResult<Vec<RemoteEntry>>;
    /// The doors a group opens (its door permissions), by provider id.
    async fn group_doors(&self, _group_id: &str) -> ProviderResult<Vec<String>> {
        Ok(vec![])
    }
    /// Opens a door remotely, once.
    async fn unlock(&self, _door_id: &str) -> ProviderResult<Unlock> {
        Ok(Unlock::NotAllowed)
    }
    /// The user's current Mobile Pass invitation (pending, else redeemed), if any.
    async fn mobile_pass(&self, _user_id: &str) -> ProviderResult<Option<MobilePass>> {
        Ok(None)
    }
    /// Subscribes `url` to the account's access events; returns the subscription's id.
    async fn subscribe_events(&self, _name: &str, _url: &str) -> ProviderResult<String> {
        Err(ProviderError::new(
            ErrorKind::Rejected,
            "this provider has no event subscriptions",
        ))
    }
    /// Ends an event subscription (one already gone is no error).
    async fn unsubscribe_events(&self, _id: &str) -> ProviderResult<()> {
        Ok(())
    }
    /// Access events that occurred in `[from, to)`, oldest first.
    async fn access_events(
        &self,
        _from: jiff::Timestamp,
        _to: jiff::Timestamp,
    ) -> ProviderResult<Vec<RemoteEvent>> {
        Ok(vec![])
    }
    /// One cheap call that tells whether the provider answers again after a pause.
    async fn probe(&self) -> ProviderResult<()> {
        self.sites().await.map(|_| ())
    }
    /// Provider calls made so far (every HTTP attempt), for the call budget.
    fn calls(&self) -> u64;
    /// Calls by endpoint and outcome, for `/metrics`.
    fn call_stats(&self) -> Vec<(String, String, u64)> {
        vec![]
    }
}

/// Builds (and caches) the provider of a connection.
pub trait ProviderFactory: Send + Sync {
    fn provider(&self, connection: &Connection) -> ProviderResult<Arc<dyn Provider>>;
    /// The providers built so far, by connection id, for `/metrics`.
    fn built(&self) -> Vec<(String, Arc<dyn Provider>)> {
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_first_and_last() {
        let p = UserProfile::new("c1".into(), "Ana Maria Lima", None);
        assert_eq!(
            (p.first_name.as_str(), p.last_name.as_str()),
            ("Ana Maria", "Lima")
        );
        let p = UserProfile::new("c1".into(), "Madonna", None);
        assert_eq!(
            (p.first_name.as_str(), p.last_name.as_str()),
            ("Madonna", "-")
        );
    }
}

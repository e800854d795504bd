//! doorsync's storage. One [`Store`] trait; [`SqlStore`] implements it on SQLite (a single file,
//! the default) and on PostgreSQL (several instances sharing the work), each backend with its own
//! migrations. Every write that changes a subject's inputs marks that subject due in the same
//! transaction, so the engine can never miss a change.

mod admins;
mod alerts;
mod bulk;
mod fence;
mod idset;
mod inputs;
mod invitations;
mod log;
mod members;
mod migrate;
mod mirror;
mod presence;
mod project;
mod reach;
mod record;
mod schedule;
mod secrets;
mod setup;
mod sql;

pub use admins::{Admin, AdminRemoval, AdminSession, FirstAdmin, OAuthState};
pub use alerts::{Alert, AlertSend, OutgoingHook};
pub use fence::Fence;
pub use members::{MemberSession, OutgoingMail};
pub use presence::{
    Checkin, DoorEvent, FailedCheckin, NewDoorEvent, PresenceDay, PresenceFilter, PresenceWrite,
    parse_cursor,
};
pub use record::{Kind, MAX_CONTRACT_DESKS, MAX_TEAM_MEMBERS, Record, Ref, link_key};
pub use schedule::Lane;
pub use secrets::{SecretError, SecretKey};
pub use setup::SetupProblem;
pub use sql::{Backend, SqlStore};

use async_trait::async_trait;
use doorsync_core::{CustomerInputs, Id, Subject, VisitorInputs};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A field names a record that does not exist.
    #[error("{field}: no {kind} with id {id:?}")]
    UnknownReference {
        field: &'static str,
        kind: &'static str,
        id: String,
    },
    /// The record breaks a rule that spans records.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Deleting the record would leave others pointing at nothing.
    #[error("{kind} {id:?} is still used by {by_kind} {by_id:?}")]
    InUse {
        kind: &'static str,
        id: String,
        by_kind: String,
        by_id: String,
    },
    /// The stored credentials cannot be opened with this instance's secret key, and the write
    /// does not replace all of them.
    #[error(
        "the stored credentials of connection {0:?} cannot be read with this doorsync's secret key (DOORSYNC_SECRET_KEY is missing or another key): start doorsync with the key they were sealed with, or send all of them again in this request (api_key, client_id, client_secret, admin_id and password; an empty string for one not used); they were left untouched"
    )]
    CredentialsUnreadable(String),
    /// Another claim has taken the subject since this run's: its write was refused, and the
    /// run must stop.
    #[error("the lease on {0} was taken over by another run: this run's write was refused")]
    Fenced(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    BadUrl(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration {version}: {message}")]
    Migration { version: i64, message: String },
    #[error("{0}")]
    Secret(#[from] SecretError),
    #[error("stored {kind} {id:?} is unreadable: {message}")]
    Corrupt {
        kind: &'static str,
        id: String,
        message: String,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a `put` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The record as stored, with the fields the store owns filled in.
    pub record: Record,
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleRow {
    pub subject: String,
    pub next_due_at: Option<Timestamp>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Timestamp>,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// The token of the subject's latest claim: see [`Fence`].
    pub fence: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DueSummary {
    pub due: i64,
    pub oldest_due_at: Option<Timestamp>,
    pub in_flight: i64,
}

/// A subject leased to a worker, with the instant it was due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub subject: Subject,
    pub due_at: Option<Timestamp>,
    /// When a drift audit last found the subject's user other than the mirror has it: the
    /// reconcile reads the user back from the provider first.
    pub drift_at: Option<Timestamp>,
    /// This claim's fence token: see [`Fence`].
    pub fence: i64,
}

/// A membership a disabled connection keeps past its entitlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HeldPast {
    pub connection_id: String,
    pub subject: String,
    pub group_id: String,
    /// Since when doorsync has known it should have been removed.
    pub since: Timestamp,
}

/// How a reconcile ended, for [`Store::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; wake again at the next transition, if any. `revokes`: that transition takes
    /// access away, so it is claimed before grants due at the same time.
    Done {
        next_due_at: Option<Timestamp>,
        revokes: bool,
    },
    /// Failed; try again at `retry_at`.
    Failed { retry_at: Timestamp, error: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: Timestamp,
    pub subject: String,
    pub group_id: Option<String>,
    pub operation: String,
    pub cause: Option<String>,
    pub outcome: String,
    pub latency_ms: Option<i64>,
    pub detail: Option<String>,
}

/// How an audited operation ended, as the log's filter reads it: its `outcome` is `ok`, or
/// `error: what went wrong`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Ok,
    Error,
}

impl std::str::FromStr for AuditOutcome {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "ok" => Ok(AuditOutcome::Ok),
            "error" => Ok(AuditOutcome::Error),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub group_id: Option<String>,
    pub operation: Option<String>,
    pub outcome: Option<AuditOutcome>,
    /// The beginning of the cause.
    pub cause: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// The provider user that serves a subject on one connection, as doorsync last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorUser {
    pub user_id: String,
    pub suspended: bool,
    /// The name and e-mail last pushed, to see when they change.
    pub name: Option<String>,
    pub email: Option<String>,
    /// When a Mobile Pass invitation was sent.
    pub invited_at: Option<Timestamp>,
    pub groups: BTreeSet<String>,
    /// The groups of `groups` doorsync itself added the user to: when a link moves or goes,
    /// these are taken out of the group no one manages any more; the others stay.
    pub added: BTreeSet<String>,
    /// The `externalId` last pushed; `None` for a user made before ids were made injective.
    pub external_id: Option<String>,
    /// The Mobile Pass invitation as last read: `pending`, `redeemed`, `expired`, `cancelled`.
    pub invitation: Option<String>,
    /// When the invitation's state was last read from the provider.
    pub invitation_checked_at: Option<Timestamp>,
}

impl MirrorUser {
    /// A provider user as first seen: its groups were not doorsync's doing.
    pub fn found(user_id: String, suspended: bool, groups: BTreeSet<String>) -> Self {
        MirrorUser {
            user_id,
            suspended,
            name: None,
            email: None,
            invited_at: None,
            groups,
            added: BTreeSet::new(),
            external_id: None,
            invitation: None,
            invitation_checked_at: None,
        }
    }
}

/// A group, site or door read from the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryEntry {
    pub provider_id: String,
    pub name: String,
    /// A door's site.
    pub parent_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionState {
    /// The provider is down: no calls before this.
    pub paused_until: Option<Timestamp>,
    pub pause_reason: Option<String>,
    pub last_audit_at: Option<Timestamp>,
    pub next_audit_at: Option<Timestamp>,
    pub last_directory_at: Option<Timestamp>,
    /// `YYYY-MM` of `calls_this_month`.
    pub month: Option<String>,
    pub calls_this_month: i64,
    /// Pauses in a row without a success between them, for the pause's backoff.
    pub pauses: i64,
    /// The account's Mobile Pass allotment as last read.
    pub passes_allotted: Option<i64>,
    pub passes_assigned: Option<i64>,
    /// Since when the allotment has been spent: no invitations until it grows.
    pub passes_out_since: Option<Timestamp>,
    pub passes_read_at: Option<Timestamp>,
}

/// One write of a batch.
#[derive(Debug, Clone)]
pub enum BatchOp {
    Put(Box<Record>),
    Delete(Kind, String),
}

/// What one write of a batch did.
#[derive(Debug, Clone)]
pub enum BatchDone {
    Written(Box<Written>),
    /// Whether there was a record to delete.
    Deleted(bool),
}

/// One change to a connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// Pauses the connection and counts the pause, unless a pause is already running at `now`
    /// (workers failing together pause it once).
    Paused {
        until: Timestamp,
        reason: String,
        now: Timestamp,
    },
    /// The provider answered: clears a pause that has run out by `now` (a newer pause stays)
    /// and the count of pauses in a row.
    Resumed {
        now: Timestamp,
    },
    /// An audit ran (`at`) or failed (`at: None`), and when the next is due.
    Audited {
        at: Option<Timestamp>,
        next: Timestamp,
    },
    DirectoryRead {
        at: Timestamp,
    },
    /// Creating an invitation found the allotment spent.
    PassesOut {
        now: Timestamp,
    },
    /// The allotment as read: passes left end `passes_out_since`, none left start it.
    Allotment {
        allotted: i64,
        assigned: i64,
        at: Timestamp,
    },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// Creates or replaces a record by its key, checks its references, and marks every subject
    /// whose inputs it changes due at `now`, all in one transaction.
    async fn put(&self, record: Record, now: Timestamp) -> Result<Written>;
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Record>>;
    /// Applies `ops` in order in one transaction, each on its own (a failing one changes
    /// nothing and is reported in its place): the successful ones become visible together.
    /// With `stop_at_error`, the first failure ends the batch: the ones before it are applied,
    /// the ones after it are not (and have no result).
    async fn apply_batch(
        &self,
        ops: Vec<BatchOp>,
        now: Timestamp,
        stop_at_error: bool,
    ) -> Result<Vec<std::result::Result<BatchDone, StoreError>>>;
    /// Records of `kind` in key order, after the key `after`.
    async fn list(&self, kind: Kind, after: Option<&str>, limit: u32) -> Result<Vec<Record>>;
    /// Every record of `kind`, in key order, read a page at a time.
    async fn list_all(&self, kind: Kind) -> Result<Vec<Record>> {
        const PAGE: u32 = 500;
        let mut out = vec![];
        let mut after: Option<String> = None;
        loop {
            let page = self.list(kind, after.as_deref(), PAGE).await?;
            let n = page.len();
            after = page.last().map(Record::key);
            out.extend(page);
            if n < PAGE as usize {
                return Ok(out);
            }
        }
    }
    /// Records of `kind` with the id `text`, then those whose fields contain it (any case).
    async fn search(&self, kind: Kind, text: &str, limit: u32) -> Result<Vec<Record>>;
    /// The customers whose e-mail address is `email` (any case), by id.
    async fn customers_by_email(&self, email: &str) -> Result<Vec<Record>>;
    /// The visitors `customer` hosts whose visit has not ended before `since`, by id.
    async fn hosted_visitors(&self, customer: &str, since: Timestamp) -> Result<Vec<Record>>;
    /// Deletes a record (and the link of an inventory item); `false` when there was none.
    async fn delete(&self, kind: Kind, key: &str, now: Timestamp) -> Result<bool>;

    /// Every subject whose access the record can change at `now`: those with current bookings,
    /// grants, contracts or visits it concerns.
    async fn subjects_reached(&self, record: &Record, now: Timestamp) -> Result<Vec<Subject>>;
    /// Everything that decides the customer's access from `now` on (history that ended long
    /// before it is left out).
    async fn customer_inputs(&self, id: &Id, now: Timestamp) -> Result<Option<CustomerInputs>> {
        Ok(self
            .customers_inputs(std::slice::from_ref(id), now)
            .await?
            .pop())
    }
    /// [`Store::customer_inputs`] of many customers, read together: in the order of `ids`,
    /// leaving out those that do not exist.
    async fn customers_inputs(&self, ids: &[Id], now: Timestamp) -> Result<Vec<CustomerInputs>>;
    async fn visitor_inputs(&self, id: &Id) -> Result<Option<VisitorInputs>>;

    /// Stores a token's hash; the token itself is never stored.
    /// Keeps door events a connection reported, once each by event id; returns how many were new.
    async fn save_door_events(
        &self,
        connection: &str,
        events: &[NewDoorEvent],
        now: Timestamp,
    ) -> Result<u64>;
    /// Door events not processed yet, oldest first.
    async fn pending_door_events(&self, limit: u32) -> Result<Vec<DoorEvent>>;
    async fn presence_day(
        &self,
        customer: &str,
        location: &str,
        local_date: &str,
        at: Timestamp,
    ) -> Result<PresenceDay>;
    /// Records what presence made of an event and marks it processed; `false` when it had been.
    #[allow(clippy::too_many_arguments)]
    async fn record_presence(
        &self,
        event_id: &str,
        subject: Option<&str>,
        location: Option<&str>,
        outcome: &str,
        write: &PresenceWrite,
        now: Timestamp,
    ) -> Result<bool>;
    /// Open check-ins, at any location, of a local date before `local_date`.
    async fn open_checkins_before(&self, local_date: &str) -> Result<Vec<Checkin>>;
    async fn close_checkin(&self, id: &str, at: Timestamp) -> Result<()>;
    /// Check-ins still open on each location's local date (location id → date).
    async fn open_checkins_on(
        &self,
        local_dates: &BTreeMap<String, String>,
    ) -> Result<Vec<Checkin>>;
    async fn checkins(
        &self,
        filter: &PresenceFilter,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<Checkin>>;
    async fn failed_checkins(
        &self,
        filter: &PresenceFilter,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<FailedCheckin>>;
    async fn door_events(
        &self,
        filter: &PresenceFilter,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<DoorEvent>>;
    /// Until when a connection's events have been read.
    async fn event_cursor(&self, connection: &str) -> Result<Option<Timestamp>>;
    async fn set_event_cursor(&self, connection: &str, at: Timestamp) -> Result<()>;

    /// A connection's event subscription: the public address it delivers to, and its
    /// provider id.
    async fn event_subscription(&self, connection: &str) -> Result<Option<(String, String)>>;
    /// Keeps a connection's (new) event subscription, replacing the one before.
    async fn save_event_subscription(
        &self,
        connection: &str,
        secret_hash: &str,
        url: &str,
        provider_id: &str,
        now: Timestamp,
    ) -> Result<()>;
    /// The connection whose webhook secret hashes to this.
    async fn hook_connection(&self, secret_hash: &str) -> Result<Option<String>>;

    /// Replaces the directory entries of each kind given, in one transaction.
    async fn replace_directories(
        &self,
        connection: &str,
        kinds: &[(&str, &[DirectoryEntry])],
    ) -> Result<()>;

    /// Keeps a member's sign-in link (by its token's hash) and queues the mail that carries
    /// it, in one transaction.
    async fn create_member_link(
        &self,
        token_hash: &str,
        customer_id: &str,
        mail: &OutgoingMail,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()>;
    /// Uses a sign-in link once while it is valid, opening a member session; the customer it
    /// signed in, or `None` for a link unknown, used or expired.
    async fn use_member_link(
        &self,
        token_hash: &str,
        session_hash: &str,
        csrf: &str,
        now: Timestamp,
        session_expires_at: Timestamp,
    ) -> Result<Option<String>>;
    async fn member_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<MemberSession>>;
    async fn end_member_session(&self, token_hash: &str) -> Result<()>;
    /// Mail due for a delivery attempt (mail past its expiry is dropped).
    async fn due_mail(&self, now: Timestamp, limit: u32) -> Result<Vec<OutgoingMail>>;
    /// Records a delivery attempt: sent (`None`), or failed with the error and the next try.
    async fn mail_attempted(
        &self,
        id: &str,
        now: Timestamp,
        failure: Option<(&str, Timestamp)>,
    ) -> Result<()>;
    /// Replaces which doors each of the given groups of a connection opens.
    async fn replace_group_doors(
        &self,
        connection: &str,
        groups: &BTreeMap<String, Vec<String>>,
    ) -> Result<()>;
    /// The provider ids of the doors any of the groups opens, and the groups among them whose
    /// doors were never read.
    async fn doors_of_groups(
        &self,
        connection: &str,
        groups: &[String],
    ) -> Result<(BTreeSet<String>, Vec<String>)>;
    /// Records that doorsync unlocked a door for a member, to match the provider's event to.
    async fn record_remote_unlock(
        &self,
        id: &str,
        connection: &str,
        door: &str,
        customer: &str,
        at: Timestamp,
    ) -> Result<()>;
    /// Forgets a remote unlock that did not happen (the provider refused it).
    async fn forget_remote_unlock(&self, id: &str) -> Result<()>;
    /// The member a remote unlock event at the door within `[from, until]` was made for,
    /// matched once: the same event again gets the same member, any other event none.
    async fn claim_remote_unlock(
        &self,
        connection: &str,
        door: &str,
        event_id: &str,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Option<String>>;

    /// Whether a remote unlock made at or after `since` on the connection still waits for its
    /// event: what keeps a connection's events read when no door has a presence role.
    async fn remote_unlock_unclaimed(&self, connection: &str, since: Timestamp) -> Result<bool>;

    /// Notes that an alert's condition holds at `now` (one resolved begins again).
    async fn observe_alert(
        &self,
        condition: &str,
        kind: &str,
        connection: Option<&str>,
        message: &str,
        now: Timestamp,
    ) -> Result<Alert>;
    /// Sends the alert (queues its webhook calls and mails) unless it went out within `quiet`;
    /// `false` when it did not go out now.
    async fn send_alert(
        &self,
        condition: &str,
        now: Timestamp,
        quiet: SignedDuration,
        send: &AlertSend,
        expires_at: Timestamp,
    ) -> Result<bool>;
    /// The condition no longer holds.
    async fn resolve_alert(&self, condition: &str, now: Timestamp) -> Result<()>;
    /// The alerts whose conditions hold, oldest first.
    async fn active_alerts(&self) -> Result<Vec<Alert>>;
    /// Webhook calls due for an attempt.
    async fn due_hooks(&self, now: Timestamp, limit: u32) -> Result<Vec<OutgoingHook>>;
    async fn hook_attempted(
        &self,
        id: &str,
        now: Timestamp,
        failure: Option<(&str, Timestamp)>,
    ) -> Result<()>;

    /// How many dashboard administrators exist (none: the first run asks for one).
    async fn admin_count(&self) -> Result<i64>;
    /// `None` when an administrator with that e-mail exists already.
    async fn create_admin(
        &self,
        id: &str,
        email: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<Option<Admin>>;
    async fn admins(&self) -> Result<Vec<Admin>>;
    /// The administrator with that e-mail, with their password hash.
    async fn admin_credentials(&self, email: &str) -> Result<Option<(Admin, String)>>;
    /// Removes an administrator and ends their sessions, unless it is the last one: the rule
    /// holds inside the removal, whatever else removes administrators at the same moment.
    async fn delete_admin(&self, id: &str) -> Result<AdminRemoval>;
    /// Gives an administrator a new password hash and ends their sessions; false when unknown.
    async fn set_admin_password(&self, id: &str, password_hash: &str) -> Result<bool>;
    /// Keeps a first-run setup code's hash until `expires_at`.
    async fn add_setup_code(
        &self,
        code_hash: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()>;
    /// Creates the first administrator (id, e-mail, password hash) with a live setup code, which
    /// is then used up with every other: the first run is over.
    async fn create_first_admin(
        &self,
        code_hash: &str,
        admin: (&str, &str, &str),
        now: Timestamp,
    ) -> Result<FirstAdmin>;
    async fn create_admin_session(
        &self,
        token_hash: &str,
        admin_id: &str,
        csrf: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()>;
    async fn admin_session(&self, token_hash: &str, now: Timestamp)
    -> Result<Option<AdminSession>>;
    async fn end_admin_session(&self, token_hash: &str) -> Result<()>;
    async fn signin_failures(&self, key: &str, since: Timestamp) -> Result<i64>;
    async fn record_signin_failure(
        &self,
        keys: &[&str],
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<()>;
    async fn clear_signin_failures(&self, key: &str) -> Result<()>;
    async fn put_oauth_state(
        &self,
        state_hash: &str,
        state: &OAuthState,
        expires_at: Timestamp,
    ) -> Result<()>;
    /// The Brivo sign-in under way with that state, once.
    async fn take_oauth_state(
        &self,
        state_hash: &str,
        now: Timestamp,
    ) -> Result<Option<OAuthState>>;

    async fn create_token(&self, name: &str, token_hash: &str, now: Timestamp)
    -> Result<TokenInfo>;
    async fn token_by_hash(&self, token_hash: &str, now: Timestamp) -> Result<Option<TokenInfo>>;
    /// Every token, oldest first, with when each was last used.
    async fn tokens(&self) -> Result<Vec<(TokenInfo, Option<Timestamp>)>>;
    /// Revokes a token by its id; `false` when there was none.
    async fn revoke_token(&self, id: &str) -> Result<bool>;

    async fn mark_due(&self, subject: &Subject, at: Timestamp) -> Result<()>;
    /// Leases up to `limit` due subjects to `owner` until `now + lease`.
    async fn claim_due(
        &self,
        owner: &str,
        now: Timestamp,
        lease: SignedDuration,
        limit: u32,
    ) -> Result<Vec<Claim>> {
        self.claim_in(owner, now, lease, limit, Lane::All, &BTreeSet::new())
            .await
    }
    /// [`Store::claim_due`] in one lane: everything, or only revocations.
    /// [`Store::claim_due`] in one lane: everything, or only revocations. `running`: the
    /// subjects `owner` is still running, never claimed again even when their lease ran out
    /// (a lease `owner` holds on anyone else, and lets run out, is claimed as anyone's).
    async fn claim_in(
        &self,
        owner: &str,
        now: Timestamp,
        lease: SignedDuration,
        limit: u32,
        lane: Lane,
        running: &BTreeSet<Subject>,
    ) -> Result<Vec<Claim>>;
    /// Extends a lease `fence` still holds; `false` when it was lost.
    async fn renew_lease(&self, fence: &Fence, until: Timestamp) -> Result<bool>;
    /// Releases a lease `fence` still holds (nothing, when another claim has taken it). A mark
    /// made while the lease was held wins over a later `next_due_at`.
    async fn finish(&self, fence: &Fence, outcome: Outcome) -> Result<()>;
    async fn schedule_row(&self, subject: &Subject) -> Result<Option<ScheduleRow>>;
    /// The drift audit's way to flag a subject: due now, and its next reconcile reads the
    /// user back from the provider (the audit itself never writes a subject's mirror).
    async fn mark_drift(&self, subject: &Subject, at: Timestamp) -> Result<()>;
    /// Clears a drift flag no newer than `seen`, while `fence` holds the subject's lease.
    async fn clear_drift(&self, fence: &Fence, seen: Timestamp) -> Result<()>;
    /// Takes (or renews) the lease on a piece of connection-wide work, such as
    /// `audit:CONNECTION`; `false` when another owner holds it.
    async fn take_work_lease(
        &self,
        name: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool>;
    async fn release_work_lease(&self, name: &str, owner: &str) -> Result<()>;
    /// Replaces the memberships the subject holds past its entitlement on a disabled
    /// connection (keeping the `since` of those already known).
    /// Refused unless `fence` holds the subject.
    async fn set_held_past(
        &self,
        fence: &Fence,
        connection: &str,
        groups: &BTreeSet<String>,
        now: Timestamp,
    ) -> Result<()>;
    /// Memberships held past their entitlement, oldest first, for one subject or all.
    async fn held_past(&self, subject: Option<&Subject>, limit: u32) -> Result<Vec<HeldPast>>;
    /// How many memberships each connection holds past their entitlement.
    async fn held_past_counts(&self) -> Result<BTreeMap<String, i64>>;
    async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        self.next_due_in(Lane::All).await
    }
    /// When the next subject in `lane` falls due.
    async fn next_due_in(&self, lane: Lane) -> Result<Option<Timestamp>>;
    async fn due_summary(&self, now: Timestamp) -> Result<DueSummary>;

    async fn mirror_user(&self, connection: &str, subject: &Subject) -> Result<Option<MirrorUser>>;
    /// Connections on which the subject has a provider user.
    async fn mirror_connections_of(&self, subject: &Subject) -> Result<Vec<String>>;
    /// Writes the subject's user on `connection` as it now is (`None`: it has none), with the
    /// audit entries that say why, in one transaction refused with [`StoreError::Fenced`] unless
    /// `fence` still holds the subject. Only the rows that changed are written.
    async fn mirror_save(
        &self,
        fence: &Fence,
        connection: &str,
        user: Option<&MirrorUser>,
        audit: &[AuditEntry],
    ) -> Result<()>;
    /// Audit entries of a run that changed nothing in the mirror, refused like
    /// [`Store::mirror_save`].
    async fn append_run_audit(&self, fence: &Fence, entries: &[AuditEntry]) -> Result<()>;
    /// The mirror's members of a group: provider user id → subject key.
    async fn mirror_group_members(
        &self,
        connection: &str,
        group: &str,
    ) -> Result<BTreeMap<String, String>>;
    async fn mirror_subject_of_user(
        &self,
        connection: &str,
        user_id: &str,
    ) -> Result<Option<Subject>>;
    /// Groups linked to an item of one of the connection's locations, and its visitor groups.
    async fn managed_groups(&self, connection: &str) -> Result<BTreeSet<String>>;
    async fn replace_directory(
        &self,
        connection: &str,
        kind: &str,
        entries: &[DirectoryEntry],
    ) -> Result<()>;
    async fn directory(&self, connection: &str, kind: &str) -> Result<Vec<DirectoryEntry>>;
    /// A number that changes whenever a link, item, location or connection is written (on any
    /// instance).
    async fn catalog_version(&self) -> Result<i64>;
    /// The names read from any connection's provider of the groups `ids`, by group id; a group
    /// no directory lists is absent.
    async fn group_names(&self, ids: &BTreeSet<String>) -> Result<BTreeMap<String, String>>;
    /// An operator asks for a new Mobile Pass invitation for `subject`; marks it due.
    async fn request_invitation(&self, subject: &Subject, now: Timestamp) -> Result<()>;
    /// When a new invitation was asked for and not yet sent.
    async fn invitation_requested(&self, subject: &Subject) -> Result<Option<Timestamp>>;
    /// The request made at `at` is served (a newer one stays); refused unless `fence` holds
    /// the subject.
    async fn clear_invitation_request(&self, fence: &Fence, at: Timestamp) -> Result<()>;
    /// Marks due the subjects with a user on `connection` who were never invited (the
    /// allotment grew again).
    async fn mark_uninvited_due(&self, connection: &str, now: Timestamp) -> Result<u64>;
    /// Reserves the connection's next provider call slot, `interval_ms` after the one before
    /// and no earlier than `hold_ms` from now, on the database's clock (every instance shares
    /// it); returns how many milliseconds to wait for it.
    async fn take_call_slot(&self, connection: &str, interval_ms: i64, hold_ms: i64)
    -> Result<i64>;
    /// Links and locations that give nobody access as things stand.
    async fn setup_problems(&self) -> Result<Vec<SetupProblem>>;
    async fn connection_state(&self, connection: &str) -> Result<ConnectionState>;
    /// Changes the columns one event touches, and no others, so concurrent writers (a pause, the
    /// audit, the call count) never undo each other.
    async fn change_connection_state(&self, connection: &str, change: StateChange) -> Result<()>;
    /// Adds to the month's provider call count and returns the new total.
    async fn count_calls(&self, connection: &str, month: &str, calls: i64) -> Result<i64>;
    /// Subjects whose last reconcile failed, by error kind.
    async fn error_counts(&self) -> Result<BTreeMap<String, i64>>;

    async fn append_audit(&self, entry: AuditEntry) -> Result<i64>;
    /// Newest first, before `before_seq`.
    async fn audit(
        &self,
        filter: &AuditFilter,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>>;
}

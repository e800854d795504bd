//! The things of DESIGN.md §1 as doorsync holds them. Fields a caller cannot set (ids aside) are
//! filled by the store when a write lands: `status_since`, `cancelled_at`, team membership times.

use crate::ids::{Email, Id, Zone};
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// A provider's own id for an access group, user or door (Brivo's are numbers; they travel as text).
pub type ProviderId = String;

pub const DEFAULT_LEAD: SignedDuration = SignedDuration::from_mins(15);
pub const DEFAULT_LAG: SignedDuration = SignedDuration::from_mins(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    #[default]
    Brivo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NoAccessPolicy {
    /// Leave the provider user in place and take them out of every managed group.
    #[default]
    RemoveFromGroups,
    /// Take them out of managed groups and suspend the user; reinstate when access returns.
    Suspend,
    /// Delete the provider user; create one again when access returns.
    Delete,
}

/// Sign-in material for a provider account. Write-only through the API.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Credentials {
    pub api_key: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub admin_id: Option<String>,
    pub password: Option<String>,
    /// Kept from Brivo's sign-in page (a 3-legged application's authorization-code grant),
    /// used when no password is set. Set by the dashboard's Connect, never through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl Credentials {
    /// Whether any credential is set.
    pub fn any(&self) -> bool {
        [
            &self.api_key,
            &self.client_id,
            &self.client_secret,
            &self.admin_id,
            &self.password,
            &self.refresh_token,
        ]
        .iter()
        .any(|c| c.is_some())
    }

    /// Whether every credential a caller can write is named (an empty one clears it): a full
    /// replacement, which needs nothing of what is stored. The refresh token is left out, since
    /// only Brivo's sign-in page gives one.
    pub fn replaces_all(&self) -> bool {
        [
            &self.api_key,
            &self.client_id,
            &self.client_secret,
            &self.admin_id,
            &self.password,
        ]
        .iter()
        .all(|c| c.is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: Id,
    pub provider: Provider,
    pub api_url: Option<String>,
    pub auth_url: Option<String>,
    pub credentials: Credentials,
    pub no_access_policy: NoAccessPolicy,
    pub visitor_group_ids: Vec<ProviderId>,
    pub exempt_user_ids: Vec<ProviderId>,
    pub redeem_passes_automatically: bool,
    pub list_doors_in_app: bool,
    /// Link a customer to an existing provider user with the same e-mail when none carries
    /// their id as `externalId`.
    #[serde(default)]
    pub link_users_by_email: bool,
    /// Provider calls allowed a month; the drift audit is paced to stay within it.
    #[serde(default = "default_call_budget")]
    pub monthly_call_budget: u64,
    /// Calls per second the API key allows (Brivo's default is 10), shared by every instance.
    #[serde(default = "default_requests_per_second")]
    pub requests_per_second: u32,
    pub enabled: bool,
}

pub const DEFAULT_MONTHLY_CALL_BUDGET: u64 = 100_000;

fn default_call_budget() -> u64 {
    DEFAULT_MONTHLY_CALL_BUDGET
}

pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 10;

fn default_requests_per_second() -> u32 {
    DEFAULT_REQUESTS_PER_SECOND
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub id: Id,
    pub name: String,
    pub timezone: Zone,
    pub connection_id: Option<Id>,
    pub site_id: Option<ProviderId>,
    pub lead: SignedDuration,
    pub lag: SignedDuration,
    /// A pass grant whose last day is used stops opening at the end of that local day.
    #[serde(default)]
    pub end_access_when_days_used: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pass {
    pub id: Id,
    pub location_id: Id,
    pub name: String,
}

/// A bookable resource (meeting room, booth, event space).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub id: Id,
    pub location_id: Id,
    pub name: String,
    pub lead: Option<SignedDuration>,
    pub lag: Option<SignedDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeskKind {
    #[default]
    Desk,
    Office,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desk {
    pub id: Id,
    pub location_id: Id,
    pub name: String,
    pub kind: DeskKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CustomerStatus {
    #[default]
    Active,
    Suspended,
    Archived,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: Id,
    pub name: String,
    pub email: Email,
    pub phone: Option<String>,
    pub status: CustomerStatus,
    /// When `status` last changed (or the customer was first written).
    pub status_since: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub id: Id,
    pub name: String,
    pub paying_member_id: Id,
    pub member_ids: Vec<Id>,
}

/// One stay of a customer in a team; a member removed and added again has two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamMembership {
    pub team_id: Id,
    pub customer_id: Id,
    pub joined_at: Timestamp,
    pub left_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    #[default]
    Confirmed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    pub id: Id,
    pub customer_id: Id,
    pub resource_id: Id,
    pub start: Timestamp,
    pub end: Timestamp,
    pub status: BookingStatus,
    /// When the booking was cancelled; `None` while confirmed.
    pub cancelled_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContractStatus {
    #[default]
    Active,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    pub id: Id,
    pub customer_id: Id,
    pub desk_ids: Vec<Id>,
    pub start_date: Date,
    /// Inclusive; `None` is open-ended.
    pub end_date: Option<Date>,
    pub status: ContractStatus,
    pub cancelled_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassGrant {
    pub id: Id,
    pub customer_id: Id,
    pub pass_id: Id,
    pub valid_from: Timestamp,
    pub valid_until: Timestamp,
    /// Check-in days it holds; `None` is unlimited.
    pub uses: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Visitor {
    pub id: Id,
    pub name: String,
    pub email: Email,
    pub host_customer_id: Id,
    pub location_id: Id,
    pub arrival: Timestamp,
    pub departure: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Pass,
    Resource,
    Desk,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Pass => "pass",
            LinkKind::Resource => "resource",
            LinkKind::Desk => "desk",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pass" => Some(LinkKind::Pass),
            "resource" => Some(LinkKind::Resource),
            "desk" => Some(LinkKind::Desk),
            _ => None,
        }
    }
}

/// An inventory item controlled by an access group. An item without a link is not controlled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub kind: LinkKind,
    pub item_id: Id,
    pub group_id: ProviderId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PresenceRole {
    CheckIn,
    CheckOut,
    #[default]
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Door {
    pub id: Id,
    pub location_id: Id,
    pub name: String,
    pub presence_role: PresenceRole,
    /// The provider's id of the access point this door is.
    #[serde(default)]
    pub provider_door_id: Option<ProviderId>,
    /// When the provider stopped listing it: kept, with its history, but no longer read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_at: Option<Timestamp>,
}

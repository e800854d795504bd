//! The emulated account's records as they are stored (and persisted to the state file). The JSON
//! that the API shows is built from these in each resource's module, except for events and
//! event subscriptions, whose stored form is their API form.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub external_id: Option<String>,
    pub first_name: String,
    pub middle_name: Option<String>,
    pub last_name: String,
    pub pin: Option<String>,
    pub effective_from: Option<Timestamp>,
    pub effective_to: Option<Timestamp>,
    pub ble_two_factor_exempt: Option<bool>,
    pub emails: Vec<Email>,
    pub phone_numbers: Vec<Phone>,
    pub suspended: bool,
    pub created: Timestamp,
    pub updated: Timestamp,
}

impl User {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub address: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    pub number: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub id: u64,
    pub name: String,
    pub keypad_unlock: bool,
    pub immune_to_antipassback: bool,
    pub excluded_from_lockdown: bool,
    pub antipassback_reset_time: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Site {
    pub id: u64,
    pub site_name: String,
    pub time_zone: String,
    pub address: Address,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_address1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_address2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telephone_number: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlPanel {
    pub id: u64,
    pub name: String,
    pub site_id: u64,
    pub online: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessPoint {
    pub id: u64,
    pub name: String,
    pub control_panel_id: u64,
    pub site_id: u64,
    pub activation_enabled: bool,
    pub two_factor_enabled: bool,
}

/// A schedule (when a group permission applies). Only its id and name are emulated: schedules
/// are not evaluated, so a permission opens its door at any time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    pub id: u64,
    pub name: String,
}

/// A group's permission on one door: under which schedule, and whether it overrides privacy
/// mode (which only some lock types support; none of the emulated doors do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub schedule_id: u64,
    #[serde(default)]
    pub privacy_mode_override: bool,
}

/// A Brivo Mobile Pass credential, created with its invitation and usable once redeemed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credential {
    pub id: u64,
    pub user_id: u64,
    pub reference_id: String,
    pub created: Timestamp,
    pub redeemed: bool,
}

/// Credential format 307 in Brivo's format list.
pub const MOBILE_PASS_FORMAT_ID: u64 = 307;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InvitationStatus {
    Pending,
    Redeemed,
    Expired,
    Cancelled,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Redeemed => "REDEEMED",
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invitation {
    pub id: u64,
    pub user_id: u64,
    pub reference_id: String,
    pub credential_id: u64,
    pub access_code: String,
    pub created: Timestamp,
    pub expiration: Timestamp,
    pub status: InvitationStatus,
    pub nfc_enabled: bool,
    pub cancel_date: Option<Timestamp>,
    pub language: String,
}

/// An access event in the JSON form that the listing and webhooks share (reference §14).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub uuid: String,
    pub object_type: String,
    pub account_id: u64,
    pub security_action: SecurityAction,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor: Option<Actor>,
    pub event_object: EventObject,
    pub site: EventSite,
    #[serde(with = "millis")]
    pub occurred: Timestamp,
    #[serde(with = "millis")]
    pub processed: Timestamp,
    pub event_data: EventData,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityAction {
    pub security_action_id: u32,
    pub action: String,
    pub exception: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Actor {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventObject {
    pub id: u64,
    pub name: String,
    pub device_type: DeviceType,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceType {
    pub id: u32,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSite {
    pub id: u64,
    pub site_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor_name: Option<String>,
    pub object_name: String,
    pub object_group_name: String,
    pub action_allowed: bool,
    pub object_type_id: u32,
    pub device_type_id: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_group_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub credential_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub credential_object_id: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub credentials: Vec<EventCredential>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventCredential {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reference_id: Option<String>,
}

/// An event subscription in its API form (reference §15).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: u64,
    pub name: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_email: Option<String>,
    pub criteria: Vec<Criterion>,
    pub encrypted_secret_word: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Criterion {
    pub id: u64,
    pub criteria_type: String,
    pub criteria_operation_type: String,
    pub criteria_value: u64,
}

/// An e-mail the emulator sent (or would have sent): invitations, and delivery-failure notices
/// to a subscription's `errorEmail`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxMail {
    pub to: String,
    pub subject: String,
    pub body: String,
    pub access_code: Option<String>,
    pub sent_at: Timestamp,
    /// True once an SMTP server accepted it; false when no SMTP server is configured.
    pub delivered: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipOp {
    Add,
    Remove,
}

/// One change of one user's membership of one group, as the invariant checks read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipChange {
    pub at: Timestamp,
    pub group_id: u64,
    pub user_id: u64,
    /// The user's externalId at the time of the change.
    pub external_id: Option<String>,
    pub op: MembershipOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserChangeOp {
    Create,
    Delete,
    Suspend,
    Reinstate,
}

/// A change to a user's existence or suspension, which access checks depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserChange {
    pub at: Timestamp,
    pub user_id: u64,
    pub external_id: Option<String>,
    pub op: UserChangeOp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessToken {
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshToken {
    pub expires_at: Timestamp,
    /// The application it was issued to; only that client may use it. Empty in state files
    /// from before applications were told apart (any client may use those).
    #[serde(default)]
    pub client_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthCode {
    /// The redirect URI the browser was sent back to (the registered one).
    pub redirect_uri: String,
    /// Whether the authorization request named it, in which case the exchange must repeat it.
    #[serde(default)]
    pub redirect_uri_given: bool,
    #[serde(default)]
    pub client_id: String,
    pub expires_at: Timestamp,
}

/// Serde for instants in the millisecond form that Brivo's events carry.
pub mod millis {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::util::fmt_millis(*ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

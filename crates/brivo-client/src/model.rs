//! The JSON shapes of the Brivo resources doorsync uses.
//!
//! Brivo omits empty fields instead of sending `null`, and list answers carry fewer fields than
//! single GETs, so every field a response may lack has a default, and unknown fields are
//! ignored. Ids are JSON numbers; `externalId` is a string (the server echoes `1` as `"1"`).
//! Request bodies leave out what is unset, which matters for `PUT` (a full replace) and
//! `PATCH` (only what is sent changes).

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

/// A user (cardholder) as the API returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    pub id: u64,
    #[serde(
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<String>,
    pub first_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    pub last_name: String,
    pub suspended: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Email>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phone_numbers: Vec<PhoneNumber>,
    #[serde(
        deserialize_with = "lenient_instant",
        skip_serializing_if = "Option::is_none"
    )]
    pub effective_from: Option<Timestamp>,
    #[serde(
        deserialize_with = "lenient_instant",
        skip_serializing_if = "Option::is_none"
    )]
    pub effective_to: Option<Timestamp>,
    #[serde(
        deserialize_with = "lenient_instant",
        skip_serializing_if = "Option::is_none"
    )]
    pub created: Option<Timestamp>,
    #[serde(
        deserialize_with = "lenient_instant",
        skip_serializing_if = "Option::is_none"
    )]
    pub updated: Option<Timestamp>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_fields: Vec<CustomFieldValue>,
    /// `Visitor` for guest users; absent for ordinary ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<String>,
}

impl User {
    /// The first e-mail address, if any.
    pub fn email(&self) -> Option<&str> {
        self.emails.first().map(|e| e.address.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Email {
    pub address: String,
    /// `home`, `work`, `other`... which strings Brivo accepts is not documented.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Email {
    pub fn work(address: impl Into<String>) -> Self {
        Email {
            address: address.into(),
            kind: Some("work".into()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PhoneNumber {
    pub number: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomFieldValue {
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The body of a user create (`POST /users`) or full replace (`PUT /users/{id}`). For `PUT`,
/// whatever is left unset here is removed from the user.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    pub first_name: String,
    pub last_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Unique within the account; doorsync stores its customer id here, which is what makes
    /// [`crate::BrivoClient::create_user`] safe to retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Email>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phone_numbers: Vec<PhoneNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_from: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_to: Option<Timestamp>,
}

/// A partial update (`PATCH /users/{id}`): only the fields set here change.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<Email>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_numbers: Option<Vec<PhoneNumber>>,
}

/// `GET|PUT /users/{id}/suspended`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SuspendedState {
    pub id: u64,
    pub suspended: bool,
}

/// An access group. Lists carry only `id` and `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Group {
    pub id: u64,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keypad_unlock: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immune_to_antipassback: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_from_lockdown: Option<bool>,
    /// Minute of the day (0-1440) as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub antipassback_reset_time: Option<String>,
}

/// One of a group's door permissions (`GET /groups/{id}/access/access-points`): which door,
/// under which schedule, and whether it overrides privacy mode (Salto, Allegion and ASSA Abloy
/// locks only; absent elsewhere).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupAccessPoint {
    pub access_point: AccessPointRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy_mode_override: Option<bool>,
}

/// A door as a permission names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccessPointRef {
    pub id: u64,
    pub name: String,
    /// `Door`, `Salto Door Lock`, ... (display names, not the filter's `DOOR`).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A schedule as a permission names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ScheduleRef {
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A schedule (`GET /schedules`), e.g. "24x7 - Always On".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Schedule {
    pub id: u64,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub editable: Option<bool>,
    /// `Universal` for account-wide schedules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_name: Option<String>,
}

/// The body of `PUT /groups/{id}/access/access-points/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PermissionBody {
    pub schedule: IdOnly,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy_mode_override: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct IdOnly {
    pub id: u64,
}

/// Brivo rejects group names longer than this.
pub const MAX_GROUP_NAME_CHARS: usize = 35;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewGroup<'a> {
    pub name: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserGroupsChange<'a> {
    pub add_groups: &'a [u64],
    pub remove_groups: &'a [u64],
}

/// A site (a building or location).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Site {
    pub id: u64,
    pub site_name: String,
    /// Only on single GETs, e.g. `US/Eastern`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Address {
    pub street_address1: Option<String>,
    pub street_address2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub telephone_number: Option<String>,
    pub telephone_extension: Option<String>,
}

/// A door (or other access point).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccessPoint {
    pub id: u64,
    pub name: String,
    /// `Door`, ...
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_panel_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_name: Option<String>,
    /// "Control From Browser": remote unlock is allowed.
    pub activation_enabled: bool,
    pub two_factor_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_live_status: Option<bool>,
}

/// The state of a Brivo Mobile Pass invitation (upper case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InvitationStatus {
    #[default]
    Pending,
    Redeemed,
    Expired,
    Cancelled,
    /// A state this client does not know yet.
    #[serde(other)]
    Unknown,
}

impl InvitationStatus {
    /// The lower-case value the list filter takes.
    pub fn filter_value(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Redeemed => "redeemed",
            InvitationStatus::Expired => "expired",
            InvitationStatus::Cancelled => "cancelled",
            InvitationStatus::Unknown => "all",
        }
    }
}

/// A Brivo Mobile Pass digital invitation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DigitalInvitation {
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_code: Option<String>,
    #[serde(
        deserialize_with = "lenient_instant",
        skip_serializing_if = "Option::is_none"
    )]
    pub created: Option<Timestamp>,
    #[serde(
        deserialize_with = "lenient_instant",
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration: Option<Timestamp>,
    #[serde(
        deserialize_with = "lenient_instant",
        skip_serializing_if = "Option::is_none"
    )]
    pub cancel_date: Option<Timestamp>,
    pub status: InvitationStatus,
    pub nfc_enabled: bool,
}

/// The languages Brivo writes invitation e-mails in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Language {
    #[default]
    En,
    Fr,
    Es,
    Nl,
    De,
    Sv,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Fr => "fr",
            Language::Es => "es",
            Language::Nl => "nl",
            Language::De => "de",
            Language::Sv => "sv",
        }
    }
}

/// What [`crate::BrivoClient::create_invitation`] sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvitation {
    /// Shown to the member; usually their e-mail address.
    pub reference_id: String,
    /// Have Brivo e-mail the invitation (Brivo's default is not to).
    pub send_email: bool,
    pub language: Language,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InvitationBody<'a> {
    pub reference_id: &'a str,
}

/// An access event (a door opened, a failed access, an administrator pulse...). Listings and
/// webhook deliveries share this shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccessEvent {
    pub uuid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_action: Option<SecurityAction>,
    /// Who acted: the user whose credential was presented, or the administrator. May be absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// What was acted on, e.g. the door.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_object: Option<EventObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<EventSite>,
    #[serde(
        deserialize_with = "lenient_instant",
        skip_serializing_if = "Option::is_none"
    )]
    pub occurred: Option<Timestamp>,
    #[serde(
        deserialize_with = "lenient_instant",
        skip_serializing_if = "Option::is_none"
    )]
    pub processed: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_data: Option<EventData>,
}

impl AccessEvent {
    /// Security action 2004, "Open": a user was let through.
    pub const OPEN: u32 = 2004;
    /// Security action 5064, "Administrator Pulse Output": a door opened remotely, with the
    /// administrator as the actor.
    pub const PULSE: u32 = 5064;

    pub fn security_action_id(&self) -> Option<u32> {
        self.security_action.as_ref().map(|a| a.security_action_id)
    }

    /// Whether the event is a successful access by a user (classified by id, not text).
    pub fn is_successful_access(&self) -> bool {
        self.security_action_id() == Some(Self::OPEN)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityAction {
    pub security_action_id: u32,
    pub action: String,
    pub exception: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Actor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventObject {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<DeviceType>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceType {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventSite {
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_name: Option<String>,
}

/// The commonly present keys of `eventData`; the rest are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_group_name: Option<String>,
    /// Unreliable (false even on some successful actions): prefer the security action id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_allowed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_object_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_group_name: Option<String>,
}

/// A webhook subscription (`/event-subscriptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventSubscription {
    pub id: u64,
    pub name: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_email: Option<String>,
    pub criteria: Vec<Criterion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted_secret_word: Option<String>,
}

/// What [`crate::BrivoClient::create_event_subscription`] and `update_event_subscription` send.
/// No criteria means every access event of the account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewEventSubscription {
    pub name: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_email: Option<String>,
    pub criteria: Vec<Criterion>,
}

/// One condition of a subscription; conditions are ANDed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Criterion {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// `SITE`, `USER`, `ACCESS-POINT` or `AUDIT`.
    pub criteria_type: String,
    /// `EQ` or `NE`.
    pub criteria_operation_type: String,
    #[serde(deserialize_with = "number_or_string")]
    pub criteria_value: i64,
}

impl Criterion {
    /// Events of one site only.
    pub fn site(site_id: u64) -> Self {
        Criterion {
            id: None,
            criteria_type: "SITE".into(),
            criteria_operation_type: "EQ".into(),
            criteria_value: i64::try_from(site_id).unwrap_or(i64::MAX),
        }
    }
}

/// Accepts a string or a number (Brivo echoes numeric `externalId`s as strings, but a
/// hand-edited account may hold either).
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("expected an integer")),
        serde_json::Value::String(s) => s.trim().parse().map_err(serde::de::Error::custom),
        _ => Err(serde::de::Error::custom("expected an integer")),
    }
}

/// Reads an instant however Brivo wrote it: RFC 3339 with or without fractional seconds, an
/// offset instead of `Z`, a civil date-time without zone (taken as UTC), or a bare date
/// (midnight UTC, as credential dates are echoed).
fn lenient_instant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    parse_instant(&text)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("not a date or instant: {text:?}")))
}

pub(crate) fn parse_instant(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(at);
    }
    if let Ok(civil) = text.parse::<jiff::civil::DateTime>() {
        return jiff::tz::TimeZone::UTC.to_timestamp(civil).ok();
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        let midnight = date.to_datetime(jiff::civil::Time::midnight());
        return jiff::tz::TimeZone::UTC.to_timestamp(midnight).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_user_shapes() {
        let u: User = serde_json::from_str(
            r#"{"id":15540780,"externalId":"1","firstName":"first","lastName":"last","suspended":false}"#,
        )
        .unwrap();
        assert_eq!(u.id, 15540780);
        assert_eq!(u.external_id.as_deref(), Some("1"));
        assert!(u.custom_fields.is_empty());
        let u: User = serde_json::from_str(
            r#"{"id":15540763,"firstName":"first","lastName":"last","suspended":false,"customFields":[],"somethingNew":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(u.external_id, None);
        let u: User = serde_json::from_str(r#"{"id":1,"externalId":42}"#).unwrap();
        assert_eq!(u.external_id.as_deref(), Some("42"));
    }

    #[test]
    fn documented_full_user() {
        let u: User = serde_json::from_str(
            r#"{"id":442211,"externalId":"Star Lord","firstName":"Peter","middleName":"Jason","lastName":"Quill","pin":"5678",
            "effectiveFrom":"2015-04-14T18:17:49Z","effectiveTo":"2020-12-31T23:59:59Z","suspended":false,
            "created":"2010-06-15T04:00:00Z","updated":"2018-03-14T04:00:00Z","bleTwoFactorExempt":true,
            "userImage":[{"id":5678,"uri":"http://x"}],
            "customFields":[{"id":222,"fieldType":"TEXT","fieldName":"species","value":"human"}],
            "emails":[{"address":"peter.quill@brivo.com","type":"home"}],
            "phoneNumbers":[{"number":"(541) 754-3010","type":"home"}]}"#,
        )
        .unwrap();
        assert_eq!(u.email(), Some("peter.quill@brivo.com"));
        assert_eq!(u.effective_to.unwrap().to_string(), "2020-12-31T23:59:59Z");
        assert_eq!(u.custom_fields[0].value.as_deref(), Some("human"));
    }

    #[test]
    fn requests_leave_out_unset_fields() {
        let body = serde_json::to_string(&NewUser {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            external_id: Some("c-1".into()),
            emails: vec![Email::work("ada@example.com")],
            ..NewUser::default()
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"firstName":"Ada","lastName":"Lovelace","externalId":"c-1","emails":[{"address":"ada@example.com","type":"work"}]}"#
        );
        let patch = serde_json::to_string(&UserPatch {
            last_name: Some("King".into()),
            ..UserPatch::default()
        })
        .unwrap();
        assert_eq!(patch, r#"{"lastName":"King"}"#);
        let change = serde_json::to_string(&UserGroupsChange {
            add_groups: &[1, 2],
            remove_groups: &[],
        })
        .unwrap();
        assert_eq!(change, r#"{"addGroups":[1,2],"removeGroups":[]}"#);
    }

    #[test]
    fn documented_group_permissions() {
        let page: crate::Page<GroupAccessPoint> = serde_json::from_str(
            r#"{"data":[{"accessPoint":{"id":442211,"name":"Revolving Door","type":"Allegion Door"},
            "schedule":{"id":339955,"name":"24x7 - Always On"}},
            {"accessPoint":{"id":58805,"name":"Sample salto door","type":"Salto Door Lock"},
            "schedule":{"id":43293,"name":"24x7 Schedule"},"privacyModeOverride":true}],
            "offset":0,"pageSize":20,"count":2}"#,
        )
        .unwrap();
        assert_eq!(page.data[0].access_point.id, 442211);
        assert_eq!(
            page.data[0].access_point.kind.as_deref(),
            Some("Allegion Door")
        );
        assert_eq!(page.data[0].schedule.as_ref().unwrap().id, 339955);
        assert_eq!(page.data[0].privacy_mode_override, None);
        assert_eq!(page.data[1].privacy_mode_override, Some(true));
        let body = serde_json::to_string(&PermissionBody {
            schedule: IdOnly { id: 439955 },
            privacy_mode_override: Some(true),
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"schedule":{"id":439955},"privacyModeOverride":true}"#
        );
        let body = serde_json::to_string(&PermissionBody {
            schedule: IdOnly { id: 1 },
            privacy_mode_override: None,
        })
        .unwrap();
        assert_eq!(body, r#"{"schedule":{"id":1}}"#);
    }

    #[test]
    fn invitation_and_instants_with_milliseconds() {
        let inv: DigitalInvitation = serde_json::from_str(
            r#"{"id":740,"referenceId":"john.doe@brivo.com","credentialId":967377,"accessCode":"i9o7aR37",
            "created":"2016-01-20T14:59:36.345Z","expiration":"2016-01-23T14:59:36.345Z","status":"PENDING","nfcEnabled":false}"#,
        )
        .unwrap();
        assert_eq!(inv.status, InvitationStatus::Pending);
        assert_eq!(inv.created.unwrap().subsec_millisecond(), 345);
        let odd: DigitalInvitation =
            serde_json::from_str(r#"{"id":1,"status":"ARCHIVED"}"#).unwrap();
        assert_eq!(odd.status, InvitationStatus::Unknown);
    }

    #[test]
    fn lenient_instants() {
        assert_eq!(
            parse_instant("2017-09-13").unwrap().to_string(),
            "2017-09-13T00:00:00Z"
        );
        assert_eq!(
            parse_instant("2015-04-15T17:00:00-05:00")
                .unwrap()
                .to_string(),
            "2015-04-15T22:00:00Z"
        );
        assert_eq!(
            parse_instant("2015-04-15T17:00:00").unwrap().to_string(),
            "2015-04-15T17:00:00Z"
        );
        assert_eq!(parse_instant("tomorrow"), None);
    }

    #[test]
    fn documented_event() {
        let e: AccessEvent = serde_json::from_str(
            r#"{"uuid":"049e1ca7","objectType":"ACCESS_POINT","accountId":123456,
            "securityAction":{"securityActionId":5064,"action":"Administrator Pulse Output","exception":false},
            "actor":{"id":912347,"name":"QA Admin"},
            "eventObject":{"id":408023598,"name":"Door 1","deviceType":{"id":1,"name":"Door"}},
            "site":{"id":7833522,"siteName":"Home base"},
            "occurred":"2024-04-17T08:52:39.724Z","processed":"2024-04-17T08:52:39.726Z",
            "eventData":{"actorName":"QA Admin","objectName":"Door 1","actionAllowed":false,"credentials":[{"id":887766,"disabled":false}]}}"#,
        )
        .unwrap();
        assert_eq!(e.security_action_id(), Some(5064));
        assert!(!e.is_successful_access());
        assert_eq!(e.event_object.unwrap().id, Some(408023598));
        let bare: AccessEvent =
            serde_json::from_str(r#"{"uuid":"u","occurred":"2024-04-17T08:52:39Z"}"#).unwrap();
        assert!(bare.actor.is_none());
    }

    #[test]
    fn subscription_criteria_values() {
        let s: EventSubscription = serde_json::from_str(
            r#"{"id":9,"name":"Site 1","url":"https://x","criteria":[{"id":1,"criteriaType":"SITE","criteriaOperationType":"EQ","criteriaValue":"12345"}],"encryptedSecretWord":"abc"}"#,
        )
        .unwrap();
        assert_eq!(s.criteria[0].criteria_value, 12345);
        let body = serde_json::to_string(&NewEventSubscription {
            name: "all".into(),
            url: "https://x".into(),
            error_email: None,
            criteria: vec![Criterion::site(7)],
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"name":"all","url":"https://x","criteria":[{"criteriaType":"SITE","criteriaOperationType":"EQ","criteriaValue":7}]}"#
        );
    }
}

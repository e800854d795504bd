//! The writable collections of the API: each one's request body, how it becomes a record, and
//! how a record is shown. Bodies refuse unknown fields; values are checked as they are parsed.

use crate::error::ApiError;
use crate::schema::*;
use doorsync_core::*;
use doorsync_store::{Kind, Record};
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa::ToSchema;

pub trait Collection: Send + Sync + 'static {
    /// The path segment under `/api/v1`.
    const PATH: &'static str;
    /// The name of a record's schema.
    const TITLE: &'static str;
    /// One record, in operation ids (`get_pass_grant`).
    const SINGULAR: &'static str;
    const KIND: Kind;
    /// The collections whose records can name one of these (so a delete can be refused, 409).
    const REFERENCED_BY: &'static [&'static str] = &[];
    /// Whether a write can be refused for stored credentials it cannot read (409).
    const HOLDS_CREDENTIALS: bool = false;
    /// The operations, beyond get, patch and delete, that take a record's id in their path.
    const FOLLOW_UPS: &'static [&'static str] = &[];
    type Body: DeserializeOwned + ToSchema + Send + 'static;

    fn into_record(id: Id, body: Self::Body) -> Result<Record, ApiError>;

    /// Fields the server adds to the body when it shows a record.
    fn read_only() -> Vec<(&'static str, utoipa::openapi::schema::Schema)> {
        vec![]
    }

    fn render(record: &Record) -> Value {
        serde_json::to_value(record).unwrap_or(Value::Null)
    }
}

fn name(field: &'static str, s: String) -> Result<String, ApiError> {
    let t = s.trim();
    // Counted as sent, as the description's maxLength counts.
    if t.is_empty() || s.chars().count() > 200 {
        return Err(ApiError::invalid(field, "must be 1 to 200 characters"));
    }
    if t.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "control characters are not allowed",
        ));
    }
    if t.chars().any(is_bidi_override) {
        return Err(ApiError::invalid(
            field,
            "bidirectional override characters (U+202A to U+202E, U+2066 to U+2069) are not allowed",
        ));
    }
    Ok(t.to_owned())
}

fn buffer(
    field: &'static str,
    d: Option<SignedDuration>,
) -> Result<Option<SignedDuration>, ApiError> {
    match d {
        Some(d) if d.is_negative() || d > SignedDuration::from_hours(24) => {
            Err(ApiError::invalid(field, "must be between PT0S and PT24H"))
        }
        Some(d) if d.subsec_nanos() % 1_000_000 != 0 => Err(ApiError::invalid(
            field,
            "must be a whole number of milliseconds",
        )),
        d => Ok(d),
    }
}

/// An ISO 8601 duration (`PT15M`), nothing else: jiff would also read its own friendly form
/// (`15m`), which the API does not promise and the OpenAPI does not describe.
fn iso_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SignedDuration>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    if !(s.starts_with('P') || s.starts_with('p')) {
        return Err(serde::de::Error::custom(format!(
            "{s:?} is not an ISO 8601 duration such as PT15M"
        )));
    }
    s.parse::<SignedDuration>().map(Some).map_err(|_| {
        serde::de::Error::custom(format!("{s:?} is not an ISO 8601 duration such as PT15M"))
    })
}

/// Dates and instants the rules can compute with ([`crate::input::YEARS`]). Bodies read them
/// through [`crate::input::instant`] already; this holds for any other way a body is built.
fn instant(field: &'static str, t: Timestamp) -> Result<Timestamp, ApiError> {
    let year = jiff::tz::TimeZone::UTC.to_datetime(t).year();
    if !crate::input::YEARS.contains(&year) {
        return Err(ApiError::invalid(field, crate::input::INSTANT_WORDS));
    }
    Ok(t)
}

fn day(field: &'static str, d: Date) -> Result<Date, ApiError> {
    if !crate::input::YEARS.contains(&d.year()) {
        return Err(ApiError::invalid(field, crate::input::DATE_WORDS));
    }
    Ok(d)
}

/// A provider base URL: `https`, or `http` to a loopback host only (a test double or a local
/// proxy), since credentials travel to it; no user info, query or fragment.
fn url(field: &'static str, u: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(u) = u else { return Ok(None) };
    let bad = |why: &str| Err(ApiError::invalid(field, why.to_owned()));
    // The URL parser drops tabs and newlines silently; refuse them and every other control.
    if u.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("must not contain spaces or control characters");
    }
    let Ok(parsed) = url::Url::parse(&u) else {
        return bad("must be an https:// URL");
    };
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.host().is_some() => {}
        "http" if loopback => {}
        "http" => return bad("must be https:// (http:// only to a loopback host)"),
        _ => return bad("must be an https:// URL"),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return bad("must not carry a user name or password");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return bad("must not have a query or fragment");
    }
    Ok(Some(u.trim_end_matches('/').to_owned()))
}

fn provider_ids(field: &'static str, ids: Vec<String>) -> Result<Vec<String>, ApiError> {
    for (i, id) in ids.iter().enumerate() {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::invalid(
                format!("{field}[{i}]"),
                "a provider id is 1 to 64 visible characters",
            ));
        }
    }
    Ok(ids)
}

/// An instant the server sets; `nullable` when it is shown as null until then.
fn read_only_time(
    name: &'static str,
    nullable: bool,
) -> (&'static str, utoipa::openapi::schema::Schema) {
    let mut schema = instant_schema();
    if nullable {
        schema.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::schema::Type::String,
            utoipa::openapi::schema::Type::Null,
        ]);
    }
    (name, utoipa::openapi::schema::Schema::Object(schema))
}

// ---- connections

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    #[serde(default)]
    #[schema(schema_with = provider_schema)]
    pub provider: Provider,
    /// The provider's API base URL; the provider's default when absent.
    pub api_url: Option<String>,
    /// The provider's OAuth base URL; the provider's default when absent.
    pub auth_url: Option<String>,
    /// Credentials are write-only: one left out keeps the stored one, an empty string clears it.
    /// A write that changes `api_url` or `auth_url` keeps only the credentials it sends; where
    /// the stored ones cannot be read (another secret key), a write must send all five.
    #[schema(write_only)]
    pub api_key: Option<String>,
    #[schema(write_only)]
    pub client_id: Option<String>,
    #[schema(write_only)]
    pub client_secret: Option<String>,
    #[schema(write_only)]
    pub admin_id: Option<String>,
    #[schema(write_only)]
    pub password: Option<String>,
    #[serde(default)]
    #[schema(schema_with = no_access_policy_schema)]
    pub no_access_policy: NoAccessPolicy,
    #[serde(default)]
    #[schema(schema_with = provider_id_list_schema)]
    pub visitor_group_ids: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = provider_id_list_schema)]
    pub exempt_user_ids: Vec<String>,
    #[serde(default)]
    pub redeem_passes_automatically: bool,
    #[serde(default = "yes")]
    pub list_doors_in_app: bool,
    /// Link a customer to an existing provider user with the same e-mail when no user carries
    /// the customer's id as externalId.
    #[serde(default)]
    pub link_users_by_email: bool,
    /// Provider calls allowed a month (default 100000); the drift audit is paced to stay within it.
    #[schema(minimum = 100, maximum = 1_000_000_000_000u64)]
    pub monthly_call_budget: Option<u64>,
    /// Calls per second the API key allows (default 10), shared by every doorsync instance on
    /// the database; calls are spaced evenly so that Brivo never answers over-QPS.
    #[schema(minimum = 1, maximum = 1000)]
    pub requests_per_second: Option<u32>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A month's calls at 380,000 a second; more is a typo, and would overflow the pacing's sums.
const MAX_MONTHLY_CALL_BUDGET: u64 = 1_000_000_000_000;

// (A field whose schema comes from `schema_with` loses its doc comment, and one whose pattern is
// written here needs a literal: the patterns are schema.rs's, tied by the tests below.)
fn desk_ids_schema() -> utoipa::openapi::schema::Schema {
    let mut schema = id_list_schema();
    if let utoipa::openapi::schema::Schema::Array(a) = &mut schema {
        a.description = Some("Desks and offices of one location.".into());
        a.max_items = Some(doorsync_store::MAX_CONTRACT_DESKS);
    }
    schema
}

fn member_ids_schema() -> utoipa::openapi::schema::Schema {
    let mut schema = id_list_schema();
    if let utoipa::openapi::schema::Schema::Array(a) = &mut schema {
        a.max_items = Some(doorsync_store::MAX_TEAM_MEMBERS);
    }
    schema
}

fn yes() -> bool {
    true
}

pub struct Connections;
impl Collection for Connections {
    const PATH: &'static str = "connections";
    const FOLLOW_UPS: &'static [&'static str] = &["connection_directory"];
    const REFERENCED_BY: &'static [&'static str] = &["locations"];
    const HOLDS_CREDENTIALS: bool = true;
    const TITLE: &'static str = "Connection";
    const SINGULAR: &'static str = "connection";
    const KIND: Kind = Kind::Connection;
    type Body = ConnectionBody;

    fn into_record(id: Id, b: ConnectionBody) -> Result<Record, ApiError> {
        Ok(Record::Connection(Connection {
            id,
            provider: b.provider,
            api_url: url("api_url", b.api_url)?,
            auth_url: url("auth_url", b.auth_url)?,
            credentials: Credentials {
                api_key: b.api_key,
                client_id: b.client_id,
                client_secret: b.client_secret,
                admin_id: b.admin_id,
                password: b.password,
                refresh_token: None,
            },
            no_access_policy: b.no_access_policy,
            visitor_group_ids: provider_ids("visitor_group_ids", b.visitor_group_ids)?,
            exempt_user_ids: provider_ids("exempt_user_ids", b.exempt_user_ids)?,
            redeem_passes_automatically: b.redeem_passes_automatically,
            list_doors_in_app: b.list_doors_in_app,
            link_users_by_email: b.link_users_by_email,
            monthly_call_budget: match b.monthly_call_budget {
                Some(n) if !(100..=MAX_MONTHLY_CALL_BUDGET).contains(&n) => {
                    return Err(ApiError::invalid(
                        "monthly_call_budget",
                        "must be 100 to 1,000,000,000,000",
                    ));
                }
                Some(n) => n,
                None => DEFAULT_MONTHLY_CALL_BUDGET,
            },
            requests_per_second: match b.requests_per_second {
                Some(n) if !(1..=1000).contains(&n) => {
                    return Err(ApiError::invalid(
                        "requests_per_second",
                        "must be 1 to 1000",
                    ));
                }
                Some(n) => n,
                None => DEFAULT_REQUESTS_PER_SECOND,
            },
            enabled: b.enabled,
        }))
    }

    fn read_only() -> Vec<(&'static str, utoipa::openapi::schema::Schema)> {
        vec![(
            "credentials_set",
            string_array_schema("Which write-only credentials are stored"),
        )]
    }

    /// Credentials never leave the server; the caller sees which are set.
    fn render(record: &Record) -> Value {
        let Record::Connection(c) = record else {
            return Value::Null;
        };
        let cr = &c.credentials;
        let set: Vec<&str> = [
            ("api_key", &cr.api_key),
            ("client_id", &cr.client_id),
            ("client_secret", &cr.client_secret),
            ("admin_id", &cr.admin_id),
            ("password", &cr.password),
            ("refresh_token", &cr.refresh_token),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k)
        .collect();
        json!({
            "id": c.id,
            "provider": c.provider,
            "api_url": c.api_url,
            "auth_url": c.auth_url,
            "no_access_policy": c.no_access_policy,
            "visitor_group_ids": c.visitor_group_ids,
            "exempt_user_ids": c.exempt_user_ids,
            "redeem_passes_automatically": c.redeem_passes_automatically,
            "list_doors_in_app": c.list_doors_in_app,
            "link_users_by_email": c.link_users_by_email,
            "monthly_call_budget": c.monthly_call_budget,
            "requests_per_second": c.requests_per_second,
            "enabled": c.enabled,
            "credentials_set": set,
        })
    }
}

// ---- locations

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationBody {
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// IANA time zone name; day edges of contracts and visits are computed in it.
    #[schema(value_type = String, example = "Europe/London")]
    pub timezone: Zone,
    #[schema(schema_with = optional_id_schema)]
    pub connection_id: Option<Id>,
    /// The provider's site id.
    #[schema(pattern = r"^[!-~]{1,64}$")]
    pub site_id: Option<String>,
    /// Access starts this long before a booking or visit (ISO 8601 duration, default PT15M).
    #[schema(value_type = Option<String>, example = "PT15M")]
    #[serde(default, deserialize_with = "iso_duration")]
    pub lead: Option<SignedDuration>,
    /// Access ends this long after a booking or visit (ISO 8601 duration, default PT15M).
    #[schema(value_type = Option<String>, example = "PT15M")]
    #[serde(default, deserialize_with = "iso_duration")]
    pub lag: Option<SignedDuration>,
    /// A pass grant with a day count stops opening at the end of the local day its last day is
    /// used (default false: it opens until `valid_until`).
    #[serde(default)]
    pub end_access_when_days_used: bool,
}

pub struct Locations;
impl Collection for Locations {
    const PATH: &'static str = "locations";
    const REFERENCED_BY: &'static [&'static str] =
        &["passes", "resources", "desks", "doors", "visitors"];
    const TITLE: &'static str = "Location";
    const SINGULAR: &'static str = "location";
    const KIND: Kind = Kind::Location;
    type Body = LocationBody;

    fn into_record(id: Id, b: LocationBody) -> Result<Record, ApiError> {
        Ok(Record::Location(Location {
            end_access_when_days_used: b.end_access_when_days_used,
            id,
            name: name("name", b.name)?,
            timezone: b.timezone,
            connection_id: b.connection_id,
            site_id: match b.site_id {
                Some(site)
                    if site.is_empty()
                        || site.len() > 64
                        || !site.bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    return Err(ApiError::invalid(
                        "site_id",
                        "a provider site id is 1 to 64 visible characters",
                    ));
                }
                site => site,
            },
            lead: buffer("lead", b.lead)?.unwrap_or(DEFAULT_LEAD),
            lag: buffer("lag", b.lag)?.unwrap_or(DEFAULT_LAG),
        }))
    }
}

// ---- passes, resources, desks, doors

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PassBody {
    #[schema(schema_with = id_schema)]
    pub location_id: Id,
    #[schema(schema_with = name_schema)]
    pub name: String,
}

pub struct Passes;
impl Collection for Passes {
    const PATH: &'static str = "passes";
    const REFERENCED_BY: &'static [&'static str] = &["pass-grants"];
    const TITLE: &'static str = "Pass";
    const SINGULAR: &'static str = "pass";
    const KIND: Kind = Kind::Pass;
    type Body = PassBody;

    fn into_record(id: Id, b: PassBody) -> Result<Record, ApiError> {
        Ok(Record::Pass(Pass {
            id,
            location_id: b.location_id,
            name: name("name", b.name)?,
        }))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceBody {
    #[schema(schema_with = id_schema)]
    pub location_id: Id,
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// Overrides the location's lead.
    #[schema(value_type = Option<String>, example = "PT10M")]
    #[serde(default, deserialize_with = "iso_duration")]
    pub lead: Option<SignedDuration>,
    /// Overrides the location's lag.
    #[schema(value_type = Option<String>, example = "PT10M")]
    #[serde(default, deserialize_with = "iso_duration")]
    pub lag: Option<SignedDuration>,
}

pub struct Resources;
impl Collection for Resources {
    const PATH: &'static str = "resources";
    const REFERENCED_BY: &'static [&'static str] = &["bookings"];
    const TITLE: &'static str = "Resource";
    const SINGULAR: &'static str = "resource";
    const KIND: Kind = Kind::Resource;
    type Body = ResourceBody;

    fn into_record(id: Id, b: ResourceBody) -> Result<Record, ApiError> {
        Ok(Record::Resource(Resource {
            id,
            location_id: b.location_id,
            name: name("name", b.name)?,
            lead: buffer("lead", b.lead)?,
            lag: buffer("lag", b.lag)?,
        }))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeskBody {
    #[schema(schema_with = id_schema)]
    pub location_id: Id,
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = desk_kind_schema)]
    pub kind: DeskKind,
}

pub struct Desks;
impl Collection for Desks {
    const PATH: &'static str = "desks";
    const REFERENCED_BY: &'static [&'static str] = &["contracts"];
    const TITLE: &'static str = "Desk";
    const SINGULAR: &'static str = "desk";
    const KIND: Kind = Kind::Desk;
    type Body = DeskBody;

    fn into_record(id: Id, b: DeskBody) -> Result<Record, ApiError> {
        Ok(Record::Desk(Desk {
            id,
            location_id: b.location_id,
            name: name("name", b.name)?,
            kind: b.kind,
        }))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoorBody {
    #[schema(schema_with = id_schema)]
    pub location_id: Id,
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = presence_role_schema)]
    pub presence_role: PresenceRole,
    /// The provider's id of the access point (Brivo's numeric id, as text).
    #[serde(default)]
    #[schema(pattern = r"^[!-~]{1,64}$")]
    pub provider_door_id: Option<String>,
}

pub struct Doors;
impl Collection for Doors {
    const PATH: &'static str = "doors";
    const TITLE: &'static str = "Door";
    const SINGULAR: &'static str = "door";
    const KIND: Kind = Kind::Door;
    type Body = DoorBody;

    /// Set by the directory read when Brivo stops listing the door; a write through the API
    /// clears it until the next read marks it again.
    fn read_only() -> Vec<(&'static str, utoipa::openapi::schema::Schema)> {
        vec![read_only_time("gone_at", false)]
    }

    fn into_record(id: Id, b: DoorBody) -> Result<Record, ApiError> {
        Ok(Record::Door(Door {
            id,
            location_id: b.location_id,
            name: name("name", b.name)?,
            presence_role: b.presence_role,
            provider_door_id: match b.provider_door_id {
                Some(d) => Some(
                    provider_ids("provider_door_id", vec![d])?
                        .pop()
                        .unwrap_or_default(),
                ),
                None => None,
            },
            gone_at: None,
        }))
    }
}

// ---- customers and teams

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerBody {
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[schema(value_type = String, format = Email)]
    pub email: Email,
    pub phone: Option<String>,
    #[serde(default)]
    #[schema(schema_with = customer_status_schema)]
    pub status: CustomerStatus,
}

pub struct Customers;
impl Collection for Customers {
    const PATH: &'static str = "customers";
    const FOLLOW_UPS: &'static [&'static str] = &["customer_access", "resend_invitation"];
    const REFERENCED_BY: &'static [&'static str] =
        &["teams", "bookings", "contracts", "pass-grants", "visitors"];
    const TITLE: &'static str = "Customer";
    const SINGULAR: &'static str = "customer";
    const KIND: Kind = Kind::Customer;
    type Body = CustomerBody;

    fn into_record(id: Id, b: CustomerBody) -> Result<Record, ApiError> {
        let phone = match b.phone {
            Some(p) if p.trim().is_empty() || p.len() > 40 || p.chars().any(char::is_control) => {
                return Err(ApiError::invalid("phone", "must be 1 to 40 characters"));
            }
            p => p,
        };
        Ok(Record::Customer(Customer {
            id,
            name: name("name", b.name)?,
            email: b.email,
            phone,
            status: b.status,
            status_since: Timestamp::UNIX_EPOCH,
        }))
    }

    fn read_only() -> Vec<(&'static str, utoipa::openapi::schema::Schema)> {
        vec![read_only_time("status_since", false)]
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamBody {
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// The member who holds the team's contracts; they reach every member.
    #[schema(value_type = String, pattern = r"^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$")]
    pub paying_member_id: Id,
    #[serde(default)]
    #[schema(schema_with = member_ids_schema)]
    pub member_ids: Vec<Id>,
}

pub struct Teams;
impl Collection for Teams {
    const PATH: &'static str = "teams";
    const TITLE: &'static str = "Team";
    const SINGULAR: &'static str = "team";
    const KIND: Kind = Kind::Team;
    type Body = TeamBody;

    fn into_record(id: Id, b: TeamBody) -> Result<Record, ApiError> {
        Ok(Record::Team(Team {
            id,
            name: name("name", b.name)?,
            paying_member_id: b.paying_member_id,
            member_ids: b.member_ids,
        }))
    }
}

// ---- what customers hold

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingBody {
    #[schema(schema_with = id_schema)]
    pub customer_id: Id,
    #[schema(schema_with = id_schema)]
    pub resource_id: Id,
    #[serde(deserialize_with = "crate::input::instant")]
    #[schema(value_type = String, format = DateTime)]
    pub start: Timestamp,
    #[serde(deserialize_with = "crate::input::instant")]
    #[schema(value_type = String, format = DateTime)]
    pub end: Timestamp,
    #[serde(default)]
    #[schema(schema_with = booking_status_schema)]
    pub status: BookingStatus,
}

pub struct Bookings;
impl Collection for Bookings {
    const PATH: &'static str = "bookings";
    const TITLE: &'static str = "Booking";
    const SINGULAR: &'static str = "booking";
    const KIND: Kind = Kind::Booking;
    type Body = BookingBody;

    fn into_record(id: Id, b: BookingBody) -> Result<Record, ApiError> {
        if b.end <= b.start {
            return Err(ApiError::invalid(
                "end",
                "a booking must end after it starts",
            ));
        }
        Ok(Record::Booking(Booking {
            id,
            customer_id: b.customer_id,
            resource_id: b.resource_id,
            start: instant("start", b.start)?,
            end: instant("end", b.end)?,
            status: b.status,
            cancelled_at: None,
        }))
    }

    fn read_only() -> Vec<(&'static str, utoipa::openapi::schema::Schema)> {
        vec![read_only_time("cancelled_at", true)]
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractBody {
    #[schema(schema_with = id_schema)]
    pub customer_id: Id,
    /// Desks and offices of one location.
    #[schema(schema_with = desk_ids_schema)]
    pub desk_ids: Vec<Id>,
    #[serde(deserialize_with = "crate::input::date")]
    #[schema(value_type = String, format = Date)]
    pub start_date: Date,
    /// Inclusive; open-ended when absent.
    #[serde(default, deserialize_with = "crate::input::optional_date")]
    #[schema(value_type = Option<String>, format = Date)]
    pub end_date: Option<Date>,
    #[serde(default)]
    #[schema(schema_with = contract_status_schema)]
    pub status: ContractStatus,
}

pub struct Contracts;
impl Collection for Contracts {
    const PATH: &'static str = "contracts";
    const TITLE: &'static str = "Contract";
    const SINGULAR: &'static str = "contract";
    const KIND: Kind = Kind::Contract;
    type Body = ContractBody;

    fn into_record(id: Id, b: ContractBody) -> Result<Record, ApiError> {
        if b.desk_ids.is_empty() {
            return Err(ApiError::invalid(
                "desk_ids",
                "a contract names at least one desk or office",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(i) = b.desk_ids.iter().position(|d| !seen.insert(d)) {
            return Err(ApiError::invalid(
                format!("desk_ids[{i}]"),
                "a desk is listed twice",
            ));
        }
        if let Some(end) = b.end_date
            && end < b.start_date
        {
            return Err(ApiError::invalid(
                "end_date",
                "a contract cannot end before it starts",
            ));
        }
        Ok(Record::Contract(Contract {
            id,
            customer_id: b.customer_id,
            desk_ids: b.desk_ids,
            start_date: day("start_date", b.start_date)?,
            end_date: b.end_date.map(|d| day("end_date", d)).transpose()?,
            status: b.status,
            cancelled_at: None,
        }))
    }

    fn read_only() -> Vec<(&'static str, utoipa::openapi::schema::Schema)> {
        vec![read_only_time("cancelled_at", true)]
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PassGrantBody {
    #[schema(schema_with = id_schema)]
    pub customer_id: Id,
    #[schema(schema_with = id_schema)]
    pub pass_id: Id,
    #[serde(deserialize_with = "crate::input::instant")]
    #[schema(value_type = String, format = DateTime)]
    pub valid_from: Timestamp,
    #[serde(deserialize_with = "crate::input::instant")]
    #[schema(value_type = String, format = DateTime)]
    pub valid_until: Timestamp,
    /// Check-in days the grant holds; unlimited when absent.
    #[schema(minimum = 1)]
    pub uses: Option<u32>,
}

pub struct PassGrants;
impl Collection for PassGrants {
    const PATH: &'static str = "pass-grants";
    const TITLE: &'static str = "PassGrant";
    const SINGULAR: &'static str = "pass_grant";
    const KIND: Kind = Kind::PassGrant;
    type Body = PassGrantBody;

    fn into_record(id: Id, b: PassGrantBody) -> Result<Record, ApiError> {
        if b.valid_until <= b.valid_from {
            return Err(ApiError::invalid(
                "valid_until",
                "a grant must end after it starts",
            ));
        }
        if b.uses == Some(0) {
            return Err(ApiError::invalid(
                "uses",
                "must be at least 1; leave it out for unlimited",
            ));
        }
        Ok(Record::PassGrant(PassGrant {
            id,
            customer_id: b.customer_id,
            pass_id: b.pass_id,
            valid_from: instant("valid_from", b.valid_from)?,
            valid_until: instant("valid_until", b.valid_until)?,
            uses: b.uses,
        }))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitorBody {
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[schema(value_type = String, format = Email)]
    pub email: Email,
    #[schema(schema_with = id_schema)]
    pub host_customer_id: Id,
    #[schema(schema_with = id_schema)]
    pub location_id: Id,
    #[serde(deserialize_with = "crate::input::instant")]
    #[schema(value_type = String, format = DateTime)]
    pub arrival: Timestamp,
    /// Access ends at the end of the arrival's local day when absent.
    #[serde(default, deserialize_with = "crate::input::optional_instant")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub departure: Option<Timestamp>,
}

pub struct Visitors;
impl Collection for Visitors {
    const PATH: &'static str = "visitors";
    const FOLLOW_UPS: &'static [&'static str] = &["visitor_access"];
    const TITLE: &'static str = "Visitor";
    const SINGULAR: &'static str = "visitor";
    const KIND: Kind = Kind::Visitor;
    type Body = VisitorBody;

    fn into_record(id: Id, b: VisitorBody) -> Result<Record, ApiError> {
        if let Some(d) = b.departure
            && d <= b.arrival
        {
            return Err(ApiError::invalid(
                "departure",
                "a visit must end after it starts",
            ));
        }
        Ok(Record::Visitor(Visitor {
            id,
            name: name("name", b.name)?,
            email: b.email,
            host_customer_id: b.host_customer_id,
            location_id: b.location_id,
            arrival: instant("arrival", b.arrival)?,
            departure: b.departure.map(|d| instant("departure", d)).transpose()?,
        }))
    }
}

/// The body of `PUT /api/v1/links/{kind}/{item_id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// The provider's access group that the item opens.
    pub group_id: String,
}

impl LinkBody {
    /// The link of `item` this body makes, its group id checked.
    pub fn into_record(self, kind: LinkKind, item_id: Id) -> Result<Record, ApiError> {
        let group = self.group_id.trim();
        if group.is_empty() || group.len() > 64 || !group.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::invalid(
                "group_id",
                "a provider group id is 1 to 64 visible characters",
            ));
        }
        Ok(Record::Link(Link {
            kind,
            item_id,
            group_id: group.to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    fn pattern(
        schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        field: &str,
    ) -> String {
        let v = serde_json::to_value(schema).unwrap();
        v["properties"][field]["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {v}"))
            .to_owned()
    }

    /// The patterns written as literals on fields are schema.rs's.
    #[test]
    fn literal_patterns_are_the_shared_ones() {
        assert_eq!(
            pattern(LocationBody::schema(), "site_id"),
            PROVIDER_ID_PATTERN
        );
        assert_eq!(
            pattern(DoorBody::schema(), "provider_door_id"),
            PROVIDER_ID_PATTERN
        );
        assert_eq!(pattern(TeamBody::schema(), "paying_member_id"), ID_PATTERN);
    }
}

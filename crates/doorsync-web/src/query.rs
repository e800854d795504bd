//! Query strings and path ids, parsed into typed values that also describe themselves to the
//! OpenAPI description. A query refuses parameters it does not know; every refusal is a 400
//! naming the parameter at fault.

use crate::error::ApiError;
use crate::input;
use axum::extract::FromRequestParts;
use axum::extract::rejection::PathRejection;
use axum::http::request::Parts;
use doorsync_core::Id;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// A typed query string: `Q(q): Q<PageQuery>`.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Checked, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|e| ApiError::bad_request("invalid_query", "query", e.to_string()))?;
        for (k, v) in &pairs {
            input::no_control(k.clone(), v)?;
            if pairs.iter().filter(|(o, _)| o == k).count() > 1 {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    k.clone(),
                    "give each query parameter once",
                ));
            }
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
        let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
            let message = e.inner().to_string();
            // An unknown parameter's error is the struct's own; its name is in the message.
            let field = match e.path().to_string() {
                p if p != "." => p,
                _ => message
                    .strip_prefix("unknown field `")
                    .and_then(|m| m.split('`').next())
                    .unwrap_or("query")
                    .to_owned(),
            };
            let message = match message.strip_prefix("unknown field") {
                Some(rest) => format!("unknown query parameter{rest}"),
                None => format!("{field}: {message}"),
            };
            ApiError::bad_request("invalid_query", field, message)
        })?;
        value.check()?;
        Ok(Q(value))
    }
}

/// What a query checks beyond its types: ranges.
pub trait Checked {
    fn check(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

fn check_limit(limit: Option<u32>) -> Result<(), ApiError> {
    match limit {
        Some(l) if !(1..=MAX_LIMIT).contains(&l) => Err(ApiError::bad_request(
            "invalid_query",
            "limit",
            format!("limit is 1 to {MAX_LIMIT}"),
        )),
        _ => Ok(()),
    }
}

/// A page of a list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT)
    }
}

impl Checked for PageQuery {
    fn check(&self) -> Result<(), ApiError> {
        check_limit(self.limit)
    }
}

/// The audit log's filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `customer:ID` or `visitor:ID`.
    pub subject: Option<String>,
    /// Shorthand for `subject=customer:ID`.
    pub customer_id: Option<String>,
    pub group_id: Option<String>,
    /// `add_member`, `remove_member`, `create_user`, ...
    pub operation: Option<String>,
    #[param(inline)]
    pub outcome: Option<doorsync_store::AuditOutcome>,
    /// What caused the change: `booking:ID`, `drift_audit`, ...
    pub cause: Option<String>,
    /// RFC 3339 instant, inclusive.
    #[serde(default, deserialize_with = "input::optional_instant")]
    pub since: Option<jiff::Timestamp>,
    /// RFC 3339 instant, exclusive.
    #[serde(default, deserialize_with = "input::optional_instant")]
    pub until: Option<jiff::Timestamp>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

impl Checked for AuditQuery {
    fn check(&self) -> Result<(), ApiError> {
        check_limit(self.limit)
    }
}

/// The presence lists' filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PresenceQuery {
    /// Only this customer's.
    pub customer_id: Option<String>,
    /// Only at this location.
    pub location_id: Option<String>,
    /// RFC 3339 instant, inclusive.
    #[serde(default, deserialize_with = "input::optional_instant")]
    pub since: Option<jiff::Timestamp>,
    /// RFC 3339 instant, exclusive.
    #[serde(default, deserialize_with = "input::optional_instant")]
    pub until: Option<jiff::Timestamp>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl Checked for PresenceQuery {
    fn check(&self) -> Result<(), ApiError> {
        check_limit(self.limit)
    }
}

/// How to run a resync.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResyncQuery {
    /// true: answer with the audit reports when done; false (the default): answer at once.
    pub wait: Option<bool>,
}

impl Checked for ResyncQuery {}

/// A record's id in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The caller's id: 1 to 128 characters of A-Z a-z 0-9 . _ : - (not . or ..)
    // schema::ID_PATTERN: an attribute takes only a literal (`schema_with` would drop the
    // parameter's `required`); a test holds the two together.
    #[param(pattern = r"^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$")]
    pub id: String,
}

/// The id of the path, checked: `PathId(id): PathId`.
pub struct PathId(pub Id);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let path: Result<axum::extract::Path<String>, PathRejection> =
            axum::extract::Path::from_request_parts(parts, state).await;
        let axum::extract::Path(raw) =
            path.map_err(|e| ApiError::bad_request("invalid_id", "id", e.body_text()))?;
        parse_id("id", &raw).map(PathId)
    }
}

pub fn parse_id(field: &'static str, raw: &str) -> Result<Id, ApiError> {
    Id::parse(raw).map_err(|e| ApiError::bad_request("invalid_id", field, e.to_string()))
}

#[cfg(test)]
mod tests {
    use utoipa::IntoParams;

    /// A path's id is required, described, and has the pattern of an id in a body.
    #[test]
    fn the_id_in_a_path_is_described_as_in_a_body() {
        let params = super::IdPath::into_params(|| None);
        let p = serde_json::to_value(&params[0]).unwrap();
        assert_eq!(p["required"], true, "{p}");
        assert!(p["description"].is_string(), "{p}");
        assert_eq!(p["schema"]["pattern"], crate::schema::ID_PATTERN, "{p}");
    }
}

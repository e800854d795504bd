//! One error type for everything a Brivo call can run into, whatever the body looked like.
//!
//! Brivo answers errors in three JSON shapes (its own `{code, message}`, OAuth's
//! `{error, error_description}` and Spring's `{status, error, message, path}`), and its API
//! gateway (Mashery) answers some in HTML (`<h1>Developer Inactive</h1>`, `Developer Over Qps`,
//! `Developer Over Rate`, `596 Service Not Found`). Callers should not care: they get a
//! [`ErrorKind`], whether it is worth retrying, and how long the server asked them to wait.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 401 other than an invalid token: bad credentials, a refused grant, no authentication.
    Unauthorized,
    /// 401 `invalid_token`: the access token expired or was revoked.
    InvalidToken,
    /// 403 from Brivo itself: the administrator may not do this (e.g. remote unlock disabled).
    Forbidden,
    /// 403 `Developer Inactive` from the gateway: the API key is missing, wrong or disabled.
    DeveloperInactive,
    /// 403 `Developer Over Qps`: too many calls per second for this API key.
    OverQps,
    /// 403 `Developer Over Rate`: the key's periodic quota (e.g. calls per month) is spent.
    OverRate,
    /// 400: invalid parameters, bad filter syntax, a group name over 35 characters...
    BadRequest,
    NotFound,
    /// 409, e.g. a digital invitation is already pending for the user.
    Conflict,
    /// 412, e.g. the door's control panel is offline, or no Mobile Passes are left.
    PreconditionFailed,
    /// 429.
    RateLimited,
    /// 5xx other than 596: a server or one of its dependencies is down for now.
    Unavailable,
    /// 596 from the gateway: wrong HTTP verb or path (or wrong region); retrying cannot help.
    ServiceNotFound,
    /// Any other HTTP status.
    Http,
    /// No answer within the configured timeout (the server may still have done the work).
    Timeout,
    /// The connection could not be opened: the request never reached the server.
    Connect,
    /// The connection broke after the request was sent: the outcome is unknown.
    Connection,
    /// A success answer whose body did not match the expected shape.
    Decode,
    /// The call was refused before sending it (an invalid argument, an unusable base URL).
    InvalidInput,
}

impl ErrorKind {
    /// The snake_case name used as the outcome in call accounting and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::InvalidToken => "invalid_token",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::DeveloperInactive => "developer_inactive",
            ErrorKind::OverQps => "over_qps",
            ErrorKind::OverRate => "over_rate",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::ServiceNotFound => "service_not_found",
            ErrorKind::Http => "http",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Connection => "connection",
            ErrorKind::Decode => "decode",
            ErrorKind::InvalidInput => "invalid_input",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed Brivo call (or a failed attempt of one).
#[derive(Debug, thiserror::Error)]
#[error("{endpoint}: {kind}{}: {message}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
pub struct BrivoError {
    kind: ErrorKind,
    endpoint: &'static str,
    status: Option<u16>,
    /// The `code` of Brivo's own body shape, or the `error` of the OAuth one.
    code: Option<String>,
    message: String,
    retry_after: Option<Duration>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BrivoError {
    pub(crate) fn new(kind: ErrorKind, endpoint: &'static str, message: impl Into<String>) -> Self {
        BrivoError {
            kind,
            endpoint,
            status: None,
            code: None,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Builds the error for a non-success answer from its status, headers and body.
    pub fn from_response(
        endpoint: &'static str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Self {
        let parsed = ParsedBody::parse(body);
        let kind = classify(status, &parsed);
        BrivoError {
            kind,
            endpoint,
            status: Some(status.as_u16()),
            code: parsed.code,
            message: parsed
                .message
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
            retry_after: retry_after(headers, jiff::Timestamp::now()),
            source: None,
        }
    }

    /// Maps a transport failure (timeout, refused or broken connection) of one attempt.
    pub(crate) fn from_transport(endpoint: &'static str, err: reqwest::Error) -> Self {
        let kind = if err.is_timeout() {
            ErrorKind::Timeout
        } else if err.is_connect() {
            ErrorKind::Connect
        } else if err.is_builder() {
            ErrorKind::InvalidInput
        } else if err.is_decode() {
            ErrorKind::Decode
        } else {
            ErrorKind::Connection
        };
        // reqwest's message may hold the URL; ours never carry secrets in it.
        let message = match kind {
            ErrorKind::Timeout => "no answer within the timeout".to_owned(),
            ErrorKind::Connect => "could not connect".to_owned(),
            _ => "the connection failed".to_owned(),
        };
        BrivoError::new(kind, endpoint, message).with_source(err.without_url())
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The templated endpoint of the call, e.g. `PUT /groups/{id}/users/{id}`.
    pub fn endpoint(&self) -> &'static str {
        self.endpoint
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Brivo's `code` or OAuth's `error` string, when the body carried one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The server's message (HTML reduced to its text), or a description of the failure.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying the same call again later may succeed: over-QPS, 429, 5xx, timeouts and
    /// broken connections. Only idempotent calls are retried on all of these; see
    /// [`BrivoError::request_not_processed`] for what is safe for any call.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::OverQps
                | ErrorKind::RateLimited
                | ErrorKind::Unavailable
                | ErrorKind::Timeout
                | ErrorKind::Connect
                | ErrorKind::Connection
        )
    }

    /// Whether the server certainly did not act on the request: the gateway refused it for
    /// rate (over-QPS, 429) before it reached Brivo, or no connection was made. Such failures
    /// are safe to retry even for creates. After a 5xx, a timeout or a broken connection the
    /// outcome is unknown.
    pub fn request_not_processed(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::OverQps | ErrorKind::RateLimited | ErrorKind::Connect
        )
    }

    /// How long the server asked to wait (`Retry-After`, in seconds or as an HTTP date).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Removes a secret the server echoed into its message (Spring's OAuth server repeats a
    /// refused refresh token in `error_description`).
    pub(crate) fn redact(mut self, secret: &str) -> Self {
        if !secret.is_empty() && self.message.contains(secret) {
            self.message = self.message.replace(secret, "<redacted>");
        }
        self
    }

    /// Whether a fresh access token could make the call succeed (any 401 from the API).
    pub(crate) fn is_token_rejection(&self) -> bool {
        matches!(self.kind, ErrorKind::InvalidToken | ErrorKind::Unauthorized)
    }
}

/// The parts of an error body that matter, whichever of the shapes it came in.
#[derive(Debug, Default, PartialEq)]
struct ParsedBody {
    code: Option<String>,
    message: Option<String>,
    /// An HTML or text body from the gateway, reduced to its text.
    gateway_text: Option<String>,
}

impl ParsedBody {
    fn parse(body: &[u8]) -> ParsedBody {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
            let text = |key: &str| match map.get(key) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            // Spring: {"status":401,"error":"Unauthorized","message":"Bad credentials","path":…}
            if map.contains_key("status") && map.contains_key("path") {
                return ParsedBody {
                    code: text("error"),
                    message: text("message").or_else(|| text("error")),
                    gateway_text: None,
                };
            }
            // OAuth: {"error":"invalid_grant","error_description":"Bad credentials"}
            if let Some(error) = text("error") {
                return ParsedBody {
                    message: text("error_description")
                        .or_else(|| text("message"))
                        .or_else(|| Some(error.clone())),
                    code: Some(error),
                    gateway_text: None,
                };
            }
            // Brivo: {"message":"Requested user not found","code":404}
            return ParsedBody {
                code: text("code"),
                message: text("message"),
                gateway_text: None,
            };
        }
        let raw = String::from_utf8_lossy(body);
        let text = strip_html(&raw);
        ParsedBody {
            code: None,
            message: (!text.is_empty()).then(|| text.clone()),
            gateway_text: Some(text),
        }
    }
}

fn classify(status: StatusCode, body: &ParsedBody) -> ErrorKind {
    let gateway = body
        .gateway_text
        .as_deref()
        .unwrap_or("")
        .to_ascii_lowercase();
    match status.as_u16() {
        400 => ErrorKind::BadRequest,
        401 if body.code.as_deref() == Some("invalid_token") => ErrorKind::InvalidToken,
        401 => ErrorKind::Unauthorized,
        403 if gateway.contains("over qps") => ErrorKind::OverQps,
        403 if gateway.contains("over rate") => ErrorKind::OverRate,
        403 if gateway.contains("developer inactive") => ErrorKind::DeveloperInactive,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        412 => ErrorKind::PreconditionFailed,
        429 => ErrorKind::RateLimited,
        596 => ErrorKind::ServiceNotFound,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Http,
    }
}

/// Reduces an HTML page to its visible text, whitespace collapsed and length bounded, so that an
/// error message stays one readable line.
fn strip_html(raw: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    let mut pending_space = false;
    for c in raw.chars() {
        match c {
            '<' => {
                in_tag = true;
                pending_space = true;
            }
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            c if c.is_whitespace() => pending_space = true,
            c => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push(c);
            }
        }
        if out.len() >= 300 {
            out.push('…');
            break;
        }
    }
    out
}

/// Reads `Retry-After` as delay-seconds or as an HTTP date (relative to `now`).
pub(crate) fn retry_after(headers: &HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    parse_retry_after(value, now)
}

pub(crate) fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // Not in the HTTP spec, but harmless to accept: "1.5".
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    // A date in the past means "now".
    Some(at.duration_since(now).try_into().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn err(status: u16, body: &str) -> BrivoError {
        BrivoError::from_response(
            "GET /users/{id}",
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn brivo_shape() {
        let e = err(404, r#"{"message":"Requested user not found","code":404}"#);
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.message(), "Requested user not found");
        assert_eq!(e.code(), Some("404"));
        assert!(!e.retryable());
        let e = err(
            403,
            r#"{"code":403,"message":"You are not allowed to perform that action"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        let e = err(
            409,
            r#"{"code":409,"message":"There is already a pending invitation"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let e = err(
            412,
            r#"{"code":412,"message":"Access point is not connected"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::PreconditionFailed);
    }

    #[test]
    fn oauth_shape() {
        let e = err(
            401,
            r#"{"error":"invalid_token","error_description":"Access token expired"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidToken);
        assert_eq!(e.code(), Some("invalid_token"));
        assert_eq!(e.message(), "Access token expired");
        let e = err(401, r#"{"error":"invalid_token"}"#);
        assert_eq!(e.kind(), ErrorKind::InvalidToken);
        assert_eq!(e.message(), "invalid_token");
        let e = err(
            401,
            r#"{"error":"invalid_grant","error_description":"Bad credentials"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert_eq!(e.message(), "Bad credentials");
    }

    #[test]
    fn spring_shape() {
        let e = err(
            401,
            r#"{"timestamp":1,"status":401,"error":"Unauthorized","message":"Bad credentials","path":"/oauth/token"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert_eq!(e.message(), "Bad credentials");
        assert_eq!(e.code(), Some("Unauthorized"));
    }

    #[test]
    fn gateway_html() {
        let e = err(403, "<html><body><h1>Developer Inactive</h1></body></html>");
        assert_eq!(e.kind(), ErrorKind::DeveloperInactive);
        assert_eq!(e.message(), "Developer Inactive");
        assert!(!e.retryable());
        let e = err(403, "<h1>Developer Over Qps</h1>");
        assert_eq!(e.kind(), ErrorKind::OverQps);
        assert!(e.retryable() && e.request_not_processed());
        let e = err(403, "<h1>Developer Over Rate</h1>");
        assert_eq!(e.kind(), ErrorKind::OverRate);
        assert!(!e.retryable());
        let e = err(596, "<h1>596 Service Not Found</h1>");
        assert_eq!(e.kind(), ErrorKind::ServiceNotFound);
        assert!(!e.retryable());
        let e = err(503, "");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.message(), "Service Unavailable");
        assert!(e.retryable() && !e.request_not_processed());
        let e = err(429, "slow down");
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert!(e.retryable());
    }

    #[test]
    fn display_names_endpoint_kind_and_status() {
        let e = err(404, r#"{"message":"Unknown Group","code":404}"#);
        assert_eq!(
            e.to_string(),
            "GET /users/{id}: not_found (404): Unknown Group"
        );
    }

    #[test]
    fn retry_after_forms() {
        let now: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("0.5", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after("Mon, 01 Jan 2024 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 31 Dec 2023 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);

        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 2 "));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(2)));
        let e = BrivoError::from_response(
            "GET /groups",
            StatusCode::FORBIDDEN,
            &headers,
            b"<h1>Developer Over Qps</h1>",
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    }
}

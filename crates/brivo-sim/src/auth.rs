//! The two gates in front of every API call (reference §2.4): Mashery's `api-key` check, which
//! answers an HTML 403 "Developer Inactive", and the bearer access token, which answers
//! `401 {"error":"invalid_token"}` when missing, unknown or expired.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use jiff::Timestamp;
use serde_json::json;

use crate::api::{AppState, html, json_status};

pub fn api_key_ok(sim: &AppState, headers: &HeaderMap) -> bool {
    let Some(key) = headers.get("api-key").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    sim.read(|s| s.account.credentials.api_key == key)
}

pub fn developer_inactive() -> Response {
    html(StatusCode::FORBIDDEN, "<h1>Developer Inactive</h1>")
}

pub fn invalid_token(description: &str) -> Response {
    let mut resp = json_status(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "invalid_token", "error_description": description}),
    );
    let challenge = format!(
        "Bearer error=\"invalid_token\", error_description=\"{}\"",
        description.replace('"', "'")
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// The token after `bearer ` (Brivo's docs) or `Bearer ` (most clients); both work.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub async fn require_api_auth(State(sim): State<AppState>, req: Request, next: Next) -> Response {
    if !api_key_ok(&sim, req.headers()) {
        return developer_inactive();
    }
    let Some(token) = bearer_token(req.headers()) else {
        return invalid_token("Full authentication is required to access this resource");
    };
    let expires_at = sim.read(|s| s.tokens.access.get(token).map(|t| t.expires_at));
    match expires_at {
        None => invalid_token(&format!("Invalid access token: {token}")),
        Some(at) if at <= Timestamp::now() => {
            invalid_token(&format!("Access token expired: {token}"))
        }
        Some(_) => next.run(req).await,
    }
}

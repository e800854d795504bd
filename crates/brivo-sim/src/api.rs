//! The router, and the response conventions every Brivo endpoint shares: JSON bodies typed
//! `application/json;charset=UTF-8` on success, `{"message","code"}` errors typed
//! `application/json` (as recorded), and Mashery's HTML `596 Service Not Found` for unknown paths.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::sim::Sim;
use crate::{admin, auth, events, groups, invitations, oauth, sites, subscriptions, users};

pub type AppState = Arc<Sim>;

pub const JSON_UTF8: &str = "application/json;charset=UTF-8";

pub fn router(sim: Arc<Sim>) -> Router {
    let api = Router::new()
        .merge(users::routes())
        .merge(groups::routes().route_layer(middleware::from_fn_with_state(
            sim.clone(),
            groups::config_tool_admins_only,
        )))
        .merge(sites::routes())
        .merge(invitations::routes())
        .merge(events::routes())
        .merge(subscriptions::routes())
        // Layers run outermost last-added first: the api-key and token gates answer before
        // the Content-Type check, as Mashery and Spring Security sit in front of the handlers.
        .route_layer(middleware::from_fn(require_json_content_type))
        .route_layer(middleware::from_fn_with_state(
            sim.clone(),
            auth::require_api_auth,
        ));
    Router::new()
        .nest("/v1/api", api)
        .merge(oauth::routes())
        .nest("/__sim", admin::routes())
        .fallback(service_not_found)
        .method_not_allowed_fallback(service_not_found)
        .with_state(sim)
}

/// Mashery answers a wrong verb or path with this (reference §6).
async fn service_not_found() -> Response {
    html(
        StatusCode::from_u16(596).unwrap_or(StatusCode::NOT_FOUND),
        "<h1>596 Service Not Found</h1>",
    )
}

/// Whether a `Content-Type` value names JSON: `application/json`, any case, with or without
/// parameters such as `;charset=UTF-8`.
fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Brivo lists 415 for a missing or wrong Content-Type (reference §6), but DOCS25R asks for the
/// header only on requests with a body and calls it "safe to include" otherwise, and Brivo answers
/// 200 to Home Assistant's unlock (`POST /access-points/{id}/activate`) sent as
/// `application/octet-stream` with no body. So only a write that carries a body must be typed as
/// JSON. The token endpoint and `/__sim/` are outside this router and unaffected.
async fn require_json_content_type(req: Request, next: Next) -> Response {
    let write = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !write || !has_body(&req) {
        return next.run(req).await;
    }
    let value = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match value {
        Some(v) if is_json_content_type(&v) => next.run(req).await,
        other => ApiError::new(
            415,
            format!(
                "Content type '{}' not supported",
                other.as_deref().unwrap_or("")
            ),
        )
        .into_response(),
    }
}

/// Whether a request carries a body: a non-zero `Content-Length`, or a chunked transfer (whose
/// length is unknown until read, so it is taken as a body).
fn has_body(req: &Request) -> bool {
    let headers = req.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// An error in Brivo's `{"message": …, "code": …}` shape.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    pub fn invalid_filter() -> Self {
        Self::bad_request("Invalid filter format")
    }

    pub fn invalid_criteria() -> Self {
        Self::bad_request("Invalid criteria provided")
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    code: u16,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody {
            message: &self.message,
            code: self.status.as_u16(),
        })
        .unwrap_or_default();
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

pub type ApiResult = Result<Response, ApiError>;

pub fn json_status<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
            resp
        }
        Err(e) => ApiError::new(500, format!("serialization failed: {e}")).into_response(),
    }
}

pub fn ok_json<T: Serialize + ?Sized>(value: &T) -> Response {
    json_status(StatusCode::OK, value)
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub fn html(status: StatusCode, body: impl Into<String>) -> Response {
    let mut resp = Response::new(Body::from(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=UTF-8"),
    );
    resp
}

/// Query parameters of a request; a repeated name keeps its last value.
pub fn query_params(raw: Option<&str>) -> HashMap<String, String> {
    raw.and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A JSON object body. Brivo clients send `{}` or nothing on bodiless calls, so an empty body
/// reads as an empty object.
pub fn json_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("Request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("Malformed JSON body: {e}"))),
    }
}

pub fn parse_id(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Reads an id given as a JSON number or a numeric string (clients send both).
pub fn id_value(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => parse_id(s.trim()),
        _ => None,
    }
}

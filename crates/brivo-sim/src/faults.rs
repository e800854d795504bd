//! Fault injection and the per-api-key rate limit, applied in front of the API and the token
//! endpoint (never in front of `/__sim/`), the way Mashery sits in front of Brivo.
//!
//! A fault matches a path glob (`*` matches any characters, `/` included) and optionally a method.
//! The first matching fault, in creation order, applies to a request; one with a `count` applies
//! to that many requests and then disappears.

use std::time::{Duration, Instant};

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::{html, json_status};
use crate::auth::invalid_token;
use crate::sim::Sim;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Wait `latency_ms`, then answer normally.
    Latency,
    /// Answer `status` with `{"code": status, "message": reason}`.
    Status,
    /// Mashery's 403 `<h1>Developer Over Qps</h1>` with `Retry-After`.
    OverQps,
    /// 429 with `Retry-After`.
    TooManyRequests,
    /// Close the connection without answering.
    Drop,
    /// 401 `invalid_token`, as if the access token had expired.
    InvalidToken,
    /// 204 No Content without doing anything: a service that acknowledges a write and loses
    /// it, so a test can check that its checker notices.
    Ignore,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultSpec {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    pub kind: FaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// Apply to this many matching requests, then expire; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: u64,
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Requests it will still apply to (absent = unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// Requests it has applied to so far.
    pub hits: u64,
}

impl FaultSpec {
    /// Fills defaults and rejects nonsense, so a test learns of a typo at once.
    pub fn validate(mut self) -> Result<Self, String> {
        if self.path.is_empty() {
            return Err("path is required".into());
        }
        if let Some(m) = &self.method {
            let upper = m.to_ascii_uppercase();
            Method::from_bytes(upper.as_bytes()).map_err(|_| format!("invalid method {m}"))?;
            self.method = Some(upper);
        }
        match self.kind {
            FaultKind::Status => {
                let status = self.status.unwrap_or(503);
                if !(100..=599).contains(&status) {
                    return Err(format!("invalid status {status}"));
                }
                self.status = Some(status);
            }
            FaultKind::Latency => {
                self.latency_ms.get_or_insert(1000);
            }
            FaultKind::OverQps | FaultKind::TooManyRequests => {
                self.retry_after_secs.get_or_insert(1);
            }
            FaultKind::Drop | FaultKind::InvalidToken | FaultKind::Ignore => {}
        }
        if self.count == Some(0) {
            return Err("count must be at least 1".into());
        }
        Ok(self)
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method.as_str()) && glob_match(&self.path, path)
    }
}

/// `*` matches any run of characters, including `/`; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and which text position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// What the front door does with a request.
pub enum Action {
    Pass,
    Delay(Duration),
    Respond(Response),
    Drop,
}

pub fn over_qps(retry_after_secs: u64) -> Response {
    let mut resp = html(StatusCode::FORBIDDEN, "<h1>Developer Over Qps</h1>");
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    h.insert(
        "X-Mashery-Error-Code",
        HeaderValue::from_static("ERR_403_DEVELOPER_OVER_QPS"),
    );
    resp
}

fn status_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if status == 596 {
        return html(code, "<h1>596 Service Not Found</h1>");
    }
    let message = code.canonical_reason().unwrap_or("Error");
    json_status(code, &json!({"code": status, "message": message}))
}

fn too_many_requests(retry_after_secs: u64) -> Response {
    let mut resp = json_status(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({"code": 429, "message": "Too Many Requests"}),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    resp
}

/// Finds the fault that applies to this request, if any, and uses one of its counts.
pub fn decide(sim: &Sim, method: &Method, path: &str) -> Action {
    let spec = {
        let mut rt = sim.runtime();
        let Some(index) = rt.faults.iter().position(|f| f.spec.matches(method, path)) else {
            return Action::Pass;
        };
        let fault = &mut rt.faults[index];
        fault.hits += 1;
        if let Some(r) = &mut fault.remaining {
            *r = r.saturating_sub(1);
        }
        let spec = fault.spec.clone();
        if fault.remaining == Some(0) {
            rt.faults.remove(index);
        }
        spec
    };
    match spec.kind {
        FaultKind::Latency => Action::Delay(Duration::from_millis(spec.latency_ms.unwrap_or(0))),
        FaultKind::Status => Action::Respond(status_response(spec.status.unwrap_or(503))),
        FaultKind::OverQps => Action::Respond(over_qps(spec.retry_after_secs.unwrap_or(1))),
        FaultKind::TooManyRequests => {
            Action::Respond(too_many_requests(spec.retry_after_secs.unwrap_or(1)))
        }
        FaultKind::Drop => Action::Drop,
        FaultKind::InvalidToken => Action::Respond(invalid_token("Access token expired")),
        FaultKind::Ignore => Action::Respond(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Counts a request against its api key's one-second window; over the limit it gets Mashery's
/// over-QPS answer. Requests without an api key are left to the key check.
pub fn rate_limited(sim: &Sim, api_key: Option<&str>) -> Option<Response> {
    let key = api_key?;
    let mut rt = sim.runtime();
    let limit = rt.rate_limit?;
    let now = Instant::now();
    let window = rt.rate_windows.entry(key.to_string()).or_insert((now, 0));
    if now.duration_since(window.0) >= Duration::from_secs(1) {
        *window = (now, 0);
    }
    window.1 += 1;
    (window.1 > limit).then(|| over_qps(1))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_star_crosses_slashes() {
        assert!(glob_match("/v1/api/groups/*", "/v1/api/groups/1/users/2"));
        assert!(glob_match("/v1/api/groups*", "/v1/api/groups"));
        assert!(glob_match("*/users/*", "/v1/api/users/12"));
        assert!(glob_match("/oauth/token", "/oauth/token"));
        assert!(!glob_match("/v1/api/groups/*", "/v1/api/groups"));
        assert!(!glob_match("/v1/api/users", "/v1/api/users/1"));
        assert!(glob_match("*a*b*c", "xxaxxbxxc"));
        assert!(!glob_match("*a*b*c", "xxaxxcxxb"));
    }
}

//! The emulator's own surface under `/__sim/`, for tests, demos and invariant checks. It needs no
//! credentials and is never subject to faults or the rate limit. Each endpoint is described in the
//! crate's README.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{
    ApiError, ApiResult, AppState, html, json_object, json_status, ok_json, parse_id, query_params,
};
use crate::events;
use crate::faults::{Fault, FaultSpec};
use crate::invitations;
use crate::util::{html_escape, parse_instant};
use crate::{Account, Seed};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/reset", post(reset))
        .route("/account", get(account))
        .route("/config", get(get_config).put(put_config))
        .route("/tokens/expire", post(expire_tokens))
        .route("/tokens/revoke-refresh", post(revoke_refresh))
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/faults/{id}", delete(delete_fault))
        .route("/rate-limit", get(get_rate_limit).put(put_rate_limit))
        .route("/swipe", post(swipe))
        .route("/panels", get(list_panels))
        .route("/panels/{id}", put(put_panel))
        .route("/access-points/{id}", put(put_access_point))
        .route("/memberships", get(memberships))
        .route("/memberships/history", get(membership_history))
        .route("/users/history", get(user_history))
        .route("/outbox", get(outbox).delete(clear_outbox))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/deliveries", get(deliveries))
        .route("/redeem/{code}", get(redeem_page).post(redeem_json))
        .route("/invitations/{code}/redeem", post(redeem_json))
}

/// Parses an admin body into `T`; an empty body reads as `{}`.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let object = json_object(bytes)?;
    serde_json::from_value(Value::Object(object)).map_err(|e| ApiError::bad_request(e.to_string()))
}

#[derive(Serialize)]
struct AccountView {
    #[serde(flatten)]
    account: Account,
    api_url: String,
    auth_url: String,
}

fn account_view(sim: &AppState, account: Account) -> Response {
    ok_json(&AccountView {
        account,
        api_url: format!("{}/v1/api", sim.base_url),
        auth_url: sim.base_url.clone(),
    })
}

#[derive(Deserialize)]
struct ResetBody {
    #[serde(default)]
    seed: Seed,
}

async fn reset(State(sim): State<AppState>, bytes: Bytes) -> ApiResult {
    let req: ResetBody = body(&bytes)?;
    let account = sim.reset(req.seed);
    Ok(account_view(&sim, account))
}

async fn account(State(sim): State<AppState>) -> Response {
    let account = sim.read(|s| s.account.credentials.clone());
    account_view(&sim, account)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    access_token_ttl_secs: Option<u64>,
    refresh_token_ttl_secs: Option<u64>,
    config_tool_admin: Option<bool>,
    wallet_passes: Option<u64>,
}

fn config_view(sim: &AppState) -> Response {
    let rt = sim.runtime();
    ok_json(&json!({
        "access_token_ttl_secs": rt.access_ttl.as_secs(),
        "refresh_token_ttl_secs": rt.refresh_ttl.as_secs(),
        "config_tool_admin": rt.config_tool_admin,
        "wallet_passes": rt.wallet_passes,
    }))
}

async fn get_config(State(sim): State<AppState>) -> Response {
    config_view(&sim)
}

async fn put_config(State(sim): State<AppState>, bytes: Bytes) -> ApiResult {
    let req: ConfigBody = body(&bytes)?;
    {
        let mut rt = sim.runtime();
        if let Some(s) = req.access_token_ttl_secs {
            rt.access_ttl = std::time::Duration::from_secs(s);
        }
        if let Some(s) = req.refresh_token_ttl_secs {
            rt.refresh_ttl = std::time::Duration::from_secs(s);
        }
        if let Some(admin) = req.config_tool_admin {
            rt.config_tool_admin = admin;
        }
        if let Some(n) = req.wallet_passes {
            rt.wallet_passes = n;
        }
    }
    Ok(config_view(&sim))
}

/// Ends every access token issued so far (refresh tokens keep working).
async fn expire_tokens(State(sim): State<AppState>) -> Response {
    let now = Timestamp::now();
    let expired = sim.write(|s| {
        let mut n = 0;
        for t in s.tokens.access.values_mut() {
            if t.expires_at > now {
                t.expires_at = now;
                n += 1;
            }
        }
        n
    });
    ok_json(&json!({ "expired": expired }))
}

/// Ends every access token and forgets every refresh token, so clients must sign in again.
async fn revoke_refresh(State(sim): State<AppState>) -> Response {
    let now = Timestamp::now();
    let revoked = sim.write(|s| {
        for t in s.tokens.access.values_mut() {
            if t.expires_at > now {
                t.expires_at = now;
            }
        }
        let n = s.tokens.refresh.len();
        s.tokens.refresh.clear();
        n
    });
    ok_json(&json!({ "revoked": revoked }))
}

async fn list_faults(State(sim): State<AppState>) -> Response {
    let faults: Vec<Fault> = sim.runtime().faults.clone();
    ok_json(&faults)
}

async fn add_fault(State(sim): State<AppState>, bytes: Bytes) -> ApiResult {
    let spec: FaultSpec = body(&bytes)?;
    let spec = spec.validate().map_err(ApiError::bad_request)?;
    let mut rt = sim.runtime();
    let id = rt.next_fault_id;
    rt.next_fault_id += 1;
    rt.faults.push(Fault {
        id,
        remaining: spec.count,
        spec,
        hits: 0,
    });
    Ok(json_status(StatusCode::CREATED, &json!({ "id": id })))
}

async fn clear_faults(State(sim): State<AppState>) -> Response {
    sim.runtime().faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_fault(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id).ok_or_else(|| ApiError::not_found("No such fault"))?;
    let mut rt = sim.runtime();
    let before = rt.faults.len();
    rt.faults.retain(|f| f.id != id);
    if rt.faults.len() == before {
        return Err(ApiError::not_found("No such fault"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct RateLimitBody {
    per_second: Option<u32>,
}

async fn get_rate_limit(State(sim): State<AppState>) -> Response {
    let limit = sim.runtime().rate_limit;
    ok_json(&json!({ "per_second": limit }))
}

async fn put_rate_limit(State(sim): State<AppState>, bytes: Bytes) -> ApiResult {
    let req: RateLimitBody = body(&bytes)?;
    if req.per_second == Some(0) {
        return Err(ApiError::bad_request(
            "per_second must be at least 1, or null",
        ));
    }
    let mut rt = sim.runtime();
    rt.rate_limit = req.per_second;
    rt.rate_windows.clear();
    Ok(ok_json(&json!({ "per_second": req.per_second })))
}

#[derive(Deserialize)]
struct SwipeBody {
    user_id: u64,
    access_point_id: u64,
    /// When the swipe happened (RFC 3339, not in the future); now when absent.
    #[serde(default)]
    occurred: Option<String>,
}

async fn swipe(State(sim): State<AppState>, bytes: Bytes) -> ApiResult {
    let req: SwipeBody = body(&bytes)?;
    let now = Timestamp::now();
    let occurred = match &req.occurred {
        None => now,
        Some(text) => match parse_instant(text) {
            Some(at) if at <= now => at,
            Some(_) => return Err(ApiError::bad_request("occurred is in the future")),
            None => return Err(ApiError::bad_request("occurred is not an RFC 3339 instant")),
        },
    };
    let event = sim.write(|s| {
        let ap = s
            .access_points
            .get(&req.access_point_id)
            .cloned()
            .ok_or_else(crate::sites::access_point_not_found)?;
        Ok::<_, ApiError>(events::record_swipe(s, req.user_id, &ap, occurred))
    })?;
    events::dispatch(&sim, &event);
    Ok(ok_json(&event))
}

async fn list_panels(State(sim): State<AppState>) -> Response {
    let panels: Vec<_> = sim.read(|s| s.panels.values().cloned().collect());
    ok_json(&panels)
}

#[derive(Deserialize)]
struct PanelBody {
    online: bool,
}

async fn put_panel(State(sim): State<AppState>, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    let req: PanelBody = body(&bytes)?;
    sim.write(|s| {
        let panel = parse_id(&id)
            .and_then(|id| s.panels.get_mut(&id))
            .ok_or_else(|| ApiError::not_found("Control panel not found"))?;
        panel.online = req.online;
        Ok(ok_json(panel))
    })
}

#[derive(Deserialize)]
struct AccessPointBody {
    activation_enabled: bool,
}

async fn put_access_point(
    State(sim): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let req: AccessPointBody = body(&bytes)?;
    sim.write(|s| {
        let ap = parse_id(&id)
            .and_then(|id| s.access_points.get_mut(&id))
            .ok_or_else(crate::sites::access_point_not_found)?;
        ap.activation_enabled = req.activation_enabled;
        Ok(ok_json(ap))
    })
}

async fn memberships(State(sim): State<AppState>) -> Response {
    let rows: Vec<Value> = sim.read(|s| {
        s.memberships
            .iter()
            .map(|(g, u)| json!({"group_id": g, "user_id": u}))
            .collect()
    });
    ok_json(&rows)
}

/// `since` (RFC 3339, inclusive), `group_id` and `user_id` narrow a history listing.
struct HistoryFilter {
    since: Option<Timestamp>,
    group_id: Option<u64>,
    user_id: Option<u64>,
}

impl HistoryFilter {
    fn from_query(query: Option<&str>) -> Result<Self, ApiError> {
        let params = query_params(query);
        let id = |name: &str| -> Result<Option<u64>, ApiError> {
            params
                .get(name)
                .map(|v| {
                    parse_id(v).ok_or_else(|| ApiError::bad_request(format!("invalid {name}")))
                })
                .transpose()
        };
        Ok(Self {
            since: params
                .get("since")
                .map(|v| parse_instant(v).ok_or_else(|| ApiError::bad_request("invalid since")))
                .transpose()?,
            group_id: id("group_id")?,
            user_id: id("user_id")?,
        })
    }

    fn keeps(&self, at: Timestamp, group_id: Option<u64>, user_id: u64) -> bool {
        self.since.is_none_or(|s| at >= s)
            && self.group_id.is_none_or(|g| group_id == Some(g))
            && self.user_id.is_none_or(|u| u == user_id)
    }
}

async fn membership_history(State(sim): State<AppState>, RawQuery(query): RawQuery) -> ApiResult {
    let filter = HistoryFilter::from_query(query.as_deref())?;
    let rows: Vec<_> = sim.read(|s| {
        s.membership_history
            .iter()
            .filter(|c| filter.keeps(c.at, Some(c.group_id), c.user_id))
            .cloned()
            .collect()
    });
    Ok(ok_json(&rows))
}

async fn user_history(State(sim): State<AppState>, RawQuery(query): RawQuery) -> ApiResult {
    let filter = HistoryFilter::from_query(query.as_deref())?;
    if filter.group_id.is_some() {
        return Err(ApiError::bad_request(
            "group_id does not apply to user history",
        ));
    }
    let rows: Vec<_> = sim.read(|s| {
        s.user_history
            .iter()
            .filter(|c| filter.keeps(c.at, None, c.user_id))
            .cloned()
            .collect()
    });
    Ok(ok_json(&rows))
}

async fn outbox(State(sim): State<AppState>) -> Response {
    let mails: Vec<_> = sim.read(|s| s.outbox.clone());
    ok_json(&mails)
}

async fn clear_outbox(State(sim): State<AppState>) -> Response {
    sim.write(|s| s.outbox.clear());
    StatusCode::NO_CONTENT.into_response()
}

async fn requests(State(sim): State<AppState>) -> Response {
    let rows: Vec<Value> = sim
        .runtime()
        .requests
        .iter()
        .map(|((method, path, status), count)| {
            json!({"method": method, "path": path, "status": status, "count": count})
        })
        .collect();
    ok_json(&rows)
}

async fn clear_requests(State(sim): State<AppState>) -> Response {
    sim.runtime().requests.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn deliveries(State(sim): State<AppState>) -> Response {
    let rows = sim.runtime().deliveries.clone();
    ok_json(&rows)
}

async fn redeem_json(State(sim): State<AppState>, Path(code): Path<String>) -> ApiResult {
    let invitation = invitations::redeem(&sim, &code)?;
    Ok(ok_json(&invitation))
}

/// The page an invitation e-mail's link opens: redeeming is what the Brivo app would do.
async fn redeem_page(State(sim): State<AppState>, Path(code): Path<String>) -> Response {
    match invitations::redeem(&sim, &code) {
        Ok(_) => html(
            StatusCode::OK,
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Brivo Mobile Pass</title></head>\
                 <body><h1>Your Brivo Mobile Pass is ready</h1><p>Invitation {} redeemed.</p></body></html>",
                html_escape(&code)
            ),
        ),
        Err(e) => html(
            e.status,
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Brivo Mobile Pass</title></head>\
                 <body><h1>Cannot redeem this invitation</h1><p>{}</p></body></html>",
                html_escape(&e.message)
            ),
        ),
    }
}

//! Sites, access points and remote unlock (reference §13).
//!
//! `POST /access-points/{id}/activate` answers 200 with an empty body, 403 when the door's
//! "Control From Browser" (`activationEnabled`) is off, 412 when its control panel is offline,
//! and records an "Administrator Pulse Output" (5064) event that subscriptions receive.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Serialize;

use crate::api::{ApiError, ApiResult, AppState, ok_json, parse_id, query_params};
use crate::events;
use crate::filter::{self, Op};
use crate::model::{AccessPoint, Address, Site};
use crate::paging::{DataCount, Paging};
use crate::state::State as SimState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sites", get(list_sites))
        .route("/sites/{id}", get(get_site))
        .route("/sites/{id}/access-points", get(site_access_points))
        .route("/access-points", get(list_access_points))
        .route("/access-points/{id}", get(get_access_point))
        .route("/access-points/{id}/activate", post(activate))
}

/// The `type` every emulated access point shows.
pub const ACCESS_POINT_TYPE: &str = "Door";

pub fn access_point_not_found() -> ApiError {
    ApiError::not_found("Access point not found")
}

fn existing_site(state: &SimState, raw: &str) -> Result<u64, ApiError> {
    parse_id(raw)
        .filter(|id| state.sites.contains_key(id))
        .ok_or_else(|| ApiError::not_found("Site not found"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SiteSummary<'a> {
    id: u64,
    site_name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SiteView<'a> {
    id: u64,
    site_name: &'a str,
    time_zone: &'a str,
    address: &'a Address,
}

async fn list_sites(State(sim): State<AppState>, RawQuery(query): RawQuery) -> ApiResult {
    let params = query_params(query.as_deref());
    let clauses = filter::from_query(&params, &[("name", &[Op::Eq, Op::Ne])])?;
    let paging = Paging::from_query(&params)?;
    sim.read(|s| {
        let items: Vec<_> = s
            .sites
            .values()
            .filter(|site| {
                clauses
                    .iter()
                    .all(|c| filter::matches_contains(c, &site.site_name))
            })
            .map(|site: &Site| SiteSummary {
                id: site.id,
                site_name: &site.site_name,
            })
            .collect();
        Ok(ok_json(&paging.page(items)))
    })
}

async fn get_site(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    sim.read(|s| {
        let site = &s.sites[&existing_site(s, &id)?];
        Ok(ok_json(&SiteView {
            id: site.id,
            site_name: &site.site_name,
            time_zone: &site.time_zone,
            address: &site.address,
        }))
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPointView<'a> {
    id: u64,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    control_panel_id: u64,
    site_id: u64,
    site_name: String,
    activation_enabled: bool,
    two_factor_enabled: bool,
    report_live_status: bool,
}

pub fn access_point_view<'a>(s: &SimState, ap: &'a AccessPoint) -> AccessPointView<'a> {
    AccessPointView {
        id: ap.id,
        name: &ap.name,
        kind: ACCESS_POINT_TYPE,
        control_panel_id: ap.control_panel_id,
        site_id: ap.site_id,
        site_name: s.site_name(ap.site_id),
        activation_enabled: ap.activation_enabled,
        two_factor_enabled: ap.two_factor_enabled,
        report_live_status: false,
    }
}

async fn site_access_points(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    sim.read(|s| {
        let site = existing_site(s, &id)?;
        let items: Vec<_> = s
            .access_points
            .values()
            .filter(|ap| ap.site_id == site)
            .map(|ap| access_point_view(s, ap))
            .collect();
        Ok(ok_json(&DataCount::new(items)))
    })
}

const ACCESS_POINT_TYPES: [&str; 8] = [
    "DOOR",
    "FLOOR",
    "SALTO_DOOR",
    "ALLEGION_DOOR",
    "ASSA_ABLOY_DOOR",
    "OFFLINE_DOOR",
    "SIMONS_VOSS_LOCK",
    "YONOMI_LOCK",
];

fn access_point_matches(ap: &AccessPoint, c: &filter::Clause) -> Result<bool, ApiError> {
    match c.field.as_str() {
        "name" => Ok(filter::matches_contains(c, &ap.name)),
        "access_point_types" => {
            let mut any = false;
            for v in &c.values {
                let v = v.to_ascii_uppercase();
                if !ACCESS_POINT_TYPES.contains(&v.as_str()) {
                    return Err(ApiError::invalid_criteria());
                }
                // Every emulated access point is a plain door.
                any |= v == "DOOR";
            }
            Ok(any)
        }
        "report_live_status" => {
            let mut any = false;
            for v in &c.values {
                any |= match v.as_str() {
                    "true" => false,
                    "false" => true,
                    _ => return Err(ApiError::invalid_criteria()),
                };
            }
            Ok(any)
        }
        _ => Err(ApiError::invalid_criteria()),
    }
}

async fn list_access_points(State(sim): State<AppState>, RawQuery(query): RawQuery) -> ApiResult {
    let params = query_params(query.as_deref());
    let clauses = filter::from_query(
        &params,
        &[
            ("name", &[Op::Eq, Op::Ne]),
            ("access_point_types", &[Op::Eq]),
            ("report_live_status", &[Op::Eq]),
        ],
    )?;
    let paging = Paging::from_query(&params)?;
    sim.read(|s| {
        let mut items = Vec::new();
        for ap in s.access_points.values() {
            let mut keep = true;
            for c in &clauses {
                keep &= access_point_matches(ap, c)?;
            }
            if keep {
                items.push(access_point_view(s, ap));
            }
        }
        Ok(ok_json(&paging.page(items)))
    })
}

async fn get_access_point(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    sim.read(|s| {
        let ap = parse_id(&id)
            .and_then(|id| s.access_points.get(&id))
            .ok_or_else(access_point_not_found)?;
        Ok(ok_json(&access_point_view(s, ap)))
    })
}

async fn activate(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let event = sim.write(|s| {
        let ap = parse_id(&id)
            .and_then(|id| s.access_points.get(&id))
            .ok_or_else(access_point_not_found)?
            .clone();
        if !ap.activation_enabled {
            return Err(ApiError::new(
                403,
                "You are not allowed to perform that action",
            ));
        }
        let online = s.panels.get(&ap.control_panel_id).is_some_and(|p| p.online);
        if !online {
            return Err(ApiError::new(412, "Access point is not connected"));
        }
        Ok(events::record_pulse(s, &ap))
    })?;
    events::dispatch(&sim, &event);
    // Brivo answers 200 with no JSON body.
    Ok(StatusCode::OK.into_response())
}

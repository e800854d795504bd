//! Groups, membership, group door permissions, the groups of a door and the schedules
//! permissions refer to (reference §10, §13).
//!
//! A group's permissions list as `{accessPoint: {id, name, type}, schedule: {id, name},
//! privacyModeOverride}` (the last only where set); `PUT` takes the schedule
//! (`{"schedule": {"id": N}}`, required) and answers 200 with the permission; `DELETE` is a 204.
//!
//! Membership changes are idempotent 204s (adding a member again or removing a non-member
//! changes nothing and records nothing). A user may be in at most 16 groups; that limit is
//! enforced on `PUT /groups/{g}/users/{u}` as well as on `POST /users/{u}/groups`, where an
//! over-limit request applies nothing. `POST /users/{u}/groups` answers the user's groups after
//! the change.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, put};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::api::{
    ApiError, ApiResult, AppState, id_value, json_object, no_content, ok_json, parse_id,
    query_params,
};
use crate::filter::{self, Op};
use crate::model::{AccessPoint, Group, Permission, Schedule};
use crate::paging::{DataCount, Paging};
use crate::sites::{ACCESS_POINT_TYPE, access_point_not_found};
use crate::state::{MAX_GROUPS_PER_USER, State as SimState};
use crate::users::{existing_user, member_view};

pub const MAX_GROUP_NAME: usize = 35;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/groups", get(list_groups).post(create_group))
        .route(
            "/groups/{id}",
            get(get_group).put(update_group).delete(delete_group),
        )
        .route("/groups/{id}/users", get(list_members))
        .route(
            "/groups/{id}/users/{user_id}",
            put(add_member).delete(remove_member),
        )
        .route("/groups/{id}/access/access-points", get(list_group_doors))
        .route(
            "/groups/{id}/access/access-points/{access_point_id}",
            put(add_group_door).delete(remove_group_door),
        )
        .route(
            "/users/{id}/groups",
            get(groups_of_user).post(change_groups_of_user),
        )
        // Like the group endpoints, these are for Account Config Tool administrators.
        .route("/access-points/{id}/groups", get(access_point_groups))
        .route("/schedules", get(list_schedules))
        .route("/schedules/{id}", get(get_schedule))
}

/// Brivo's group endpoints are "only available to Brivo Account Config Tool Administrators":
/// any other administrator gets 403 on every one of them.
pub async fn config_tool_admins_only(
    State(sim): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !sim.runtime().config_tool_admin {
        return axum::response::IntoResponse::into_response(ApiError::new(
            403,
            "This endpoint is only available to Brivo Account Config Tool Administrators",
        ));
    }
    next.run(req).await
}

pub fn unknown_group() -> ApiError {
    ApiError::not_found("Unknown Group")
}

fn existing_group(state: &SimState, raw: &str) -> Result<u64, ApiError> {
    parse_id(raw)
        .filter(|id| state.groups.contains_key(id))
        .ok_or_else(unknown_group)
}

fn too_many_groups() -> ApiError {
    ApiError::bad_request(format!(
        "A user cannot be assigned to more than {MAX_GROUPS_PER_USER} groups"
    ))
}

#[derive(Serialize)]
struct GroupSummary<'a> {
    id: u64,
    name: &'a str,
}

fn summary(g: &Group) -> GroupSummary<'_> {
    GroupSummary {
        id: g.id,
        name: &g.name,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupView<'a> {
    id: u64,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    antipassback_reset_time: Option<&'a str>,
    keypad_unlock: bool,
    immune_to_antipassback: bool,
    excluded_from_lockdown: bool,
}

fn group_view(g: &Group) -> GroupView<'_> {
    GroupView {
        id: g.id,
        name: &g.name,
        antipassback_reset_time: g.antipassback_reset_time.as_deref(),
        keypad_unlock: g.keypad_unlock,
        immune_to_antipassback: g.immune_to_antipassback,
        excluded_from_lockdown: g.excluded_from_lockdown,
    }
}

async fn list_groups(State(sim): State<AppState>, RawQuery(query): RawQuery) -> ApiResult {
    let params = query_params(query.as_deref());
    let clauses = filter::from_query(&params, &[("name", &[Op::Eq, Op::Ne])])?;
    let paging = Paging::from_query(&params)?;
    sim.read(|s| {
        let items: Vec<_> = s
            .groups
            .values()
            .filter(|g| clauses.iter().all(|c| filter::matches_contains(c, &g.name)))
            .map(summary)
            .collect();
        Ok(ok_json(&paging.page(items)))
    })
}

fn name_error() -> ApiError {
    ApiError::bad_request(format!(
        "Group creation requires a name parameter of {MAX_GROUP_NAME} characters or less"
    ))
}

fn valid_name(v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) if !s.trim().is_empty() && s.chars().count() <= MAX_GROUP_NAME => {
            Ok(s.clone())
        }
        _ => Err(name_error()),
    }
}

fn bool_field(
    body: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<bool>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad_request(format!("Invalid value for {field}"))),
    }
}

/// Applies the optional settings of a group body.
fn apply_settings(g: &mut Group, body: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    if let Some(b) = bool_field(body, "keypadUnlock")? {
        g.keypad_unlock = b;
    }
    if let Some(b) = bool_field(body, "immuneToAntipassback")? {
        g.immune_to_antipassback = b;
    }
    if let Some(b) = bool_field(body, "excludedFromLockdown")? {
        g.excluded_from_lockdown = b;
    }
    if let Some(v) = body.get("antipassbackResetTime") {
        g.antipassback_reset_time = match v {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            // Minute of the day, 0–1440, as a string.
            Value::String(s) if s.parse::<u16>().is_ok_and(|m| m <= 1440) => Some(s.clone()),
            _ => {
                return Err(ApiError::bad_request(
                    "Invalid value for antipassbackResetTime",
                ));
            }
        };
    }
    Ok(())
}

/// The name comes from the body or, as the spec documents it, from a `name` query parameter.
async fn create_group(
    State(sim): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let body = json_object(&body)?;
    let query_name = query_params(query.as_deref())
        .remove("name")
        .map(Value::String);
    let name = valid_name(
        body.get("name")
            .or(query_name.as_ref())
            .unwrap_or(&Value::Null),
    )?;
    let mut group = Group {
        id: 0,
        name,
        keypad_unlock: false,
        immune_to_antipassback: false,
        excluded_from_lockdown: false,
        antipassback_reset_time: None,
    };
    apply_settings(&mut group, &body)?;
    sim.write(|s| {
        group.id = s.alloc_id();
        s.groups.insert(group.id, group.clone());
    });
    Ok(ok_json(&group_view(&group)))
}

async fn get_group(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    sim.read(|s| {
        let id = existing_group(s, &id)?;
        Ok(ok_json(&group_view(&s.groups[&id])))
    })
}

async fn update_group(
    State(sim): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body = json_object(&body)?;
    sim.write(|s| {
        let id = existing_group(s, &id)?;
        let mut group = s.groups[&id].clone();
        if let Some(v) = body.get("name") {
            group.name = valid_name(v)?;
        }
        apply_settings(&mut group, &body)?;
        let resp = ok_json(&group_view(&group));
        s.groups.insert(id, group);
        Ok(resp)
    })
}

async fn delete_group(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let now = Timestamp::now();
    sim.write(|s| {
        let id = existing_group(s, &id)?;
        s.delete_group(id, now);
        Ok(no_content())
    })
}

async fn list_members(
    State(sim): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let params = query_params(query.as_deref());
    let paging = Paging::from_query(&params)?;
    sim.read(|s| {
        let id = existing_group(s, &id)?;
        let members: Vec<_> = s
            .users_of_group(id)
            .into_iter()
            .filter_map(|u| s.users.get(&u))
            .collect();
        Ok(ok_json(&paging.page_map(members, member_view)))
    })
}

async fn add_member(
    State(sim): State<AppState>,
    Path((group, user)): Path<(String, String)>,
) -> ApiResult {
    let now = Timestamp::now();
    sim.write(|s| {
        let group = existing_group(s, &group)?;
        let user = existing_user(s, &user)?;
        if s.memberships.contains(&(group, user)) {
            return Ok(no_content());
        }
        if s.groups_of_user(user).len() >= MAX_GROUPS_PER_USER {
            return Err(too_many_groups());
        }
        s.add_membership(group, user, now);
        Ok(no_content())
    })
}

async fn remove_member(
    State(sim): State<AppState>,
    Path((group, user)): Path<(String, String)>,
) -> ApiResult {
    let now = Timestamp::now();
    sim.write(|s| {
        let group = existing_group(s, &group)?;
        let user = existing_user(s, &user)?;
        s.remove_membership(group, user, now);
        Ok(no_content())
    })
}

fn user_groups_body(s: &SimState, user: u64) -> DataCount<GroupSummary<'_>> {
    DataCount::new(
        s.groups_of_user(user)
            .into_iter()
            .filter_map(|g| s.groups.get(&g))
            .map(summary)
            .collect(),
    )
}

async fn groups_of_user(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    sim.read(|s| {
        let user = existing_user(s, &id)?;
        Ok(ok_json(&user_groups_body(s, user)))
    })
}

fn group_ids(body: &serde_json::Map<String, Value>, field: &str) -> Result<Vec<u64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                id_value(v).ok_or_else(|| {
                    ApiError::bad_request(format!("Invalid group id in {field}: {v}"))
                })
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request(format!("Invalid value for {field}"))),
    }
}

async fn change_groups_of_user(
    State(sim): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body = json_object(&body)?;
    let add = group_ids(&body, "addGroups")?;
    let remove = group_ids(&body, "removeGroups")?;
    let now = Timestamp::now();
    sim.write(|s| {
        let user = existing_user(s, &id)?;
        if add.iter().chain(&remove).any(|g| !s.groups.contains_key(g)) {
            return Err(unknown_group());
        }
        let mut after: BTreeSet<u64> = s.groups_of_user(user).into_iter().collect();
        for g in &remove {
            after.remove(g);
        }
        after.extend(add.iter().copied());
        if after.len() > MAX_GROUPS_PER_USER {
            return Err(too_many_groups());
        }
        for g in &remove {
            s.remove_membership(*g, user, now);
        }
        for g in &add {
            s.add_membership(*g, user, now);
        }
        Ok(ok_json(&user_groups_body(s, user)))
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccessPointRef<'a> {
    id: u64,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct ScheduleRef<'a> {
    id: u64,
    name: &'a str,
}

/// One item of a group's permissions, as documented: the door, the schedule, and
/// `privacyModeOverride` where it is set.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PermissionView<'a> {
    access_point: AccessPointRef<'a>,
    schedule: ScheduleRef<'a>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    privacy_mode_override: bool,
}

fn permission_view<'a>(
    s: &'a SimState,
    ap: &'a AccessPoint,
    permission: &Permission,
) -> PermissionView<'a> {
    PermissionView {
        access_point: AccessPointRef {
            id: ap.id,
            name: &ap.name,
            kind: ACCESS_POINT_TYPE,
        },
        schedule: ScheduleRef {
            id: permission.schedule_id,
            name: s
                .schedules
                .get(&permission.schedule_id)
                .map(|sc| sc.name.as_str())
                .unwrap_or(""),
        },
        privacy_mode_override: permission.privacy_mode_override,
    }
}

/// The documented filters of a group's permissions.
fn permission_matches(
    s: &SimState,
    ap: &AccessPoint,
    permission: &Permission,
    c: &filter::Clause,
) -> Result<bool, ApiError> {
    match c.field.as_str() {
        "access_point_name" => Ok(filter::matches_contains(c, &ap.name)),
        "schedule_name" => {
            let name = s
                .schedules
                .get(&permission.schedule_id)
                .map(|sc| sc.name.as_str())
                .unwrap_or("");
            Ok(filter::matches_contains(c, name))
        }
        "access_point_type" => {
            let mut any = false;
            for v in &c.values {
                let v = v.to_ascii_uppercase();
                if !PERMISSION_ACCESS_POINT_TYPES.contains(&v.as_str()) {
                    return Err(ApiError::invalid_criteria());
                }
                // Every emulated access point is a plain door.
                any |= v == "DOOR";
            }
            Ok(if c.op == Op::Ne { !any } else { any })
        }
        "privacy_mode_override" => {
            let mut any = false;
            for v in &c.values {
                let wanted = match v.to_ascii_uppercase().as_str() {
                    "TRUE" => true,
                    "FALSE" => false,
                    _ => return Err(ApiError::invalid_criteria()),
                };
                any |= wanted == permission.privacy_mode_override;
            }
            Ok(any)
        }
        _ => Err(ApiError::invalid_criteria()),
    }
}

const PERMISSION_ACCESS_POINT_TYPES: [&str; 9] = [
    "DOOR",
    "WIEGAND",
    "FLOOR",
    "SALTO_DOOR",
    "ALLEGION_DOOR",
    "ASSA_ABLOY_DOOR",
    "OFFLINE_DOOR",
    "SIMONS_VOSS_LOCK",
    "RESIDEO_WIFI_THERMOSTAT",
];

async fn list_group_doors(
    State(sim): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let params = query_params(query.as_deref());
    let clauses = filter::from_query(
        &params,
        &[
            ("access_point_name", &[Op::Eq]),
            ("access_point_type", &[Op::Eq, Op::Ne]),
            ("schedule_name", &[Op::Eq]),
            ("privacy_mode_override", &[Op::Eq]),
        ],
    )?;
    let paging = Paging::from_query(&params)?;
    sim.read(|s| {
        let id = existing_group(s, &id)?;
        let mut items = Vec::new();
        for door in s.doors_of_group(id) {
            let (Some(ap), Some(permission)) =
                (s.access_points.get(&door), s.group_doors.get(&(id, door)))
            else {
                continue;
            };
            let mut keep = true;
            for c in &clauses {
                keep &= permission_matches(s, ap, permission, c)?;
            }
            if keep {
                items.push(permission_view(s, ap, permission));
            }
        }
        Ok(ok_json(&paging.page(items)))
    })
}

fn invalid_schedule() -> ApiError {
    ApiError::bad_request("Invalid criteria provided: schedule")
}

/// Grants the group the door, or changes the schedule of its permission. The body names the
/// schedule: `{"schedule": {"id": N}, "privacyModeOverride": bool}`; answers 200 with the
/// permission.
async fn add_group_door(
    State(sim): State<AppState>,
    Path((group, door)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body = json_object(&body)?;
    let schedule_id = match body.get("schedule") {
        Some(Value::Object(schedule)) => schedule
            .get("id")
            .and_then(id_value)
            .ok_or_else(invalid_schedule)?,
        _ => return Err(invalid_schedule()),
    };
    let privacy_mode_override = bool_field(&body, "privacyModeOverride")?;
    sim.write(|s| {
        let group = existing_group(s, &group)?;
        let door = parse_id(&door)
            .filter(|d| s.access_points.contains_key(d))
            .ok_or_else(access_point_not_found)?;
        if !s.schedules.contains_key(&schedule_id) {
            return Err(invalid_schedule());
        }
        if privacy_mode_override == Some(true) {
            // Privacy mode exists on Salto, Allegion and ASSA Abloy locks only.
            return Err(ApiError::bad_request(
                "privacy mode support for this device is not enabled",
            ));
        }
        let permission = Permission {
            schedule_id,
            privacy_mode_override: false,
        };
        s.group_doors.insert((group, door), permission);
        Ok(ok_json(&permission_view(
            s,
            &s.access_points[&door],
            &permission,
        )))
    })
}

async fn remove_group_door(
    State(sim): State<AppState>,
    Path((group, door)): Path<(String, String)>,
) -> ApiResult {
    sim.write(|s| {
        let group = existing_group(s, &group)?;
        let door = parse_id(&door)
            .filter(|d| s.access_points.contains_key(d))
            .ok_or_else(access_point_not_found)?;
        s.group_doors.remove(&(group, door));
        Ok(no_content())
    })
}

#[derive(Serialize)]
struct GroupRef<'a> {
    id: u64,
    name: &'a str,
}

/// The groups with a permission on the door: `{data: [{id, name}], offset, pageSize, count}`.
async fn access_point_groups(
    State(sim): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let params = query_params(query.as_deref());
    let paging = Paging::from_query(&params)?;
    sim.read(|s| {
        let door = parse_id(&id)
            .filter(|d| s.access_points.contains_key(d))
            .ok_or_else(access_point_not_found)?;
        let items: Vec<_> = s
            .groups_of_door(door)
            .into_iter()
            .filter_map(|g| s.groups.get(&g))
            .map(|g| GroupRef {
                id: g.id,
                name: &g.name,
            })
            .collect();
        Ok(ok_json(&paging.page(items)))
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleView<'a> {
    id: u64,
    name: &'a str,
    editable: bool,
    site_name: &'static str,
}

fn schedule_view(schedule: &Schedule) -> ScheduleView<'_> {
    ScheduleView {
        id: schedule.id,
        name: &schedule.name,
        editable: true,
        // Account-wide schedules belong to Brivo's "Universal" site.
        site_name: "Universal",
    }
}

async fn list_schedules(State(sim): State<AppState>, RawQuery(query): RawQuery) -> ApiResult {
    let params = query_params(query.as_deref());
    let clauses = filter::from_query(&params, &[("name", &[Op::Eq])])?;
    let paging = Paging::from_query(&params)?;
    sim.read(|s| {
        let items: Vec<_> = s
            .schedules
            .values()
            .filter(|sc| {
                clauses
                    .iter()
                    .all(|c| filter::matches_contains(c, &sc.name))
            })
            .map(schedule_view)
            .collect();
        Ok(ok_json(&paging.page(items)))
    })
}

async fn get_schedule(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    sim.read(|s| {
        let schedule = parse_id(&id)
            .and_then(|id| s.schedules.get(&id))
            .ok_or_else(|| ApiError::not_found("The requested resource was not found."))?;
        Ok(ok_json(&schedule_view(schedule)))
    })
}

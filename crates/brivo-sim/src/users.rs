//! Users (reference §8): create (200), get, list with filters, full replace (`PUT`), partial
//! update (`PATCH`), delete (204), lookup by externalId, and suspension.
//!
//! Shapes follow the recorded traffic: empty fields are omitted, ids are numbers, `externalId`
//! is always a string (a number sent is echoed as a string), and a single user carries
//! `"customFields": []` where a listed one does not. A duplicate externalId on create or update
//! is a 400 "Duplicate externalId" (the reference only says it is unique per account).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::api::{
    ApiError, ApiResult, AppState, json_object, no_content, ok_json, parse_id, query_params,
};
use crate::filter::{self, Op};
use crate::model::{Email, Phone, User};
use crate::paging::Paging;
use crate::state::State as SimState;
use crate::util::{fmt_seconds, parse_instant};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/users/{id}/external", get(get_by_external_id))
        .route(
            "/users/{id}/suspended",
            get(get_suspended).put(put_suspended),
        )
}

pub fn user_not_found() -> ApiError {
    ApiError::not_found("Requested user not found")
}

/// Resolves a `{id}` path segment to an existing user id.
pub fn existing_user(state: &SimState, raw: &str) -> Result<u64, ApiError> {
    parse_id(raw)
        .filter(|id| state.users.contains_key(id))
        .ok_or_else(user_not_found)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView<'a> {
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    first_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    middle_name: Option<&'a str>,
    last_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pin: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_to: Option<String>,
    suspended: bool,
    created: String,
    updated: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ble_two_factor_exempt: Option<bool>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    emails: &'a [Email],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    phone_numbers: &'a [Phone],
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_fields: Option<[(); 0]>,
}

/// `detail` adds what a single-user GET shows beyond a listing (`customFields`).
pub fn user_view(u: &User, detail: bool) -> UserView<'_> {
    UserView {
        id: u.id,
        external_id: u.external_id.as_deref(),
        first_name: &u.first_name,
        middle_name: u.middle_name.as_deref(),
        last_name: &u.last_name,
        pin: u.pin.as_deref(),
        effective_from: u.effective_from.map(fmt_seconds),
        effective_to: u.effective_to.map(fmt_seconds),
        suspended: u.suspended,
        created: fmt_seconds(u.created),
        updated: fmt_seconds(u.updated),
        ble_two_factor_exempt: u.ble_two_factor_exempt,
        emails: &u.emails,
        phone_numbers: &u.phone_numbers,
        custom_fields: detail.then_some([]),
    }
}

/// The short form used inside group listings (`GET /groups/{id}/users`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView<'a> {
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    first_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    middle_name: Option<&'a str>,
    last_name: &'a str,
    suspended: bool,
}

pub fn member_view(u: &User) -> MemberView<'_> {
    MemberView {
        id: u.id,
        external_id: u.external_id.as_deref(),
        first_name: &u.first_name,
        middle_name: u.middle_name.as_deref(),
        last_name: &u.last_name,
        suspended: u.suspended,
    }
}

const USER_FILTERS: &[(&str, &[Op])] = &[
    ("id", &[Op::Eq, Op::Ne]),
    ("firstname", &[Op::Eq, Op::Ne]),
    ("lastname", &[Op::Eq, Op::Ne]),
    ("user_status", &[Op::Eq, Op::Ne]),
];

fn user_matches(state: &SimState, u: &User, c: &filter::Clause) -> Result<bool, ApiError> {
    match c.field.as_str() {
        "id" => filter::matches_id(c, u.id),
        "firstname" => Ok(filter::matches_contains(c, &u.first_name)),
        "lastname" => Ok(filter::matches_contains(c, &u.last_name)),
        "user_status" => {
            let mut any = false;
            for v in &c.values {
                any |= match v.to_ascii_lowercase().as_str() {
                    // DOCS25R: active means an active credential and at least one group.
                    "active" => {
                        !u.suspended
                            && !state.groups_of_user(u.id).is_empty()
                            && state
                                .credentials
                                .values()
                                .any(|c| c.user_id == u.id && c.redeemed)
                    }
                    "suspended" => u.suspended,
                    "unaffiliated" => state.groups_of_user(u.id).is_empty(),
                    // Deprecated upstream; deleted users are gone, so it matches nobody.
                    "deleted" => false,
                    _ => return Err(ApiError::invalid_criteria()),
                };
            }
            Ok(if c.op == Op::Ne { !any } else { any })
        }
        _ => Err(ApiError::invalid_criteria()),
    }
}

async fn list_users(State(sim): State<AppState>, RawQuery(query): RawQuery) -> ApiResult {
    let params = query_params(query.as_deref());
    let clauses = filter::from_query(&params, USER_FILTERS)?;
    let paging = Paging::from_query(&params)?;
    sim.read(|s| {
        let mut matched = Vec::new();
        for u in s.users.values() {
            let mut keep = true;
            for c in &clauses {
                keep &= user_matches(s, u, c)?;
            }
            if keep {
                matched.push(u);
            }
        }
        Ok(ok_json(&paging.page_map(matched, |u| user_view(u, false))))
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// POST and PUT: optional fields that are absent are removed.
    Replace,
    /// PATCH: absent fields are kept; `null` removes.
    Patch,
}

fn invalid(field: &str) -> ApiError {
    ApiError::bad_request(format!("Invalid value for {field}"))
}

fn opt_string(v: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(invalid(field)),
    }
}

/// `externalId` may arrive as a number (the 2017 client sent `1`); it is kept as a string.
fn external_id_value(v: &Value) -> Result<Option<String>, ApiError> {
    match v {
        Value::Number(n) => Ok(Some(n.to_string())),
        other => opt_string(other, "externalId"),
    }
}

fn opt_instant(v: &Value, field: &str) -> Result<Option<Timestamp>, ApiError> {
    match opt_string(v, field)? {
        None => Ok(None),
        Some(s) => parse_instant(&s).map(Some).ok_or_else(|| invalid(field)),
    }
}

fn contact_list(
    v: &Value,
    field: &str,
    key: &str,
) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(invalid(field)),
    };
    items
        .iter()
        .map(|item| {
            let value = item
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| invalid(field))?;
            let kind = match item.get("type") {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) => Some(t.clone()),
                Some(_) => return Err(invalid(field)),
            };
            Ok((value.to_string(), kind))
        })
        .collect()
}

/// Applies the writable fields of a request body to `user`.
fn apply_fields(user: &mut User, body: &Map<String, Value>, mode: Mode) -> Result<(), ApiError> {
    if mode == Mode::Replace {
        user.external_id = None;
        user.middle_name = None;
        user.pin = None;
        user.effective_from = None;
        user.effective_to = None;
        user.ble_two_factor_exempt = None;
        user.emails.clear();
        user.phone_numbers.clear();
    }
    for (field, slot) in [
        ("firstName", &mut user.first_name),
        ("lastName", &mut user.last_name),
    ] {
        match body.get(field) {
            Some(v) => *slot = opt_string(v, field)?.ok_or_else(|| required(field))?,
            None if mode == Mode::Replace => return Err(required(field)),
            None => {}
        }
    }
    if let Some(v) = body.get("externalId") {
        user.external_id = external_id_value(v)?;
    }
    if let Some(v) = body.get("middleName") {
        user.middle_name = opt_string(v, "middleName")?;
    }
    if let Some(v) = body.get("pin") {
        user.pin = match v {
            Value::Number(n) => Some(n.to_string()),
            other => opt_string(other, "pin")?,
        };
    }
    if let Some(v) = body.get("effectiveFrom") {
        user.effective_from = opt_instant(v, "effectiveFrom")?;
    }
    if let Some(v) = body.get("effectiveTo") {
        user.effective_to = opt_instant(v, "effectiveTo")?;
    }
    if let Some(v) = body.get("bleTwoFactorExempt") {
        user.ble_two_factor_exempt = match v {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            _ => return Err(invalid("bleTwoFactorExempt")),
        };
    }
    if let Some(v) = body.get("emails") {
        user.emails = contact_list(v, "emails", "address")?
            .into_iter()
            .map(|(address, kind)| Email { address, kind })
            .collect();
    }
    if let Some(v) = body.get("phoneNumbers") {
        user.phone_numbers = contact_list(v, "phoneNumbers", "number")?
            .into_iter()
            .map(|(number, kind)| Phone { number, kind })
            .collect();
    }
    Ok(())
}

fn required(field: &str) -> ApiError {
    ApiError::bad_request(format!("{field} is required"))
}

fn suspended_field(body: &Map<String, Value>) -> Result<Option<bool>, ApiError> {
    match body.get("suspended") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid("suspended")),
    }
}

fn check_unique_external_id(state: &SimState, user: &User) -> Result<(), ApiError> {
    if let Some(ext) = &user.external_id
        && let Some(&owner) = state.by_external_id.get(ext)
        && owner != user.id
    {
        return Err(ApiError::bad_request("Duplicate externalId"));
    }
    Ok(())
}

async fn create_user(State(sim): State<AppState>, body: Bytes) -> ApiResult {
    let body = json_object(&body)?;
    let now = Timestamp::now();
    let mut user = User {
        id: 0,
        external_id: None,
        first_name: String::new(),
        middle_name: None,
        last_name: String::new(),
        pin: None,
        effective_from: None,
        effective_to: None,
        ble_two_factor_exempt: None,
        emails: Vec::new(),
        phone_numbers: Vec::new(),
        suspended: suspended_field(&body)?.unwrap_or(false),
        created: now,
        updated: now,
    };
    apply_fields(&mut user, &body, Mode::Replace)?;
    sim.write(|s| {
        check_unique_external_id(s, &user)?;
        user.id = s.alloc_id();
        s.insert_user(user.clone());
        Ok(ok_json(&user_view(&user, false)))
    })
}

async fn get_user(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    sim.read(|s| {
        let id = existing_user(s, &id)?;
        Ok(ok_json(&user_view(&s.users[&id], true)))
    })
}

async fn get_by_external_id(
    State(sim): State<AppState>,
    Path(external_id): Path<String>,
) -> ApiResult {
    sim.read(|s| {
        let id = s
            .by_external_id
            .get(&external_id)
            .ok_or_else(user_not_found)?;
        Ok(ok_json(&user_view(&s.users[id], true)))
    })
}

async fn update_user(sim: AppState, id: String, body: Bytes, mode: Mode) -> ApiResult {
    let body = json_object(&body)?;
    let suspended = suspended_field(&body)?;
    let now = Timestamp::now();
    sim.write(|s| {
        let id = existing_user(s, &id)?;
        let mut user = s.users[&id].clone();
        apply_fields(&mut user, &body, mode)?;
        check_unique_external_id(s, &user)?;
        user.updated = now;
        s.replace_user(user);
        if let Some(suspended) = suspended {
            s.set_suspended(id, suspended, now);
        }
        Ok(ok_json(&user_view(&s.users[&id], true)))
    })
}

async fn replace_user(
    State(sim): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    update_user(sim, id, body, Mode::Replace).await
}

async fn patch_user(State(sim): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    update_user(sim, id, body, Mode::Patch).await
}

async fn delete_user(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let now = Timestamp::now();
    sim.write(|s| {
        let id = existing_user(s, &id)?;
        s.delete_user(id, now);
        Ok(no_content())
    })
}

async fn get_suspended(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    sim.read(|s| {
        let id = existing_user(s, &id)?;
        Ok(ok_json(
            &json!({"id": id, "suspended": s.users[&id].suspended}),
        ))
    })
}

async fn put_suspended(
    State(sim): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body = json_object(&body)?;
    let suspended = suspended_field(&body)?.ok_or_else(|| required("suspended"))?;
    let now = Timestamp::now();
    sim.write(|s| {
        let id = existing_user(s, &id)?;
        s.set_suspended(id, suspended, now);
        Ok(ok_json(&json!({"id": id, "suspended": suspended})))
    })
}

//! Event subscriptions (reference §15) and webhook delivery.
//!
//! Criteria are ANDed; `SITE`, `USER` and `ACCESS-POINT` compare the event's site, actor and door
//! with `EQ` or `NE`; an `AUDIT` criterion selecting audit events (`EQ 1`) makes the subscription
//! receive no access events; no criteria means every access event. Creating answers 200 with the
//! stored object (ids added, plus an opaque `encryptedSecretWord`).
//!
//! Delivery: each new event is POSTed as JSON to each matching subscription's `url`. An answer
//! other than 200, 201 or 204 (Brivo "doesn't like 202", reference §15) or a connection error is a
//! failure; delivery is tried 3 times (after 200 ms and 800 ms
//! pauses), then given up, logged, counted in `/__sim/deliveries`, and reported to `errorEmail`
//! through the outbox. Deliveries run concurrently, so their order is not guaranteed (Brivo
//! documents none). Only `http://` URLs can be reached (the emulator carries no TLS stack).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::api::{
    ApiError, ApiResult, AppState, id_value, json_object, no_content, ok_json, parse_id,
    query_params,
};
use crate::filter::{self, Op};
use crate::model::{Criterion, Event, Subscription};
use crate::paging::Paging;
use crate::sim::{Delivery, Sim};
use crate::smtp;
use crate::state::State as SimState;
use crate::util::random_hex;

const ATTEMPTS: u32 = 3;
const BACKOFF: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/event-subscriptions",
            get(list_subscriptions).post(create_subscription),
        )
        .route(
            "/event-subscriptions/{id}",
            get(get_subscription)
                .put(update_subscription)
                .delete(delete_subscription),
        )
}

fn not_found() -> ApiError {
    ApiError::not_found("Event subscription not found")
}

fn existing(state: &SimState, raw: &str) -> Result<u64, ApiError> {
    parse_id(raw)
        .filter(|id| state.subscriptions.contains_key(id))
        .ok_or_else(not_found)
}

async fn list_subscriptions(State(sim): State<AppState>, RawQuery(query): RawQuery) -> ApiResult {
    let params = query_params(query.as_deref());
    let clauses = filter::from_query(&params, &[("name", &[Op::Eq, Op::Ne])])?;
    let paging = Paging::from_query(&params)?;
    sim.read(|s| {
        let items: Vec<&Subscription> = s
            .subscriptions
            .values()
            .filter(|sub| {
                clauses
                    .iter()
                    .all(|c| filter::matches_contains(c, &sub.name))
            })
            .collect();
        Ok(ok_json(&paging.page(items)))
    })
}

/// Validates a subscription body against the account; ids are filled in by the caller.
fn parse_body(s: &mut SimState, body: &Map<String, Value>) -> Result<Subscription, ApiError> {
    let name = match body.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.clone(),
        _ => return Err(ApiError::bad_request("name is required")),
    };
    let url = match body.get("url") {
        Some(Value::String(u)) if u.starts_with("http://") || u.starts_with("https://") => {
            u.clone()
        }
        _ => return Err(ApiError::bad_request("A valid url is required")),
    };
    let error_email = match body.get("errorEmail") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) if e.is_empty() => None,
        Some(Value::String(e)) => Some(e.clone()),
        Some(_) => return Err(ApiError::bad_request("Invalid value for errorEmail")),
    };
    let raw_criteria = match body.get("criteria") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(ApiError::invalid_criteria()),
    };
    let mut criteria = Vec::new();
    for c in raw_criteria {
        let kind = c
            .get("criteriaType")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase)
            .ok_or_else(ApiError::invalid_criteria)?;
        let op = c
            .get("criteriaOperationType")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase)
            .filter(|o| o == "EQ" || o == "NE")
            .ok_or_else(ApiError::invalid_criteria)?;
        let value = c
            .get("criteriaValue")
            .and_then(id_value)
            .ok_or_else(ApiError::invalid_criteria)?;
        match kind.as_str() {
            "SITE" if !s.sites.contains_key(&value) => {
                return Err(ApiError::bad_request(
                    "Event subscription contained invalid Site criteria",
                ));
            }
            "ACCESS-POINT" if !s.access_points.contains_key(&value) => {
                return Err(ApiError::bad_request(
                    "Event subscription contained invalid Device criteria",
                ));
            }
            "SITE" | "ACCESS-POINT" | "USER" => {}
            "AUDIT" if value <= 1 => {}
            _ => return Err(ApiError::invalid_criteria()),
        }
        criteria.push(Criterion {
            id: s.alloc_id(),
            criteria_type: kind,
            criteria_operation_type: op,
            criteria_value: value,
        });
    }
    Ok(Subscription {
        id: 0,
        name,
        url,
        error_email,
        criteria,
        encrypted_secret_word: String::new(),
    })
}

async fn create_subscription(State(sim): State<AppState>, body: Bytes) -> ApiResult {
    let body = json_object(&body)?;
    sim.write(|s| {
        let mut sub = parse_body(s, &body)?;
        sub.id = s.alloc_id();
        // Brivo's is the secret word AES-encrypted with the client id; no source says how a
        // receiver uses it, so an opaque value of the same kind is enough.
        sub.encrypted_secret_word = random_hex(32);
        s.subscriptions.insert(sub.id, sub.clone());
        Ok(ok_json(&sub))
    })
}

async fn get_subscription(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    sim.read(|s| {
        let id = existing(s, &id)?;
        Ok(ok_json(&s.subscriptions[&id]))
    })
}

async fn update_subscription(
    State(sim): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body = json_object(&body)?;
    sim.write(|s| {
        let id = existing(s, &id)?;
        let mut sub = parse_body(s, &body)?;
        sub.id = id;
        sub.encrypted_secret_word = s.subscriptions[&id].encrypted_secret_word.clone();
        s.subscriptions.insert(id, sub.clone());
        Ok(ok_json(&sub))
    })
}

async fn delete_subscription(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    sim.write(|s| {
        let id = existing(s, &id)?;
        s.subscriptions.remove(&id);
        Ok(no_content())
    })
}

fn criterion_matches(c: &Criterion, e: &Event) -> bool {
    let actual = match c.criteria_type.as_str() {
        "SITE" => Some(e.site.id),
        "USER" => e.actor.as_ref().map(|a| a.id),
        "ACCESS-POINT" => Some(e.event_object.id),
        // 1 = audit events, 0 = access events; every emulated event is an access event.
        "AUDIT" => Some(0),
        _ => None,
    };
    let equal = actual == Some(c.criteria_value);
    if c.criteria_operation_type == "NE" {
        !equal
    } else {
        equal
    }
}

pub fn matches(sub: &Subscription, e: &Event) -> bool {
    sub.criteria.iter().all(|c| criterion_matches(c, e))
}

/// Starts a background delivery of `event` to every matching subscription.
pub fn deliver(sim: &Arc<Sim>, event: &Event) {
    let targets: Vec<Subscription> = sim.read(|s| {
        s.subscriptions
            .values()
            .filter(|sub| matches(sub, event))
            .cloned()
            .collect()
    });
    for sub in targets {
        tokio::spawn(deliver_one(sim.clone(), sub, event.clone()));
    }
}

/// The answers a receiver may give for Brivo to count the event delivered. Receivers are told to
/// answer 200 because Brivo does not take 202; 201 and 204 are the other plain successes.
fn accepted_by_brivo(status: u16) -> bool {
    matches!(status, 200 | 201 | 204)
}

async fn deliver_one(sim: Arc<Sim>, sub: Subscription, event: Event) {
    let mut attempts = 0;
    let (status, error) = loop {
        attempts += 1;
        let failure = match sim.http.post(&sub.url).json(&event).send().await {
            Ok(resp) if accepted_by_brivo(resp.status().as_u16()) => {
                sim.record_delivery(Delivery {
                    subscription_id: sub.id,
                    url: sub.url.clone(),
                    event_uuid: event.uuid.clone(),
                    attempts,
                    delivered: true,
                    status: Some(resp.status().as_u16()),
                    error: None,
                    at: Timestamp::now(),
                });
                return;
            }
            Ok(resp) => (
                Some(resp.status().as_u16()),
                format!("HTTP {}", resp.status()),
            ),
            Err(e) => (None, e.to_string()),
        };
        if attempts >= ATTEMPTS {
            break failure;
        }
        tokio::time::sleep(BACKOFF[(attempts - 1) as usize]).await;
    };
    tracing::warn!(subscription = sub.id, url = %sub.url, %error, "event delivery failed");
    sim.record_delivery(Delivery {
        subscription_id: sub.id,
        url: sub.url.clone(),
        event_uuid: event.uuid.clone(),
        attempts,
        delivered: false,
        status,
        error: Some(error.clone()),
        at: Timestamp::now(),
    });
    if let Some(to) = sub.error_email {
        let body = format!(
            "Brivo could not deliver event {} to event subscription \"{}\" ({}) after {attempts} attempts.\r\nLast error: {error}\r\n",
            event.uuid, sub.name, sub.url
        );
        smtp::send_mail(
            &sim,
            to,
            "Event subscription delivery failed".into(),
            body,
            None,
        );
    }
}

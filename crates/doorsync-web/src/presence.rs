//! Presence read models: who is in now, check-ins (with what covered each), failed check-ins
//! (with the reason), and the door events they came from.

use crate::AppState;
use crate::api::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::error::ApiError;
use crate::input;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use doorsync_store::{Kind, PresenceFilter, Record, parse_cursor};
use jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::BTreeMap;

struct ListQuery {
    filter: PresenceFilter,
    limit: u32,
    before: Option<(i64, String)>,
}

fn list_query(
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<ListQuery, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request("invalid_query", "query", e.body_text()))?;
    let mut out = ListQuery {
        filter: PresenceFilter::default(),
        limit: DEFAULT_LIMIT,
        before: None,
    };
    let instant = |k: &str, v: &str| {
        v.parse::<Timestamp>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                k.to_owned(),
                "an RFC 3339 instant, e.g. 2026-06-01T09:00:00Z",
            )
        })
    };
    for (k, v) in q {
        input::no_control(k.clone(), &v)?;
        match k.as_str() {
            "customer_id" => out.filter.customer_id = Some(v),
            "location_id" => out.filter.location_id = Some(v),
            "since" => out.filter.since = Some(instant(&k, &v)?),
            "until" => out.filter.until = Some(instant(&k, &v)?),
            "limit" => {
                out.limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_query",
                            "limit",
                            format!("limit is 1 to {MAX_LIMIT}"),
                        )
                    })?
            }
            "cursor" => {
                out.before = Some(parse_cursor(&v).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        "cursor",
                        "use the next_cursor of the previous page",
                    )
                })?)
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    other.to_owned(),
                    "unknown query parameter; use customer_id, location_id, since, until, limit, cursor",
                ));
            }
        }
    }
    Ok(out)
}

/// A page of `items` (one more than asked tells there is a next page), with its cursor.
fn paged<T: serde::Serialize>(
    mut items: Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> (Timestamp, String),
) -> Json<Value> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = more
        .then(|| items.last().map(&key))
        .flatten()
        .map(|(t, id)| format!("{}:{id}", t.as_millisecond()));
    Json(json!({ "items": items, "next_cursor": next }))
}

pub async fn checkins(
    State(st): State<AppState>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = list_query(query)?;
    let items = st.store.checkins(&q.filter, q.before, q.limit + 1).await?;
    Ok(paged(items, q.limit, |c| (c.checked_in_at, c.id.clone())))
}

pub async fn failed_checkins(
    State(st): State<AppState>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = list_query(query)?;
    let items = st
        .store
        .failed_checkins(&q.filter, q.before, q.limit + 1)
        .await?;
    Ok(paged(items, q.limit, |f| (f.at, f.id.clone())))
}

pub async fn door_events(
    State(st): State<AppState>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = list_query(query)?;
    let items = st
        .store
        .door_events(&q.filter, q.before, q.limit + 1)
        .await?;
    Ok(paged(items, q.limit, |e| {
        (e.event.occurred_at, e.event.event_id.clone())
    }))
}

/// Who is in now: the check-ins still open today (the location's day) at each location.
pub async fn presence(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = st.clock.now();
    let mut dates = BTreeMap::new();
    let mut names = BTreeMap::new();
    for r in st.store.list_all(Kind::Location).await? {
        if let Record::Location(l) = r {
            let date = now.to_zoned_datetime(l.timezone.tz()).date().to_string();
            dates.insert(l.id.to_string(), date);
            names.insert(l.id.to_string(), l.name);
        }
    }
    // Who is in, once each: a second entry the same day leaves the first check-in open too.
    let mut seen = std::collections::BTreeSet::new();
    let open: Vec<_> = st
        .store
        .open_checkins_on(&dates)
        .await?
        .into_iter()
        .filter(|c| seen.insert((c.location_id.clone(), c.customer_id.clone())))
        .collect();
    let locations: Vec<Value> = dates
        .iter()
        .map(|(id, date)| {
            let here: Vec<Value> = open
                .iter()
                .filter(|c| &c.location_id == id)
                .map(|c| {
                    json!({"customer_id": c.customer_id, "checked_in_at": c.checked_in_at,
                           "covered_kind": c.covered_kind, "covered_id": c.covered_id})
                })
                .collect();
            json!({"location_id": id, "name": names.get(id), "local_date": date,
                   "count": here.len(), "present": here})
        })
        .collect();
    Ok(Json(json!({ "at": now, "locations": locations })))
}

/// Brivo's event webhook, `POST /hooks/brivo/{secret}`: the event is kept (once, by its id) in
/// the store, which the engine then processes, and the answer is 200 at once (Brivo takes
/// nothing else for success). A secret no subscription has is a plain 404, saying nothing more.
pub async fn brivo_hook(
    State(st): State<AppState>,
    axum::extract::Path(secret): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let hash = doorsync_engine::presence::hook_hash(&secret);
    let connection = match st.store.hook_connection(&hash).await {
        Ok(Some(c)) => c,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "webhook: the store did not answer");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let Ok(event) = serde_json::from_slice::<brivo_client::AccessEvent>(&body) else {
        return (StatusCode::BAD_REQUEST, "not an access event").into_response();
    };
    let Some(event) = doorsync_engine::brivo::remote_event(event) else {
        return (StatusCode::BAD_REQUEST, "the event has no occurred instant").into_response();
    };
    let event = doorsync_engine::presence::door_event(event);
    match st
        .store
        .save_door_events(&connection, &[event], st.clock.now())
        .await
    {
        Ok(_) => {
            st.wake();
            (StatusCode::OK, "ok").into_response()
        }
        // Not kept: Brivo delivers again.
        Err(e) => {
            tracing::warn!(error = %e, "webhook: keeping an event failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

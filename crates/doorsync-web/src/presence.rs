//! Presence read models: who is in now, check-ins (with what covered each), failed check-ins
//! (with the reason), and the door events they came from.

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::query::{DEFAULT_LIMIT, PresenceQuery, Q};
use crate::view::{
    CheckinPage, DoorEventPage, FailedCheckinPage, LocationPresence, Page, Presence, Present,
};
use axum::Json;
use axum::extract::State;
use doorsync_store::{
    Checkin, DoorEvent, FailedCheckin, Kind, PresenceFilter, Record, parse_cursor,
};
use jiff::Timestamp;
use std::collections::BTreeMap;

struct ListQuery {
    filter: PresenceFilter,
    limit: u32,
    before: Option<(i64, String)>,
}

fn list_query(q: PresenceQuery) -> Result<ListQuery, ApiError> {
    let before = match q.cursor {
        Some(c) => Some(parse_cursor(&c).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "cursor",
                "use the next_cursor of the previous page",
            )
        })?),
        None => None,
    };
    Ok(ListQuery {
        filter: PresenceFilter {
            customer_id: q.customer_id,
            location_id: q.location_id,
            since: q.since,
            until: q.until,
        },
        limit: q.limit.unwrap_or(DEFAULT_LIMIT),
        before,
    })
}

/// The cursor of a presence list: the instant and the id of the last item shown.
fn cursor(t: Timestamp, id: &str) -> String {
    format!("{}:{id}", t.as_millisecond())
}

/// Check-ins, each with what covered it
#[utoipa::path(get, path = "/api/v1/checkins", tag = "presence", operation_id = "list_checkins",
    params(PresenceQuery),
    responses(
        (status = 200, description = "A page, newest first", body = CheckinPage),
        (status = 400, description = "Bad query", body = ErrorBody),
    ))]
pub async fn checkins(
    State(st): State<AppState>,
    Q(q): Q<PresenceQuery>,
) -> Result<Json<Page<Checkin>>, ApiError> {
    let q = list_query(q)?;
    let items = st.store.checkins(&q.filter, q.before, q.limit + 1).await?;
    Ok(Json(Page::of(items, q.limit, |c| {
        cursor(c.checked_in_at, &c.id)
    })))
}

/// Failed check-ins: the door opened, nothing covered them; each with its reason
#[utoipa::path(get, path = "/api/v1/failed-checkins", tag = "presence",
    operation_id = "list_failed_checkins", params(PresenceQuery),
    responses(
        (status = 200, description = "A page, newest first", body = FailedCheckinPage),
        (status = 400, description = "Bad query", body = ErrorBody),
    ))]
pub async fn failed_checkins(
    State(st): State<AppState>,
    Q(q): Q<PresenceQuery>,
) -> Result<Json<Page<FailedCheckin>>, ApiError> {
    let q = list_query(q)?;
    let items = st
        .store
        .failed_checkins(&q.filter, q.before, q.limit + 1)
        .await?;
    Ok(Json(Page::of(items, q.limit, |f| cursor(f.at, &f.id))))
}

/// Door events as the provider reported them, with what presence made of each
#[utoipa::path(get, path = "/api/v1/door-events", tag = "presence",
    operation_id = "list_door_events", params(PresenceQuery),
    responses(
        (status = 200, description = "A page, newest first", body = DoorEventPage),
        (status = 400, description = "Bad query", body = ErrorBody),
    ))]
pub async fn door_events(
    State(st): State<AppState>,
    Q(q): Q<PresenceQuery>,
) -> Result<Json<Page<DoorEvent>>, ApiError> {
    let q = list_query(q)?;
    let items = st
        .store
        .door_events(&q.filter, q.before, q.limit + 1)
        .await?;
    Ok(Json(Page::of(items, q.limit, |e| {
        cursor(e.event.occurred_at, &e.event.event_id)
    })))
}

/// Who is in now, per location: the check-ins still open today (the location's day)
#[utoipa::path(get, path = "/api/v1/presence", tag = "presence", operation_id = "presence",
    responses((status = 200, description = "Per location", body = Presence)))]
pub async fn presence(State(st): State<AppState>) -> Result<Json<Presence>, ApiError> {
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
    let locations = dates
        .into_iter()
        .map(|(id, local_date)| {
            let present: Vec<Present> = open
                .iter()
                .filter(|c| c.location_id == id)
                .map(|c| Present {
                    customer_id: c.customer_id.clone(),
                    checked_in_at: c.checked_in_at,
                    covered_kind: c.covered_kind.clone(),
                    covered_id: c.covered_id.clone(),
                })
                .collect();
            LocationPresence {
                name: names.remove(&id).unwrap_or_default(),
                location_id: id,
                local_date,
                count: present.len(),
                present,
            }
        })
        .collect();
    Ok(Json(Presence { at: now, locations }))
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

//! Access events (reference §14): how a swipe or a remote unlock becomes an event, and
//! `GET /events/access`, which pages by time rather than by index.
//!
//! Listing: `filter=occurred__gt:…;occurred__lt:…` bounds a window. As on the real service, both
//! bounds are truncated to the hour before anything else (`occurred__lt:10:59:59Z` means before
//! 10:00, so a poller asking up to "now" never sees the current hour, and a window of a few
//! seconds inside one hour is empty); the truncated bounds may be at most 24 hours apart, else
//! 400 "Invalid listing criteria provided". With neither bound the window is the current UTC day;
//! with only `gt` the 24 hours after it, with only `lt` the 24 hours before it (both truncated
//! first). `gt` and `lt` stay strict comparisons on the truncated bounds. `object__eq` (a door)
//! and `site__eq` cannot be combined; `event_type__eq` takes `non_exception`, `exception`,
//! `camera`, `video_linkable`. Anything else is a 400. Events come newest first; `offset` is an
//! instant and the page holds events strictly older than it (clients pass the oldest `occurred`
//! of the last page). Every event gets an `occurred` distinct from every other's, so that paging
//! never skips one.

use std::collections::HashSet;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use crate::api::{ApiError, ApiResult, AppState, ok_json, query_params};
use crate::filter::{self, Op};
use crate::model::*;
use crate::oauth::add;
use crate::paging::page_size;
use crate::sim::Sim;
use crate::state::State as SimState;
use crate::subscriptions;
use crate::util::{parse_instant, to_millis, uuid_v4};

const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Truncates an instant to the start of its (UTC) hour, as Brivo does with `occurred` bounds.
pub fn hour_floor(ts: Timestamp) -> Timestamp {
    Timestamp::from_second(ts.as_second().div_euclid(3600) * 3600).unwrap_or(ts)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events/access", get(list_access_events))
        .route("/events/counts/access", get(count_access_events))
}

fn invalid_listing() -> ApiError {
    ApiError::bad_request("Invalid listing criteria provided")
}

/// What a listing asks for, once validated.
struct Criteria {
    after: Timestamp,
    before: Timestamp,
    objects: Option<HashSet<u64>>,
    sites: Option<HashSet<u64>>,
    exception: Option<HashSet<bool>>,
}

impl Criteria {
    fn from_filter(text: Option<&String>, now: Timestamp) -> Result<Self, ApiError> {
        let clauses = match text {
            Some(t) => filter::parse(t)?,
            None => Vec::new(),
        };
        let (mut gt, mut lt, mut objects, mut sites, mut exception) =
            (None, None, None, None, None);
        let ids = |c: &filter::Clause| -> Result<HashSet<u64>, ApiError> {
            c.values
                .iter()
                .map(|v| v.parse::<u64>().map_err(|_| invalid_listing()))
                .collect()
        };
        for c in &clauses {
            let single = || -> Result<Timestamp, ApiError> {
                match c.values.as_slice() {
                    [v] => parse_instant(v).ok_or_else(invalid_listing),
                    _ => Err(invalid_listing()),
                }
            };
            match (c.field.as_str(), c.op) {
                ("occurred", Op::Gt) => gt = Some(hour_floor(single()?)),
                ("occurred", Op::Lt) => lt = Some(hour_floor(single()?)),
                ("object", Op::Eq) => objects = Some(ids(c)?),
                ("site", Op::Eq) => sites = Some(ids(c)?),
                ("event_type", Op::Eq) => {
                    let mut kinds = HashSet::new();
                    for v in &c.values {
                        match v.as_str() {
                            "non_exception" => {
                                kinds.insert(false);
                            }
                            "exception" => {
                                kinds.insert(true);
                            }
                            // No camera events are emulated; these match nothing.
                            "camera" | "video_linkable" => {}
                            _ => return Err(invalid_listing()),
                        }
                    }
                    exception = Some(kinds);
                }
                _ => return Err(invalid_listing()),
            }
        }
        if objects.is_some() && sites.is_some() {
            return Err(invalid_listing());
        }
        let (after, before) = match (gt, lt) {
            (None, None) => {
                let midnight = now
                    .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                    .start_of_day()
                    .map(|z| z.timestamp())
                    .map_err(|_| invalid_listing())?;
                (midnight, add(midnight, MAX_WINDOW))
            }
            (Some(g), None) => (g, add(g, MAX_WINDOW)),
            (None, Some(l)) => (l.checked_sub(MAX_WINDOW).unwrap_or(Timestamp::MIN), l),
            (Some(g), Some(l)) => (g, l),
        };
        let span = before.duration_since(after);
        if span.is_negative() || span.unsigned_abs() > MAX_WINDOW {
            return Err(invalid_listing());
        }
        Ok(Self {
            after,
            before,
            objects,
            sites,
            exception,
        })
    }

    fn matches(&self, e: &Event) -> bool {
        e.occurred > self.after
            && e.occurred < self.before
            && self
                .objects
                .as_ref()
                .is_none_or(|o| o.contains(&e.event_object.id))
            && self.sites.as_ref().is_none_or(|s| s.contains(&e.site.id))
            && self
                .exception
                .as_ref()
                .is_none_or(|x| x.contains(&e.security_action.exception))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventPage<'a> {
    data: Vec<&'a Event>,
    page_size: usize,
}

async fn list_access_events(State(sim): State<AppState>, RawQuery(query): RawQuery) -> ApiResult {
    let params = query_params(query.as_deref());
    let criteria = Criteria::from_filter(params.get("filter"), Timestamp::now())?;
    let page_size = page_size(&params)?;
    let older_than = match params.get("offset").map(|s| s.trim()) {
        None | Some("") | Some("0") => None,
        Some(v) => Some(parse_instant(v).ok_or_else(invalid_listing)?),
    };
    sim.read(|s| {
        let data: Vec<&Event> = s
            .events
            .iter()
            .rev()
            .filter(|e| older_than.is_none_or(|o| e.occurred < o))
            .filter(|e| criteria.matches(e))
            .take(page_size)
            .collect();
        Ok(ok_json(&EventPage { data, page_size }))
    })
}

async fn count_access_events(State(sim): State<AppState>, RawQuery(query): RawQuery) -> ApiResult {
    let params = query_params(query.as_deref());
    let criteria = Criteria::from_filter(params.get("filter"), Timestamp::now())?;
    let count = sim.read(|s| s.events.iter().filter(|e| criteria.matches(e)).count());
    Ok(ok_json(&json!({ "count": count })))
}

fn base_event(
    s: &SimState,
    ap: &AccessPoint,
    action: (u32, &str, bool),
    allowed: bool,
    actor: Option<Actor>,
    occurred: Timestamp,
) -> Event {
    let now = to_millis(Timestamp::now());
    let occurred = to_millis(occurred).min(now);
    let site_name = s.site_name(ap.site_id);
    Event {
        uuid: uuid_v4(),
        object_type: "ACCESS_POINT".into(),
        account_id: s.account.account_id,
        security_action: SecurityAction {
            security_action_id: action.0,
            action: action.1.into(),
            exception: action.2,
        },
        event_data: EventData {
            actor_name: actor.as_ref().map(|a| a.name.clone()),
            object_name: ap.name.clone(),
            object_group_name: site_name.clone(),
            action_allowed: allowed,
            object_type_id: 2,
            device_type_id: 1,
            user_group_name: None,
            credential_type: None,
            credential_object_id: None,
            credentials: Vec::new(),
        },
        actor,
        event_object: EventObject {
            id: ap.id,
            name: ap.name.clone(),
            device_type: DeviceType {
                id: 1,
                name: "Door".into(),
            },
        },
        site: EventSite {
            id: ap.site_id,
            site_name,
        },
        occurred,
        processed: now,
    }
}

/// An administrator's remote unlock: 5064 "Administrator Pulse Output". Brivo reports
/// `actionAllowed: false` even here (reference §14), and so does the emulator.
pub fn record_pulse(s: &mut SimState, ap: &AccessPoint) -> Event {
    let actor = Actor {
        id: s.account.admin_user_id,
        name: s.account.admin_name.clone(),
    };
    let event = base_event(
        s,
        ap,
        (5064, "Administrator Pulse Output", false),
        false,
        Some(actor),
        Timestamp::now(),
    );
    s.push_event(event)
}

/// A user presenting their credential at a door:
/// 2004 "Open" when the user exists, is not suspended and is in a group that opens the door;
/// otherwise 5017 (suspended), 5018 (no group opens the door) or 5012 (no such user). It is
/// judged on the account as it is now; `occurred` (at most now) lets tests place it in the past,
/// as an event that reaches Brivo late would be.
pub fn record_swipe(
    s: &mut SimState,
    user_id: u64,
    ap: &AccessPoint,
    occurred: Timestamp,
) -> Event {
    let Some(user) = s.users.get(&user_id).cloned() else {
        let mut event = base_event(
            s,
            ap,
            (5012, "Failed Access Unknown Cred", true),
            false,
            None,
            occurred,
        );
        event.event_data.credentials = vec![EventCredential {
            id: None,
            disabled: None,
            reference_id: Some(user_id.to_string()),
        }];
        return s.insert_event(event);
    };
    let granting_group = s
        .groups_of_user(user_id)
        .into_iter()
        .find(|g| s.group_doors.contains_key(&(*g, ap.id)));
    let action = if user.suspended {
        (5017, "Failed Access User Not Enabled", true)
    } else if granting_group.is_none() {
        (5018, "Failed Access Unauthorized Attempt", true)
    } else {
        (2004, "Open", false)
    };
    let actor = Actor {
        id: user.id,
        name: user.full_name(),
    };
    let mut event = base_event(s, ap, action, action.0 == 2004, Some(actor), occurred);
    if action.0 == 2004 {
        event.event_data.user_group_name =
            granting_group.and_then(|g| s.groups.get(&g).map(|g| g.name.clone()));
    }
    let credentials: Vec<u64> = s
        .credentials
        .values()
        .filter(|c| c.user_id == user_id && c.redeemed)
        .map(|c| c.id)
        .collect();
    if let Some(first) = credentials.first() {
        event.event_data.credential_object_id = Some(*first);
        event.event_data.credential_type = Some("Brivo Mobile Pass".into());
    }
    event.event_data.credentials = credentials
        .into_iter()
        .map(|id| EventCredential {
            id: Some(id),
            disabled: Some(false),
            reference_id: None,
        })
        .collect();
    s.insert_event(event)
}

/// Hands a new event to every matching event subscription, in the background.
pub fn dispatch(sim: &std::sync::Arc<Sim>, event: &Event) {
    subscriptions::deliver(sim, event);
}

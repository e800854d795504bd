//! Access events, paged by time, and event subscriptions (webhooks).
//!
//! `/events/access` does not page by index: it answers newest first, `offset` is an instant
//! ("the minimum occurred value of the last page read"), there is no `count`, and the
//! `occurred` bounds are truncated to the hour by the server and may then be at most 24 hours
//! apart. A window that ends "now" is therefore cut back to the top of the current hour, and a
//! window of a few seconds collapses to nothing. [`EventPager`] works with that rather than
//! against it: it walks any span backwards in whole-hour windows whose upper bound is the top of
//! the hour *after* the span's end (so the current hour is read while it is still open), moves
//! the offset to the oldest event of each page, filters the span exactly on this side and drops
//! events it has already returned (windows overlap by an hour). [`EventPoller`] reads the same
//! way from a starting instant on, keeps the current hour open and reads it again on every poll,
//! and hands out each event once.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::client::{BrivoClient, Call};
use crate::error::BrivoError;
use crate::filter::Filter;
use crate::model::{AccessEvent, EventSubscription, NewEventSubscription};
use crate::paging::{MAX_PAGE_SIZE, Page, Pager};

const ACCESS_EVENTS: &str = "GET /events/access";
const LIST_SUBSCRIPTIONS: &str = "GET /event-subscriptions";
const CREATE_SUBSCRIPTION: &str = "POST /event-subscriptions";
const GET_SUBSCRIPTION: &str = "GET /event-subscriptions/{id}";
const UPDATE_SUBSCRIPTION: &str = "PUT /event-subscriptions/{id}";
const DELETE_SUBSCRIPTION: &str = "DELETE /event-subscriptions/{id}";

const HOUR: SignedDuration = SignedDuration::from_hours(1);
/// Hours a window covers. Its lower bound is sent a second before the window's first hour (see
/// [`window_bounds`]), which the server truncates to the hour before: 23 + 1 = 24 hours, the
/// most one query may span.
const WINDOW: SignedDuration = SignedDuration::from_hours(23);
/// How long after the top of an hour the poller still reads the hour before, for events that
/// reach Brivo a little after they occurred.
const DEFAULT_LATE_ARRIVALS: Duration = Duration::from_secs(300);

/// The start of the UTC hour holding `at` (Brivo truncates `occurred` bounds the same way).
pub(crate) fn hour_floor(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second().div_euclid(3600) * 3600).unwrap_or(at)
}

/// The `occurred__gt` and `occurred__lt` values that read the whole hours `[start, end)`, both
/// whole hours, whichever way the server compares at the edges: the lower bound is a second
/// early, so that it truncates to the hour before and an event at the very top of `start` is
/// inside even if `gt` is strict; the upper bound is `end` itself, already a whole hour. Both are
/// whole seconds, as the documentation writes them.
pub(crate) fn window_bounds(start: Timestamp, end: Timestamp) -> (Timestamp, Timestamp) {
    let second = SignedDuration::from_secs(1);
    (start.checked_sub(second).unwrap_or(start), end)
}

/// Which access events to read: those that occurred in `[from, to]`, optionally of one site or
/// one object (door). The ends are inclusive. A span that reaches into the current hour is
/// read to its end, the current hour included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub from: Timestamp,
    pub to: Timestamp,
    pub site_id: Option<u64>,
    pub object_id: Option<u64>,
}

impl EventQuery {
    pub fn between(from: Timestamp, to: Timestamp) -> Self {
        EventQuery {
            from,
            to,
            site_id: None,
            object_id: None,
        }
    }

    /// Only events of this site (Brivo does not combine this with `object`).
    pub fn site(mut self, site_id: u64) -> Self {
        self.site_id = Some(site_id);
        self
    }

    /// Only events of this access point or other object.
    pub fn object(mut self, object_id: u64) -> Self {
        self.object_id = Some(object_id);
        self
    }

    fn covers(&self, event: &AccessEvent) -> bool {
        event
            .occurred
            .is_none_or(|at| self.from <= at && at <= self.to)
    }
}

/// Reads access events newest first, a page at a time.
#[derive(Debug)]
pub struct EventPager {
    client: BrivoClient,
    query: EventQuery,
    page_size: u64,
    /// The first whole hour of the span.
    first_hour: Timestamp,
    /// End (exclusive, a whole hour) of the window being read; windows step backwards.
    window_end: Timestamp,
    /// The oldest `occurred` of the last page of this window, sent as the next `offset`.
    offset: Option<Timestamp>,
    /// Events already returned, with when they occurred, for as long as a later window can
    /// list them again.
    seen: HashMap<String, Option<Timestamp>>,
    done: bool,
}

impl EventPager {
    fn new(client: &BrivoClient, query: EventQuery) -> Self {
        let first_hour = hour_floor(query.from);
        // The hour holding `to` is read whole: its top is where Brivo would cut "now" back to.
        let window_end = hour_floor(query.to).checked_add(HOUR).unwrap_or(query.to);
        EventPager {
            client: client.clone(),
            first_hour,
            window_end,
            done: query.from > query.to,
            query,
            page_size: MAX_PAGE_SIZE,
            offset: None,
            seen: HashMap::new(),
        }
    }

    pub fn page_size(mut self, size: u64) -> Self {
        self.page_size = size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    fn window_start(&self) -> Timestamp {
        self.window_end
            .checked_sub(WINDOW)
            .unwrap_or(self.first_hour)
            .max(self.first_hour)
    }

    /// Moves to the window before this one, or ends the walk after the first hour's window.
    fn next_window(&mut self, start: Timestamp) {
        if start <= self.first_hour {
            self.done = true;
            self.seen.clear();
        } else {
            self.window_end = start;
            // Only events of the hour before `start` can be listed again by the next window.
            self.seen.retain(|_, at| at.is_none_or(|at| at < start));
        }
        self.offset = None;
    }

    /// The next events (never an empty page), or `None` once the span is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Vec<AccessEvent>>, BrivoError> {
        while !self.done {
            let start = self.window_start();
            let (after, before) = window_bounds(start, self.window_end);
            let mut filter = Filter::new().gt("occurred", after).lt("occurred", before);
            if let Some(site) = self.query.site_id {
                filter = filter.eq("site", [site]);
            }
            if let Some(object) = self.query.object_id {
                filter = filter.eq("object", [object]);
            }
            let mut query = vec![
                ("pageSize", self.page_size.to_string()),
                ("filter", filter.to_string()),
            ];
            if let Some(offset) = self.offset {
                query.push(("offset", offset.to_string()));
            }
            let page: Page<AccessEvent> = self
                .client
                .json(&Call::get(ACCESS_EVENTS, "/events/access".into()).query(query))
                .await?;

            let served = page.page_size.filter(|&n| n > 0).unwrap_or(self.page_size);
            let full = page.data.len() as u64 >= served.min(self.page_size);
            let oldest = page.data.iter().filter_map(|e| e.occurred).min();
            let mut fresh = Vec::new();
            for event in page.data {
                if self.query.covers(&event) && !self.seen.contains_key(&event.uuid) {
                    self.seen.insert(event.uuid.clone(), event.occurred);
                    fresh.push(event);
                }
            }
            match oldest {
                // More of this window is older than this page, and the page reached no further
                // back than the window's first hour: go on from its oldest event.
                Some(oldest) if full && oldest >= start && Some(oldest) != self.offset => {
                    self.offset = Some(oldest)
                }
                _ => {
                    if full && oldest.is_some_and(|o| o >= start) {
                        // A full page that did not move the offset: more events share one
                        // instant than fit a page. Nothing can page past them; go on.
                        tracing::warn!(offset = ?self.offset, "access events stuck at one instant; skipping ahead");
                    }
                    self.next_window(start);
                }
            }
            if !fresh.is_empty() {
                return Ok(Some(fresh));
            }
        }
        Ok(None)
    }

    /// Every remaining event, newest first.
    pub async fn all(mut self) -> Result<Vec<AccessEvent>, BrivoError> {
        let mut events = Vec::new();
        while let Some(page) = self.next_page().await? {
            events.extend(page);
        }
        Ok(events)
    }
}

/// Polls for new access events: each [`EventPoller::poll`] reads from the oldest hour still
/// open to the end of the current hour and returns, oldest first, the events it has not
/// returned before. The current hour stays open until the next hour has begun (and, for
/// events that reach Brivo late, a few minutes more), so an event is never lost because its
/// hour was read before it arrived; repeats are dropped by event id.
#[derive(Debug)]
pub struct EventPoller {
    client: BrivoClient,
    site_id: Option<u64>,
    object_id: Option<u64>,
    page_size: u64,
    late_arrivals: SignedDuration,
    /// Every poll reads from here: the start of the oldest hour still open.
    open_from: Timestamp,
    /// Events returned that lie in the open hours.
    seen: HashMap<String, Option<Timestamp>>,
}

impl EventPoller {
    fn new(client: &BrivoClient, since: Timestamp) -> Self {
        EventPoller {
            client: client.clone(),
            site_id: None,
            object_id: None,
            page_size: MAX_PAGE_SIZE,
            late_arrivals: SignedDuration::try_from(DEFAULT_LATE_ARRIVALS)
                .unwrap_or(SignedDuration::ZERO),
            open_from: since,
            seen: HashMap::new(),
        }
    }

    /// Only events of this site.
    pub fn site(mut self, site_id: u64) -> Self {
        self.site_id = Some(site_id);
        self
    }

    /// Only events of this access point or other object.
    pub fn object(mut self, object_id: u64) -> Self {
        self.object_id = Some(object_id);
        self
    }

    pub fn page_size(mut self, size: u64) -> Self {
        self.page_size = size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// How long after an hour has ended it is still read again (default 5 minutes).
    pub fn late_arrivals(mut self, grace: Duration) -> Self {
        self.late_arrivals = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
        self
    }

    /// Where the next poll starts reading (persist it to resume after a restart; events of
    /// its hour returned before the restart will be returned again).
    pub fn open_from(&self) -> Timestamp {
        self.open_from
    }

    /// The events that occurred since the last poll (or since the start), oldest first. A
    /// failed poll changes nothing: the next one reads the same hours again.
    pub async fn poll(&mut self) -> Result<Vec<AccessEvent>, BrivoError> {
        let now = Timestamp::now();
        // To the end of the current hour, so that an event the server stamped a little ahead
        // of this clock is not dropped.
        let end = hour_floor(now)
            .checked_add(HOUR)
            .and_then(|t| t.checked_sub(SignedDuration::from_nanos(1)))
            .unwrap_or(now);
        let mut query = EventQuery::between(self.open_from, end);
        query.site_id = self.site_id;
        query.object_id = self.object_id;
        let events = EventPager::new(&self.client, query)
            .page_size(self.page_size)
            .all()
            .await?;
        let mut fresh: Vec<AccessEvent> = events
            .into_iter()
            .filter(|e| !self.seen.contains_key(&e.uuid))
            .collect();
        fresh.reverse();
        for event in &fresh {
            self.seen.insert(event.uuid.clone(), event.occurred);
        }
        let still_open = hour_floor(now.checked_sub(self.late_arrivals).unwrap_or(now));
        self.open_from = self.open_from.max(still_open);
        let open_from = self.open_from;
        self.seen
            .retain(|_, at| at.is_some_and(|at| at >= open_from));
        Ok(fresh)
    }
}

impl BrivoClient {
    /// Every access event of `query`, newest first.
    pub async fn access_events(&self, query: &EventQuery) -> Result<Vec<AccessEvent>, BrivoError> {
        self.access_event_pages(query.clone()).all().await
    }

    /// Access events of `query` a page at a time, newest first.
    pub fn access_event_pages(&self, query: EventQuery) -> EventPager {
        EventPager::new(self, query)
    }

    /// A poller for access events from `since` on; see [`EventPoller`].
    pub fn access_event_poller(&self, since: Timestamp) -> EventPoller {
        EventPoller::new(self, since)
    }

    /// The access events of the last `span` before now, the current hour included.
    pub async fn recent_access_events(
        &self,
        span: Duration,
    ) -> Result<Vec<AccessEvent>, BrivoError> {
        let to = Timestamp::now();
        let span = SignedDuration::try_from(span).unwrap_or(SignedDuration::MAX);
        let from = to.checked_sub(span).unwrap_or(Timestamp::MIN);
        self.access_events(&EventQuery::between(from, to)).await
    }

    pub async fn list_event_subscriptions(&self) -> Result<Vec<EventSubscription>, BrivoError> {
        Pager::new(
            self,
            LIST_SUBSCRIPTIONS,
            "/event-subscriptions".into(),
            None,
        )
        .all()
        .await
    }

    /// Creates a subscription. Not repeated after an unknown outcome (list the subscriptions
    /// by name to find out).
    pub async fn create_event_subscription(
        &self,
        subscription: &NewEventSubscription,
    ) -> Result<EventSubscription, BrivoError> {
        let call =
            Call::post(CREATE_SUBSCRIPTION, "/event-subscriptions".into()).json(subscription)?;
        self.json(&call).await
    }

    pub async fn get_event_subscription(&self, id: u64) -> Result<EventSubscription, BrivoError> {
        self.json(&Call::get(
            GET_SUBSCRIPTION,
            format!("/event-subscriptions/{id}"),
        ))
        .await
    }

    pub async fn update_event_subscription(
        &self,
        id: u64,
        subscription: &NewEventSubscription,
    ) -> Result<EventSubscription, BrivoError> {
        let call = Call::put(UPDATE_SUBSCRIPTION, format!("/event-subscriptions/{id}"))
            .json(subscription)?;
        self.json(&call).await
    }

    pub async fn delete_event_subscription(&self, id: u64) -> Result<(), BrivoError> {
        self.no_content(&Call::delete(
            DELETE_SUBSCRIPTION,
            format!("/event-subscriptions/{id}"),
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn query_ends_are_inclusive() {
        let q = EventQuery::between(at("2024-01-01T00:00:00Z"), at("2024-01-02T00:00:00Z"));
        let event = |occurred: &str| AccessEvent {
            uuid: "u".into(),
            occurred: Some(at(occurred)),
            ..AccessEvent::default()
        };
        assert!(q.covers(&event("2024-01-01T00:00:00Z")));
        assert!(q.covers(&event("2024-01-02T00:00:00Z")));
        assert!(!q.covers(&event("2024-01-02T00:00:00.001Z")));
        assert!(!q.covers(&event("2023-12-31T23:59:59Z")));
        assert!(q.covers(&AccessEvent::default()));
    }

    #[test]
    fn hours_are_floored_in_utc() {
        assert_eq!(
            hour_floor(at("2024-03-10T10:59:59.999Z")),
            at("2024-03-10T10:00:00Z")
        );
        assert_eq!(
            hour_floor(at("2024-03-10T10:00:00Z")),
            at("2024-03-10T10:00:00Z")
        );
        assert_eq!(
            hour_floor(at("1969-12-31T23:30:00Z")),
            at("1969-12-31T23:00:00Z")
        );
    }

    /// What Brivo does with the bounds: truncate both to the hour.
    fn served(bounds: (Timestamp, Timestamp)) -> (Timestamp, Timestamp) {
        (hour_floor(bounds.0), hour_floor(bounds.1))
    }

    #[test]
    fn windows_are_whole_hours_within_a_day_and_cover_the_span() {
        let client = BrivoClient::new(crate::ClientConfig::us(
            "k",
            "c",
            "s",
            crate::Grant::RefreshToken("r".into()),
        ))
        .unwrap();
        let from = at("2024-03-08T07:42:10.5Z");
        let to = at("2024-03-10T10:00:03Z");
        let mut pager = EventPager::new(&client, EventQuery::between(from, to));
        let mut windows = Vec::new();
        while !pager.done {
            let start = pager.window_start();
            windows.push(window_bounds(start, pager.window_end));
            pager.next_window(start);
        }
        // The first window ends at the top of the hour after `to`: the hour of `to` is read.
        assert_eq!(windows[0].1, at("2024-03-10T11:00:00Z"));
        for (i, &bounds) in windows.iter().enumerate() {
            let (gt, lt) = served(bounds);
            assert!(lt > gt);
            assert!(
                lt.duration_since(gt) <= SignedDuration::from_hours(24),
                "{i}: {bounds:?}"
            );
            // Sent as whole seconds, the way the documentation writes them.
            assert_eq!(bounds.0.subsec_nanosecond(), 0);
            assert_eq!(bounds.1.subsec_nanosecond(), 0);
            assert!(!bounds.0.to_string().contains('.'));
            if let Some(&older) = windows.get(i + 1) {
                // Each window reaches an hour below the next one's top: no gap, one hour shared.
                assert_eq!(gt, older.1 - HOUR);
            }
        }
        let (oldest_gt, _) = served(*windows.last().unwrap());
        assert!(oldest_gt < from);
        assert_eq!(windows.len(), 3);
    }

    #[test]
    fn a_span_of_seconds_is_read_as_its_whole_hour() {
        let client = BrivoClient::new(crate::ClientConfig::us(
            "k",
            "c",
            "s",
            crate::Grant::RefreshToken("r".into()),
        ))
        .unwrap();
        let from = at("2024-03-10T10:41:00Z");
        let pager = EventPager::new(
            &client,
            EventQuery::between(from, from + SignedDuration::from_secs(5)),
        );
        let (gt, lt) = window_bounds(pager.window_start(), pager.window_end);
        assert_eq!(gt.to_string(), "2024-03-10T09:59:59Z");
        assert_eq!(lt.to_string(), "2024-03-10T11:00:00Z");
        assert_eq!(
            served((gt, lt)),
            (at("2024-03-10T09:00:00Z"), at("2024-03-10T11:00:00Z"))
        );
    }
}

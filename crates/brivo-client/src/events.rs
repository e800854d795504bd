//! Access events, paged by time, and event subscriptions (webhooks).
//!
//! `/events/access` does not page by index: it answers newest first, `offset` is an instant
//! ("the minimum occurred value of the last page read"), there is no `count`, and one query
//! may span at most 24 hours. [`EventPager`] hides all of that: it walks any span backwards in
//! windows of less than a day, moves the offset to the oldest event of each page, and drops
//! the events it has already returned (the boundary instant can appear on two pages).

use std::collections::HashSet;
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

/// One query may span at most 24 h; 23 h leaves room for the widened edges and for servers
/// that round filter times to the hour.
const WINDOW: SignedDuration = SignedDuration::from_hours(23);
/// Filters are exclusive (`gt`/`lt`) and may be rounded: ask a little wider, filter exactly here.
const EDGE: SignedDuration = SignedDuration::from_secs(1);

/// Which access events to read: those that occurred in `[from, to]`, optionally of one site or
/// one object (door). The ends are inclusive; de-duplicate by `uuid` when querying
/// overlapping spans (e.g. polling from the last event seen).
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
    /// End of the window being read; windows step backwards from `query.to`.
    window_end: Timestamp,
    /// The oldest `occurred` of the last page of this window, sent as the next `offset`.
    offset: Option<Timestamp>,
    seen: HashSet<String>,
    done: bool,
}

impl EventPager {
    fn new(client: &BrivoClient, query: EventQuery) -> Self {
        EventPager {
            client: client.clone(),
            window_end: query.to,
            done: query.from > query.to,
            query,
            page_size: MAX_PAGE_SIZE,
            offset: None,
            seen: HashSet::new(),
        }
    }

    pub fn page_size(mut self, size: u64) -> Self {
        self.page_size = size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    fn window_start(&self) -> Timestamp {
        self.window_end
            .checked_sub(WINDOW)
            .unwrap_or(self.query.from)
            .max(self.query.from)
    }

    /// The next events (never an empty page), or `None` once the span is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Vec<AccessEvent>>, BrivoError> {
        while !self.done {
            let start = self.window_start();
            let mut filter = Filter::new()
                .gt("occurred", start.checked_sub(EDGE).unwrap_or(start))
                .lt(
                    "occurred",
                    self.window_end.checked_add(EDGE).unwrap_or(self.window_end),
                );
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
                if self.query.covers(&event) && self.seen.insert(event.uuid.clone()) {
                    fresh.push(event);
                }
            }
            match oldest {
                Some(oldest) if full && Some(oldest) != self.offset => self.offset = Some(oldest),
                _ => {
                    if full {
                        // A full page that did not move the offset: more events share one
                        // instant than fit a page. Nothing can page past them; go on.
                        tracing::warn!(offset = ?self.offset, "access events stuck at one instant; skipping ahead");
                    }
                    // This window is done; step back to the previous one.
                    if start <= self.query.from {
                        self.done = true;
                    }
                    self.window_end = start;
                    self.offset = None;
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

impl BrivoClient {
    /// Every access event of `query`, newest first.
    pub async fn access_events(&self, query: &EventQuery) -> Result<Vec<AccessEvent>, BrivoError> {
        self.access_event_pages(query.clone()).all().await
    }

    /// Access events of `query` a page at a time, newest first.
    pub fn access_event_pages(&self, query: EventQuery) -> EventPager {
        EventPager::new(self, query)
    }

    /// The access events of the last `span` before now (a convenience for polling).
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
}

//! Door events in, presence out: each connection's access events are read from the provider
//! (the fallback to the webhook, and what fills the gap after downtime) and kept once by event
//! id; each kept event is then processed once, in order, into a check-in, a check-out, a failed
//! check-in, or a door event only. Check-ins still open at local midnight close there.

use crate::member::UNLOCK_MATCH;
use crate::*;
use doorsync_core::presence::{CheckInContext, Covered, check_in};
use doorsync_core::{Connection, Door, Id, Location, PresenceRole};
use doorsync_store::{Checkin, FailedCheckin, NewDoorEvent, PresenceWrite, StoreError};
use jiff::tz::TimeZone;
use std::collections::BTreeMap;

/// On the first read of a connection, how far back to look.
const FIRST_READ: SignedDuration = SignedDuration::from_hours(1);
/// Each read goes back this far before the last one, for events that reach the provider late;
/// they are kept once by id, so reading one twice is harmless.
const LATE_ARRIVALS: SignedDuration = SignedDuration::from_mins(5);
/// Events processed per round.
const ROUND: u32 = 500;

/// A provider's event as the store keeps it.
pub fn door_event(e: crate::provider::RemoteEvent) -> NewDoorEvent {
    NewDoorEvent {
        event_id: e.id,
        occurred_at: e.occurred,
        provider_door_id: e.door_id,
        door_name: e.door_name,
        provider_user_id: e.user_id,
        granted: e.granted,
        action: e.action,
        remote_unlock: e.remote_unlock,
    }
}

/// The hash a webhook secret is kept and found by (the secret itself is only in the URL).
pub fn hook_hash(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn local_date(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned_datetime(tz.clone()).date().to_string()
}

/// The instant the local day after `date` begins at.
fn midnight_after(date: &str, tz: &TimeZone) -> Option<Timestamp> {
    let d: jiff::civil::Date = date.parse().ok()?;
    let next = d.tomorrow().ok()?;
    next.to_zoned_datetime(tz.clone())
        .ok()
        .map(|z| z.timestamp())
}

impl Engine {
    /// One round of presence work, on its own task beside the housekeeping so that a slow or
    /// failing event read never delays the resumption of a paused connection: subscribe the
    /// webhook, read each usable connection's events when due, process what is kept.
    pub async fn presence_round(&self) {
        let store = &self.reconciler.store;
        let now = self.reconciler.clock.now();
        let Ok(connections) = store.list(Kind::Connection, None, 500).await else {
            return;
        };
        for record in connections {
            let Some(connection) = crate::drift::enabled(&record) else {
                continue;
            };
            let paused = store
                .connection_state(connection.id.as_str())
                .await
                .ok()
                .and_then(|s| s.paused_until)
                .is_some_and(|u| u > now);
            if paused {
                continue;
            }
            self.subscribe_if_needed(connection, now).await;
            self.events_if_due(connection, now).await;
        }
        if let Some(Err(e)) = self
            .with_work_lease("presence", self.process_door_events())
            .await
        {
            tracing::warn!(error = %e, "processing door events failed");
        }
        // The outboxes are looked at (a read) every second; the lease that makes their delivery
        // one instance's job is taken only when something is due.
        if self.config.mail.is_some()
            && store.due_mail(now, 1).await.is_ok_and(|d| !d.is_empty())
            && let Some(Err(e)) = self.with_work_lease("mail", self.deliver_mail()).await
        {
            tracing::warn!(error = %e, "delivering mail failed");
        }
        if self.config.alerts.webhook.is_some()
            && store.due_hooks(now, 1).await.is_ok_and(|d| !d.is_empty())
            && let Some(Err(e)) = self.with_work_lease("hooks", self.deliver_hooks()).await
        {
            tracing::warn!(error = %e, "delivering alert webhooks failed");
        }
    }

    /// Subscribes the webhook to the connection's events when the service has a public address
    /// and the connection no subscription to it yet (a changed address replaces the old one).
    pub(crate) async fn subscribe_if_needed(&self, connection: &Connection, now: Timestamp) {
        let Some(base) = self.config.public_url.as_deref() else {
            return;
        };
        let base = base.trim_end_matches('/');
        let store = &self.reconciler.store;
        let c = connection.id.as_str();
        let existing = match store.event_subscription(c).await {
            Ok(e) => e,
            Err(_) => return,
        };
        if existing.as_ref().is_some_and(|(url, _)| url == base) {
            return;
        }
        let work = async {
            let provider = self
                .reconciler
                .providers
                .provider(connection)
                .map_err(reconcile::on(c))?;
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| {
                reconcile::on(c)(crate::provider::ProviderError::new(
                    crate::provider::ErrorKind::Rejected,
                    format!("no randomness: {e}"),
                ))
            })?;
            let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            let url = format!("{base}/hooks/brivo/{secret}");
            let id = provider
                .subscribe_events(&format!("doorsync {c}"), &url)
                .await
                .map_err(reconcile::on(c))?;
            store
                .save_event_subscription(c, &hook_hash(&secret), base, &id, now)
                .await?;
            if let Some((_, old)) = &existing
                && let Err(e) = provider.unsubscribe_events(old).await
            {
                tracing::warn!(connection = c, error = %e, "ending the old event subscription failed");
            }
            tracing::info!(connection = c, subscription = %id, "door events subscribed");
            Ok::<_, ReconcileError>(())
        };
        if let Some(Err(e)) = self
            .with_work_lease(&format!("subscription:{c}"), work)
            .await
        {
            tracing::warn!(connection = c, error = %e, "subscribing to door events failed");
        }
    }

    /// Reads a connection's new access events when its poll interval has passed.
    pub(crate) async fn events_if_due(&self, connection: &Connection, now: Timestamp) {
        let store = &self.reconciler.store;
        let c = connection.id.as_str();
        let cursor = store.event_cursor(c).await.ok().flatten();
        if cursor.is_some_and(|t| {
            now.duration_since(t).as_secs_f64() < self.config.event_poll_interval.as_secs_f64()
        }) {
            return;
        }
        if !self.needs_events(c, now).await {
            // Nothing before now will be wanted: moving the cursor keeps the next look one poll
            // interval away, and a later read starts here rather than at a stale point.
            let _ = store.set_event_cursor(c, now).await;
            return;
        }
        let read = self
            .with_work_lease(&format!("events:{c}"), self.read_events(connection, now))
            .await;
        if let Some(Err(e)) = read {
            tracing::warn!(connection = c, error = %e, "reading door events failed");
            self.note_provider_error(c, &e, now).await;
        }
    }

    /// Whether anything would use the connection's events: a door of one of its locations with
    /// a presence role, or a remote unlock still waiting for its event. Reading them otherwise
    /// spends the provider's call budget on events nobody processes into anything.
    async fn needs_events(&self, connection: &str, now: Timestamp) -> bool {
        let store = &self.reconciler.store;
        let since = now
            .saturating_sub(UNLOCK_MATCH)
            .and_then(|t| t.saturating_sub(LATE_ARRIVALS))
            .unwrap_or(now);
        if store
            .remote_unlock_unclaimed(connection, since)
            .await
            .unwrap_or(true)
        {
            return true;
        }
        let (Ok(locations), Ok(doors)) = (
            store.list_all(Kind::Location).await,
            store.list_all(Kind::Door).await,
        ) else {
            return true;
        };
        let here: std::collections::BTreeSet<String> = locations
            .into_iter()
            .filter_map(|r| match r {
                Record::Location(l)
                    if l.connection_id
                        .as_ref()
                        .is_some_and(|x| x.as_str() == connection) =>
                {
                    Some(l.id.to_string())
                }
                _ => None,
            })
            .collect();
        doors.into_iter().any(|r| {
            matches!(r, Record::Door(d) if d.presence_role != PresenceRole::None
                && here.contains(d.location_id.as_str()))
        })
    }

    /// Reads the events that occurred since the last read (from an hour ago on the first).
    pub async fn read_events(
        &self,
        connection: &Connection,
        now: Timestamp,
    ) -> Result<u64, ReconcileError> {
        let r = &self.reconciler;
        let c = connection.id.as_str();
        let from = match r.store.event_cursor(c).await? {
            Some(t) => t.saturating_sub(LATE_ARRIVALS).unwrap_or(t),
            None => now.saturating_sub(FIRST_READ).unwrap_or(now),
        };
        let provider = r.providers.provider(connection).map_err(reconcile::on(c))?;
        let events = provider
            .access_events(from, now)
            .await
            .map_err(reconcile::on(c))?;
        let events: Vec<NewDoorEvent> = events.into_iter().map(door_event).collect();
        let added = r.store.save_door_events(c, &events, now).await?;
        r.store.set_event_cursor(c, now).await?;
        Ok(added)
    }

    /// Processes the kept events not processed yet, oldest first, and closes the check-ins
    /// left open at an earlier local midnight.
    pub async fn process_door_events(&self) -> Result<usize, StoreError> {
        let store = &self.reconciler.store;
        let now = self.reconciler.clock.now();
        // Nothing is read beyond two small queries while nobody is left open from an earlier
        // day and no event waits: this runs every second. No location's day begins later than
        // UTC+14's, so that date bounds every check-in still open from before its own today.
        let latest_today = local_date(now, &TimeZone::fixed(jiff::tz::offset(14)));
        let stale = store.open_checkins_before(&latest_today).await?;
        let pending = store.pending_door_events(ROUND).await?;
        if stale.is_empty() && pending.is_empty() {
            return Ok(0);
        }
        let locations: BTreeMap<String, Location> = store
            .list_all(Kind::Location)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Record::Location(l) => Some((l.id.to_string(), l)),
                _ => None,
            })
            .collect();
        for open in stale {
            let Some(l) = locations.get(&open.location_id) else {
                continue;
            };
            let tz = l.timezone.tz();
            if open.local_date < local_date(now, &tz)
                && let Some(at) = midnight_after(&open.local_date, &tz)
            {
                store.close_checkin(&open.id, at).await?;
            }
        }
        if pending.is_empty() {
            return Ok(0);
        }
        // Doors by (connection, provider door id), with their location.
        let mut doors: BTreeMap<(String, String), (Door, Location)> = BTreeMap::new();
        for r in store.list_all(Kind::Door).await? {
            if let Record::Door(d) = r
                && let Some(l) = locations.get(d.location_id.as_str())
                && let (Some(c), Some(p)) = (&l.connection_id, &d.provider_door_id)
            {
                doors.insert((c.to_string(), p.clone()), (d, l.clone()));
            }
        }
        let count = pending.len();
        for e in pending {
            let door = e
                .event
                .provider_door_id
                .as_ref()
                .and_then(|p| doors.get(&(e.connection_id.clone(), p.clone())));
            let subject = self.actor_of(&e).await?;
            // A remote unlock doorsync made for a member lets them through as their own
            // credential would; any other (an administrator's own) opens the door for nobody.
            let unlocked_for = e.event.remote_unlock && subject.is_some();
            let granted = e.event.granted || unlocked_for;
            let customer = match &subject {
                Some(Subject::Customer(id)) => Some(id.clone()),
                _ => None,
            };
            let key = subject.as_ref().map(Subject::key);
            let (location, outcome, write) = match door {
                None => (None, "none", PresenceWrite::Nothing),
                Some((_, l)) if e.event.remote_unlock && !unlocked_for => {
                    (Some(l), "none", PresenceWrite::Nothing)
                }
                Some((_, l)) if !granted => (Some(l), "denied", PresenceWrite::Nothing),
                Some((d, l)) => match d.presence_role {
                    PresenceRole::None => (Some(l), "none", PresenceWrite::Nothing),
                    PresenceRole::CheckOut => match &customer {
                        Some(id) => (
                            Some(l),
                            "check_out",
                            PresenceWrite::CheckOut {
                                customer_id: id.to_string(),
                                location_id: l.id.to_string(),
                                at: e.event.occurred_at,
                            },
                        ),
                        None => (Some(l), "none", PresenceWrite::Nothing),
                    },
                    PresenceRole::CheckIn => {
                        let (outcome, write) =
                            self.decide_check_in(&e.event, customer.as_ref(), l).await?;
                        (Some(l), outcome, write)
                    }
                },
            };
            store
                .record_presence(
                    &e.event.event_id,
                    key.as_deref(),
                    location.map(|l| l.id.as_str()),
                    outcome,
                    &write,
                    now,
                )
                .await?;
        }
        Ok(count)
    }

    /// Whose event it is: the user whose credential it was, or for a remote unlock, the
    /// member doorsync made it for (matched once, within [`UNLOCK_MATCH`] of the unlock).
    async fn actor_of(&self, e: &doorsync_store::DoorEvent) -> Result<Option<Subject>, StoreError> {
        let store = &self.reconciler.store;
        if e.event.remote_unlock {
            let Some(door) = &e.event.provider_door_id else {
                return Ok(None);
            };
            let at = e.event.occurred_at;
            let from = at.saturating_sub(UNLOCK_MATCH).unwrap_or(at);
            let until = at.saturating_add(UNLOCK_MATCH).unwrap_or(at);
            let claimed = store
                .claim_remote_unlock(&e.connection_id, door, &e.event.event_id, from, until)
                .await?;
            return Ok(claimed
                .and_then(|c| Id::parse(&c).ok())
                .map(Subject::Customer));
        }
        match &e.event.provider_user_id {
            Some(u) => store.mirror_subject_of_user(&e.connection_id, u).await,
            None => Ok(None),
        }
    }

    async fn decide_check_in(
        &self,
        e: &NewDoorEvent,
        customer: Option<&Id>,
        location: &Location,
    ) -> Result<(&'static str, PresenceWrite), StoreError> {
        let store = &self.reconciler.store;
        let at = e.occurred_at;
        let date = local_date(at, &location.timezone.tz());
        let inputs = match customer {
            Some(id) => store.customer_inputs(id, at).await?,
            None => None,
        };
        let day = match customer {
            Some(id) => {
                store
                    .presence_day(id.as_str(), location.id.as_str(), &date, at)
                    .await?
            }
            None => Default::default(),
        };
        let days_used: BTreeMap<Id, u32> = day
            .days_used
            .iter()
            .filter_map(|(g, n)| Id::parse(g).ok().map(|g| (g, *n)))
            .collect();
        let decided = check_in(
            at,
            &CheckInContext {
                location,
                inputs: inputs.as_ref(),
                days_used: &days_used,
                covered_today: day.covered_today,
            },
        );
        Ok(match decided {
            Ok(covered) => {
                let (kind, id, pass_day) = match covered {
                    Covered::Booking { booking_id } => ("booking", Some(booking_id), None),
                    Covered::Contract { contract_id } => ("contract", Some(contract_id), None),
                    Covered::Pass { pass_grant_id } => ("pass", Some(pass_grant_id), None),
                    Covered::PassDay { pass_grant_id } => (
                        "pass_day",
                        Some(pass_grant_id.clone()),
                        Some(pass_grant_id.to_string()),
                    ),
                    Covered::SameDay => ("same_day", None, None),
                };
                (
                    "check_in",
                    PresenceWrite::CheckIn {
                        checkin: Checkin {
                            id: e.event_id.clone(),
                            customer_id: customer.map(Id::to_string).unwrap_or_default(),
                            location_id: location.id.to_string(),
                            local_date: date,
                            checked_in_at: at,
                            checked_out_at: None,
                            covered_kind: kind.into(),
                            covered_id: id.map(|i| i.to_string()),
                        },
                        pass_day,
                    },
                )
            }
            Err(reason) => (
                "failed_check_in",
                PresenceWrite::Failed(FailedCheckin {
                    id: e.event_id.clone(),
                    customer_id: customer.map(Id::to_string),
                    provider_user_id: e.provider_user_id.clone(),
                    location_id: location.id.to_string(),
                    at,
                    reason: reason.as_str().into(),
                }),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_check_ins_close_at_the_local_midnight() {
        let tz = TimeZone::get("Europe/London").unwrap();
        // 1 July in London begins at 23:00 UTC on 30 June (summer time).
        assert_eq!(
            midnight_after("2026-06-30", &tz),
            Some("2026-06-30T23:00:00Z".parse().unwrap())
        );
        assert_eq!(
            local_date("2026-06-30T23:30:00Z".parse().unwrap(), &tz),
            "2026-07-01"
        );
    }
}

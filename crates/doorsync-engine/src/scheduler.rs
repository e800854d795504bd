//! The scheduler: claim due subjects as workers free up, reconcile each under a renewed lease,
//! and apply the error policy (a subject backs off; a provider that is down pauses its connection).

use crate::reconcile::{self, ReconcileError};
use crate::*;
use doorsync_store::{Fence, Lane, Outcome};

impl Engine {
    /// Runs the scheduler and the housekeeping until `stop` turns true, then lets the running
    /// reconciles finish.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let house = {
            let me = self.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    me.housekeeping().await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => break,
                    }
                }
            })
        };
        let presence = {
            let me = self.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    me.presence_round().await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => break,
                    }
                }
            })
        };
        let mut running = tokio::task::JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            while running.try_join_next().is_some() {}
            self.start_revocation(&mut running).await;
            let (_, full) = self.start_due(&mut running).await;
            // With every worker busy there may be more due: wake when one frees, or when a
            // revocation falls due while its lane is free.
            let sleep = if full {
                self.revocation_sleep().await
            } else {
                Some(self.sleep_for().await)
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => {}
                _ = self.wake.notified() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = stop.changed() => {}
            }
        }
        while running.join_next().await.is_some() {}
        let _ = house.await;
        let _ = presence.await;
    }

    /// Until the next revocation falls due, if its lane is free (`None`: it is busy, and its
    /// end wakes the scheduler).
    async fn revocation_sleep(&self) -> Option<Duration> {
        if self.revocation_lane.available_permits() == 0 {
            return None;
        }
        let now = self.reconciler.clock.now();
        Some(
            match self.reconciler.store.next_due_in(Lane::Revocations).await {
                Ok(Some(next)) => next
                    .duration_since(now)
                    .try_into()
                    .unwrap_or(Duration::ZERO)
                    .min(self.config.idle_poll),
                Ok(None) => self.config.idle_poll,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the schedule failed");
                    self.config.idle_poll
                }
            },
        )
    }

    /// Starts one revocation due, beyond the workers: however long the grants and invitations
    /// ahead of it take, a revocation never waits for a worker to free up.
    async fn start_revocation(self: &Arc<Self>, running: &mut tokio::task::JoinSet<()>) {
        let Ok(permit) = self.revocation_lane.clone().try_acquire_owned() else {
            return;
        };
        let now = self.reconciler.clock.now();
        let claimed = match self.claim(now, 1, Lane::Revocations).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming due revocations failed");
                return;
            }
        };
        if let Some(claim) = claimed.into_iter().next() {
            let me = self.clone();
            running.spawn(async move {
                me.run_one(claim).await;
                drop(permit);
            });
        }
    }

    async fn sleep_for(&self) -> Duration {
        let now = self.reconciler.clock.now();
        match self.reconciler.store.next_due_at().await {
            Ok(Some(next)) => {
                let d: Duration = next
                    .duration_since(now)
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                d.min(self.config.idle_poll)
            }
            Ok(None) => self.config.idle_poll,
            Err(e) => {
                tracing::warn!(error = %e, "reading the schedule failed");
                self.config.idle_poll
            }
        }
    }

    /// Claims as many due subjects as there are free workers (never more: a claimed subject's
    /// lease runs from the claim) and starts them. Returns how many started and whether every
    /// free worker got one.
    async fn start_due(self: &Arc<Self>, running: &mut tokio::task::JoinSet<()>) -> (usize, bool) {
        let free = self
            .slots
            .available_permits()
            .min(self.config.batch as usize);
        if free == 0 {
            return (0, true);
        }
        let now = self.reconciler.clock.now();
        let claimed = match self.claim(now, free as u32, Lane::All).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming due subjects failed");
                return (0, false);
            }
        };
        let n = claimed.len();
        for claim in claimed {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                break;
            };
            let me = self.clone();
            running.spawn(async move {
                me.run_one(claim).await;
                drop(permit);
            });
        }
        (n, n == free)
    }

    /// Claims up to `limit` due subjects in `lane`, never one this engine still runs.
    pub async fn claim(
        &self,
        now: Timestamp,
        limit: u32,
        lane: Lane,
    ) -> Result<Vec<doorsync_store::Claim>, doorsync_store::StoreError> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let store = &self.reconciler.store;
        let mut claimed = store
            .claim_in(
                &self.config.owner,
                now,
                self.config.lease,
                limit,
                lane,
                &running,
            )
            .await?;
        // A lease no worker runs would hold its subject until it ran out: more than asked for
        // goes straight back.
        for extra in claimed.split_off(claimed.len().min(limit as usize)) {
            tracing::error!(subject = %extra.subject, "the schedule gave more than asked for; handing it back");
            let back = Outcome::Done {
                next_due_at: Some(extra.due_at.unwrap_or(now)),
                revokes: lane == Lane::Revocations,
            };
            store.finish(&extra.fence(&self.config.owner), back).await?;
        }
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.extend(claimed.iter().map(|c| c.subject.clone()));
        Ok(claimed)
    }

    pub(crate) async fn run_one(&self, claim: doorsync_store::Claim) {
        // Whatever way the run ends, the subject may be claimed again after it.
        struct Done<'a>(&'a Engine, Subject);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
                running.remove(&self.1);
            }
        }
        let _done = Done(self, claim.subject.clone());
        let fence = claim.fence(&self.config.owner);
        let (subject, due_at) = (claim.subject, claim.due_at);
        let r = &self.reconciler;
        let start = std::time::Instant::now();
        let result = tokio::select! {
            result = r.reconcile(&fence, claim.drift_at) => result,
            lost = self.keep_lease(&fence) => Err(lost),
        };
        if self.config.record_spans {
            let span = Span {
                subject: subject.clone(),
                owner: self.config.owner.clone(),
                start,
                end: std::time::Instant::now(),
            };
            self.spans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(span);
        }
        let now = r.clock.now();
        if let Some(due) = due_at {
            r.metrics
                .observe_lateness(now.duration_since(due).as_secs_f64());
        }
        let outcome = match result {
            Ok(next) => {
                r.metrics.count_reconcile("ok");
                // Level-triggered to the end: looked at again within the resync interval even
                // with nothing coming, so a lost trigger cannot last.
                let resync = after_now(now, jitter(self.config.resync_interval));
                match next {
                    Some(n) if n.at <= resync => Outcome::Done {
                        next_due_at: Some(n.at),
                        revokes: n.revokes,
                    },
                    _ => Outcome::Done {
                        next_due_at: Some(resync),
                        revokes: false,
                    },
                }
            }
            Err(e) if e.lost_lease() => {
                r.metrics.count_reconcile("lease_lost");
                tracing::error!(subject = %subject, "lease lost during a reconcile; another run has it");
                // This run may have changed the provider after its last write was refused: the
                // run that holds the subject now reads the user back rather than trust the mirror.
                if let Err(e) = r.store.mark_drift(&subject, now).await {
                    tracing::warn!(subject = %subject, error = %e, "flagging the subject for a read-back failed");
                }
                return;
            }
            Err(e) => {
                r.metrics.count_reconcile(e.kind());
                tracing::warn!(subject = %subject, error = %e, "reconcile failed");
                let retry_at = self.retry_at(&subject, &e, now).await;
                Outcome::Failed {
                    retry_at,
                    error: format!("{}: {e}", e.kind()),
                }
            }
        };
        if let Err(e) = r.store.finish(&fence, outcome).await {
            tracing::error!(subject = %subject, error = %e, "releasing the lease failed; it will expire");
        }
    }

    /// Renews the lease while a reconcile runs, and returns once it is lost: taken by another
    /// claim, or run out while the database could not be reached (another instance may claim
    /// it from then on), so that the run stops rather than race the next one.
    async fn keep_lease(&self, fence: &Fence) -> ReconcileError {
        let r = &self.reconciler;
        let lease = self.config.lease;
        let every = Duration::try_from(lease).unwrap_or(Duration::from_secs(15)) / 3;
        let mut held_until = r.clock.now().checked_add(lease).unwrap_or(Timestamp::MAX);
        loop {
            tokio::time::sleep(every).await;
            let now = r.clock.now();
            let until = now.checked_add(lease).unwrap_or(Timestamp::MAX);
            match r.store.renew_lease(fence, until).await {
                Ok(true) => held_until = until,
                Ok(false) => return ReconcileError::LeaseLost,
                Err(e) if r.clock.now() >= held_until => {
                    tracing::warn!(subject = %fence.subject, error = %e, "the lease ran out while it could not be renewed");
                    return ReconcileError::LeaseLost;
                }
                Err(e) => {
                    tracing::warn!(subject = %fence.subject, error = %e, "renewing a lease failed")
                }
            }
        }
    }

    /// The error policy: a subject backs off on its own; a provider that is down pauses its
    /// whole connection, and the subject waits for the pause to end. Never later than the
    /// subject's next transition, so a failure elsewhere does not delay a revocation.
    async fn retry_at(&self, subject: &Subject, e: &ReconcileError, now: Timestamp) -> Timestamp {
        let after = |d: Duration| {
            now.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
                .unwrap_or(now)
        };
        let retry = match (e, e.connection(), e.provider_error()) {
            (ReconcileError::Paused { until, .. }, _, _) => *until,
            (_, Some(c), Some(p)) if p.kind.pauses_connection() => {
                let until = self.pause(c, p.kind, &p.message, p.retry_after, now).await;
                until.max(after(p.retry_after.unwrap_or_default()))
            }
            _ => {
                let attempts = match self.reconciler.store.schedule_row(subject).await {
                    Ok(Some(row)) => row.attempts.clamp(0, 20) as u32,
                    _ => 0,
                };
                let backoff = self
                    .config
                    .retry_base
                    .saturating_mul(1 << attempts.min(16))
                    .min(self.config.retry_max);
                let floor = e
                    .provider_error()
                    .and_then(|p| p.retry_after)
                    .unwrap_or_default();
                after(floor.max(jitter(backoff)))
            }
        };
        let next = match reconcile::load_subject(self.reconciler.store.as_ref(), subject, now).await
        {
            Ok(view) => doorsync_core::next_transition(&view.entitlements, now),
            Err(_) => None,
        };
        match next {
            Some(t) if t < retry => t,
            _ => retry,
        }
    }

    /// Pauses a connection whose provider is down, once for all the workers that fail
    /// together: a pause already running is returned as it is. Each new pause (after a probe
    /// that failed) lasts twice the one before, up to `pause_max`; refused credentials pause
    /// three times `pause_max`.
    pub(crate) async fn pause(
        &self,
        connection: &str,
        kind: ErrorKind,
        why: &str,
        retry_after: Option<Duration>,
        now: Timestamp,
    ) -> Timestamp {
        let store = &self.reconciler.store;
        let state = store.connection_state(connection).await.unwrap_or_default();
        if let Some(until) = state.paused_until.filter(|u| *u > now) {
            return until;
        }
        let n = state.pauses.clamp(0, 16) as u32;
        // Refused credentials are not fixed by waiting, and each probe is one more refused
        // sign-in on the administrator's account: those probes come three times as seldom.
        let d = if kind == ErrorKind::Auth {
            self.config.pause_max.saturating_mul(3)
        } else {
            self.config
                .pause_base
                .saturating_mul(1 << n)
                .min(self.config.pause_max)
        }
        .max(retry_after.unwrap_or_default());
        let until = after_now(now, d);
        let change = StateChange::Paused {
            until,
            reason: format!("{}: {why}", kind.as_str()),
            now,
        };
        if let Err(e) = store.change_connection_state(connection, change).await {
            tracing::error!(error = %e, "saving the connection pause failed");
        }
        // Another worker or instance may have paused it first: theirs stands.
        let until = store
            .connection_state(connection)
            .await
            .ok()
            .and_then(|s| s.paused_until)
            .filter(|u| *u > now)
            .unwrap_or(until);
        tracing::warn!(connection, until = %until, reason = why, "provider unavailable: connection paused");
        until
    }
}

pub(crate) fn after_now(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

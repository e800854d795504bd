//! The scheduler: claim due subjects as workers free up, reconcile each under a renewed lease,
//! and apply the error policy (a subject backs off; a provider that is down pauses its connection).

use crate::reconcile::{self, ReconcileError};
use crate::*;
use doorsync_store::{Lane, Outcome};

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
        let claimed = match self
            .reconciler
            .store
            .claim_in(
                &self.config.owner,
                now,
                self.config.lease,
                1,
                Lane::Revocations,
            )
            .await
        {
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
        let claimed = match self
            .reconciler
            .store
            .claim_due(&self.config.owner, now, self.config.lease, free as u32)
            .await
        {
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

    pub(crate) async fn run_one(&self, claim: doorsync_store::Claim) {
        let (subject, due_at) = (claim.subject, claim.due_at);
        let drift = claim.drift_at.map(|at| reconcile::DriftFlag {
            owner: &self.config.owner,
            at,
        });
        let r = &self.reconciler;
        let start = std::time::Instant::now();
        let result = {
            // Renew the lease while the reconcile runs; losing it means another instance has the
            // subject now, so this one stops at once rather than race it.
            let renew = async {
                let every =
                    Duration::try_from(self.config.lease).unwrap_or(Duration::from_secs(15)) / 3;
                loop {
                    tokio::time::sleep(every).await;
                    let until = r
                        .clock
                        .now()
                        .checked_add(self.config.lease)
                        .unwrap_or(Timestamp::MAX);
                    match r
                        .store
                        .renew_lease(&subject, &self.config.owner, until)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => return ReconcileError::LeaseLost,
                        Err(e) => {
                            tracing::warn!(subject = %subject, error = %e, "renewing a lease failed")
                        }
                    }
                }
            };
            tokio::select! {
                result = r.reconcile(&subject, drift) => result,
                lost = renew => Err(lost),
            }
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
            Err(ReconcileError::LeaseLost) => {
                r.metrics.count_reconcile("lease_lost");
                tracing::error!(subject = %subject, "lease lost during a reconcile; another instance has it");
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
        if let Err(e) = r.store.finish(&subject, &self.config.owner, outcome).await {
            tracing::error!(subject = %subject, error = %e, "releasing the lease failed; it will expire");
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

//! doorsync's sync engine. Level-triggered, as a Kubernetes controller: for each subject due, work
//! out what the provider should hold now, make it so, and ask to be woken at the next instant the
//! answer changes. Writes through the API only make a subject due sooner (and wake the engine);
//! correctness never depends on them.

pub mod brivo;
pub mod budget;
pub mod drift;
pub mod metrics;
pub mod plan;
pub mod provider;
pub mod reconcile;

use doorsync_core::{Clock, Subject};
use doorsync_store::{Kind, Outcome, Record, StateChange, Store};
use drift::AuditReport;
use jiff::{SignedDuration, Timestamp};
use metrics::Metrics;
use provider::{ErrorKind, ProviderFactory};
use reconcile::{ReconcileError, Reconciler};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This instance's name in schedule leases.
    pub owner: String,
    /// Reconciles run at once.
    pub workers: usize,
    /// Subjects claimed per round; a smaller batch spreads work across instances.
    pub batch: u32,
    /// Keep each reconcile's start and end (tests check that no subject runs twice at once).
    pub record_spans: bool,
    /// How long a claimed subject stays ours without renewal; a dead instance's subjects return
    /// to the others after it. A running reconcile renews its lease every third of it.
    pub lease: SignedDuration,
    /// The longest the scheduler sleeps without looking at the schedule: other instances' writes
    /// and expired leases are seen within it.
    pub idle_poll: Duration,
    /// Bounds of the drift audit's pacing (the call budget decides within them).
    pub audit_min_interval: Duration,
    pub audit_max_interval: Duration,
    /// How often sites, doors and groups are read from the provider.
    pub directory_interval: Duration,
    /// A subject's retries back off from this, doubling per attempt.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A connection whose provider is down pauses this long, doubling while it stays down.
    pub pause_base: Duration,
    pub pause_max: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            owner: instance_name(),
            workers: 4,
            batch: 64,
            record_spans: false,
            lease: SignedDuration::from_secs(15),
            idle_poll: Duration::from_secs(1),
            audit_min_interval: Duration::from_secs(300),
            audit_max_interval: Duration::from_secs(24 * 3600),
            directory_interval: Duration::from_secs(600),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            pause_base: Duration::from_secs(2),
            pause_max: Duration::from_secs(60),
        }
    }
}

fn instance_name() -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    format!(
        "doorsync-{}-{:02x}{:02x}{:02x}{:02x}",
        std::process::id(),
        b[0],
        b[1],
        b[2],
        b[3]
    )
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    // Between half and all of `d`, so failing subjects do not retry in lockstep.
    d.mul_f64(0.5 + f64::from(b[0]) / 510.0)
}

pub struct Engine {
    pub reconciler: Reconciler,
    pub config: EngineConfig,
    wake: Arc<Notify>,
    /// Consecutive pauses per connection, for the pause backoff; cleared by a success.
    pauses: Mutex<HashMap<String, u32>>,
    /// Failed directory reads, so a connection that cannot be read is not retried every second.
    directory_retry: Mutex<HashMap<String, (Timestamp, u32)>>,
    /// Provider calls already counted against each connection's budget.
    counted_calls: Mutex<HashMap<String, u64>>,
    audit_running: tokio::sync::Mutex<()>,
    spans: Mutex<Vec<Span>>,
    /// Reconciles may run while fewer than `workers` are running.
    slots: Arc<tokio::sync::Semaphore>,
}

/// One reconcile, as `record_spans` keeps it.
#[derive(Debug, Clone)]
pub struct Span {
    pub subject: Subject,
    pub owner: String,
    pub start: std::time::Instant,
    pub end: std::time::Instant,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStatus {
    pub connection_id: String,
    pub enabled: bool,
    pub paused_until: Option<Timestamp>,
    pub pause_reason: Option<String>,
    pub last_audit_at: Option<Timestamp>,
    pub next_audit_at: Option<Timestamp>,
    pub last_directory_at: Option<Timestamp>,
    pub calls_this_month: i64,
    pub monthly_call_budget: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncStatus {
    pub due: i64,
    pub oldest_due_at: Option<Timestamp>,
    pub oldest_overdue_seconds: Option<f64>,
    pub in_flight: i64,
    pub errors: std::collections::BTreeMap<String, i64>,
    pub connections: Vec<ConnectionStatus>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        providers: Arc<dyn ProviderFactory>,
        config: EngineConfig,
    ) -> Self {
        Engine {
            reconciler: Reconciler {
                store,
                clock,
                providers,
                metrics: Arc::new(Metrics::default()),
            },
            config: config.clone(),
            wake: Arc::new(Notify::new()),
            pauses: Mutex::new(HashMap::new()),
            directory_retry: Mutex::new(HashMap::new()),
            counted_calls: Mutex::new(HashMap::new()),
            audit_running: tokio::sync::Mutex::new(()),
            spans: Mutex::new(vec![]),
            slots: Arc::new(tokio::sync::Semaphore::new(config.workers.max(1))),
        }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.reconciler.metrics
    }

    /// Makes the scheduler look at the schedule now (a write just marked someone due).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

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
        let mut running = tokio::task::JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            while running.try_join_next().is_some() {}
            let (started, full) = self.start_due(&mut running).await;
            if full && started > 0 {
                // There may be more due: claim again as soon as a slot frees.
                tokio::select! {
                    _ = running.join_next() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let sleep = self.sleep_for().await;
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = stop.changed() => {}
            }
        }
        while running.join_next().await.is_some() {}
        let _ = house.await;
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
                me.run_one(claim.subject, claim.due_at).await;
                drop(permit);
            });
        }
        (n, n == free)
    }

    async fn run_one(&self, subject: Subject, due_at: Option<Timestamp>) {
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
                result = r.reconcile(&subject) => result,
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
                // The provider answers again: the next outage starts its backoff afresh.
                self.pauses
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                Outcome::Done { next_due_at: next }
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
        let next = match reconcile::load_subject(self.reconciler.store.as_ref(), subject).await {
            Ok(view) => doorsync_core::next_transition(&view.entitlements, now),
            Err(_) => None,
        };
        match next {
            Some(t) if t < retry => t,
            _ => retry,
        }
    }

    async fn pause(
        &self,
        connection: &str,
        kind: ErrorKind,
        why: &str,
        retry_after: Option<Duration>,
        now: Timestamp,
    ) -> Timestamp {
        let store = &self.reconciler.store;
        if let Ok(state) = store.connection_state(connection).await
            && let Some(until) = state.paused_until.filter(|u| *u > now)
        {
            return until;
        }
        let n = {
            let mut p = self.pauses.lock().unwrap_or_else(|e| e.into_inner());
            let n = p.entry(connection.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        let base = if kind == ErrorKind::Auth {
            self.config.pause_max
        } else {
            self.config.pause_base
        };
        let d = base
            .saturating_mul(1 << (n - 1).min(16))
            .min(self.config.pause_max)
            .max(retry_after.unwrap_or_default());
        let until = now
            .checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
            .unwrap_or(now);
        let change = StateChange::Paused {
            until,
            reason: format!("{}: {why}", kind.as_str()),
        };
        if let Err(e) = store.change_connection_state(connection, change).await {
            tracing::error!(error = %e, "saving the connection pause failed");
        }
        tracing::warn!(connection, until = %until, reason = why, "provider unavailable: connection paused");
        until
    }

    /// Periodic work per connection: count the provider calls made, read the directory, run
    /// the drift audit when its pacing says so, and forget a pause that has ended.
    pub async fn housekeeping(&self) {
        let store = &self.reconciler.store;
        let now = self.reconciler.clock.now();
        self.count_calls(now).await;
        let Ok(connections) = store.list(Kind::Connection, None, 500).await else {
            return;
        };
        for record in connections {
            let Some(connection) = drift::enabled(&record) else {
                continue;
            };
            let c = connection.id.as_str();
            let Ok(state) = store.connection_state(c).await else {
                continue;
            };
            if state.paused_until.is_some_and(|u| u > now) {
                continue;
            }
            if state.paused_until.is_some() {
                let _ = store
                    .change_connection_state(c, StateChange::Resumed { now })
                    .await;
            }
            let retry_due = self
                .directory_retry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(c)
                .map(|(t, _)| *t);
            let dir_due = retry_due.map_or_else(
                || {
                    state.last_directory_at.is_none_or(|t| {
                        now.duration_since(t).as_secs_f64()
                            >= self.config.directory_interval.as_secs_f64()
                    })
                },
                |t| t <= now,
            );
            if dir_due {
                match drift::sync_directory(&self.reconciler, connection).await {
                    Ok(counts) => {
                        tracing::info!(
                            connection = c,
                            ?counts,
                            "directory read (groups, sites, doors)"
                        );
                        self.directory_retry
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(c);
                        let _ = store
                            .change_connection_state(c, StateChange::DirectoryRead { at: now })
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(connection = c, error = %e, "reading the directory failed");
                        self.note_provider_error(c, &e, now).await;
                        let mut retry = self
                            .directory_retry
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        let n = retry.get(c).map_or(1, |(_, n)| n + 1);
                        let wait = Duration::from_secs(5)
                            .saturating_mul(1 << n.min(8))
                            .min(self.config.directory_interval);
                        let at = now
                            .checked_add(
                                SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX),
                            )
                            .unwrap_or(now);
                        retry.insert(c.to_owned(), (at, n));
                        continue;
                    }
                }
            }
            let state = store.connection_state(c).await.unwrap_or_default();
            if state.next_audit_at.is_none_or(|t| t <= now)
                && let Err(e) = self.audit(connection).await
            {
                tracing::warn!(connection = c, error = %e, "drift audit failed");
                self.note_provider_error(c, &e, now).await;
            }
        }
    }

    /// Adds the calls each connection's provider made since the last count to its month.
    async fn count_calls(&self, now: Timestamp) {
        let month = budget::month_key(now);
        for (c, provider) in self.reconciler.providers.built() {
            let total = provider.calls();
            let delta = {
                let mut counted = self.counted_calls.lock().unwrap_or_else(|e| e.into_inner());
                let seen = counted.entry(c.clone()).or_insert(0);
                // A rebuilt client (new credentials) starts again from zero.
                let delta = if total >= *seen { total - *seen } else { total };
                *seen = total;
                delta
            };
            if delta > 0
                && let Err(e) = self
                    .reconciler
                    .store
                    .count_calls(&c, &month, delta as i64)
                    .await
            {
                tracing::warn!(connection = c, error = %e, "counting provider calls failed");
            }
        }
    }

    async fn note_provider_error(&self, connection: &str, e: &ReconcileError, now: Timestamp) {
        if let Some(p) = e.provider_error()
            && p.kind.pauses_connection()
        {
            self.pause(connection, p.kind, &p.message, p.retry_after, now)
                .await;
        }
    }

    /// Runs the drift audit of one connection now and paces the next one; a failed audit is
    /// tried again after the shortest interval, not at once.
    pub async fn audit(
        &self,
        connection: &doorsync_core::Connection,
    ) -> Result<AuditReport, ReconcileError> {
        let _one_at_a_time = self.audit_running.lock().await;
        let store = &self.reconciler.store;
        let c = connection.id.as_str();
        let result = drift::audit_connection(&self.reconciler, connection).await;
        let now = self.reconciler.clock.now();
        let after = |d: Duration| {
            now.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
                .unwrap_or(now)
        };
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                store
                    .change_connection_state(
                        c,
                        StateChange::Audited {
                            at: None,
                            next: after(self.config.audit_min_interval),
                        },
                    )
                    .await?;
                return Err(e);
            }
        };
        self.count_calls(now).await;
        let state = store.connection_state(c).await?;
        let used = if state.month.as_deref() == Some(budget::month_key(now).as_str()) {
            state.calls_this_month
        } else {
            0
        };
        let delay = budget::next_audit_delay(
            connection.monthly_call_budget,
            used.max(0) as u64,
            report.calls.max(1),
            budget::month_left(now),
            self.config.audit_min_interval,
            self.config.audit_max_interval,
        );
        store
            .change_connection_state(
                c,
                StateChange::Audited {
                    at: Some(now),
                    next: after(delay),
                },
            )
            .await?;
        tracing::info!(connection = c, ?report, next_in = ?delay, "drift audit done");
        self.wake();
        Ok(report)
    }

    /// Reads the directory and audits every enabled connection now (`POST /api/v1/sync/resync`).
    pub async fn resync(&self) -> Vec<Result<AuditReport, (String, String)>> {
        let mut out = vec![];
        let Ok(connections) = self
            .reconciler
            .store
            .list(Kind::Connection, None, 500)
            .await
        else {
            return out;
        };
        for record in &connections {
            let Some(connection) = drift::enabled(record) else {
                continue;
            };
            let c = connection.id.as_str();
            let now = self.reconciler.clock.now();
            match drift::sync_directory(&self.reconciler, connection).await {
                Ok(_) => {
                    let _ = self
                        .reconciler
                        .store
                        .change_connection_state(c, StateChange::DirectoryRead { at: now })
                        .await;
                }
                Err(e) => {
                    out.push(Err((c.to_owned(), e.to_string())));
                    continue;
                }
            }
            out.push(
                self.audit(connection)
                    .await
                    .map_err(|e| (c.to_owned(), e.to_string())),
            );
        }
        out
    }

    pub async fn status(&self) -> Result<SyncStatus, doorsync_store::StoreError> {
        let store = &self.reconciler.store;
        let now = self.reconciler.clock.now();
        let due = store.due_summary(now).await?;
        let mut connections = vec![];
        for record in store.list(Kind::Connection, None, 500).await? {
            let Record::Connection(c) = record else {
                continue;
            };
            let s = store.connection_state(c.id.as_str()).await?;
            let month = budget::month_key(now);
            connections.push(ConnectionStatus {
                connection_id: c.id.to_string(),
                enabled: c.enabled,
                paused_until: s.paused_until.filter(|u| *u > now),
                pause_reason: s
                    .pause_reason
                    .filter(|_| s.paused_until.is_some_and(|u| u > now)),
                last_audit_at: s.last_audit_at,
                next_audit_at: s.next_audit_at,
                last_directory_at: s.last_directory_at,
                calls_this_month: if s.month.as_deref() == Some(month.as_str()) {
                    s.calls_this_month
                } else {
                    0
                },
                monthly_call_budget: c.monthly_call_budget,
            });
        }
        Ok(SyncStatus {
            due: due.due,
            oldest_due_at: due.oldest_due_at,
            oldest_overdue_seconds: due
                .oldest_due_at
                .map(|t| now.duration_since(t).as_secs_f64().max(0.0)),
            in_flight: due.in_flight,
            errors: store.error_counts().await?,
            connections,
        })
    }
}

//! doorsync's sync engine. Level-triggered, as a Kubernetes controller: for each subject due, work
//! out what the provider should hold now, make it so, and ask to be woken at the next instant the
//! answer changes. Writes through the API only make a subject due sooner (and wake the engine);
//! correctness never depends on them.

pub mod access;
pub mod alerts;
pub mod brivo;
pub mod budget;
pub mod drift;
#[cfg(test)]
mod harness;
mod housekeeping;
pub mod mail;
pub mod member;
pub mod metrics;
pub mod plan;
pub mod presence;
pub mod provider;
#[cfg(test)]
mod races;
pub mod reconcile;
mod scheduler;

use doorsync_core::{Clock, Subject};
use doorsync_store::{Kind, Record, StateChange, Store};
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
    /// How often door events are read from the provider (the fallback to the webhook, and what
    /// fills the gap after downtime).
    pub event_poll_interval: Duration,
    /// Where the provider reaches this service (`https://doorsync.example.com`): each enabled
    /// connection gets an event subscription delivering to `{public_url}/hooks/brivo/SECRET`.
    /// Without it, door events are only polled.
    pub public_url: Option<String>,
    /// Where mail (the member app's sign-in links) goes out; without it none is sent.
    pub mail: Option<mail::MailConfig>,
    /// Where alerts go (a webhook, the operators' e-mail), and when a pause alerts.
    pub alerts: alerts::AlertConfig,
    /// A subject's retries back off from this, doubling per attempt.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A connection whose provider is down pauses this long, doubling with each failed probe
    /// while it stays down. One probe call ends each pause.
    pub pause_base: Duration,
    pub pause_max: Duration,
    /// Every subject is reconciled at least this often even when nothing marks it due, so a
    /// lost trigger cannot last; a reconcile with nothing to change costs no provider call.
    pub resync_interval: Duration,
    /// A Mobile Pass invitation still unredeemed this long after it was sent (or last looked
    /// at) is read back, and sent again if it expired.
    pub invitation_resend: Duration,
    /// While an account has no Mobile Passes left, its allotment is read again this often.
    pub allotment_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            owner: instance_name(),
            workers: 4,
            batch: 64,
            record_spans: false,
            lease: SignedDuration::from_secs(6),
            idle_poll: Duration::from_secs(1),
            audit_min_interval: Duration::from_secs(300),
            audit_max_interval: Duration::from_secs(24 * 3600),
            directory_interval: Duration::from_secs(600),
            event_poll_interval: Duration::from_secs(10),
            public_url: None,
            mail: None,
            alerts: alerts::AlertConfig {
                pause_after: Duration::from_secs(600),
                ..Default::default()
            },
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            pause_base: Duration::from_secs(2),
            pause_max: Duration::from_secs(10),
            resync_interval: Duration::from_secs(4 * 3600),
            invitation_resend: Duration::from_secs(7 * 24 * 3600),
            allotment_interval: Duration::from_secs(600),
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
    pub(crate) wake: Arc<Notify>,
    /// Failed directory reads, so a connection that cannot be read is not retried every second.
    pub(crate) directory_retry: Mutex<HashMap<String, (Timestamp, u32)>>,
    /// Provider calls already counted against each connection's budget.
    pub(crate) counted_calls: Mutex<HashMap<String, u64>>,
    /// The catalog version each connection's doors were last kept at.
    pub(crate) doors_kept_at: Mutex<HashMap<String, i64>>,
    pub(crate) spans: Mutex<Vec<Span>>,
    /// Reconciles may run while fewer than `workers` are running.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// One reconcile more than `workers`, for revocations only.
    pub(crate) revocation_lane: Arc<tokio::sync::Semaphore>,
    /// The subjects this engine is reconciling now: never claimed again while they run, even
    /// when their lease ran out.
    pub(crate) running: Mutex<std::collections::BTreeSet<Subject>>,
}

/// One reconcile, as `record_spans` keeps it.
#[derive(Debug, Clone)]
pub struct Span {
    pub subject: Subject,
    pub owner: String,
    pub start: std::time::Instant,
    pub end: std::time::Instant,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// Memberships kept past their entitlement because the connection is disabled.
    pub held_past_entitlement: i64,
    pub mobile_passes: MobilePasses,
}

/// The account's Mobile Pass allotment as last read.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MobilePasses {
    pub allotted: Option<i64>,
    pub assigned: Option<i64>,
    pub read_at: Option<Timestamp>,
    /// Since when none have been left: no invitations go out (access is still granted).
    pub out_since: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncStatus {
    pub due: i64,
    pub oldest_due_at: Option<Timestamp>,
    pub oldest_overdue_seconds: Option<f64>,
    pub in_flight: i64,
    pub errors: std::collections::BTreeMap<String, i64>,
    pub connections: Vec<ConnectionStatus>,
    /// Who holds a membership past its entitlement (a disabled connection), oldest first; at
    /// most 100, the counts per connection give the total.
    pub held_past_entitlement: Vec<doorsync_store::HeldPast>,
    /// Links and locations that give nobody access: a group or site the connection's directory
    /// does not have (it changed after they were set up), or a location without a connection.
    pub setup_problems: Vec<doorsync_store::SetupProblem>,
    /// The alerts whose conditions hold, each with when it was last sent.
    pub alerts: Vec<doorsync_store::Alert>,
    /// Where alerts go: `webhook` (whether one is set) and how many operators are e-mailed.
    pub alerting: Alerting,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Alerting {
    pub webhook: bool,
    pub emails: usize,
    pub pause_after_seconds: u64,
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
                invitation_resend: config.invitation_resend,
            },
            config: config.clone(),
            wake: Arc::new(Notify::new()),
            directory_retry: Mutex::new(HashMap::new()),
            counted_calls: Mutex::new(HashMap::new()),
            doors_kept_at: Mutex::new(HashMap::new()),
            spans: Mutex::new(vec![]),
            slots: Arc::new(tokio::sync::Semaphore::new(config.workers.max(1))),
            revocation_lane: Arc::new(tokio::sync::Semaphore::new(1)),
            running: Mutex::new(Default::default()),
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

    pub async fn status(&self) -> Result<SyncStatus, doorsync_store::StoreError> {
        let store = &self.reconciler.store;
        let now = self.reconciler.clock.now();
        let due = store.due_summary(now).await?;
        let held = store.held_past_counts().await?;
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
                held_past_entitlement: held.get(c.id.as_str()).copied().unwrap_or(0),
                mobile_passes: MobilePasses {
                    allotted: s.passes_allotted,
                    assigned: s.passes_assigned,
                    read_at: s.passes_read_at,
                    out_since: s.passes_out_since,
                },
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
            held_past_entitlement: store.held_past(None, 100).await?,
            setup_problems: store.setup_problems().await?,
            alerts: store.active_alerts().await?,
            alerting: Alerting {
                webhook: self.config.alerts.webhook.is_some(),
                emails: if self.config.mail.is_some() {
                    self.config.alerts.emails.len()
                } else {
                    0
                },
                pause_after_seconds: self.config.alerts.pause_after.as_secs(),
            },
        })
    }
}

//! Operations: the overview, the sync (live, with Sync now), the audit log, drift findings, and
//! a customer's page (their access and why, what comes next, their Brivo user, their errors).

use super::connection::{all, locations};
use super::fmt::{Zoned, relative};
use super::page::Layout;
use super::*;
use axum::Extension;
use axum::extract::{Path, Query};
use doorsync_core::{Id, Subject};
use doorsync_engine::access::{GroupState, HeldState, access_view};
use doorsync_store::{AuditEntry, AuditFilter, Kind, Record};
use jiff::Timestamp;
use std::collections::{BTreeSet, HashMap};

/// A "Sync now" started from this process.
pub(crate) struct SyncNow {
    started: Timestamp,
    finished: Option<(Timestamp, Vec<String>)>,
}

struct Step {
    title: &'static str,
    href: String,
    detail: String,
    done: bool,
}

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct OverviewPage {
    l: Layout,
    steps: Vec<Step>,
    warnings: Vec<String>,
    sync_line: String,
}

pub(super) async fn overview(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
) -> PageResult {
    let store = st.store.as_ref();
    let connections = all(store, Kind::Connection, |r| match r {
        Record::Connection(c) => Some(c),
        _ => None,
    })
    .await?;
    let locs = locations(store).await?;
    let links = all(store, Kind::Link, |r| match r {
        Record::Link(l) => Some(l),
        _ => None,
    })
    .await?;
    let signed_in = connections
        .iter()
        .find(|c| c.credentials.password.is_some() || c.credentials.refresh_token.is_some());
    let placed = locs.iter().filter(|l| l.site_id.is_some()).count();
    let steps = vec![
        Step {
            title: "Connect Brivo Access",
            href: signed_in
                .or(connections.first())
                .map_or("/admin/connections".into(), |c| {
                    format!("/admin/connections/{}", c.id)
                }),
            detail: match (signed_in, connections.first()) {
                (Some(c), _) if c.enabled => {
                    format!("connection {} is signed in and enabled", c.id)
                }
                (Some(c), _) => format!("connection {} is signed in but disabled", c.id),
                (None, Some(c)) => format!("connection {} has not signed in yet", c.id),
                (None, None) => "no connection yet".into(),
            },
            done: signed_in.is_some_and(|c| c.enabled),
        },
        Step {
            title: "Pick each location's Brivo site",
            href: "/admin/connections".into(),
            detail: format!("{placed} of {} locations", locs.len()),
            done: !locs.is_empty() && placed == locs.len(),
        },
        Step {
            title: "Link doors, passes, rooms, desks and offices",
            href: locs.first().map_or("/admin/locations".into(), |l| {
                format!("/admin/locations/{}", l.id)
            }),
            detail: format!("{} items linked to access groups", links.len()),
            done: !links.is_empty(),
        },
    ];
    let live = live_view(&st).await?;
    let sync_line = format!(
        "{} customers due, {} in flight; {} connection(s) paused.",
        live.due,
        live.in_flight,
        live.connections.iter().filter(|c| c.paused).count()
    );
    html(OverviewPage {
        l: ctx.layout("Overview", "overview"),
        steps,
        warnings: live.alarms,
        sync_line,
    })
}

struct ConnLine {
    id: String,
    state: String,
    paused: bool,
    last_audit: String,
    next_audit: String,
    calls: String,
}

pub(crate) struct LiveView {
    engine: bool,
    due: i64,
    in_flight: i64,
    oldest: String,
    connections: Vec<ConnLine>,
    errors: Vec<(String, i64)>,
    /// Who, group, connection, since.
    held: Vec<(String, String, String, String)>,
    problems: Vec<String>,
    alarms: Vec<String>,
    sync_now: Option<String>,
    zone: String,
    at: String,
}

async fn live_view(st: &AppState) -> Result<LiveView, PageError> {
    let now = st.clock.now();
    let zone = Zoned::of_space(st.store.as_ref()).await?;
    let sync_now = st
        .admin
        .sync_now
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|s| match &s.finished {
            None => format!(
                "Sync now is reading Brivo and auditing every group doorsync controls (started {}).",
                relative(now, s.started)
            ),
            Some((at, results)) => format!(
                "Sync now finished {}: {}",
                relative(now, *at),
                if results.is_empty() {
                    "no enabled connection.".to_owned()
                } else {
                    results.join(" ")
                }
            ),
        });
    let Some(engine) = &st.engine else {
        let due = st.store.due_summary(now).await?;
        return Ok(LiveView {
            engine: false,
            due: due.due,
            in_flight: due.in_flight,
            oldest: zone.opt(due.oldest_due_at),
            connections: vec![],
            errors: vec![],
            held: vec![],
            problems: vec![],
            alarms: vec![],
            sync_now,
            zone: zone.name().to_owned(),
            at: zone.when(now),
        });
    };
    let s = engine.status().await?;
    let mut alarms = vec![];
    let mut connections = vec![];
    for c in &s.connections {
        let paused = c.paused_until.is_some();
        let state = match (&c.paused_until, &c.pause_reason, c.enabled) {
            (_, _, false) => "disabled: doorsync changes nothing in Brivo".to_owned(),
            (Some(u), why, true) => format!(
                "paused until {}: {}",
                zone.when(*u),
                why.as_deref().unwrap_or("the provider failed")
            ),
            (None, _, true) => "running".to_owned(),
        };
        if c.held_past_entitlement > 0 {
            alarms.push(format!(
                "{} membership(s) in connection {} are held past their entitlement because the connection is disabled: these people can open doors they no longer should. Enable the integration, or remove them in Brivo.",
                c.held_past_entitlement, c.connection_id
            ));
        }
        if paused && c.enabled {
            alarms.push(format!(
                "Connection {} is paused: {}",
                c.connection_id,
                c.pause_reason.as_deref().unwrap_or("the provider failed")
            ));
        }
        connections.push(ConnLine {
            id: c.connection_id.clone(),
            state,
            paused,
            last_audit: zone.opt(c.last_audit_at),
            next_audit: zone.opt(c.next_audit_at),
            calls: format!(
                "{} of {} ({:.0} %)",
                c.calls_this_month,
                c.monthly_call_budget,
                c.calls_this_month as f64 * 100.0 / c.monthly_call_budget.max(1) as f64
            ),
        });
    }
    let subjects: BTreeSet<String> = s
        .held_past_entitlement
        .iter()
        .map(|h| h.group_id.clone())
        .collect();
    let names = st.store.group_names(&subjects).await?;
    let held = s
        .held_past_entitlement
        .iter()
        .map(|h| {
            (
                h.subject.clone(),
                names
                    .get(&h.group_id)
                    .cloned()
                    .unwrap_or_else(|| format!("group {}", h.group_id)),
                h.connection_id.clone(),
                zone.when(h.since),
            )
        })
        .collect();
    Ok(LiveView {
        engine: true,
        due: s.due,
        in_flight: s.in_flight,
        oldest: match s.oldest_due_at {
            Some(t) if t <= now => format!("{} ({})", zone.when(t), relative(now, t)),
            Some(t) => zone.when(t),
            None => "—".into(),
        },
        connections,
        errors: s.errors.into_iter().collect(),
        held,
        problems: s.setup_problems.into_iter().map(|p| p.message).collect(),
        alarms,
        sync_now,
        zone: zone.name().to_owned(),
        at: zone.when(now),
    })
}

#[derive(Template)]
#[template(path = "admin/sync.html")]
struct SyncPage {
    l: Layout,
    v: LiveView,
}

#[derive(Template)]
#[template(path = "admin/sync_live.html")]
struct SyncLive {
    v: LiveView,
}

pub(super) async fn sync_page(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
) -> PageResult {
    html(SyncPage {
        l: ctx.layout("Sync", "sync"),
        v: live_view(&st).await?,
    })
}

/// The live part of the sync page, which htmx fetches every two seconds.
pub(super) async fn sync_live(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
) -> PageResult {
    ctx.session()?;
    html(SyncLive {
        v: live_view(&st).await?,
    })
}

pub(super) async fn sync_now(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
) -> PageResult {
    ctx.session()?;
    let Some(engine) = st.engine.clone() else {
        return Err(PageError::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The sync engine is not running in this process.".into(),
        ));
    };
    {
        let mut slot = st.admin.sync_now.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|s| s.finished.is_none()) {
            // One at a time: the page shows the one running.
            return see_other("/admin/sync");
        }
        *slot = Some(SyncNow {
            started: st.clock.now(),
            finished: None,
        });
    }
    let shared = st.admin.clone();
    let clock = st.clock.clone();
    tokio::spawn(async move {
        let results = engine
            .resync()
            .await
            .into_iter()
            .map(|r| match r {
                Ok(a) => format!(
                    "connection {}: {} groups audited, {} found out of step, {} strangers removed{}.",
                    a.connection_id,
                    a.groups,
                    a.unexpected_members + a.missing_members,
                    a.strangers_removed,
                    if a.errors.is_empty() {
                        String::new()
                    } else {
                        format!(", {} errors: {}", a.errors.len(), a.errors.join("; "))
                    }
                ),
                Err((c, e)) => format!("connection {c} failed: {e}."),
            })
            .collect();
        if let Some(s) = shared
            .sync_now
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            s.finished = Some((clock.now(), results));
        }
    });
    see_other("/admin/sync")
}

struct EntryRow {
    at: String,
    who: String,
    href: Option<String>,
    group: String,
    operation: String,
    cause: String,
    outcome: String,
    failed: bool,
    detail: Option<String>,
}

async fn rows(
    st: &AppState,
    zone: &Zoned,
    entries: Vec<AuditEntry>,
) -> Result<Vec<EntryRow>, PageError> {
    let groups: BTreeSet<String> = entries.iter().filter_map(|e| e.group_id.clone()).collect();
    let names = st.store.group_names(&groups).await?;
    Ok(entries
        .into_iter()
        .map(|e| EntryRow {
            at: zone.when(e.at),
            href: e
                .subject
                .strip_prefix("customer:")
                .map(|id| format!("/admin/customers/{}", encode(id))),
            who: e.subject,
            group: e.group_id.as_ref().map_or(String::new(), |g| {
                names
                    .get(g)
                    .map_or_else(|| format!("group {g}"), |n| format!("{n} ({g})"))
            }),
            operation: e.operation,
            cause: e.cause.unwrap_or_default(),
            failed: e.outcome != "ok",
            outcome: e.outcome,
            detail: e.detail,
        })
        .collect())
}

#[derive(Default)]
struct AuditForm {
    customer_id: String,
    group_id: String,
    cause: String,
    operation: String,
    outcome: String,
    since: String,
    until: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    l: Layout,
    filters: bool,
    f: AuditForm,
    operations: Vec<&'static str>,
    error: Option<String>,
    entries: Vec<EntryRow>,
    next: Option<String>,
    zone: String,
}

const OPERATIONS: [&str; 11] = [
    "add_to_group",
    "remove_from_group",
    "create_user",
    "link_user",
    "update_user",
    "suspend_user",
    "reinstate_user",
    "delete_user",
    "forget_user",
    "invite_mobile_pass",
    "drift_found",
];

const PAGE: u32 = 50;

pub(super) async fn audit(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let zone = Zoned::of_space(st.store.as_ref()).await?;
    let text = |k: &str| q.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let form = AuditForm {
        customer_id: text("customer_id"),
        group_id: text("group_id"),
        cause: text("cause"),
        operation: text("operation"),
        outcome: text("outcome"),
        since: text("since"),
        until: text("until"),
    };
    let some = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    let mut error = None;
    let mut instant = |label: &str, v: &str| -> Option<Timestamp> {
        if v.is_empty() {
            return None;
        }
        let t = zone.parse_input(v);
        if t.is_none() {
            error = Some(format!("The {label} time is not a date and time."));
        }
        t
    };
    let outcome: Result<Option<doorsync_store::AuditOutcome>, ()> = match form.outcome.as_str() {
        "" => Ok(None),
        v => v.parse().map(Some),
    };
    let filter = AuditFilter {
        subject: some(&form.customer_id).map(|c| format!("customer:{c}")),
        group_id: some(&form.group_id),
        operation: some(&form.operation),
        outcome: outcome.ok().flatten(),
        cause: some(&form.cause),
        since: instant("from", &form.since),
        until: instant("until", &form.until),
    };
    if outcome.is_err() {
        error = Some("The outcome is ok or error.".into());
    }
    let before = q.get("before").and_then(|b| b.parse::<i64>().ok());
    let mut entries = st.store.audit(&filter, before, PAGE + 1).await?;
    let more = entries.len() > PAGE as usize;
    entries.truncate(PAGE as usize);
    let next = more
        .then(|| entries.last().map(|e| e.seq))
        .flatten()
        .map(|seq| {
            let mut pairs: Vec<(String, String)> = [
                ("customer_id", &form.customer_id),
                ("group_id", &form.group_id),
                ("cause", &form.cause),
                ("operation", &form.operation),
                ("outcome", &form.outcome),
                ("since", &form.since),
                ("until", &form.until),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
            pairs.push(("before".into(), seq.to_string()));
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            format!("/admin/audit?{query}")
        });
    let entries = rows(&st, &zone, entries).await?;
    html(AuditPage {
        l: ctx.layout("Audit log", "audit"),
        filters: true,
        f: form,
        operations: OPERATIONS.to_vec(),
        error,
        entries,
        next,
        zone: zone.name().to_owned(),
    })
}

/// What the audits found out of step with Brivo: members added or removed by hand, strangers.
pub(super) async fn drift(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let zone = Zoned::of_space(st.store.as_ref()).await?;
    let filter = AuditFilter {
        cause: Some("drift".into()),
        ..Default::default()
    };
    let before = q.get("before").and_then(|b| b.parse::<i64>().ok());
    let mut entries = st.store.audit(&filter, before, PAGE + 1).await?;
    let more = entries.len() > PAGE as usize;
    entries.truncate(PAGE as usize);
    let next = more
        .then(|| {
            entries
                .last()
                .map(|e| format!("/admin/drift?before={}", e.seq))
        })
        .flatten();
    let entries = rows(&st, &zone, entries).await?;
    html(AuditPage {
        l: ctx.layout("Drift findings", "drift"),
        filters: false,
        f: AuditForm::default(),
        operations: vec![],
        error: None,
        entries,
        next,
        zone: zone.name().to_owned(),
    })
}

struct Found {
    id: String,
    name: String,
    email: String,
    status: String,
}

#[derive(Template)]
#[template(path = "admin/customers.html")]
struct CustomersPage {
    l: Layout,
    q: String,
    searched: bool,
    found: Vec<Found>,
}

fn status_words(s: doorsync_core::CustomerStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default()
}

pub(super) async fn customers(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let text = q.get("q").map(|s| s.trim().to_owned()).unwrap_or_default();
    let found = if text.is_empty() {
        vec![]
    } else {
        st.store
            .search(Kind::Customer, &text, 50)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Record::Customer(c) => Some(Found {
                    id: c.id.to_string(),
                    name: c.name,
                    email: c.email.as_str().to_owned(),
                    status: status_words(c.status),
                }),
                _ => None,
            })
            .collect()
    };
    html(CustomersPage {
        l: ctx.layout("Customers", "customers"),
        searched: !text.is_empty(),
        q: text,
        found,
    })
}

struct GroupLine {
    group: String,
    state: String,
    from: String,
    until: String,
    why: String,
}

#[derive(Template)]
#[template(path = "admin/customer.html")]
struct CustomerPage {
    l: Layout,
    id: String,
    name: String,
    email: String,
    status: String,
    notice: Option<String>,
    alarms: Vec<String>,
    now: Vec<GroupLine>,
    coming: Vec<GroupLine>,
    provider: Vec<String>,
    last_error: Option<String>,
    entries: Vec<EntryRow>,
    next: Option<String>,
    zone: String,
}

fn state_words(s: GroupState) -> &'static str {
    match s {
        GroupState::Held => "held",
        GroupState::Pending => "being added now",
        GroupState::Failing => "failing: see the errors below",
        GroupState::Due => "later",
        GroupState::NoConnection => "the location has no Brivo connection",
        GroupState::ConnectionDisabled => "the connection is disabled",
    }
}

pub(super) async fn customer(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let Ok(cid) = Id::parse(&id) else {
        return Err(PageError::not_found(format_args!("customer {id:?}")));
    };
    let Some(Record::Customer(c)) = st.store.get(Kind::Customer, cid.as_str()).await? else {
        return Err(PageError::not_found(format_args!("customer {id:?}")));
    };
    let now = st.clock.now();
    let subject = Subject::Customer(cid.clone());
    let Some(view) = access_view(st.store.as_ref(), &subject, now).await? else {
        return Err(PageError::not_found(format_args!("customer {id:?}")));
    };
    // Times in the zone of the customer's locations; the space's when they have none.
    let zone = match locations(st.store.as_ref()).await?.first() {
        Some(l) => Zoned::of(&l.timezone),
        None => Zoned::of_space(st.store.as_ref()).await?,
    };
    let line = |g: &doorsync_engine::access::GroupView| GroupLine {
        group: g.group_name.clone().map_or_else(
            || format!("group {}", g.group_id),
            |n| format!("{n} ({})", g.group_id),
        ),
        state: state_words(g.state).to_owned(),
        from: zone.when(g.from),
        until: g.until.map_or("open-ended".to_owned(), |u| zone.when(u)),
        why: g
            .reasons
            .iter()
            .map(|r| {
                let cause = cause_words(&r.cause);
                format!(
                    "{cause} ({} to {})",
                    zone.when(r.from),
                    r.until.map_or("open-ended".to_owned(), |u| zone.when(u))
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    let (coming, now_groups): (Vec<_>, Vec<_>) =
        view.groups.iter().partition(|g| g.state == GroupState::Due);
    let mut alarms = vec![];
    for h in &view.held_without_entitlement {
        let group = h
            .group_name
            .clone()
            .unwrap_or_else(|| format!("group {}", h.group_id));
        alarms.push(match h.state {
            HeldState::HeldPastEntitlement => format!(
                "Holds {group} past their entitlement{}: connection {} is disabled.",
                h.since
                    .map_or(String::new(), |s| format!(" since {}", zone.when(s))),
                h.connection_id
            ),
            HeldState::RemovalPending => {
                format!("Holds {group} without entitlement: doorsync is removing it now.")
            }
            HeldState::Failing => format!(
                "Holds {group} without entitlement and removing it failed: {}",
                h.error.as_deref().unwrap_or("see the errors below")
            ),
        });
    }
    let names = st
        .store
        .group_names(
            &view
                .provider
                .iter()
                .flat_map(|p| p.groups.iter().cloned())
                .collect(),
        )
        .await?;
    let provider = view
        .provider
        .iter()
        .map(|p| {
            let groups: Vec<String> = p
                .groups
                .iter()
                .map(|g| {
                    names
                        .get(g)
                        .cloned()
                        .unwrap_or_else(|| format!("group {g}"))
                })
                .collect();
            format!(
                "Brivo user {} in connection {}{}; groups: {}; Mobile Pass invitation {}.",
                p.user_id,
                p.connection_id,
                if p.suspended { " (suspended)" } else { "" },
                if groups.is_empty() {
                    "none".to_owned()
                } else {
                    groups.join(", ")
                },
                p.invited_at
                    .map_or("not sent".to_owned(), |t| format!("sent {}", zone.when(t)))
            )
        })
        .collect();
    let filter = AuditFilter {
        subject: Some(subject.key()),
        outcome: Some(doorsync_store::AuditOutcome::Error),
        ..Default::default()
    };
    let errors = st.store.audit(&filter, None, 10).await?;
    let entries = rows(&st, &zone, errors).await?;
    html(CustomerPage {
        l: ctx.layout(c.name.clone(), "customers"),
        id: cid.to_string(),
        name: c.name,
        email: c.email.as_str().to_owned(),
        status: status_words(c.status),
        notice: q.get("done").map(|_| {
            "A new invitation is on its way; it goes out with the customer's next sync.".to_owned()
        }),
        alarms,
        now: now_groups.into_iter().map(line).collect(),
        coming: coming.into_iter().map(line).collect(),
        provider,
        last_error: view.sync.and_then(|s| s.last_error),
        entries,
        next: None,
        zone: zone.name().to_owned(),
    })
}

fn cause_words(c: &doorsync_core::Cause) -> String {
    use doorsync_core::Cause;
    match c {
        Cause::Booking {
            booking_id,
            resource_id,
        } => format!("booking {booking_id} of {resource_id}"),
        Cause::PassGrant { pass_id, .. } => format!("pass {pass_id}"),
        Cause::Contract {
            contract_id,
            desk_id,
        } => format!("contract {contract_id} for {desk_id}"),
        Cause::TeamContract {
            contract_id,
            paying_member_id,
            ..
        } => format!("team contract {contract_id} of {paying_member_id}"),
        Cause::Visitor { visitor_id } => format!("visit {visitor_id}"),
    }
}

pub(super) async fn resend_invitation(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> PageResult {
    ctx.session()?;
    let Ok(cid) = Id::parse(&id) else {
        return Err(PageError::not_found(format_args!("customer {id:?}")));
    };
    if st.store.get(Kind::Customer, cid.as_str()).await?.is_none() {
        return Err(PageError::not_found(format_args!("customer {id:?}")));
    }
    st.store
        .request_invitation(&Subject::Customer(cid.clone()), st.clock.now())
        .await?;
    st.wake();
    see_other(&format!(
        "/admin/customers/{}?done=invitation",
        encode(cid.as_str())
    ))
}

/// Someone in now: customer id, name, since, covered by.
type Present = (String, String, String, String);

#[derive(Template)]
#[template(path = "admin/presence.html")]
struct PresencePage {
    l: Layout,
    zone: String,
    /// Per location: its name and who is in (id, name, since, covered by).
    locations: Vec<(String, Vec<Present>)>,
    /// When, who, where, covered by, left.
    checkins: Vec<(String, String, String, String, String)>,
    /// When, who, where, why.
    failed: Vec<(String, String, String, String)>,
}

fn reason_words(r: &str) -> &str {
    match r {
        "no_days_left" => "every day of their pass is used",
        "pass_expired" => "their pass has ended",
        "booking_not_started" => "their booking has not started",
        "booking_ended" => "their booking has ended",
        "contract_ended" => "their contract has ended",
        "not_a_customer" => "not a customer (a Brivo user doorsync does not know)",
        "nothing_here" => "nothing of theirs is at this location",
        other => other,
    }
}

/// Who is in now at each location, and the latest check-ins and failed check-ins.
pub(super) async fn presence(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
) -> PageResult {
    let store = st.store.as_ref();
    let now = st.clock.now();
    let zone = Zoned::of_space(store).await?;
    let locs = locations(store).await?;
    let names: std::collections::BTreeMap<String, String> = locs
        .iter()
        .map(|l| (l.id.to_string(), l.name.clone()))
        .collect();
    let dates = locs
        .iter()
        .map(|l| {
            (
                l.id.to_string(),
                now.to_zoned_datetime(l.timezone.tz()).date().to_string(),
            )
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let open: Vec<_> = store
        .open_checkins_on(&dates)
        .await?
        .into_iter()
        .filter(|c| seen.insert((c.location_id.clone(), c.customer_id.clone())))
        .collect();
    let mut customer_names = std::collections::BTreeMap::new();
    for c in &open {
        if !customer_names.contains_key(&c.customer_id)
            && let Some(Record::Customer(x)) = store.get(Kind::Customer, &c.customer_id).await?
        {
            customer_names.insert(c.customer_id.clone(), x.name);
        }
    }
    let where_ = |l: &str| names.get(l).cloned().unwrap_or_else(|| l.to_owned());
    let covered = |kind: &str, id: &Option<String>| match id {
        Some(id) => format!("{} {id}", kind.replace('_', " ")),
        None => kind.replace('_', " "),
    };
    let locations = locs
        .iter()
        .map(|l| {
            let here = open
                .iter()
                .filter(|c| c.location_id == l.id.as_str())
                .map(|c| {
                    (
                        c.customer_id.clone(),
                        customer_names
                            .get(&c.customer_id)
                            .cloned()
                            .unwrap_or_else(|| c.customer_id.clone()),
                        zone.when(c.checked_in_at),
                        covered(&c.covered_kind, &c.covered_id),
                    )
                })
                .collect();
            (l.name.clone(), here)
        })
        .collect();
    let filter = doorsync_store::PresenceFilter::default();
    let checkins = store
        .checkins(&filter, None, 20)
        .await?
        .into_iter()
        .map(|c| {
            (
                zone.when(c.checked_in_at),
                c.customer_id.clone(),
                where_(&c.location_id),
                covered(&c.covered_kind, &c.covered_id),
                zone.opt(c.checked_out_at),
            )
        })
        .collect();
    let failed = store
        .failed_checkins(&filter, None, 20)
        .await?
        .into_iter()
        .map(|f| {
            (
                zone.when(f.at),
                f.customer_id
                    .clone()
                    .or(f.provider_user_id.map(|u| format!("Brivo user {u}")))
                    .unwrap_or_default(),
                where_(&f.location_id),
                reason_words(&f.reason).to_owned(),
            )
        })
        .collect();
    html(PresencePage {
        l: ctx.layout("Presence", "presence"),
        zone: zone.name().to_owned(),
        locations,
        checkins,
        failed,
    })
}

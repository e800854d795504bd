//! `doorsync-bench sync`: doorsync's API and engine against an in-process brivo-sim over real
//! HTTP, measured in phases: first access, reconcile throughput with nothing to change and with
//! one change each, write-to-Brivo latency, the lateness of transitions due together under the
//! key's rate, revocations while new customers queue, and the calls an idle hour costs.

use anyhow::{Context, ensure};
use brivo_sim::{MembershipChange, MembershipOp};
use doorsync_core::{Clock, Subject};
use doorsync_engine::brivo::BrivoFactory;
use doorsync_engine::{Engine, EngineConfig};
use doorsync_store::Store;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::Backend;
use testkit::sync::SyncApp;

/// What to measure, and how big.
pub struct Options {
    pub backend: Backend,
    /// Customers given access first, then reconciled (the throughput phases).
    pub customers: usize,
    /// Write-to-Brivo samples, one write at a time.
    pub writes: usize,
    /// Transitions due in the same instant.
    pub transitions: usize,
    /// The key's rate while they fall due.
    pub transition_rate: u32,
    /// New customers queued ahead of the revocations.
    pub queued: usize,
    /// Revocations measured while they queue.
    pub revocations: usize,
}

fn ms(d: SignedDuration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`-th percentile (0..=100) of `v`, nearest rank.
fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn at(t: Timestamp) -> String {
    t.to_string()
}

struct Bench {
    s: SyncApp,
}

impl Bench {
    fn store(&self) -> &Arc<doorsync_store::SqlStore> {
        &self.s.app.store
    }

    async fn batch(&self, ops: Vec<Value>) -> anyhow::Result<()> {
        for piece in ops.chunks(10_000) {
            let res = self
                .s
                .app
                .client
                .post(self.s.app.url("/api/v1/batch"))
                .bearer_auth(&self.s.app.token)
                .json(&json!({ "operations": piece }))
                .send()
                .await?;
            ensure!(res.status() == 200, "batch: {}", res.status());
            let v: Value = res.json().await?;
            ensure!(
                v["summary"]["failed"] == 0,
                "batch failures: {}",
                v["summary"]
            );
        }
        Ok(())
    }

    /// Provider calls so far (every request brivo-sim answered) and its over-QPS answers.
    async fn calls(&self) -> anyhow::Result<(u64, u64)> {
        let rows: Vec<Value> = self
            .s
            .http
            .get(format!("{}/__sim/requests", self.s.sim.base_url()))
            .send()
            .await?
            .json()
            .await?;
        let count = |r: &Value| r["count"].as_u64().unwrap_or(0);
        let total = rows.iter().map(count).sum();
        let over = rows
            .iter()
            .filter(|r| r["status"] == 403 || r["status"] == 429)
            .map(count)
            .sum();
        Ok((total, over))
    }

    async fn sim_rate(&self, per_second: Option<u32>) -> anyhow::Result<()> {
        let res = self
            .s
            .http
            .put(format!("{}/__sim/rate-limit", self.s.sim.base_url()))
            .json(&json!({ "per_second": per_second }))
            .send()
            .await?;
        ensure!(res.status() == 200, "rate limit: {}", res.status());
        Ok(())
    }

    /// Sets the connection's rate (the key's limit as doorsync knows it).
    async fn connection_rate(&self, per_second: u32) -> anyhow::Result<()> {
        let (_, conn) = self.s.app.get_json("/api/v1/connections/brivo").await;
        let mut conn = conn.as_object().context("connection")?.clone();
        for k in ["id", "credentials_set"] {
            conn.remove(k);
        }
        conn.insert("requests_per_second".into(), json!(per_second));
        self.s
            .put_ok("/api/v1/connections/brivo", Value::Object(conn))
            .await;
        Ok(())
    }

    /// The first instant each subject was added to (or removed from) `group` at or after
    /// `since`, by externalId.
    fn changes(
        &self,
        group: u64,
        op: MembershipOp,
        since: Timestamp,
    ) -> BTreeMap<String, Timestamp> {
        let mut out = BTreeMap::new();
        for MembershipChange {
            at,
            group_id,
            external_id,
            op: o,
            ..
        } in self.s.sim.membership_history()
        {
            if group_id == group
                && o == op
                && at >= since
                && let Some(e) = external_id
            {
                out.entry(e).or_insert(at);
            }
        }
        out
    }

    /// Waits until `n` subjects have had `op` on `group` since `since`; gives up after `within`.
    async fn until_changed(
        &self,
        group: u64,
        op: MembershipOp,
        since: Timestamp,
        n: usize,
        within: Duration,
    ) -> anyhow::Result<BTreeMap<String, Timestamp>> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.changes(group, op, since);
            if got.len() >= n {
                return Ok(got);
            }
            ensure!(
                Instant::now() < deadline,
                "{} of {n} changes after {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until nothing is due now or in flight.
    async fn until_settled(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let d = self.store().due_summary(Timestamp::now()).await?;
            if d.due == 0 && d.in_flight == 0 {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "still {} due, {} in flight",
                d.due,
                d.in_flight
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn new_group(&self, resource: &str, name: &str) -> anyhow::Result<u64> {
        let g = self.s.brivo.create_group(name).await?.id;
        // The directory must know the group before a link to it is accepted.
        let _ = self
            .s
            .app
            .client
            .post(self.s.app.url("/api/v1/sync/resync?wait=true"))
            .bearer_auth(&self.s.app.token)
            .send()
            .await?;
        self.s
            .put_ok(
                &format!("/api/v1/resources/{resource}"),
                json!({"location_id": "hq", "name": name}),
            )
            .await;
        self.s
            .put_ok(
                &format!("/api/v1/links/resource/{resource}"),
                json!({"group_id": g.to_string()}),
            )
            .await;
        Ok(g)
    }
}

fn booking(id: &str, customer: &str, resource: &str, start: Timestamp, end: Timestamp) -> Value {
    json!({"op": "put", "collection": "bookings", "id": id,
           "body": {"customer_id": customer, "resource_id": resource, "start": at(start), "end": at(end)}})
}

fn engine(backend: Backend, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Arc<Engine> {
    // As `doorsync serve` runs: calls paced within the process on SQLite, through the database
    // on PostgreSQL. Audits and directory reads are left to the phases that ask for them.
    let providers = match backend {
        Backend::Sqlite => BrivoFactory::new(),
        Backend::Postgres => BrivoFactory::new().pacing_in(store.clone()),
    };
    let config = EngineConfig {
        owner: "bench".into(),
        audit_min_interval: Duration::from_secs(3600),
        audit_max_interval: Duration::from_secs(3600),
        directory_interval: Duration::from_secs(3600),
        ..EngineConfig::default()
    };
    Arc::new(Engine::new(store, clock, Arc::new(providers), config))
}

pub async fn run(o: &Options) -> anyhow::Result<Value> {
    let backend = o.backend;
    let s = SyncApp::spawn_with(backend, "PT1S", "PT1S", move |store, clock, _base| {
        engine(backend, store, clock)
    })
    .await
    .context("no database for this backend (PostgreSQL needs DOORSYNC_TEST_PG_URL)")?;
    let b = Bench { s };
    let day_pass = b.s.group("Day Pass");
    let room_1 = b.s.group("Meeting Room 1");
    let mut report = serde_json::Map::new();
    // The key's limit off, doorsync's rate at its highest: the phases that measure doorsync.
    b.sim_rate(None).await?;
    b.connection_rate(1000).await?;
    let now = Timestamp::now();
    let hour = SignedDuration::from_hours(1);
    let ids: Vec<String> = (0..o.customers).map(|i| format!("m{i}")).collect();

    // 1. First access: a customer and a day pass each, through the bulk intake.
    eprintln!("first access for {} customers", o.customers);
    let (calls0, _) = b.calls().await?;
    let mut ops = vec![];
    for c in &ids {
        ops.push(json!({"op": "put", "collection": "customers", "id": c,
                        "body": {"name": format!("Member {c}"), "email": format!("{c}@example.com")}}));
        ops.push(
            json!({"op": "put", "collection": "pass-grants", "id": format!("g-{c}"),
                        "body": {"customer_id": c, "pass_id": "day-pass",
                                 "valid_from": at(now - hour), "valid_until": at(now + 6 * hour)}}),
        );
    }
    let started = Instant::now();
    let since = Timestamp::now();
    b.batch(ops).await?;
    b.until_changed(
        day_pass,
        MembershipOp::Add,
        since,
        ids.len(),
        Duration::from_secs(600),
    )
    .await?;
    b.until_settled(Duration::from_secs(120)).await?;
    let secs = started.elapsed().as_secs_f64();
    let (calls1, _) = b.calls().await?;
    let per_first = (calls1 - calls0) as f64 / ids.len() as f64;
    eprintln!(
        "  {secs:.1} s, {:.0} customers/s, {per_first:.2} calls each",
        ids.len() as f64 / secs
    );
    report.insert(
        "first_access".into(),
        json!({"customers": ids.len(), "seconds": secs, "per_second": ids.len() as f64 / secs,
               "calls_per_customer": per_first}),
    );

    // 2. The periodic sweep: every customer reconciled with nothing to change.
    eprintln!("sweep of {} customers with nothing to change", ids.len());
    let started = Instant::now();
    let marked = Timestamp::now();
    for c in &ids {
        b.store()
            .mark_due(&Subject::Customer(doorsync_core::Id::parse(c)?), marked)
            .await?;
    }
    let mark_secs = started.elapsed().as_secs_f64();
    b.s.app.engine.as_ref().context("engine")?.wake();
    b.until_settled(Duration::from_secs(600)).await?;
    let secs = started.elapsed().as_secs_f64() - mark_secs;
    let (calls2, _) = b.calls().await?;
    eprintln!(
        "  {secs:.2} s, {:.0} customers/s, {:.3} ms each, {} calls",
        ids.len() as f64 / secs,
        secs * 1000.0 / ids.len() as f64,
        calls2 - calls1
    );
    report.insert(
        "sweep".into(),
        json!({"customers": ids.len(), "seconds": secs, "per_second": ids.len() as f64 / secs,
               "ms_per_customer": secs * 1000.0 / ids.len() as f64, "calls": calls2 - calls1}),
    );

    // 3. One change each: a booking of a linked room, current now.
    eprintln!("one change each for {} customers", ids.len());
    let ops = ids
        .iter()
        .map(|c| booking(&format!("r1-{c}"), c, "room-1", now, now + 6 * hour))
        .collect();
    let started = Instant::now();
    let since = Timestamp::now();
    b.batch(ops).await?;
    b.until_changed(
        room_1,
        MembershipOp::Add,
        since,
        ids.len(),
        Duration::from_secs(600),
    )
    .await?;
    b.until_settled(Duration::from_secs(120)).await?;
    let secs = started.elapsed().as_secs_f64();
    let (calls3, over3) = b.calls().await?;
    let per_change = (calls3 - calls2) as f64 / ids.len() as f64;
    eprintln!(
        "  {secs:.1} s, {:.0} customers/s, {per_change:.2} calls per change",
        ids.len() as f64 / secs
    );
    report.insert(
        "one_change_each".into(),
        json!({"customers": ids.len(), "seconds": secs, "per_second": ids.len() as f64 / secs,
               "calls_per_change": per_change, "over_qps": over3}),
    );

    // 4. Write-to-Brivo: one write at a time, from the request to the membership in brivo-sim.
    eprintln!("write-to-Brivo latency, {} writes", o.writes);
    let room_2 = b.s.group("Meeting Room 2");
    let mut sent = BTreeMap::new();
    for c in ids.iter().cycle().take(o.writes.min(ids.len())) {
        let t = Timestamp::now();
        let body = booking(&format!("r2-{c}"), c, "room-2", now, now + 6 * hour);
        let (status, got) =
            b.s.app
                .put_json(&format!("/api/v1/bookings/r2-{c}"), body["body"].clone())
                .await;
        ensure!(status == 201, "booking: {status} {got}");
        sent.insert(c.clone(), t);
        // One at a time: the next write waits for this one to reach Brivo.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !b.changes(room_2, MembershipOp::Add, t).contains_key(c) {
            ensure!(
                Instant::now() < deadline,
                "{c} not in Meeting Room 2 after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let added = b.changes(room_2, MembershipOp::Add, now);
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(c, t)| added.get(c).map(|a| ms(a.duration_since(*t))))
        .collect();
    let (p50, p99) = (pct(&mut lat, 50.0), pct(&mut lat, 99.0));
    eprintln!("  p50 {p50:.1} ms, p99 {p99:.1} ms");
    let (calls4, _) = b.calls().await?;
    report.insert(
        "write_to_brivo".into(),
        json!({"writes": lat.len(), "p50_ms": p50, "p99_ms": p99, "max_ms": pct(&mut lat, 100.0),
               "calls_per_change": (calls4 - calls3) as f64 / lat.len() as f64}),
    );

    // 5. Transitions due together, under the key's rate: each customer's room-3 booking starts
    // at the same instant.
    let n = o.transitions.min(ids.len());
    let rate = o.transition_rate;
    eprintln!("{n} transitions due together at {rate} calls/s");
    let room_3 = b.new_group("room-3", "Meeting Room 3").await?;
    b.connection_rate(rate).await?;
    b.sim_rate(Some(rate)).await?;
    let start = Timestamp::now() + SignedDuration::from_secs(10 + n as i64 / 1000);
    let due = start - SignedDuration::from_secs(1);
    let ops = ids[..n]
        .iter()
        .map(|c| booking(&format!("r3-{c}"), c, "room-3", start, start + 6 * hour))
        .collect();
    b.batch(ops).await?;
    let (calls5, _) = b.calls().await?;
    // At the paced rate (the key's limit less doorsync's margin), the k-th add can be done no
    // sooner than k intervals after they fall due.
    let paced = f64::from(rate) / 1.1;
    let got = b
        .until_changed(
            room_3,
            MembershipOp::Add,
            due,
            n,
            Duration::from_secs(60 + (2.0 * n as f64 / paced) as u64),
        )
        .await?;
    let mut times: Vec<Timestamp> = got.values().copied().collect();
    times.sort();
    let mut late: Vec<f64> = times
        .iter()
        .enumerate()
        .map(|(k, t)| (ms(t.duration_since(due)) - k as f64 * 1000.0 / paced).max(0.0))
        .collect();
    let mut late_key: Vec<f64> = times
        .iter()
        .enumerate()
        .map(|(k, t)| (ms(t.duration_since(due)) - k as f64 * 1000.0 / f64::from(rate)).max(0.0))
        .collect();
    let (calls6, over6) = b.calls().await?;
    let (p50, p99) = (pct(&mut late, 50.0), pct(&mut late, 99.0));
    eprintln!(
        "  lateness beyond the paced bound p50 {p50:.0} ms, p99 {p99:.0} ms; last done {:.1} s after due",
        ms(times
            .last()
            .map_or(SignedDuration::ZERO, |t| t.duration_since(due)))
            / 1000.0
    );
    report.insert(
        "transitions_due_together".into(),
        json!({"transitions": n, "rate": rate, "p50_ms": p50, "p99_ms": p99,
               "p99_beyond_the_keys_limit_ms": pct(&mut late_key, 99.0),
               "last_done_s": ms(times.last().map_or(SignedDuration::ZERO, |t| t.duration_since(due))) / 1000.0,
               "calls_per_change": (calls6 - calls5) as f64 / n as f64, "over_qps": over6}),
    );
    b.until_settled(Duration::from_secs(60)).await?;

    // 6. Revocations while new customers queue: at Brivo's default 10 calls a second, queue
    // first access for many new customers, then end bookings of existing ones one after another.
    let r = o.revocations.min(ids.len());
    eprintln!(
        "{r} revocations while {} new customers queue at 10 calls/s",
        o.queued
    );
    b.connection_rate(10).await?;
    b.sim_rate(Some(10)).await?;
    let mut ops = vec![];
    for i in 0..o.queued {
        let c = format!("q{i}");
        ops.push(json!({"op": "put", "collection": "customers", "id": c,
                        "body": {"name": format!("New {c}"), "email": format!("{c}@example.com")}}));
        ops.push(
            json!({"op": "put", "collection": "pass-grants", "id": format!("g-{c}"),
                        "body": {"customer_id": c, "pass_id": "day-pass",
                                 "valid_from": at(now - hour), "valid_until": at(now + 6 * hour)}}),
        );
    }
    b.batch(ops).await?;
    let first_end = Timestamp::now() + SignedDuration::from_secs(5);
    let mut dues = BTreeMap::new();
    let ops = ids[..r]
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let end = first_end + SignedDuration::from_millis(500 * i as i64);
            // The revocation falls due the lag (1 s) after the booking ends.
            dues.insert(c.clone(), end + SignedDuration::from_secs(1));
            booking(&format!("r1-{c}"), c, "room-1", now, end)
        })
        .collect();
    b.batch(ops).await?;
    let removed = b
        .until_changed(
            room_1,
            MembershipOp::Remove,
            first_end,
            r,
            Duration::from_secs(120),
        )
        .await?;
    let mut late: Vec<f64> = dues
        .iter()
        .filter_map(|(c, d)| removed.get(c).map(|t| ms(t.duration_since(*d)).max(0.0)))
        .collect();
    let queued_served = b
        .changes(day_pass, MembershipOp::Add, now)
        .keys()
        .filter(|k| k.starts_with('q'))
        .count();
    let (p50, p99) = (pct(&mut late, 50.0), pct(&mut late, 99.0));
    eprintln!(
        "  revocation lateness p50 {p50:.0} ms, p99 {p99:.0} ms ({queued_served} of {} queued served meanwhile)",
        o.queued
    );
    report.insert(
        "revocations_while_queued".into(),
        json!({"revocations": late.len(), "queued": o.queued, "queued_served_meanwhile": queued_served,
               "p50_ms": p50, "p99_ms": p99, "max_ms": pct(&mut late, 100.0)}),
    );

    // 7. An idle hour: the audit's cost in calls, and how often the budget lets it run.
    eprintln!("the idle hour");
    // The queue left from the last phase is not the question here: lift the rate limit.
    b.sim_rate(None).await?;
    b.connection_rate(1000).await?;
    b.until_settled(Duration::from_secs(900)).await?;
    let (before, _) = b.calls().await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (after_idle, _) = b.calls().await?;
    let res =
        b.s.app
            .client
            .post(b.s.app.url("/api/v1/sync/resync?wait=true"))
            .bearer_auth(&b.s.app.token)
            .send()
            .await?;
    ensure!(res.status() == 200, "resync: {}", res.status());
    let audit: Value = res.json().await?;
    let audit_calls = audit["audits"][0]["calls"].as_u64().unwrap_or(0);
    let members = audit["audits"][0]["members_seen"].as_u64().unwrap_or(0);
    // Mid-month, nothing else spent: how often the default budget lets the audit run.
    let delay = doorsync_engine::budget::next_audit_delay(
        doorsync_core::DEFAULT_MONTHLY_CALL_BUDGET,
        0,
        audit_calls,
        Duration::from_secs(15 * 24 * 3600),
        EngineConfig::default().audit_min_interval,
        EngineConfig::default().audit_max_interval,
    );
    let per_hour = audit_calls as f64 * 3600.0 / delay.as_secs_f64();
    eprintln!(
        "  {} calls in 10 idle seconds; an audit of {members} memberships costs {audit_calls} calls, every {:.0} min: {per_hour:.1} calls an hour",
        after_idle - before,
        delay.as_secs_f64() / 60.0
    );
    report.insert(
        "idle_hour".into(),
        json!({"calls_in_10_idle_seconds": after_idle - before, "audit_calls": audit_calls,
               "audit_members": members, "audit_every_s": delay.as_secs_f64(),
               "calls_per_hour": per_hour}),
    );
    b.s.stop().await;
    Ok(Value::Object(report))
}

/// A revocation due one second after a location's lead changes, with `customers` customers
/// holding bookings of its rooms: the edit makes every one of them due, and the revocation must
/// still land within a second of its due time (it used to be served after all of them).
pub async fn lead_edit(backend: Backend, customers: usize) -> anyhow::Result<Value> {
    let s = SyncApp::spawn_with(backend, "PT1S", "PT1S", move |store, clock, _base| {
        engine(backend, store, clock)
    })
    .await
    .context("no database for this backend (PostgreSQL needs DOORSYNC_TEST_PG_URL)")?;
    let b = Bench { s };
    let room_1 = b.s.group("Meeting Room 1");
    b.sim_rate(None).await?;
    b.connection_rate(1000).await?;
    let now = Timestamp::now();
    let hour = SignedDuration::from_hours(1);
    // The one who will lose access: in Meeting Room 1 now.
    let start = Instant::now();
    b.batch(vec![
        json!({"op": "put", "collection": "customers", "id": "leaving",
               "body": {"name": "Leaving", "email": "leaving@example.com"}}),
        booking(
            "b-leaving",
            "leaving",
            "room-1",
            now - hour,
            now + 24 * hour,
        ),
    ])
    .await?;
    b.until_changed(
        room_1,
        MembershipOp::Add,
        now - hour,
        1,
        Duration::from_secs(60),
    )
    .await?;
    // Everyone else has a room booked tomorrow: the edit reaches them all.
    let mut ops = vec![];
    for i in 0..customers {
        let c = format!("m{i}");
        ops.push(json!({"op": "put", "collection": "customers", "id": c,
                        "body": {"name": format!("Member {c}"), "email": format!("{c}@example.com")}}));
        ops.push(booking(
            &format!("b-{c}"),
            &c,
            "room-1",
            now + 24 * hour,
            now + 25 * hour,
        ));
    }
    b.batch(ops).await?;
    b.until_settled(Duration::from_secs(1800)).await?;
    eprintln!(
        "{customers} customers with a room booked, 1 in the room: set up in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    // Her booking ends at the edit; with the 1 s lag, her access ends a second after it.
    let edit_at = Timestamp::now() + SignedDuration::from_secs(3);
    b.batch(vec![booking(
        "b-leaving",
        "leaving",
        "room-1",
        now - hour,
        edit_at,
    )])
    .await?;
    b.until_settled(Duration::from_secs(60)).await?;
    let due = edit_at + SignedDuration::from_secs(1);
    let wait: Duration = edit_at
        .duration_since(Timestamp::now())
        .try_into()
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    let (_, hq) = b.s.app.get_json("/api/v1/locations/hq").await;
    let mut hq = hq.as_object().context("location")?.clone();
    hq.remove("id");
    hq.insert("lead".into(), json!("PT2M"));
    b.s.put_ok("/api/v1/locations/hq", Value::Object(hq)).await;
    let marked = b.store().due_summary(Timestamp::now()).await?;
    let removed = b
        .until_changed(
            room_1,
            MembershipOp::Remove,
            edit_at,
            1,
            Duration::from_secs(600),
        )
        .await?;
    let late = removed
        .get("leaving")
        .map(|t| ms(t.duration_since(due)))
        .context("the revocation was not seen")?;
    eprintln!(
        "  lead edited: {} due at once; the revocation due 1 s later landed {late:.0} ms after its due time",
        marked.due + marked.in_flight
    );
    b.until_settled(Duration::from_secs(1800)).await?;
    b.s.stop().await;
    Ok(json!({"revocation_after_lead_edit": {
        "customers": customers, "due_after_edit": marked.due + marked.in_flight,
        "lateness_ms": late}}))
}

/// The report as a Markdown table, one line a figure.
pub fn table(r: &Value) -> String {
    let f = |v: &Value| match v.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => v.to_string(),
    };
    let mut out = String::from("| phase | figure | value |\n| --- | --- | --- |\n");
    if let Value::Object(phases) = r {
        for (phase, figures) in phases {
            if let Value::Object(figures) = figures {
                for (name, v) in figures {
                    out.push_str(&format!("| {phase} | {name} | {} |\n", f(v)));
                }
            }
        }
    }
    out
}

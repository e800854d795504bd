//! `doorsync-bench soak`: the access-integrity soak. Real `doorsync serve` processes (one on
//! SQLite, or several on one PostgreSQL database) against an in-process brivo-sim that enforces
//! the key's rate, with a random booking workload over compressed hours (bookings of seconds,
//! lead and lag of two seconds), faults injected in brivo-sim (5xx, over-QPS, 429, timeouts,
//! dropped connections, expired tokens, an outage of tens of seconds), and instances killed
//! with SIGKILL and started again. The verdict reads only the writes doorsync acknowledged and
//! brivo-sim's membership history (see [`truth`]).

mod procs;
pub mod truth;

use crate::workload::Rng;
use anyhow::{Context, bail, ensure};
use brivo_sim::{MembershipOp, SimOptions};
use jiff::{SignedDuration, Timestamp};
use procs::{Instance, Setup};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use testkit::{Backend, TestDb};
use truth::{Change, Figures, Held, Span, Versions};

/// The location's lead and lag, in seconds: hours compressed into seconds.
const BUFFER: f64 = 2.0;

/// The key's limit, set in brivo-sim and on the connection alike.
const RATE: u32 = 10;

/// The bookable rooms and day offices, with the brivo-sim groups they open.
const RESOURCES: [(&str, &str); 6] = [
    ("room-1", "Meeting Room 1"),
    ("room-2", "Meeting Room 2"),
    ("room-3", "Meeting Room 3"),
    ("office-1", "Private Office 1"),
    ("office-2", "Private Office 2"),
    ("office-3", "Private Office 3"),
];

#[derive(Debug, Clone)]
pub struct Options {
    pub backend: Backend,
    pub instances: usize,
    /// How long the workload runs; the soak then waits for the last bookings to end.
    pub seconds: u64,
    pub seed: u64,
    /// Seconds a change may take to reach Brivo before it counts.
    pub tolerance: f64,
    pub customers: usize,
    pub kills: usize,
    pub faults: usize,
    /// How long brivo-sim answers nothing but 503, once, in the middle.
    pub outage: u64,
    /// brivo-sim acknowledges removals and keeps the memberships: the soak must fail.
    pub lose_revocations: bool,
    pub doorsync: PathBuf,
}

impl Options {
    /// The form `scripts/test` runs: one instance on SQLite, under a minute.
    pub fn short(doorsync: PathBuf) -> Options {
        Options {
            backend: Backend::Sqlite,
            instances: 1,
            seconds: 40,
            seed: 1,
            tolerance: 15.0,
            customers: 12,
            kills: 2,
            faults: 4,
            outage: 8,
            lose_revocations: false,
            doorsync,
        }
    }

    /// Under ten minutes: on PostgreSQL, two instances.
    pub fn long(backend: Backend, doorsync: PathBuf) -> Options {
        Options {
            backend,
            instances: if backend == Backend::Postgres { 2 } else { 1 },
            seconds: 360,
            customers: 40,
            kills: 6,
            faults: 24,
            outage: 25,
            ..Options::short(doorsync)
        }
    }
}

/// What the soak saw, and its verdict.
#[derive(Debug, Clone)]
pub struct Report {
    pub writes: usize,
    pub faults: usize,
    pub kills: usize,
    pub outages: Vec<Span>,
    pub membership_changes: usize,
    /// Bookings whose stored state differs from the last acknowledged write.
    pub lost_writes: Vec<String>,
    pub figures: Figures,
    /// Seconds observed, from the first write to the verdict.
    pub observed: f64,
    pub logs: PathBuf,
}

impl Report {
    pub fn pass(&self) -> bool {
        self.figures.outside == 0.0 && self.figures.unserved == 0.0 && self.lost_writes.is_empty()
    }

    pub fn json(&self, o: &Options) -> Value {
        let f = &self.figures;
        json!({
            "database": if o.backend == Backend::Postgres { "postgres" } else { "sqlite" },
            "instances": o.instances,
            "seed": o.seed,
            "workload_seconds": o.seconds,
            "observed_seconds": round(self.observed),
            "tolerance_seconds": o.tolerance,
            "lead_and_lag_seconds": BUFFER,
            "customers": o.customers,
            "writes_acknowledged": self.writes,
            "faults_injected": self.faults,
            "outages": self.outages.iter().map(|(a, b)| json!([round(*a), round(*b)])).collect::<Vec<_>>(),
            "kills": self.kills,
            "membership_changes": self.membership_changes,
            "entitled_seconds": round(f.entitled),
            "held_seconds": round(f.held),
            "outside_entitlement_seconds": round(f.outside),
            "unserved_seconds": round(f.unserved),
            "lost_writes": self.lost_writes,
            "worst_removal_lateness_seconds": round(f.worst_outside),
            "worst_grant_lateness_seconds": round(f.worst_unserved),
            "violations": f.violations.iter().map(|v| json!({
                "customer": v.customer, "group": v.group, "kind": v.kind,
                "from": round(v.from), "until": round(v.until),
            })).collect::<Vec<_>>(),
            "pass": self.pass(),
            "logs": self.logs.display().to_string(),
        })
    }

    pub fn table(&self, o: &Options) -> String {
        let f = &self.figures;
        let db = if o.backend == Backend::Postgres {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        format!(
            "| database | instances | observed (s) | writes | faults | outages (s) | kills | membership changes | outside (s) | unserved (s) | lost writes | worst removal (s) | worst grant (s) | tolerance (s) | verdict |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n\
             | {db} | {} | {:.0} | {} | {} | {:.0} | {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {} | {} |\n",
            o.instances,
            self.observed,
            self.writes,
            self.faults,
            self.outages.iter().map(|(a, b)| b - a).sum::<f64>(),
            self.kills,
            self.membership_changes,
            f.outside,
            f.unserved,
            self.lost_writes.len(),
            f.worst_outside,
            f.worst_unserved,
            o.tolerance,
            if self.pass() { "pass" } else { "FAIL" },
        )
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Something the soak does to the system at an instant of its run.
#[derive(Debug, Clone)]
enum Event {
    Fault(Value),
    ExpireTokens,
    Outage(u64),
    Kill(usize),
}

/// The outage at 40 % of the run; faults and kills spread evenly (with some jitter) over the
/// rest of it, apart from each other and from the outage. A fault is a burst of a few bad
/// answers, as Brivo gives now and then; the outage is the long failure.
fn schedule(rng: &mut Rng, o: &Options) -> Vec<(f64, Event)> {
    let span = o.seconds as f64;
    let outage = span * 0.4;
    // Before the outage, and from a few seconds after it to near the end.
    let parts = [
        (span * 0.05, outage - 1.0),
        (outage + o.outage as f64 + 6.0, span * 0.9),
    ];
    let usable: f64 = parts.iter().map(|(a, b)| (b - a).max(0.0)).sum();
    let mut events: Vec<Event> = (0..o.faults).map(|_| fault(rng)).collect();
    for k in 0..o.kills {
        let at = ((k as f64 + 0.5) * events.len() as f64 / o.kills as f64).round() as usize;
        let at = (at + k).min(events.len());
        events.insert(at, Event::Kill(rng.below(o.instances as u64) as usize));
    }
    let slot = usable / events.len().max(1) as f64;
    let mut out = vec![(outage, Event::Outage(o.outage))];
    for (i, e) in events.into_iter().enumerate() {
        let jitter = (rng.below(1000) as f64 / 1000.0 - 0.5) * 0.6 * slot;
        let mut x = slot * (i as f64 + 0.5) + jitter;
        let mut when = parts[1].1;
        for (a, b) in parts {
            let len = (b - a).max(0.0);
            if x <= len {
                when = a + x;
                break;
            }
            x -= len;
        }
        out.push((when, e));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

fn fault(rng: &mut Rng) -> Event {
    match rng.below(7) {
        0 => Event::ExpireTokens,
        1 => Event::Fault(
            json!({"path": "/v1/api/*", "kind": "status", "status": 503, "count": 1 + rng.below(3)}),
        ),
        2 => {
            Event::Fault(json!({"path": "/v1/api/*", "kind": "status", "status": 500, "count": 2}))
        }
        3 => Event::Fault(json!({"path": "/v1/api/*", "kind": "over_qps", "count": 3})),
        4 => Event::Fault(json!({"path": "/v1/api/*", "kind": "too_many_requests", "count": 2})),
        5 => Event::Fault(json!({"path": "/v1/api/*", "kind": "drop", "count": 2})),
        // Past the client's 10 s timeout.
        _ => Event::Fault(
            json!({"path": "/v1/api/*", "kind": "latency", "latency_ms": 11_000, "count": 1}),
        ),
    }
}

struct Api {
    http: reqwest::Client,
    token: String,
    sim: String,
}

impl Api {
    async fn put(&self, base: &str, path: &str, body: &Value) -> anyhow::Result<()> {
        let res = self
            .http
            .put(format!("{base}/api/v1/{path}"))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("PUT {path}"))?;
        let status = res.status();
        ensure!(
            status.is_success(),
            "PUT {path}: {status} {}",
            res.text().await.unwrap_or_default()
        );
        Ok(())
    }

    async fn sim(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}/__sim/{path}", self.sim));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status();
        ensure!(status.is_success(), "brivo-sim {path}: {status}");
        Ok(res.json().await.unwrap_or(Value::Null))
    }
}

/// A booking as the workload last wrote it.
#[derive(Debug, Clone)]
struct Booking {
    customer: String,
    resource: usize,
    start: f64,
    end: f64,
    cancelled: bool,
}

pub async fn run(o: &Options) -> anyhow::Result<Report> {
    ensure!(o.instances >= 1, "at least one instance");
    ensure!(
        o.instances == 1 || o.backend == Backend::Postgres,
        "several instances need PostgreSQL"
    );
    let db = TestDb::new(o.backend).await.context(
        "the PostgreSQL soak needs DOORSYNC_TEST_PG_URL (a server it may create databases on)",
    )?;
    let dir = std::env::temp_dir().join(format!(
        "doorsync-soak-{}-{}",
        std::process::id(),
        Timestamp::now().as_millisecond()
    ));
    std::fs::create_dir_all(&dir)?;
    let sim = brivo_sim::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        SimOptions::default(),
    )
    .await?;
    let setup = Setup {
        binary: o.doorsync.clone(),
        database: db.url.clone(),
        secret_key: secret_key(),
        dir: dir.clone(),
    };
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        token: setup.token()?,
        sim: sim.base_url(),
    };
    let mut instances = (0..o.instances)
        .map(Instance::new)
        .collect::<anyhow::Result<Vec<_>>>()?;
    for i in &mut instances {
        i.start(&setup, &api.http).await?;
    }
    let groups = configure(&api, &instances[0].base, &sim, o).await?;
    api.sim(
        reqwest::Method::PUT,
        "rate-limit",
        Some(json!({"per_second": RATE})),
    )
    .await?;
    let mut kept_faults = vec![];
    if o.lose_revocations {
        let f = api
            .sim(
                reqwest::Method::POST,
                "faults",
                Some(json!({"path": "/v1/api/groups/*/users/*", "method": "DELETE", "kind": "ignore"})),
            )
            .await?;
        kept_faults.push(f["id"].as_u64().unwrap_or(0));
    }

    let t0 = Timestamp::now();
    let secs = || Timestamp::now().duration_since(t0).as_secs_f64();
    let mut rng = Rng::new(o.seed);
    let events = schedule(&mut rng, o);
    let mut next_event = 0;
    let mut outage: Option<(u64, f64, f64)> = None;
    let mut outages = vec![];
    let (mut faults, mut kills) = (0, 0);
    let mut ledger: BTreeMap<String, Versions> = BTreeMap::new();
    let mut state: BTreeMap<String, Option<Booking>> = BTreeMap::new();
    let mut writes = 0;
    let span = o.seconds as f64;
    let mut last_progress = 0.0;
    while secs() < span {
        while let Some((_, event)) = events.get(next_event).filter(|(at, _)| *at <= secs()) {
            next_event += 1;
            match event {
                Event::Fault(f) => {
                    api.sim(reqwest::Method::POST, "faults", Some(f.clone()))
                        .await?;
                    faults += 1;
                }
                Event::ExpireTokens => {
                    api.sim(reqwest::Method::POST, "tokens/expire", None)
                        .await?;
                    faults += 1;
                }
                Event::Outage(d) if outage.is_none() => {
                    let f = api
                        .sim(
                            reqwest::Method::POST,
                            "faults",
                            Some(json!({"path": "*", "kind": "status", "status": 503})),
                        )
                        .await?;
                    let now = secs();
                    outage = Some((f["id"].as_u64().unwrap_or(0), now, now + *d as f64));
                    faults += 1;
                }
                Event::Outage(_) => {}
                Event::Kill(n) => {
                    let inst = &mut instances[*n];
                    inst.kill();
                    kills += 1;
                    inst.start(&setup, &api.http).await?;
                }
            }
        }
        if let Some((id, from, until)) = outage
            && secs() >= until
        {
            api.sim(reqwest::Method::DELETE, &format!("faults/{id}"), None)
                .await?;
            outages.push((from, secs()));
            outage = None;
        }
        let up: Vec<usize> = (0..instances.len())
            .filter(|i| instances[*i].is_up())
            .collect();
        let base = &instances[up[rng.below(up.len() as u64) as usize]].base;
        let (id, booking) = next_write(&mut rng, &state, o, secs(), span);
        write(&api, base, t0, &id, booking.as_ref()).await?;
        let acked = secs();
        writes += 1;
        ledger.entry(id.clone()).or_default().push((
            acked,
            booking.as_ref().filter(|b| !b.cancelled).map(|b| Held {
                customer: b.customer.clone(),
                group: groups[b.resource],
                from: b.start - BUFFER,
                until: b.end + BUFFER,
            }),
        ));
        state.insert(id, booking);
        if acked - last_progress >= 10.0 {
            last_progress = acked;
            eprint!(
                "\rsoak: {acked:.0}/{span:.0} s, {writes} writes, {faults} faults, {kills} kills   "
            );
        }
        tokio::time::sleep(Duration::from_millis(150 + rng.below(550))).await;
    }
    if let Some((id, from, _)) = outage {
        api.sim(reqwest::Method::DELETE, &format!("faults/{id}"), None)
            .await?;
        outages.push((from, secs()));
    }
    // Faults left unused go, so that the ending is judged on a working Brivo.
    let listed = api.sim(reqwest::Method::GET, "faults", None).await?;
    for f in listed.as_array().into_iter().flatten() {
        let id = f["id"].as_u64().unwrap_or(0);
        if !kept_faults.contains(&id) {
            api.sim(reqwest::Method::DELETE, &format!("faults/{id}"), None)
                .await?;
        }
    }
    let last_end = state
        .values()
        .flatten()
        .map(|b| b.end + BUFFER)
        .fold(span, f64::max);
    eprintln!(
        "\rsoak: workload done; waiting for the last bookings to end at {last_end:.0} s and the engine to settle"
    );
    settle(&api, &instances, || secs() >= last_end + o.tolerance + 1.0).await?;
    let end = secs();

    let lost_writes = read_back(&api, &instances, t0, &state).await?;
    let history: Vec<Change> = sim
        .membership_history()
        .into_iter()
        .filter_map(|c| {
            Some(Change {
                at: c.at.duration_since(t0).as_secs_f64(),
                customer: c.external_id?,
                group: c.group_id,
                added: c.op == MembershipOp::Add,
            })
        })
        .collect();
    let figures = truth::judge(
        &truth::memberships(&history, end),
        &truth::entitled(&ledger),
        &outages,
        end,
        o.tolerance,
    );
    let report = Report {
        writes,
        faults,
        kills,
        outages,
        membership_changes: history.len(),
        lost_writes,
        figures,
        observed: end,
        logs: dir.clone(),
    };
    drop(instances);
    sim.shutdown().await;
    if report.pass() {
        db.drop_db().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report)
}

fn secret_key() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("random bytes");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The connection (with the key's rate), one location with short buffers, the rooms and
/// offices linked to brivo-sim's groups, and the customers. Returns each resource's group.
async fn configure(
    api: &Api,
    base: &str,
    sim: &brivo_sim::SimHandle,
    o: &Options,
) -> anyhow::Result<Vec<u64>> {
    let account = sim.account();
    let brivo = testkit::sync::sim_client(sim);
    let by_name: BTreeMap<String, u64> = brivo
        .list_groups(None)
        .await?
        .into_iter()
        .map(|g| (g.name, g.id))
        .collect();
    let site = brivo.list_sites(None).await?[0].id;
    api.put(
        base,
        "connections/brivo",
        &json!({
            "api_url": sim.api_url(), "auth_url": sim.auth_url(),
            "api_key": account.api_key, "client_id": account.client_id,
            "client_secret": account.client_secret,
            "admin_id": account.admin_id, "password": account.password,
            "requests_per_second": RATE,
        }),
    )
    .await?;
    let buffer = format!("PT{}S", BUFFER as u64);
    api.put(
        base,
        "locations/hq",
        &json!({"name": "HQ", "timezone": "Europe/London", "connection_id": "brivo",
                "site_id": site.to_string(), "lead": buffer, "lag": buffer}),
    )
    .await?;
    let mut groups = vec![];
    for (id, group) in RESOURCES {
        api.put(
            base,
            &format!("resources/{id}"),
            &json!({"location_id": "hq", "name": group}),
        )
        .await?;
        let gid = *by_name
            .get(group)
            .with_context(|| format!("brivo-sim has no group {group:?}"))?;
        api.put(
            base,
            &format!("links/resource/{id}"),
            &json!({"group_id": gid.to_string()}),
        )
        .await?;
        groups.push(gid);
    }
    for c in 0..o.customers {
        api.put(
            base,
            &format!("customers/c-{c}"),
            &json!({"name": format!("Member {c}"), "email": format!("c-{c}@example.com")}),
        )
        .await?;
    }
    Ok(groups)
}

/// The next write: a new booking most often, else a move, a change of room, a cancellation or
/// a deletion of one already written.
fn next_write(
    rng: &mut Rng,
    state: &BTreeMap<String, Option<Booking>>,
    o: &Options,
    now: f64,
    span: f64,
) -> (String, Option<Booking>) {
    let live: Vec<&String> = state
        .iter()
        .filter(|(_, b)| {
            b.as_ref()
                .is_some_and(|b| !b.cancelled && b.end > now - 5.0)
        })
        .map(|(id, _)| id)
        .collect();
    let window = |rng: &mut Rng| {
        let start = now - 5.0 + rng.below(30_000) as f64 / 1000.0;
        let end = (start + 4.0 + rng.below(30_000) as f64 / 1000.0).min(span + 20.0);
        (start, end.max(start + 1.0))
    };
    let pick = rng.below(100);
    if live.is_empty() || pick < 45 {
        let (start, end) = window(rng);
        let booking = Booking {
            customer: format!("c-{}", rng.below(o.customers as u64)),
            resource: rng.below(RESOURCES.len() as u64) as usize,
            start,
            end,
            cancelled: false,
        };
        return (format!("b-{}", state.len()), Some(booking));
    }
    let id = live[rng.below(live.len() as u64) as usize].clone();
    let mut b = state[&id].clone().expect("live");
    match pick {
        45..=64 => (b.start, b.end) = window(rng),
        65..=74 => b.resource = rng.below(RESOURCES.len() as u64) as usize,
        75..=89 => b.cancelled = true,
        _ => return (id, None),
    }
    (id, Some(b))
}

fn instant(t0: Timestamp, s: f64) -> Timestamp {
    t0 + SignedDuration::from_millis((s * 1000.0).round() as i64)
}

fn body(t0: Timestamp, b: &Booking) -> Value {
    json!({
        "customer_id": b.customer,
        "resource_id": RESOURCES[b.resource].0,
        "start": instant(t0, b.start).to_string(),
        "end": instant(t0, b.end).to_string(),
        "status": if b.cancelled { "cancelled" } else { "confirmed" },
    })
}

async fn write(
    api: &Api,
    base: &str,
    t0: Timestamp,
    id: &str,
    booking: Option<&Booking>,
) -> anyhow::Result<()> {
    match booking {
        Some(b) => api.put(base, &format!("bookings/{id}"), &body(t0, b)).await,
        None => {
            let res = api
                .http
                .delete(format!("{base}/api/v1/bookings/{id}"))
                .bearer_auth(&api.token)
                .send()
                .await?;
            ensure!(
                res.status().is_success(),
                "DELETE bookings/{id}: {}",
                res.status()
            );
            Ok(())
        }
    }
}

/// Waits until `ready` holds and nothing is due or in flight, for two minutes at most.
async fn settle(api: &Api, instances: &[Instance], ready: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let status: Value = api
            .http
            .get(format!("{}/api/v1/sync/status", instances[0].base))
            .bearer_auth(&api.token)
            .send()
            .await?
            .json()
            .await?;
        if ready() && status["due"] == 0 && status["in_flight"] == 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("the engine did not settle in two minutes: {status}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Bookings whose stored state is not the last one acknowledged.
async fn read_back(
    api: &Api,
    instances: &[Instance],
    t0: Timestamp,
    state: &BTreeMap<String, Option<Booking>>,
) -> anyhow::Result<Vec<String>> {
    let mut lost = vec![];
    for (n, (id, booking)) in state.iter().enumerate() {
        let base = &instances[n % instances.len()].base;
        let res = api
            .http
            .get(format!("{base}/api/v1/bookings/{id}"))
            .bearer_auth(&api.token)
            .send()
            .await?;
        let same = match booking {
            None => res.status() == 404,
            Some(b) if res.status() == 200 => {
                let got: Value = res.json().await?;
                let want = body(t0, b);
                let at =
                    |v: &Value, k: &str| v[k].as_str().and_then(|s| s.parse::<Timestamp>().ok());
                ["customer_id", "resource_id", "status"]
                    .iter()
                    .all(|k| got[k] == want[k])
                    && ["start", "end"].iter().all(|k| at(&got, k) == at(&want, k))
            }
            Some(_) => false,
        };
        if !same {
            lost.push(id.clone());
        }
    }
    Ok(lost)
}

//! doorsync with its sync engine, on real time, against an in-process brivo-sim over real HTTP;
//! plus the access-integrity checker that reads only brivo-sim's membership history.

use crate::{App, Backend};
use brivo_sim::{MembershipChange, MembershipOp, SimHandle, SimOptions};
use doorsync_core::{Clock, Entitlement};
use doorsync_engine::brivo::BrivoFactory;
use doorsync_engine::{Engine, EngineConfig};
use jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Engine settings for tests: quick polls, short pauses and retries, no periodic audit (tests ask
/// for one), so that every wait is short and bounded.
pub fn fast_engine(owner: &str) -> EngineConfig {
    EngineConfig {
        owner: owner.to_owned(),
        workers: 4,
        batch: 8,
        record_spans: true,
        lease: jiff::SignedDuration::from_secs(5),
        idle_poll: Duration::from_millis(100),
        audit_min_interval: Duration::from_secs(3600),
        audit_max_interval: Duration::from_secs(3600),
        directory_interval: Duration::from_secs(3600),
        event_poll_interval: Duration::from_millis(500),
        public_url: None,
        mail: None,
        alerts: doorsync_engine::alerts::AlertConfig {
            pause_after: Duration::from_secs(600),
            ..Default::default()
        },
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_secs(1),
        pause_base: Duration::from_millis(200),
        pause_max: Duration::from_secs(1),
        resync_interval: Duration::from_secs(3600),
        invitation_resend: Duration::from_secs(3600),
        allotment_interval: Duration::from_millis(200),
    }
}

fn fast_client(c: &mut brivo_client::ClientConfig) {
    c.timeout = Duration::from_secs(2);
    c.max_retries = 2;
    c.base_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(200);
    c.requests_per_second = 0.0;
}

/// Short timeouts, but the connection's rate kept.
fn paced_client(c: &mut brivo_client::ClientConfig) {
    let rate = c.requests_per_second;
    fast_client(c);
    c.requests_per_second = rate;
}

/// An engine whose calls keep to the connection's rate, shared through `store` with every other
/// engine on it, as `doorsync serve` on PostgreSQL runs.
pub fn paced_engine_on(store: Arc<dyn doorsync_store::Store>, owner: &str) -> Arc<Engine> {
    Arc::new(Engine::new(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(BrivoFactory::tuned(paced_client).pacing_in(store)),
        fast_engine(owner),
    ))
}

/// A second engine on the same database, as another instance would run.
pub fn engine_on(store: Arc<dyn doorsync_store::Store>, owner: &str) -> Arc<Engine> {
    Arc::new(Engine::new(
        store,
        Arc::new(SystemClock),
        factory(),
        fast_engine(owner),
    ))
}

pub fn factory() -> Arc<BrivoFactory> {
    Arc::new(BrivoFactory::tuned(fast_client))
}

/// A running engine that a test can stop (or crash) and start again.
pub struct EngineRun {
    pub engine: Arc<Engine>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl EngineRun {
    pub fn start(engine: Arc<Engine>) -> EngineRun {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(engine.clone().run(rx));
        EngineRun { engine, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Ends the engine at whatever await point it is in, as a crash would.
    pub fn crash(self) {
        self.task.abort();
    }
}

/// doorsync (API and engine) and a brivo-sim, with a connection and a location linked to the
/// sim's demo groups.
/// A Brivo client on brivo-sim's account with short timeouts and no pacing, for setting up
/// and looking at the sim from a test or a benchmark.
pub fn sim_client(sim: &SimHandle) -> brivo_client::BrivoClient {
    let account = sim.account();
    let mut config = brivo_client::ClientConfig::new(
        sim.api_url(),
        sim.auth_url(),
        account.api_key,
        account.client_id,
        account.client_secret,
        brivo_client::Grant::Password {
            username: account.admin_id,
            password: account.password.into(),
        },
    );
    fast_client(&mut config);
    brivo_client::BrivoClient::new(config).expect("client")
}

/// What an engine of a [`SyncApp`] may want to know: the app's address (for the event webhook
/// and sign-in links) and the SMTP sink its mail goes to.
pub struct AppEnv {
    pub base: String,
    pub mail: doorsync_engine::mail::MailConfig,
}

pub struct SyncApp {
    /// The mail doorsync sent, as the SMTP sink received it.
    pub inbox: doorsync_engine::mail::sink::Inbox,
    pub app: App,
    pub sim: SimHandle,
    pub run: Option<EngineRun>,
    /// The sim's group ids by name.
    pub groups: BTreeMap<String, u64>,
    pub brivo: brivo_client::BrivoClient,
    pub http: reqwest::Client,
}

impl SyncApp {
    /// `lead` and `lag` are the location's buffers, e.g. "PT1S".
    pub async fn spawn(backend: Backend, lead: &str, lag: &str) -> Option<SyncApp> {
        Self::spawn_with(backend, lead, lag, |store, clock, env| {
            Arc::new(Engine::new(
                store,
                clock,
                factory(),
                EngineConfig {
                    public_url: Some(env.base.clone()),
                    mail: Some(env.mail.clone()),
                    ..fast_engine("test-engine")
                },
            ))
        })
        .await
    }

    /// As [`SyncApp::spawn`], with the engine `engine` makes on the app's store and clock (and
    /// the app's address, for the event webhook).
    pub async fn spawn_with(
        backend: Backend,
        lead: &str,
        lag: &str,
        engine: impl FnOnce(Arc<dyn doorsync_store::Store>, Arc<dyn Clock>, &AppEnv) -> Arc<Engine>,
    ) -> Option<SyncApp> {
        let (smtp, inbox) = doorsync_engine::mail::sink::start("127.0.0.1:0")
            .await
            .expect("SMTP sink");
        let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sim");
        let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind app");
        let app_addr = app_listener.local_addr().expect("addr");
        let sim = brivo_sim::spawn(
            sim_listener,
            SimOptions {
                // The dashboard's "Sign in with Brivo" comes back to the app.
                redirect_uri: format!("http://{app_addr}/admin/oauth/callback"),
                ..SimOptions::default()
            },
        )
        .await
        .expect("sim");
        let account = sim.account();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let engine_clock = clock.clone();
        let env = AppEnv {
            base: format!("http://{app_addr}"),
            mail: doorsync_engine::mail::MailConfig {
                smtp_url: format!("smtp://{smtp}").into(),
                from: "Space <desk@space.test>".into(),
            },
        };
        let engine =
            move |store: Arc<dyn doorsync_store::Store>| Some(engine(store, engine_clock, &env));
        let app = App::spawn_on(app_listener, backend, Some(clock.clone()), engine).await?;
        let run = Some(EngineRun::start(app.engine.clone().expect("engine")));
        let brivo = sim_client(&sim);
        let groups = brivo
            .list_groups(None)
            .await
            .expect("groups")
            .into_iter()
            .map(|g| (g.name, g.id))
            .collect::<BTreeMap<_, _>>();
        let site = brivo.list_sites(None).await.expect("sites")[0].id;
        let visitors = brivo
            .create_group("Visitors")
            .await
            .expect("visitor group")
            .id;
        let mut groups = groups;
        groups.insert("Visitors".into(), visitors);
        let me = SyncApp {
            inbox,
            app,
            sim,
            run,
            groups,
            brivo,
            http: reqwest::Client::new(),
        };
        let connection = json!({
            "api_url": me.sim.api_url(), "auth_url": me.sim.auth_url(),
            "api_key": account.api_key, "client_id": account.client_id, "client_secret": account.client_secret,
            "admin_id": account.admin_id, "password": account.password,
            "visitor_group_ids": [visitors.to_string()],
        });
        me.put_ok("/api/v1/connections/brivo", connection).await;
        me.put_ok(
            "/api/v1/locations/hq",
            json!({"name": "HQ", "timezone": "Europe/London", "connection_id": "brivo", "site_id": site.to_string(), "lead": lead, "lag": lag}),
        )
        .await;
        for (collection, kind, item, name) in [
            ("passes", "pass", "day-pass", "Day Pass"),
            ("resources", "resource", "room-1", "Meeting Room 1"),
            ("resources", "resource", "room-2", "Meeting Room 2"),
            ("desks", "desk", "office-1", "Private Office 1"),
            ("desks", "desk", "office-2", "Private Office 2"),
        ] {
            let body = if kind == "desk" {
                json!({"location_id": "hq", "name": name, "kind": "office"})
            } else {
                json!({"location_id": "hq", "name": name})
            };
            me.put_ok(&format!("/api/v1/{collection}/{item}"), body)
                .await;
            me.put_ok(
                &format!("/api/v1/links/{kind}/{item}"),
                json!({"group_id": me.groups[name].to_string()}),
            )
            .await;
        }
        Some(me)
    }

    pub fn group(&self, name: &str) -> u64 {
        self.groups[name]
    }

    pub async fn put_ok(&self, path: &str, body: Value) -> Value {
        let (status, got) = self.app.put_json(path, body).await;
        assert!(status == 200 || status == 201, "PUT {path}: {status} {got}");
        got
    }

    pub async fn customer(&self, id: &str) {
        self.put_ok(
            &format!("/api/v1/customers/{id}"),
            json!({"name": format!("Member {id}"), "email": format!("{id}@example.com")}),
        )
        .await;
    }

    /// The sim's current members of a group, by externalId.
    pub async fn members(&self, group: &str) -> Vec<String> {
        let users = self
            .brivo
            .group_members(self.group(group))
            .await
            .expect("members");
        let mut ids: Vec<String> = users
            .into_iter()
            .map(|u| u.external_id.unwrap_or_else(|| format!("#{}", u.id)))
            .collect();
        ids.sort();
        ids
    }

    /// Polls until `f` holds or `within` passes; returns whether it held.
    pub async fn eventually<F, Fut>(&self, within: Duration, mut f: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if f().await {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn fault(&self, body: Value) -> u64 {
        let res = self
            .http
            .post(format!("{}/__sim/faults", self.sim.base_url()))
            .json(&body)
            .send()
            .await
            .expect("fault");
        assert_eq!(res.status(), 201, "fault {body}");
        res.json::<Value>().await.expect("json")["id"]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn clear_faults(&self) {
        self.http
            .delete(format!("{}/__sim/faults", self.sim.base_url()))
            .send()
            .await
            .expect("clear");
    }

    /// Entitlements of a customer as doorsync's rules see them now (with cancellation and leave
    /// times, so they are also the truth about the past).
    pub async fn entitlements(&self, customer: &str) -> Vec<Entitlement> {
        let id = doorsync_core::Id::parse(customer).expect("id");
        match doorsync_store::Store::customer_inputs(
            self.app.store.as_ref(),
            &id,
            jiff::Timestamp::now(),
        )
        .await
        .expect("inputs")
        {
            Some(inputs) => doorsync_core::customer_entitlements(&inputs),
            None => vec![],
        }
    }

    pub async fn stop(mut self) {
        if let Some(run) = self.run.take() {
            run.stop().await;
        }
        self.sim.shutdown().await;
        self.app.stop().await;
    }
}

/// One finding of the access-integrity checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// In a group outside any entitlement (beyond the tolerance).
    Excess {
        subject: String,
        group: String,
        from: Timestamp,
        until: Timestamp,
    },
    /// Entitled but not in the group (beyond the tolerance).
    Missing {
        subject: String,
        group: String,
        from: Timestamp,
        until: Timestamp,
    },
}

fn merge(mut v: Vec<(Timestamp, Timestamp)>) -> Vec<(Timestamp, Timestamp)> {
    v.sort();
    let mut out: Vec<(Timestamp, Timestamp)> = vec![];
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `a` minus the union of `cover`, as intervals.
fn subtract(
    a: (Timestamp, Timestamp),
    cover: &[(Timestamp, Timestamp)],
) -> Vec<(Timestamp, Timestamp)> {
    let mut out = vec![];
    let mut start = a.0;
    for &(c0, c1) in cover {
        if c1 <= start || c0 >= a.1 {
            continue;
        }
        if c0 > start {
            out.push((start, c0));
        }
        start = start.max(c1);
    }
    if start < a.1 {
        out.push((start, a.1));
    }
    out
}

/// Compares brivo-sim's membership history over `[t0, t1)` with the entitlements (by externalId
/// and provider group id) of the subjects in `entitlements`; others are not judged. A membership outside every entitlement widened by `tolerance`, or an
/// entitlement (narrowed by `tolerance`) not covered by membership, is a violation.
pub fn check_integrity(
    history: &[MembershipChange],
    entitlements: &BTreeMap<String, Vec<Entitlement>>,
    t0: Timestamp,
    t1: Timestamp,
    tolerance: Duration,
) -> Vec<Violation> {
    let tol = jiff::SignedDuration::try_from(tolerance).expect("tolerance");
    let mut held: BTreeMap<(String, String), Vec<(Timestamp, Timestamp)>> = BTreeMap::new();
    let mut open: BTreeMap<(String, String), Timestamp> = BTreeMap::new();
    for h in history {
        let Some(ext) = h
            .external_id
            .as_ref()
            .filter(|e| entitlements.contains_key(*e))
        else {
            continue;
        };
        let key = (ext.clone(), h.group_id.to_string());
        match h.op {
            MembershipOp::Add => {
                open.entry(key).or_insert(h.at);
            }
            MembershipOp::Remove => {
                if let Some(from) = open.remove(&key) {
                    held.entry(key).or_default().push((from, h.at));
                }
            }
        }
    }
    for (key, from) in open {
        held.entry(key).or_default().push((from, t1));
    }
    let mut out = vec![];
    let mut keys: Vec<(String, String)> = held.keys().cloned().collect();
    for (subject, ents) in entitlements {
        for e in ents {
            keys.push((subject.clone(), e.group_id.clone()));
        }
    }
    keys.sort();
    keys.dedup();
    for key in keys {
        let ents: Vec<(Timestamp, Timestamp)> = entitlements
            .get(&key.0)
            .map(|es| {
                es.iter()
                    .filter(|e| e.group_id == key.1)
                    .map(|e| (e.from, e.until.unwrap_or(Timestamp::MAX)))
                    .collect()
            })
            .unwrap_or_default();
        let ents = merge(ents);
        let widened: Vec<_> = ents
            .iter()
            .map(|(a, b)| {
                (
                    a.saturating_sub(tol).unwrap_or(*a),
                    b.saturating_add(tol).unwrap_or(*b),
                )
            })
            .collect();
        let memberships = merge(held.get(&key).cloned().unwrap_or_default());
        for &(a, b) in &memberships {
            let (a, b) = (a.max(t0), b.min(t1));
            if a >= b {
                continue;
            }
            for (x, y) in subtract((a, b), &widened) {
                out.push(Violation::Excess {
                    subject: key.0.clone(),
                    group: key.1.clone(),
                    from: x,
                    until: y,
                });
            }
        }
        for &(a, b) in &ents {
            // Access is owed `tolerance` after it begins, or after observation begins.
            let a = a.max(t0);
            let (a, b) = (
                a.saturating_add(tol).unwrap_or(a),
                b.saturating_sub(tol).unwrap_or(b).min(t1),
            );
            if a >= b {
                continue;
            }
            for (x, y) in subtract((a, b), &memberships) {
                out.push(Violation::Missing {
                    subject: key.0.clone(),
                    group: key.1.clone(),
                    from: x,
                    until: y,
                });
            }
        }
    }
    out
}

pub fn history(sim: &SimHandle) -> Vec<MembershipChange> {
    sim.membership_history()
}

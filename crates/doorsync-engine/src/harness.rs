//! A deterministic engine harness for unit tests: an in-memory provider whose calls can be held
//! at a gate or made to fail, a clock the test moves, and a real SQLite store in a temporary
//! file. Each race gets a test that interleaves the two parties on purpose.

use crate::provider::*;
use crate::{Engine, EngineConfig};
use async_trait::async_trait;
use doorsync_core::{Clock, Connection, ManualClock, Subject};
use doorsync_store::{Claim, Kind, MirrorUser, Outcome, Record, SqlStore, Store};
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

#[derive(Debug, Clone, Default)]
pub struct FakeUser {
    pub external_id: Option<String>,
    pub suspended: bool,
    pub email: Option<String>,
}

/// How a scripted call misbehaves.
#[derive(Debug, Clone)]
pub enum Rule {
    Fail(ErrorKind),
    /// Answer 404 and change nothing (a removal Brivo claims not to find).
    NotFoundButKeep,
}

struct Gate {
    key: String,
    arrived: Arc<Notify>,
    release: oneshot::Receiver<()>,
}

/// A test's handle on a gate: wait for the call to arrive, then let it through.
pub struct GateHandle {
    arrived: Arc<Notify>,
    release: Option<oneshot::Sender<()>>,
}

impl GateHandle {
    pub async fn reached(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.arrived.notified())
            .await
            .expect("the gated call never came");
    }

    pub fn open(mut self) {
        let _ = self.release.take().map(|r| r.send(()));
    }
}

#[derive(Default)]
struct FakeState {
    users: BTreeMap<String, FakeUser>,
    members: BTreeMap<String, BTreeSet<String>>,
    next_id: u64,
    /// Every membership change, in order: (group, user, added?).
    history: Vec<(String, String, bool)>,
    invitations: BTreeMap<String, InvitationState>,
    /// Users invited, in order.
    invited: Vec<String>,
    /// Mobile Passes (allotted, assigned); `None` = no allotment.
    passes: Option<(u64, u64)>,
}

/// An access-control system in memory.
#[derive(Default)]
pub struct Fake {
    state: Mutex<FakeState>,
    gates: Mutex<Vec<Gate>>,
    rules: Mutex<Vec<(String, Rule)>>,
    pub down: AtomicBool,
    calls: AtomicU64,
    log: Mutex<Vec<String>>,
}

impl Fake {
    fn st(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    /// Holds the next call named `key` (`"add_to_group:g1"`, `"update_user"`) until opened.
    pub fn gate(&self, key: &str) -> GateHandle {
        let arrived = Arc::new(Notify::new());
        let (tx, rx) = oneshot::channel();
        self.gates.lock().unwrap().push(Gate {
            key: key.to_owned(),
            arrived: arrived.clone(),
            release: rx,
        });
        GateHandle {
            arrived,
            release: Some(tx),
        }
    }

    pub fn rule(&self, key: &str, rule: Rule) {
        self.rules.lock().unwrap().push((key.to_owned(), rule));
    }

    pub fn clear_rules(&self) {
        self.rules.lock().unwrap().clear();
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Calls made so far, by key.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn members(&self, group: &str) -> BTreeSet<String> {
        self.st().members.get(group).cloned().unwrap_or_default()
    }

    pub fn user_by_external_id(&self, external_id: &str) -> Option<String> {
        let st = self.st();
        st.users
            .iter()
            .find(|(_, u)| u.external_id.as_deref() == Some(external_id))
            .map(|(id, _)| id.clone())
    }

    pub fn users(&self) -> BTreeMap<String, FakeUser> {
        self.st().users.clone()
    }

    pub fn history(&self) -> Vec<(String, String, bool)> {
        self.st().history.clone()
    }

    /// A change made by hand in the provider, behind doorsync's back.
    pub fn add_by_hand(&self, group: &str, user: &str) {
        let mut st = self.st();
        st.members
            .entry(group.to_owned())
            .or_default()
            .insert(user.to_owned());
        st.history.push((group.to_owned(), user.to_owned(), true));
    }

    pub fn create_by_hand(&self, external_id: Option<&str>) -> String {
        let mut st = self.st();
        st.next_id += 1;
        let id = format!("u{}", st.next_id);
        st.users.insert(
            id.clone(),
            FakeUser {
                external_id: external_id.map(str::to_owned),
                ..Default::default()
            },
        );
        id
    }

    async fn call(&self, key: String) -> ProviderResult<Option<Rule>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(key.clone());
        let gate = {
            let mut gates = self.gates.lock().unwrap();
            gates
                .iter()
                .position(|g| g.key == key)
                .map(|i| gates.remove(i))
        };
        if let Some(g) = gate {
            g.arrived.notify_one();
            let _ = g.release.await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderError::new(ErrorKind::Unavailable, "down"));
        }
        let rule = self
            .rules
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| *k == key || key.starts_with(&format!("{k}:")))
            .map(|(_, r)| r.clone());
        match rule {
            Some(Rule::Fail(kind)) => Err(ProviderError::new(kind, format!("scripted {key}"))),
            other => Ok(other),
        }
    }

    fn remote(&self, id: &str) -> Option<RemoteUser> {
        self.st().users.get(id).map(|u| RemoteUser {
            id: id.to_owned(),
            external_id: u.external_id.clone(),
            suspended: u.suspended,
            emails: u.email.iter().cloned().collect(),
        })
    }

    /// The users invited so far, in order (a re-send counts again).
    pub fn invited(&self) -> Vec<String> {
        self.st().invited.clone()
    }

    /// Every pending invitation expires.
    pub fn expire_invitations(&self) {
        for s in self.st().invitations.values_mut() {
            if *s == InvitationState::Pending {
                *s = InvitationState::Lapsed;
            }
        }
    }

    pub fn set_passes(&self, allotted: u64, assigned: u64) {
        self.st().passes = Some((allotted, assigned));
    }

    fn not_found(what: &str) -> ProviderError {
        ProviderError::new(ErrorKind::NotFound, format!("{what} not found"))
    }
}

#[async_trait]
impl Provider for Fake {
    async fn find_user_by_external_id(&self, e: &str) -> ProviderResult<Option<RemoteUser>> {
        self.call("find_user".into()).await?;
        Ok(self.user_by_external_id(e).and_then(|id| self.remote(&id)))
    }
    async fn find_user_by_email(&self, email: &str, _: &str) -> ProviderResult<Option<RemoteUser>> {
        self.call("find_user_by_email".into()).await?;
        let id = {
            let st = self.st();
            st.users
                .iter()
                .find(|(_, u)| u.email.as_deref() == Some(email))
                .map(|(id, _)| id.clone())
        };
        Ok(id.and_then(|id| self.remote(&id)))
    }
    async fn create_user(&self, p: &UserProfile) -> ProviderResult<RemoteUser> {
        self.call("create_user".into()).await?;
        if self.user_by_external_id(&p.external_id).is_some() {
            return Err(ProviderError::new(
                ErrorKind::Rejected,
                "externalId already taken",
            ));
        }
        let id = self.create_by_hand(Some(&p.external_id));
        self.st().users.get_mut(&id).unwrap().email = p.email.clone();
        Ok(self.remote(&id).unwrap())
    }
    async fn update_user(&self, user_id: &str, p: &UserProfile) -> ProviderResult<()> {
        self.call("update_user".into()).await?;
        let mut st = self.st();
        let u = st
            .users
            .get_mut(user_id)
            .ok_or_else(|| Fake::not_found("user"))?;
        u.external_id = Some(p.external_id.clone());
        u.email = p.email.clone();
        Ok(())
    }
    async fn delete_user(&self, user_id: &str) -> ProviderResult<()> {
        self.call("delete_user".into()).await?;
        let mut st = self.st();
        st.users
            .remove(user_id)
            .ok_or_else(|| Fake::not_found("user"))?;
        for m in st.members.values_mut() {
            m.remove(user_id);
        }
        Ok(())
    }
    async fn set_suspended(&self, user_id: &str, suspended: bool) -> ProviderResult<()> {
        self.call("set_suspended".into()).await?;
        let mut st = self.st();
        st.users
            .get_mut(user_id)
            .ok_or_else(|| Fake::not_found("user"))?
            .suspended = suspended;
        Ok(())
    }
    async fn add_to_group(&self, g: &str, user_id: &str) -> ProviderResult<()> {
        self.call(format!("add_to_group:{g}")).await?;
        let mut st = self.st();
        if !st.users.contains_key(user_id) {
            return Err(Fake::not_found("user"));
        }
        st.members
            .entry(g.to_owned())
            .or_default()
            .insert(user_id.to_owned());
        st.history.push((g.to_owned(), user_id.to_owned(), true));
        Ok(())
    }
    async fn remove_from_group(&self, g: &str, user_id: &str) -> ProviderResult<()> {
        if let Some(Rule::NotFoundButKeep) = self.call(format!("remove_from_group:{g}")).await? {
            return Err(Fake::not_found("membership"));
        }
        let mut st = self.st();
        let removed = st.members.get_mut(g).is_some_and(|m| m.remove(user_id));
        if !removed {
            return Err(Fake::not_found("membership"));
        }
        st.history.push((g.to_owned(), user_id.to_owned(), false));
        Ok(())
    }
    async fn user_groups(&self, user_id: &str) -> ProviderResult<BTreeSet<String>> {
        self.call("user_groups".into()).await?;
        let st = self.st();
        if !st.users.contains_key(user_id) {
            return Err(Fake::not_found("user"));
        }
        Ok(st
            .members
            .iter()
            .filter(|(_, m)| m.contains(user_id))
            .map(|(g, _)| g.clone())
            .collect())
    }
    async fn group_members(&self, g: &str) -> ProviderResult<Vec<RemoteUser>> {
        self.call(format!("group_members:{g}")).await?;
        let ids = self.members(g);
        Ok(ids.iter().filter_map(|id| self.remote(id)).collect())
    }
    async fn invite(&self, user_id: &str, _: &str) -> ProviderResult<()> {
        self.call("invite".into()).await?;
        let mut st = self.st();
        if !st.users.contains_key(user_id) {
            return Err(Fake::not_found("user"));
        }
        if st.invitations.get(user_id) == Some(&InvitationState::Pending) {
            return Ok(());
        }
        if let Some((allotted, assigned)) = &mut st.passes {
            if *assigned >= *allotted {
                return Err(ProviderError::new(
                    ErrorKind::NoPassesLeft,
                    "no Wallet Passes available",
                ));
            }
            *assigned += 1;
        }
        st.invitations
            .insert(user_id.to_owned(), InvitationState::Pending);
        st.invited.push(user_id.to_owned());
        Ok(())
    }
    async fn invitation_state(&self, user_id: &str) -> ProviderResult<InvitationState> {
        self.call("invitation_state".into()).await?;
        Ok(self
            .st()
            .invitations
            .get(user_id)
            .copied()
            .unwrap_or(InvitationState::Lapsed))
    }
    async fn cancel_invitation(&self, user_id: &str) -> ProviderResult<()> {
        self.call("cancel_invitation".into()).await?;
        if let Some(s) = self.st().invitations.get_mut(user_id)
            && *s == InvitationState::Pending
        {
            *s = InvitationState::Lapsed;
        }
        Ok(())
    }
    async fn pass_allotment(&self) -> ProviderResult<Option<PassAllotment>> {
        self.call("pass_allotment".into()).await?;
        Ok(self
            .st()
            .passes
            .map(|(allotted, assigned)| PassAllotment { allotted, assigned }))
    }
    async fn groups(&self) -> ProviderResult<Vec<RemoteEntry>> {
        self.call("groups".into()).await?;
        Ok(vec![])
    }
    async fn sites(&self) -> ProviderResult<Vec<RemoteEntry>> {
        self.call("sites".into()).await?;
        Ok(vec![])
    }
    async fn doors(&self) -> ProviderResult<Vec<RemoteEntry>> {
        self.call("doors".into()).await?;
        Ok(vec![])
    }
    fn calls(&self) -> u64 {
        Fake::calls(self)
    }
}

/// One fake provider per connection id.
#[derive(Default)]
pub struct FakeFactory(Mutex<HashMap<String, Arc<Fake>>>);

impl FakeFactory {
    pub fn fake(&self, connection: &str) -> Arc<Fake> {
        self.0
            .lock()
            .unwrap()
            .entry(connection.to_owned())
            .or_default()
            .clone()
    }
}

impl ProviderFactory for FakeFactory {
    fn provider(&self, connection: &Connection) -> ProviderResult<Arc<dyn Provider>> {
        Ok(self.fake(connection.id.as_str()))
    }
}

pub struct Harness {
    pub store: Arc<SqlStore>,
    pub clock: Arc<ManualClock>,
    pub factory: Arc<FakeFactory>,
    pub engine: Arc<Engine>,
    path: std::path::PathBuf,
}

pub fn t0() -> Timestamp {
    "2026-06-01T09:00:00Z".parse().unwrap()
}

pub fn config(owner: &str) -> EngineConfig {
    EngineConfig {
        owner: owner.to_owned(),
        workers: 4,
        batch: 64,
        lease: SignedDuration::from_secs(30),
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(60),
        pause_base: Duration::from_secs(2),
        pause_max: Duration::from_secs(30),
        resync_interval: Duration::from_secs(4 * 3600),
        ..EngineConfig::default()
    }
}

impl Harness {
    pub async fn new() -> Harness {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "doorsync-engine-{}-{}.db",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&path);
        let store = SqlStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        store.migrate(t0()).await.unwrap();
        let store = Arc::new(store);
        let clock = Arc::new(ManualClock::new(t0()));
        let factory = Arc::new(FakeFactory::default());
        let engine = Arc::new(Engine::new(
            store.clone(),
            clock.clone(),
            factory.clone(),
            config("a"),
        ));
        let h = Harness {
            store,
            clock,
            factory,
            engine,
            path,
        };
        h.put(
            Kind::Connection,
            serde_json::json!({"id": "c1", "provider": "brivo", "api_url": null, "auth_url": null,
                "credentials": {}, "no_access_policy": "remove_from_groups", "visitor_group_ids": ["gv"],
                "exempt_user_ids": [], "redeem_passes_automatically": false,
                "list_doors_in_app": false, "enabled": true}),
        )
        .await;
        h.put(
            Kind::Location,
            serde_json::json!({"id": "l1", "name": "L", "timezone": "Europe/London",
                "connection_id": "c1", "site_id": null, "lead": "PT15M", "lag": "PT15M"}),
        )
        .await;
        h
    }

    /// Another engine on the same store, as a second instance would run.
    pub fn second_engine(&self, owner: &str) -> Arc<Engine> {
        Arc::new(Engine::new(
            self.store.clone(),
            self.clock.clone(),
            self.factory.clone(),
            config(owner),
        ))
    }

    pub fn fake(&self) -> Arc<Fake> {
        self.factory.fake("c1")
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(SignedDuration::from_secs(secs));
    }

    pub async fn put(&self, kind: Kind, body: serde_json::Value) {
        let record = Record::from_json(kind, &body.to_string()).unwrap();
        self.store.put(record, self.now()).await.unwrap();
    }

    pub async fn patch(&self, kind: Kind, id: &str, change: serde_json::Value) {
        let Some(r) = self.store.get(kind, id).await.unwrap() else {
            panic!("no {id}")
        };
        let mut v = serde_json::to_value(&r).unwrap();
        for (k, x) in change.as_object().unwrap() {
            v[k] = x.clone();
        }
        self.put(kind, v).await;
    }

    /// A pass at l1 linked to `group`.
    pub async fn pass(&self, pass: &str, group: &str) {
        self.put(
            Kind::Pass,
            serde_json::json!({"id": pass, "location_id": "l1", "name": pass}),
        )
        .await;
        self.link(pass, group).await;
    }

    pub async fn link(&self, pass: &str, group: &str) {
        self.put(
            Kind::Link,
            serde_json::json!({"kind": "pass", "item_id": pass, "group_id": group}),
        )
        .await;
    }

    pub async fn customer(&self, id: &str) {
        self.put(
            Kind::Customer,
            serde_json::json!({"id": id, "name": format!("Ann {id}"),
                "email": format!("{}@example.com", id.replace(':', "-")), "phone": null,
                "status": "active", "status_since": t0()}),
        )
        .await;
    }

    /// A grant of `pass` to `customer` from now for `hours`.
    pub async fn grant(&self, id: &str, customer: &str, pass: &str, hours: i64) {
        let until = self.now() + SignedDuration::from_hours(hours);
        self.put(
            Kind::PassGrant,
            serde_json::json!({"id": id, "customer_id": customer, "pass_id": pass,
                "valid_from": self.now(), "valid_until": until, "uses": null}),
        )
        .await;
    }

    /// Claims and runs everything due now, one round at a time, until nothing is due.
    pub async fn settle(&self) {
        self.settle_on(&self.engine).await;
    }

    pub async fn settle_on(&self, engine: &Arc<Engine>) {
        for _ in 0..20 {
            let claims = self.claim(engine).await;
            if claims.is_empty() {
                return;
            }
            for c in claims {
                engine.run_one(c).await;
            }
        }
        panic!("the schedule did not settle");
    }

    pub async fn claim(&self, engine: &Arc<Engine>) -> Vec<Claim> {
        engine
            .claim(self.now(), 100, doorsync_store::Lane::All)
            .await
            .unwrap()
    }

    /// Writes a subject's mirror as no reconcile of this doorsync would (an earlier version
    /// left it so), under a lease of the test's own; everyone claimed is due again at once.
    pub async fn overwrite_mirror(&self, subject: &Subject, user: Option<&MirrorUser>) {
        self.store.mark_due(subject, self.now()).await.unwrap();
        let lease = SignedDuration::from_secs(30);
        let claims = self
            .store
            .claim_due("harness", self.now(), lease, 100)
            .await
            .unwrap();
        for c in claims {
            let fence = c.fence("harness");
            if &c.subject == subject {
                self.store
                    .mirror_save(&fence, "c1", user, &[])
                    .await
                    .unwrap();
            }
            let again = Outcome::Done {
                next_due_at: Some(self.now()),
                revokes: false,
            };
            self.store.finish(&fence, again).await.unwrap();
        }
    }

    pub async fn user_of(&self, subject: &Subject) -> Option<String> {
        self.store
            .mirror_user("c1", subject)
            .await
            .unwrap()
            .map(|m| m.user_id)
    }

    pub async fn connection(&self) -> Connection {
        match self.store.get(Kind::Connection, "c1").await.unwrap() {
            Some(Record::Connection(c)) => c,
            _ => panic!("no connection"),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

pub fn customer(id: &str) -> Subject {
    Subject::Customer(doorsync_core::Id::parse(id).unwrap())
}

pub fn visitor(id: &str) -> Subject {
    Subject::Visitor(doorsync_core::Id::parse(id).unwrap())
}

//! The [`Store`] on SQL. SQLite and PostgreSQL share one implementation through sqlx's `Any`
//! driver: the schema and statements are the same but for the lease claim, where PostgreSQL
//! skips rows another instance holds.

use crate::record::{Kind, Record, link_key};
use crate::secrets::{SecretError, SecretKey};
use crate::*;
use doorsync_core::*;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    url: String,
    secret: Option<Arc<SecretKey>>,
}

pub(crate) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX)
}

impl SqlStore {
    /// Opens the database at `url` (`sqlite://PATH`, created if missing, or `postgres://…`).
    /// Call [`SqlStore::migrate`] before use.
    pub async fn connect(url: &str) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let mode = if rest.contains("mode=") {
                ""
            } else if rest.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            };
            (Backend::Sqlite, format!("sqlite:{rest}{mode}"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::BadUrl(url.to_owned()));
        };
        let options = match backend {
            // One connection: SQLite has one writer anyway, and a single connection cannot
            // deadlock upgrading a read transaction to a write.
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
                            .execute(conn)
                            .await?;
                        Ok(())
                    })
                }),
            Backend::Postgres => AnyPoolOptions::new().max_connections(8),
        };
        let pool = options.connect(&url).await?;
        Ok(SqlStore {
            pool,
            backend,
            url,
            secret: None,
        })
    }

    /// The key that seals provider credentials; without one, credentials cannot be stored.
    pub fn with_secret_key(mut self, key: SecretKey) -> Self {
        self.secret = Some(Arc::new(key));
        self
    }

    /// The record's body as stored: credentials sealed.
    fn body(&self, record: &Record) -> Result<String> {
        let Record::Connection(c) = record else {
            return Ok(record.to_json());
        };
        let cr = &c.credentials;
        let set = [
            ("api_key", &cr.api_key),
            ("client_id", &cr.client_id),
            ("client_secret", &cr.client_secret),
            ("admin_id", &cr.admin_id),
            ("password", &cr.password),
        ];
        let Some((first, _)) = set.iter().find(|(_, v)| v.is_some()) else {
            return Ok(record.to_json());
        };
        let Some(key) = &self.secret else {
            return Err(StoreError::Invalid {
                field: first,
                message: "doorsync has no secret key to encrypt credentials with: set DOORSYNC_SECRET_KEY (`doorsync key generate` makes one)".into(),
            });
        };
        let mut v = serde_json::to_value(record).expect("records serialize");
        let plain = serde_json::to_vec(cr).expect("credentials serialize");
        v["credentials"] = serde_json::json!({ "sealed": key.seal(&plain) });
        Ok(v.to_string())
    }

    /// A record read back, with its credentials unsealed. Credentials this store cannot open (no
    /// key, or another key) read as absent, with an error in the log: the connection then says it
    /// lacks credentials, and putting them again with the current key repairs it.
    fn open(&self, kind: Kind, id: &str, body: &str) -> Result<Record> {
        let mut record = parse(kind, id, body)?;
        if let Record::Connection(c) = &mut record {
            let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            if let Some(sealed) = v["credentials"]["sealed"].as_str() {
                let opened = match &self.secret {
                    None => Err(SecretError::NoKey),
                    Some(key) => key.open(sealed).and_then(|plain| {
                        serde_json::from_slice(&plain).map_err(|_| SecretError::WrongKey)
                    }),
                };
                match opened {
                    Ok(credentials) => c.credentials = credentials,
                    Err(e) => {
                        tracing::error!(connection = id, error = %e, "connection credentials unreadable")
                    }
                }
            }
        }
        Ok(record)
    }

    async fn load_open(
        &self,
        conn: &mut AnyConnection,
        kind: Kind,
        key: &str,
    ) -> Result<Option<Record>> {
        load_body(conn, kind, key)
            .await?
            .map(|body| self.open(kind, key, &body))
            .transpose()
    }

    /// Calls `due` whenever any instance marks someone due (PostgreSQL's LISTEN/NOTIFY), so an
    /// engine acts on another instance's write at once. `None` on SQLite, where one process
    /// writes and wakes its own engine.
    pub async fn on_due(
        &self,
        due: impl Fn() + Send + Sync + 'static,
    ) -> Result<Option<tokio::task::JoinHandle<()>>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen(DUE_CHANNEL).await?;
        Ok(Some(tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => due(),
                    Err(e) => {
                        // The listener reconnects by itself; until then the engine's poll covers.
                        tracing::warn!(error = %e, "listening for due subjects failed");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        })))
    }

    /// Applies the migrations this database lacks; returns their versions.
    pub async fn migrate(&self, now: Timestamp) -> Result<Vec<i64>> {
        crate::migrate::run(&self.pool, self.backend, ms(now)).await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn load_body(conn: &mut AnyConnection, kind: Kind, key: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT body FROM records WHERE kind = $1 AND id = $2")
        .bind(kind.as_str())
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
}

/// A record as stored; sealed credentials stay sealed (read as absent).
pub(crate) async fn load(
    conn: &mut AnyConnection,
    kind: Kind,
    key: &str,
) -> Result<Option<Record>> {
    load_body(conn, kind, key)
        .await?
        .map(|body| parse(kind, key, &body))
        .transpose()
}

fn parse(kind: Kind, key: &str, body: &str) -> Result<Record> {
    Record::from_json(kind, body).map_err(|e| StoreError::Corrupt {
        kind: kind.as_str(),
        id: key.to_owned(),
        message: e.to_string(),
    })
}

async fn exists(conn: &mut AnyConnection, kind: Kind, key: &str) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM records WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

async fn strings(
    conn: &mut AnyConnection,
    sql: &'static str,
    args: &[&str],
) -> Result<Vec<String>> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = q.bind(*a);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?)
}

/// Who a record's change reaches.
enum Reach {
    Subjects(BTreeSet<Subject>),
    Everyone,
}

/// Customers holding a booking, grant or contract of the inventory item `kind`/`id`.
async fn customers_of_item(conn: &mut AnyConnection, kind: Kind, id: &str) -> Result<Vec<String>> {
    strings(
        conn,
        "SELECT DISTINCT c.ref_id FROM refs i
         JOIN refs c ON c.kind = i.kind AND c.id = i.id AND c.field = 'customer_id'
         WHERE i.ref_kind = $1 AND i.ref_id = $2 AND i.kind <> 'link'",
        &[kind.as_str(), id],
    )
    .await
}

/// Everyone who is or was in a team whose paying member is `customer`.
async fn team_members_of_payer(conn: &mut AnyConnection, customer: &str) -> Result<Vec<String>> {
    strings(
        conn,
        "SELECT DISTINCT tm.customer_id FROM refs t JOIN team_memberships tm ON tm.team_id = t.id
         WHERE t.kind = 'team' AND t.field = 'paying_member_id' AND t.ref_id = $1",
        &[customer],
    )
    .await
}

fn customer(id: &str) -> Option<Subject> {
    Id::parse(id).ok().map(Subject::Customer)
}

async fn reach(conn: &mut AnyConnection, record: &Record) -> Result<Reach> {
    let mut out = BTreeSet::new();
    let mut payers = vec![];
    match record {
        Record::Connection(_) | Record::Location(_) => return Ok(Reach::Everyone),
        Record::Door(_) => {}
        Record::Customer(x) => {
            out.insert(Subject::Customer(x.id.clone()));
        }
        Record::Team(x) => {
            out.extend(
                strings(
                    conn,
                    "SELECT customer_id FROM team_memberships WHERE team_id = $1",
                    &[x.id.as_str()],
                )
                .await?
                .iter()
                .filter_map(|c| customer(c)),
            );
            out.extend(x.member_ids.iter().cloned().map(Subject::Customer));
        }
        Record::Booking(x) => {
            out.insert(Subject::Customer(x.customer_id.clone()));
        }
        Record::PassGrant(x) => {
            out.insert(Subject::Customer(x.customer_id.clone()));
        }
        Record::Contract(x) => payers.push(x.customer_id.to_string()),
        Record::Visitor(x) => {
            out.insert(Subject::Visitor(x.id.clone()));
        }
        Record::Pass(_) | Record::Resource(_) | Record::Desk(_) | Record::Link(_) => {
            let (kind, id) = match record {
                Record::Link(l) => (Kind::of_link(l.kind), l.item_id.to_string()),
                other => (other.kind(), other.key()),
            };
            let customers = customers_of_item(conn, kind, &id).await?;
            if kind == Kind::Desk {
                payers.extend(customers);
            } else {
                out.extend(customers.iter().filter_map(|c| customer(c)));
            }
        }
    }
    for payer in payers {
        out.extend(
            team_members_of_payer(conn, &payer)
                .await?
                .iter()
                .filter_map(|c| customer(c)),
        );
        out.extend(customer(&payer));
    }
    Ok(Reach::Subjects(out))
}

const MARK_DUE: &str = "INSERT INTO schedule (subject, next_due_at) VALUES ($1, $2)
    ON CONFLICT (subject) DO UPDATE SET next_due_at = CASE
        WHEN schedule.next_due_at IS NULL OR schedule.next_due_at > excluded.next_due_at
        THEN excluded.next_due_at ELSE schedule.next_due_at END";

/// The channel on which PostgreSQL tells every instance that someone became due.
pub const DUE_CHANNEL: &str = "doorsync_due";

/// On PostgreSQL, tells the other instances (at commit) that the schedule changed.
async fn notify(conn: &mut AnyConnection, backend: Backend) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(DUE_CHANNEL)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn mark(conn: &mut AnyConnection, reach: Reach, now_ms: i64) -> Result<()> {
    match reach {
        Reach::Subjects(subjects) => {
            for s in subjects {
                sqlx::query(MARK_DUE)
                    .bind(s.key())
                    .bind(now_ms)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Reach::Everyone => {
            for (prefix, kind) in [("customer:", "customer"), ("visitor:", "visitor")] {
                sqlx::query(
                    "INSERT INTO schedule (subject, next_due_at)
                     SELECT $1 || id, $2 FROM records WHERE kind = $3
                     ON CONFLICT (subject) DO UPDATE SET next_due_at = CASE
                        WHEN schedule.next_due_at IS NULL OR schedule.next_due_at > excluded.next_due_at
                        THEN excluded.next_due_at ELSE schedule.next_due_at END",
                )
                .bind(prefix)
                .bind(now_ms)
                .bind(kind)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

fn merge(a: Reach, b: Reach) -> Reach {
    match (a, b) {
        (Reach::Subjects(mut x), Reach::Subjects(y)) => {
            x.extend(y);
            Reach::Subjects(x)
        }
        _ => Reach::Everyone,
    }
}

/// Rules that span records and that a reference check alone does not catch.
async fn check_rules(conn: &mut AnyConnection, record: &Record) -> Result<()> {
    if let Record::Contract(c) = record {
        let mut locations = BTreeSet::new();
        for d in &c.desk_ids {
            if let Some(Record::Desk(desk)) = load(conn, Kind::Desk, d.as_str()).await? {
                locations.insert(desk.location_id);
            }
        }
        if locations.len() > 1 {
            return Err(StoreError::Invalid {
                field: "desk_ids",
                message: "every desk of a contract must be in one location".into(),
            });
        }
    }
    if let Record::Team(t) = record {
        let unique: BTreeSet<_> = t.member_ids.iter().collect();
        if unique.len() != t.member_ids.len() {
            return Err(StoreError::Invalid {
                field: "member_ids",
                message: "a member is listed twice".into(),
            });
        }
    }
    Ok(())
}

async fn write_refs(conn: &mut AnyConnection, record: &Record, key: &str) -> Result<()> {
    let kind = record.kind().as_str();
    sqlx::query("DELETE FROM refs WHERE kind = $1 AND id = $2")
        .bind(kind)
        .bind(key)
        .execute(&mut *conn)
        .await?;
    for r in record.refs() {
        sqlx::query(
            "INSERT INTO refs (kind, id, field, ref_kind, ref_id) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(kind)
        .bind(key)
        .bind(r.field)
        .bind(r.kind.as_str())
        .bind(r.id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Opens a stay for each new member and closes the stay of each member who left.
async fn write_memberships(conn: &mut AnyConnection, team: &Team, now_ms: i64) -> Result<()> {
    let current: BTreeSet<String> = strings(
        conn,
        "SELECT customer_id FROM team_memberships WHERE team_id = $1 AND left_at IS NULL",
        &[team.id.as_str()],
    )
    .await?
    .into_iter()
    .collect();
    let wanted: BTreeSet<String> = team.member_ids.iter().map(|m| m.to_string()).collect();
    for gone in current.difference(&wanted) {
        sqlx::query("UPDATE team_memberships SET left_at = $1 WHERE team_id = $2 AND customer_id = $3 AND left_at IS NULL")
            .bind(now_ms)
            .bind(team.id.as_str())
            .bind(gone.as_str())
            .execute(&mut *conn)
            .await?;
    }
    for new in wanted.difference(&current) {
        sqlx::query(
            "INSERT INTO team_memberships (team_id, customer_id, joined_at) VALUES ($1, $2, $3)",
        )
        .bind(team.id.as_str())
        .bind(new.as_str())
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn schedule_row(row: &AnyRow) -> Result<ScheduleRow> {
    Ok(ScheduleRow {
        subject: row.try_get("subject")?,
        next_due_at: row.try_get::<Option<i64>, _>("next_due_at")?.map(ts),
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get::<Option<i64>, _>("lease_until")?.map(ts),
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
    })
}

fn audit_entry(row: &AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        at: ts(row.try_get("at")?),
        subject: row.try_get("subject")?,
        group_id: row.try_get("group_id")?,
        operation: row.try_get("operation")?,
        cause: row.try_get("cause")?,
        outcome: row.try_get("outcome")?,
        latency_ms: row.try_get("latency_ms")?,
        detail: row.try_get("detail")?,
    })
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn put(&self, mut record: Record, now: Timestamp) -> Result<Written> {
        let (kind, key, now_ms) = (record.kind(), record.key(), ms(now));
        let mut tx = self.pool.begin().await?;
        let old = self.load_open(&mut tx, kind, &key).await?;
        record.carry_over(old.as_ref(), now);
        for r in record.refs() {
            if !exists(&mut tx, r.kind, &r.id).await? {
                return Err(StoreError::UnknownReference {
                    field: r.field,
                    kind: r.kind.as_str(),
                    id: r.id,
                });
            }
        }
        check_rules(&mut tx, &record).await?;
        let before = match &old {
            Some(o) => reach(&mut tx, o).await?,
            None => Reach::Subjects(BTreeSet::new()),
        };
        sqlx::query(
            "INSERT INTO records (kind, id, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(kind.as_str())
        .bind(key.as_str())
        .bind(self.body(&record)?)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        write_refs(&mut tx, &record, &key).await?;
        if let Record::Team(team) = &record {
            write_memberships(&mut tx, team, now_ms).await?;
        }
        if let Record::Connection(c) = &record {
            // A changed connection (new credentials, a new exempt list) is read and audited
            // afresh at once, and a pause it may have caused is lifted.
            sqlx::query(
                "UPDATE connection_state SET last_directory_at = NULL, next_audit_at = NULL,
                    paused_until = NULL, pause_reason = NULL WHERE connection_id = $1",
            )
            .bind(c.id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        let after = reach(&mut tx, &record).await?;
        mark(&mut tx, merge(before, after), now_ms).await?;
        notify(&mut tx, self.backend).await?;
        tx.commit().await?;
        Ok(Written {
            record,
            created: old.is_none(),
        })
    }

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Record>> {
        let mut conn = self.pool.acquire().await?;
        self.load_open(&mut conn, kind, key).await
    }

    async fn list(&self, kind: Kind, after: Option<&str>, limit: u32) -> Result<Vec<Record>> {
        let rows = sqlx::query(
            "SELECT id, body FROM records WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(kind.as_str())
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                self.open(kind, &id, &row.try_get::<String, _>("body")?)
            })
            .collect()
    }

    async fn delete(&self, kind: Kind, key: &str, now: Timestamp) -> Result<bool> {
        let now_ms = ms(now);
        let mut tx = self.pool.begin().await?;
        let Some(old) = load(&mut tx, kind, key).await? else {
            return Ok(false);
        };
        let user = sqlx::query("SELECT kind, id FROM refs WHERE ref_kind = $1 AND ref_id = $2 AND kind <> 'link' LIMIT 1")
            .bind(kind.as_str())
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = user {
            return Err(StoreError::InUse {
                kind: kind.as_str(),
                id: key.to_owned(),
                by_kind: row.try_get(0)?,
                by_id: row.try_get(1)?,
            });
        }
        let mut reach_all = reach(&mut tx, &old).await?;
        // An inventory item takes its link with it.
        let link_kind = match kind {
            Kind::Pass => Some(LinkKind::Pass),
            Kind::Resource => Some(LinkKind::Resource),
            Kind::Desk => Some(LinkKind::Desk),
            _ => None,
        };
        let mut doomed = vec![(kind, key.to_owned())];
        if let Some(lk) = link_kind {
            let link = link_key(lk, key);
            if let Some(l) = load(&mut tx, Kind::Link, &link).await? {
                reach_all = merge(reach_all, reach(&mut tx, &l).await?);
                doomed.push((Kind::Link, link));
            }
        }
        for (k, id) in &doomed {
            for sql in [
                "DELETE FROM records WHERE kind = $1 AND id = $2",
                "DELETE FROM refs WHERE kind = $1 AND id = $2",
            ] {
                sqlx::query(sql)
                    .bind(k.as_str())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if kind == Kind::Team {
            sqlx::query("DELETE FROM team_memberships WHERE team_id = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        mark(&mut tx, reach_all, now_ms).await?;
        notify(&mut tx, self.backend).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn subjects_reached(&self, record: &Record) -> Result<Vec<Subject>> {
        let mut conn = self.pool.acquire().await?;
        match reach(&mut conn, record).await? {
            Reach::Subjects(s) => Ok(s.into_iter().collect()),
            Reach::Everyone => {
                let mut out = vec![];
                for (kind, make) in [
                    ("customer", Subject::Customer as fn(Id) -> Subject),
                    ("visitor", Subject::Visitor as fn(Id) -> Subject),
                ] {
                    let ids = strings(
                        &mut conn,
                        "SELECT id FROM records WHERE kind = $1 ORDER BY id",
                        &[kind],
                    )
                    .await?;
                    out.extend(ids.iter().filter_map(|i| Id::parse(i).ok()).map(make));
                }
                Ok(out)
            }
        }
    }

    async fn customer_inputs(&self, id: &Id) -> Result<Option<CustomerInputs>> {
        let mut conn = self.pool.acquire().await?;
        let Some(Record::Customer(customer)) = load(&mut conn, Kind::Customer, id.as_str()).await?
        else {
            return Ok(None);
        };
        let mut inputs = CustomerInputs {
            customer,
            bookings: vec![],
            pass_grants: vec![],
            contracts: vec![],
            team_contracts: vec![],
            catalog: Catalog::default(),
        };
        let held = sqlx::query("SELECT kind, id FROM refs WHERE ref_kind = 'customer' AND ref_id = $1 AND field = 'customer_id'")
            .bind(id.as_str())
            .fetch_all(&mut *conn)
            .await?;
        for row in held {
            let (kind, key): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let Some(kind) = Kind::parse(&kind) else {
                continue;
            };
            match load(&mut conn, kind, &key).await? {
                Some(Record::Booking(b)) => inputs.bookings.push(b),
                Some(Record::PassGrant(g)) => inputs.pass_grants.push(g),
                Some(Record::Contract(c)) => inputs.contracts.push(c),
                _ => {}
            }
        }
        let stays = sqlx::query(
            "SELECT team_id, joined_at, left_at FROM team_memberships WHERE customer_id = $1",
        )
        .bind(id.as_str())
        .fetch_all(&mut *conn)
        .await?;
        for row in stays {
            let team_id: String = row.try_get(0)?;
            let Some(Record::Team(team)) = load(&mut conn, Kind::Team, &team_id).await? else {
                continue;
            };
            if team.paying_member_id == *id {
                continue;
            }
            let membership = TeamMembership {
                team_id: team.id.clone(),
                customer_id: id.clone(),
                joined_at: ts(row.try_get(1)?),
                left_at: row.try_get::<Option<i64>, _>(2)?.map(ts),
            };
            let contracts = strings(
                &mut conn,
                "SELECT id FROM refs WHERE ref_kind = 'customer' AND ref_id = $1 AND kind = 'contract' AND field = 'customer_id'",
                &[team.paying_member_id.as_str()],
            )
            .await?;
            for c in contracts {
                if let Some(Record::Contract(contract)) =
                    load(&mut conn, Kind::Contract, &c).await?
                {
                    inputs.team_contracts.push(TeamContract {
                        membership: membership.clone(),
                        paying_member_id: team.paying_member_id.clone(),
                        contract,
                    });
                }
            }
        }
        let mut items: BTreeSet<(Kind, Id)> = BTreeSet::new();
        items.extend(
            inputs
                .bookings
                .iter()
                .map(|b| (Kind::Resource, b.resource_id.clone())),
        );
        items.extend(
            inputs
                .pass_grants
                .iter()
                .map(|g| (Kind::Pass, g.pass_id.clone())),
        );
        let all_contracts = inputs
            .contracts
            .iter()
            .chain(inputs.team_contracts.iter().map(|t| &t.contract));
        items
            .extend(all_contracts.flat_map(|c| c.desk_ids.iter().map(|d| (Kind::Desk, d.clone()))));
        let catalog = &mut inputs.catalog;
        let mut locations = BTreeSet::new();
        for (kind, item) in items {
            let (link_kind, location) = match load(&mut conn, kind, item.as_str()).await? {
                Some(Record::Resource(r)) => {
                    let l = r.location_id.clone();
                    catalog.resources.insert(item.clone(), r);
                    (LinkKind::Resource, l)
                }
                Some(Record::Pass(p)) => {
                    let l = p.location_id.clone();
                    catalog.passes.insert(item.clone(), p);
                    (LinkKind::Pass, l)
                }
                Some(Record::Desk(d)) => {
                    let l = d.location_id.clone();
                    catalog.desks.insert(item.clone(), d);
                    (LinkKind::Desk, l)
                }
                _ => continue,
            };
            locations.insert(location);
            if let Some(Record::Link(link)) =
                load(&mut conn, Kind::Link, &link_key(link_kind, item.as_str())).await?
            {
                catalog.links.insert((link_kind, item), link.group_id);
            }
        }
        for l in locations {
            if let Some(Record::Location(loc)) = load(&mut conn, Kind::Location, l.as_str()).await?
            {
                catalog.locations.insert(l, loc);
            }
        }
        Ok(Some(inputs))
    }

    async fn visitor_inputs(&self, id: &Id) -> Result<Option<VisitorInputs>> {
        let mut conn = self.pool.acquire().await?;
        let Some(Record::Visitor(visitor)) = load(&mut conn, Kind::Visitor, id.as_str()).await?
        else {
            return Ok(None);
        };
        let Some(Record::Location(location)) =
            load(&mut conn, Kind::Location, visitor.location_id.as_str()).await?
        else {
            return Ok(None);
        };
        let visitor_group_ids = match &location.connection_id {
            Some(c) => match load(&mut conn, Kind::Connection, c.as_str()).await? {
                Some(Record::Connection(conn)) => conn.visitor_group_ids,
                _ => vec![],
            },
            None => vec![],
        };
        Ok(Some(VisitorInputs {
            visitor,
            location,
            visitor_group_ids,
        }))
    }

    async fn create_token(
        &self,
        name: &str,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<TokenInfo> {
        let id = format!("tok_{}", &token_hash[..token_hash.len().min(12)]);
        sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(token_hash)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(TokenInfo {
            id,
            name: name.to_owned(),
            created_at: now,
        })
    }

    async fn tokens(&self) -> Result<Vec<(TokenInfo, Option<Timestamp>)>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, last_used_at FROM api_tokens ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let info = TokenInfo {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    created_at: ts(r.try_get(2)?),
                };
                Ok((info, r.try_get::<Option<i64>, _>(3)?.map(ts)))
            })
            .collect()
    }

    async fn revoke_token(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn token_by_hash(&self, token_hash: &str, now: Timestamp) -> Result<Option<TokenInfo>> {
        let row = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2 RETURNING id, name, created_at")
            .bind(ms(now))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(TokenInfo {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                created_at: ts(row.try_get(2)?),
            })
        })
        .transpose()
    }

    async fn mark_due(&self, subject: &Subject, at: Timestamp) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query(MARK_DUE)
            .bind(subject.key())
            .bind(ms(at))
            .execute(&mut *conn)
            .await?;
        notify(&mut conn, self.backend).await
    }

    async fn claim_due(
        &self,
        owner: &str,
        now: Timestamp,
        lease: SignedDuration,
        limit: u32,
    ) -> Result<Vec<Claim>> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let until = now.checked_add(lease).unwrap_or(Timestamp::MAX);
        // Two claims, each a plain indexed range: subjects whose owner died (lease expired, due
        // since it was claimed), then subjects due now. An OR of the two would scan the table.
        let claims = [
            "UPDATE schedule SET lease_owner = $1, lease_until = $2, next_due_at = NULL
             WHERE subject IN (
                SELECT subject FROM schedule WHERE lease_owner IS NOT NULL AND lease_until <= $3
                ORDER BY lease_until LIMIT $4 {lock})
             RETURNING subject, claimed_due_at",
            "UPDATE schedule SET lease_owner = $1, lease_until = $2, claimed_due_at = next_due_at, next_due_at = NULL
             WHERE subject IN (
                SELECT subject FROM schedule WHERE lease_owner IS NULL AND next_due_at <= $3
                ORDER BY next_due_at LIMIT $4 {lock})
             RETURNING subject, claimed_due_at",
        ];
        let mut out = vec![];
        for sql in claims {
            let left = i64::from(limit) - out.len() as i64;
            if left <= 0 {
                break;
            }
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.replace("{lock}", lock)))
                .bind(owner)
                .bind(ms(until))
                .bind(ms(now))
                .bind(left)
                .fetch_all(&self.pool)
                .await?;
            for r in &rows {
                let key: String = r.try_get(0)?;
                match Subject::parse_key(&key) {
                    Some(subject) => {
                        let due_at = r.try_get::<Option<i64>, _>(1)?.map(ts);
                        out.push(Claim { subject, due_at });
                    }
                    // No subject can be made of it, so no one would ever finish it.
                    None => {
                        tracing::error!(key, "dropping an unreadable schedule row");
                        sqlx::query("DELETE FROM schedule WHERE subject = $1")
                            .bind(key)
                            .execute(&self.pool)
                            .await?;
                    }
                }
            }
        }
        Ok(out)
    }

    async fn finish(&self, subject: &Subject, owner: &str, outcome: Outcome) -> Result<()> {
        let earliest = "CASE WHEN next_due_at IS NULL THEN $2 WHEN $2 IS NULL THEN next_due_at
                        WHEN $2 < next_due_at THEN $2 ELSE next_due_at END";
        let (sql, next, error) = match outcome {
            Outcome::Done { next_due_at } => (
                format!(
                    "UPDATE schedule SET lease_owner = NULL, lease_until = NULL, attempts = 0, last_error = NULL,
                     next_due_at = {earliest} WHERE subject = $1 AND lease_owner = $3"
                ),
                next_due_at.map(ms),
                None,
            ),
            Outcome::Failed { retry_at, error } => (
                format!(
                    "UPDATE schedule SET lease_owner = NULL, lease_until = NULL, attempts = attempts + 1,
                     last_error = $4, next_due_at = {earliest} WHERE subject = $1 AND lease_owner = $3"
                ),
                Some(ms(retry_at)),
                Some(error),
            ),
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(subject.key())
            .bind(next)
            .bind(owner);
        if let Some(e) = error {
            q = q.bind(e);
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    async fn renew_lease(&self, subject: &Subject, owner: &str, until: Timestamp) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE schedule SET lease_until = $1 WHERE subject = $2 AND lease_owner = $3",
        )
        .bind(ms(until))
        .bind(subject.key())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn schedule_row(&self, subject: &Subject) -> Result<Option<ScheduleRow>> {
        let row = sqlx::query("SELECT * FROM schedule WHERE subject = $1")
            .bind(subject.key())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(schedule_row).transpose()
    }

    async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        // A leased subject is next due when its lease runs out, whatever was marked meanwhile.
        let mut next: Option<i64> = None;
        for sql in [
            "SELECT MIN(next_due_at) FROM schedule WHERE lease_owner IS NULL",
            "SELECT MIN(lease_until) FROM schedule WHERE lease_owner IS NOT NULL",
        ] {
            let row = sqlx::query(sql).fetch_one(&self.pool).await?;
            if let Some(t) = row.try_get::<Option<i64>, _>(0)? {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        Ok(next.map(ts))
    }

    async fn due_summary(&self, now: Timestamp) -> Result<DueSummary> {
        let row = sqlx::query(
            "SELECT
                COUNT(CASE WHEN lease_owner IS NULL AND next_due_at <= $1 THEN 1 END),
                MIN(CASE WHEN lease_owner IS NULL AND next_due_at <= $1 THEN next_due_at END),
                COUNT(CASE WHEN lease_owner IS NOT NULL AND lease_until > $1 THEN 1 END)
             FROM schedule",
        )
        .bind(ms(now))
        .fetch_one(&self.pool)
        .await?;
        Ok(DueSummary {
            due: row.try_get(0)?,
            oldest_due_at: row.try_get::<Option<i64>, _>(1)?.map(ts),
            in_flight: row.try_get(2)?,
        })
    }

    async fn mirror_user(&self, connection: &str, subject: &Subject) -> Result<Option<MirrorUser>> {
        crate::mirror::user(&self.pool, connection, &subject.key()).await
    }

    async fn mirror_connections_of(&self, subject: &Subject) -> Result<Vec<String>> {
        crate::mirror::connections_of(&self.pool, &subject.key()).await
    }

    async fn mirror_save(
        &self,
        connection: &str,
        subject: &Subject,
        user: Option<&MirrorUser>,
    ) -> Result<()> {
        crate::mirror::save(&self.pool, connection, &subject.key(), user).await
    }

    async fn mirror_group_members(
        &self,
        connection: &str,
        group: &str,
    ) -> Result<BTreeMap<String, String>> {
        crate::mirror::group_members(&self.pool, connection, group).await
    }

    async fn mirror_subject_of_user(
        &self,
        connection: &str,
        user_id: &str,
    ) -> Result<Option<Subject>> {
        Ok(
            crate::mirror::subject_of_user(&self.pool, connection, user_id)
                .await?
                .and_then(|k| Subject::parse_key(&k)),
        )
    }

    async fn managed_groups(&self, connection: &str) -> Result<BTreeSet<String>> {
        crate::mirror::managed_groups(&self.pool, connection).await
    }

    async fn replace_directory(
        &self,
        connection: &str,
        kind: &str,
        entries: &[DirectoryEntry],
    ) -> Result<()> {
        crate::mirror::replace_directory(&self.pool, connection, kind, entries).await
    }

    async fn directory(&self, connection: &str, kind: &str) -> Result<Vec<DirectoryEntry>> {
        crate::mirror::directory(&self.pool, connection, kind).await
    }

    async fn connection_state(&self, connection: &str) -> Result<ConnectionState> {
        crate::mirror::state(&self.pool, connection).await
    }

    async fn change_connection_state(&self, connection: &str, change: StateChange) -> Result<()> {
        crate::mirror::change_state(&self.pool, connection, change).await
    }

    async fn count_calls(&self, connection: &str, month: &str, calls: i64) -> Result<i64> {
        crate::mirror::count_calls(&self.pool, connection, month, calls).await
    }

    async fn error_counts(&self) -> Result<BTreeMap<String, i64>> {
        crate::mirror::error_counts(&self.pool).await
    }

    async fn append_audit(&self, e: AuditEntry) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO audit_log (at, subject, group_id, operation, cause, outcome, latency_ms, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
        )
        .bind(ms(e.at))
        .bind(e.subject)
        .bind(e.group_id)
        .bind(e.operation)
        .bind(e.cause)
        .bind(e.outcome)
        .bind(e.latency_ms)
        .bind(e.detail)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    async fn audit(
        &self,
        f: &AuditFilter,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let mut clauses = vec![];
        let mut texts: BTreeMap<usize, String> = BTreeMap::new();
        let mut numbers: BTreeMap<usize, i64> = BTreeMap::new();
        let mut n = 0;
        for (col, v) in [
            ("subject", &f.subject),
            ("group_id", &f.group_id),
            ("operation", &f.operation),
            ("outcome", &f.outcome),
        ] {
            if let Some(v) = v {
                n += 1;
                clauses.push(format!("{col} = ${n}"));
                texts.insert(n, v.clone());
            }
        }
        for (cond, v) in [
            ("at >=", f.since.map(ms)),
            ("at <", f.until.map(ms)),
            ("seq <", before_seq),
        ] {
            if let Some(v) = v {
                n += 1;
                clauses.push(format!("{cond} ${n}"));
                numbers.insert(n, v);
            }
        }
        n += 1;
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!("SELECT * FROM audit_log {filter} ORDER BY seq DESC LIMIT ${n}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for i in 1..n {
            q = match (texts.remove(&i), numbers.remove(&i)) {
                (Some(t), _) => q.bind(t),
                (None, Some(v)) => q.bind(v),
                (None, None) => unreachable!("every placeholder below n has a value"),
            };
        }
        let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(audit_entry).collect()
    }
}

//! The [`Store`] on SQL. SQLite and PostgreSQL share one implementation through sqlx's `Any`
//! driver: the schema and statements are the same but for the lease claim, where PostgreSQL
//! skips rows another instance holds.

use crate::reach::{Bounds, DUE_CHANNEL, Urgency, mark, notify, reach, reach_change};
use crate::record::{Kind, Record, link_key};
use crate::secrets::{SecretError, SecretKey};
use crate::*;
use doorsync_core::*;
use sqlx::any::AnyPoolOptions;
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
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    url: String,
    secret: Option<Arc<SecretKey>>,
    /// Groups each connection manages, with the catalog version they were computed at.
    managed: Arc<std::sync::Mutex<ManagedCache>>,
    /// The catalog every customer's inputs draw from, kept until a write changes it.
    pub(crate) catalog: Arc<crate::inputs::CatalogCache>,
}

/// Connection id → (catalog version, groups managed at that version).
type ManagedCache = BTreeMap<String, (i64, BTreeSet<String>)>;

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
                        // Statement journals in memory and a 32 MiB page cache: a bulk load
                        // wrote every multi-row insert's journal to a temporary file and read
                        // its indexes back from the OS (medium load 58 s to 48 s).
                        sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32768;")
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
            managed: Default::default(),
            catalog: Default::default(),
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
            ("refresh_token", &cr.refresh_token),
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
    /// Records from rows of `id` and `body`.
    fn open_rows(&self, kind: Kind, rows: &[sqlx::any::AnyRow]) -> Result<Vec<Record>> {
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                self.open(kind, &id, &row.try_get::<String, _>("body")?)
            })
            .collect()
    }

    fn open(&self, kind: Kind, id: &str, body: &str) -> Result<Record> {
        let mut record = parse(kind, id, body)?;
        if let Record::Connection(c) = &mut record {
            match self.unseal(body) {
                Some(Ok(credentials)) => c.credentials = credentials,
                Some(Err(e)) => {
                    tracing::error!(connection = id, error = %e, "connection credentials unreadable")
                }
                None => {}
            }
        }
        Ok(record)
    }

    /// The sealed credentials of a stored connection body, opened; `None` when none are stored.
    fn unseal(
        &self,
        body: &str,
    ) -> Option<std::result::Result<doorsync_core::Credentials, SecretError>> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let sealed = v["credentials"]["sealed"].as_str()?;
        Some(match &self.secret {
            None => Err(SecretError::NoKey),
            Some(key) => key.open(sealed).and_then(|plain| {
                serde_json::from_slice(&plain).map_err(|_| SecretError::WrongKey)
            }),
        })
    }

    /// A put inside the caller's transaction (the store's own, or a batch's savepoint), which
    /// holds the record's key lock ([`lock_keys`]).
    async fn put_in(
        &self,
        tx: &mut AnyConnection,
        mut record: Record,
        now: Timestamp,
    ) -> Result<Written> {
        record.check_limits()?;
        let (key, now_ms) = (record.key(), ms(now));
        if let Record::Connection(c) = &record {
            self.guard_credentials(&mut *tx, c).await?;
        }
        if let Some(r) = first_missing(&mut *tx, &record).await? {
            return Err(StoreError::UnknownReference {
                field: r.field,
                kind: r.kind.as_str(),
                id: r.id,
            });
        }
        check_rules(&mut *tx, &record).await?;
        crate::setup::check(&mut *tx, &record).await?;
        let old = self.write_record(&mut *tx, &mut record, now).await?;
        write_refs(&mut *tx, &record, &key, old.is_none()).await?;
        crate::project::project(&mut *tx, &record, old.is_none()).await?;
        if let Record::Team(team) = &record {
            write_memberships(&mut *tx, team, now_ms).await?;
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
        let reached = reach_change(&mut *tx, old.as_ref(), &record).await?;
        let urgency = if old.is_some() {
            Urgency::MayRevoke
        } else {
            Urgency::Keep
        };
        mark(&mut *tx, reached, &Bounds::at(now), urgency).await?;
        Ok(Written {
            record,
            created: old.is_none(),
        })
    }

    /// A delete inside the caller's transaction, which holds the record's key lock. A reference written by a racing transaction
    /// is reported as `InUse` by an unnamed record: the caller names it once the transaction
    /// is gone.
    async fn delete_in(
        &self,
        tx: &mut AnyConnection,
        kind: Kind,
        key: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let Some(body) = load_body_locked(&mut *tx, kind, key, Lock::Delete).await? else {
            return Ok(false);
        };
        let old = parse(kind, key, &body)?;
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
        let mut reach_all = reach(&mut *tx, &old).await?;
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
            if let Some(l) = load(&mut *tx, Kind::Link, &link).await? {
                reach_all = reach_all.merge(reach(&mut *tx, &l).await?);
                doomed.push((Kind::Link, link));
            }
        }
        // The link goes before its item; the database refuses to delete a record that something
        // still refers to, which catches a reference written by a racing transaction after the
        // check above.
        for (k, id) in doomed.iter().rev() {
            crate::project::unproject(&mut *tx, *k, id).await?;
            for sql in [
                "DELETE FROM refs WHERE kind = $1 AND id = $2",
                "DELETE FROM records WHERE kind = $1 AND id = $2",
            ] {
                let done = sqlx::query(sql)
                    .bind(k.as_str())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await;
                if let Err(e) = done {
                    if !is_foreign_key_violation(&e) {
                        return Err(e.into());
                    }
                    return Err(StoreError::InUse {
                        kind: kind.as_str(),
                        id: key.to_owned(),
                        by_kind: String::new(),
                        by_id: String::new(),
                    });
                }
            }
        }
        if kind == Kind::Team {
            sqlx::query("DELETE FROM team_memberships WHERE team_id = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        mark(&mut *tx, reach_all, &Bounds::at(now), Urgency::MayRevoke).await?;
        Ok(true)
    }

    /// Credentials are never lost or sent somewhere new by accident: a write to a connection
    /// whose stored credentials this instance cannot read must replace all of them (it could
    /// neither keep nor carry the others), and a write that changes where a connection points
    /// must bring its credentials again (the old ones are not carried over to the new host).
    async fn guard_credentials(&self, conn: &mut AnyConnection, new: &Connection) -> Result<()> {
        let Some(raw) = load_body(conn, Kind::Connection, new.id.as_str()).await? else {
            return Ok(());
        };
        let brings = new.credentials.any();
        if matches!(self.unseal(&raw), Some(Err(_))) && !new.credentials.replaces_all() {
            return Err(StoreError::CredentialsUnreadable(new.id.to_string()));
        }
        let Record::Connection(old) = self.open(Kind::Connection, new.id.as_str(), &raw)? else {
            return Ok(());
        };
        if old.credentials.any() && !brings {
            for (field, a, b) in [
                ("api_url", &new.api_url, &old.api_url),
                ("auth_url", &new.auth_url, &old.auth_url),
            ] {
                if a != b {
                    return Err(StoreError::Invalid {
                        field,
                        message: "changing where a connection points needs its credentials again in the same request, so that they are never sent to a new host by accident".into(),
                    });
                }
            }
        }
        Ok(())
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

    /// Writes the record's row and returns the one it replaced, with the record's store-owned
    /// fields carried over from it. Whether the write creates is decided by the insert itself,
    /// never by a read before it: of writers racing to create one id, PostgreSQL lets one insert
    /// and holds the others until it commits, and they then replace its row. The row stays
    /// locked to the end of the transaction, so the references and projections written next
    /// are never written by two writers of one record at once.
    async fn write_record(
        &self,
        tx: &mut AnyConnection,
        record: &mut Record,
        now: Timestamp,
    ) -> Result<Option<Record>> {
        let (kind, key, now_ms) = (record.kind(), record.key(), ms(now));
        // A writer that finds the row gone again (deleted by a third) tries once more; a row
        // that keeps appearing and vanishing is an error rather than a loop.
        for _ in 0..3 {
            if let Some(body) = load_body_locked(tx, kind, &key, Lock::Write).await? {
                let old = self.open(kind, &key, &body)?;
                record.carry_over(Some(&old), now);
                sqlx::query(
                    "UPDATE records SET body = $3, updated_at = $4 WHERE kind = $1 AND id = $2",
                )
                .bind(kind.as_str())
                .bind(key.as_str())
                .bind(self.body(record)?)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                return Ok(Some(old));
            }
            let mut fresh = record.clone();
            fresh.carry_over(None, now);
            let inserted = sqlx::query(
                "INSERT INTO records (kind, id, body, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (kind, id) DO NOTHING",
            )
            .bind(kind.as_str())
            .bind(key.as_str())
            .bind(self.body(&fresh)?)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                *record = fresh;
                return Ok(None);
            }
        }
        Err(StoreError::Database(sqlx::Error::Protocol(format!(
            "{} {key:?} was created and deleted again by others while it was written",
            kind.as_str()
        ))))
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
        let applied = crate::migrate::run(&self.pool, self.backend, ms(now)).await?;
        let mut conn = self.pool.acquire().await?;
        let projected = crate::project::backfill(&mut conn, self.backend).await?;
        if projected > 0 {
            tracing::info!(
                records = projected,
                "records projected into the input tables"
            );
        }
        drop(conn);
        self.optimize().await?;
        Ok(applied)
    }

    /// Gathers the planner's statistics on every table: without them SQLite walked the wrong
    /// index to claim due subjects and sorted every due row on each claim, and PostgreSQL's
    /// autovacuum may not have seen a large import yet. Run at start (after the migrations) and
    /// after a bulk import; SQLite samples each index, so this stays quick on a large file.
    pub async fn optimize(&self) -> Result<()> {
        let sql = match self.backend {
            Backend::Sqlite => "PRAGMA analysis_limit = 1000; ANALYZE;",
            Backend::Postgres => "ANALYZE",
        };
        sqlx::raw_sql(sql).execute(&self.pool).await?;
        Ok(())
    }

    /// Ends every lease on subjects and on connection-wide work, so that what a killed
    /// predecessor held is claimed at once instead of when its lease runs out. Only for a
    /// process that knows it is the one instance on the database (see `doorsync serve` on
    /// SQLite, which holds a lock file for that): another live instance would lose its leases.
    pub async fn expire_leases(&self) -> Result<u64> {
        let subjects = sqlx::query(
            "UPDATE schedule SET lease_until = 0 WHERE lease_owner IS NOT NULL AND lease_until > 0",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM work_leases")
            .execute(&self.pool)
            .await?;
        Ok(subjects)
    }

    /// Names the record that made a delete fail, when the failure came from the database.
    async fn name_user(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::InUse {
                kind, id, by_kind, ..
            } if by_kind.is_empty() => match self
                .first_user(Kind::parse(kind).unwrap_or(Kind::Customer), &id)
                .await
            {
                Ok((by_kind, by_id)) => StoreError::InUse {
                    kind,
                    id,
                    by_kind,
                    by_id,
                },
                Err(e) => e,
            },
            other => other,
        }
    }

    /// Who refers to a record, read after a delete lost its race with a new reference.
    async fn first_user(&self, kind: Kind, key: &str) -> Result<(String, String)> {
        let row = sqlx::query(
            "SELECT kind, id FROM refs WHERE ref_kind = $1 AND ref_id = $2 AND kind <> 'link' LIMIT 1",
        )
        .bind(kind.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => (r.try_get(0)?, r.try_get(1)?),
            None => ("record".to_owned(), "written at the same time".to_owned()),
        })
    }

    async fn put_once(&self, record: Record, now: Timestamp) -> Result<Written> {
        let mut tx = self.pool.begin().await?;
        lock_keys(
            &mut tx,
            &BTreeSet::from([lock_key(record.kind(), &record.key())]),
        )
        .await?;
        let written = self.put_in(&mut tx, record, now).await?;
        notify(&mut tx, self.backend).await?;
        tx.commit().await?;
        Ok(written)
    }

    async fn delete_once(&self, kind: Kind, key: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        lock_keys(&mut tx, &BTreeSet::from([lock_key(kind, key)])).await?;
        match self.delete_in(&mut tx, kind, key, now).await {
            Ok(deleted) => {
                if deleted {
                    notify(&mut tx, self.backend).await?;
                    tx.commit().await?;
                }
                Ok(deleted)
            }
            Err(e) => {
                drop(tx);
                Err(self.name_user(e).await)
            }
        }
    }

    /// A transaction for a batch's chunk, holding the locks of every record it writes.
    async fn begin_chunk(&self, ops: &[BatchOp]) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        lock_keys(&mut tx, &keys_of(ops)).await?;
        Ok(tx)
    }

    async fn apply_batch_once(
        &self,
        ops: &[BatchOp],
        now: Timestamp,
        stop_at_error: bool,
    ) -> Result<Vec<std::result::Result<BatchDone, StoreError>>> {
        // The common case first: every write succeeds, in one transaction with no savepoints
        // (two statements fewer per write). Only if one fails is the chunk done again, each
        // write in a savepoint of its own.
        let mut tx = self.begin_chunk(ops).await?;
        match crate::bulk::insert_new(&mut tx, ops, now).await {
            Ok(Some(written)) => {
                notify(&mut tx, self.backend).await?;
                tx.commit().await?;
                return Ok(written
                    .into_iter()
                    .map(|w| Ok(BatchDone::Written(Box::new(w))))
                    .collect());
            }
            Ok(None) => {}
            Err(_) => {
                // PostgreSQL refuses anything more in a failed transaction: start again.
                tx.rollback().await?;
                tx = self.begin_chunk(ops).await?;
            }
        }
        let mut written = Vec::with_capacity(ops.len());
        let mut clean = true;
        for op in ops {
            let done = match op {
                BatchOp::Put(record) => self
                    .put_in(&mut tx, (**record).clone(), now)
                    .await
                    .map(|w| BatchDone::Written(Box::new(w))),
                BatchOp::Delete(kind, key) => self
                    .delete_in(&mut tx, *kind, key, now)
                    .await
                    .map(BatchDone::Deleted),
            };
            match done {
                Ok(d) => written.push(Ok(d)),
                Err(_) => {
                    clean = false;
                    break;
                }
            }
        }
        if clean {
            notify(&mut tx, self.backend).await?;
            tx.commit().await?;
            return Ok(written);
        }
        tx.rollback().await?;
        let mut tx = self.begin_chunk(ops).await?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops.iter().cloned() {
            // Each item in a savepoint: one that fails leaves the others, and the chunk still
            // commits as a whole.
            let mut item = sqlx::Connection::begin(&mut *tx).await?;
            let done = match op {
                BatchOp::Put(record) => self
                    .put_in(&mut item, *record, now)
                    .await
                    .map(|w| BatchDone::Written(Box::new(w))),
                BatchOp::Delete(kind, key) => self
                    .delete_in(&mut item, kind, &key, now)
                    .await
                    .map(BatchDone::Deleted),
            };
            match done {
                Ok(d) => {
                    item.commit().await?;
                    out.push(Ok(d));
                }
                // Broken off to end a deadlock with another writer: the whole chunk runs
                // again, since the locks its earlier items hold are what the other waits for.
                Err(e) if is_transient(&e) => return Err(e),
                Err(e) => {
                    item.rollback().await?;
                    out.push(Err(e));
                    if stop_at_error {
                        break;
                    }
                }
            }
        }
        notify(&mut tx, self.backend).await?;
        tx.commit().await?;
        let mut named = Vec::with_capacity(out.len());
        for r in out {
            named.push(match r {
                Err(e) => Err(self.name_user(e).await),
                ok => ok,
            });
        }
        Ok(named)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A failure that says nothing about the write: PostgreSQL broke a deadlock between two
/// transactions (writers taking the same rows in another order, as two batches may) or
/// refused to serialize one. Run again, the transaction finds the other one done.
fn is_transient(e: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(d)) = e else {
        return false;
    };
    // PostgreSQL: a deadlock, a serialization failure. SQLite: a transaction that read before
    // writing while another connection to the file (a second process, `doorsync token create`
    // beside `serve`) was writing (SQLITE_BUSY, answered at once rather than waited out, since
    // waiting could deadlock) or had committed meanwhile (SQLITE_BUSY_SNAPSHOT): run again on
    // a fresh snapshot, it goes through.
    matches!(d.code().as_deref(), Some("40P01" | "40001" | "5" | "517"))
}

/// Runs a whole transaction again while it fails transiently, a few times at most.
async fn retrying<T, F>(mut run: impl FnMut() -> F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    const ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        match run().await {
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                tracing::debug!(error = %e, attempt, "write broken off by the database; again");
                attempt += 1;
            }
            done => return done,
        }
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

/// On PostgreSQL, takes a lock on each record key (`kind/id`) a transaction is about to write,
/// held to its end, in one order every writer shares. Writers of overlapping records (two
/// batches carrying the same new records in different orders, a batch and a single write)
/// then wait for each other before either writes anything, instead of each inserting part
/// and deadlocking over the rest. A row lock cannot do this for a record not yet stored.
async fn lock_keys(conn: &mut AnyConnection, keys: &BTreeSet<String>) -> Result<()> {
    if keys.is_empty() || !crate::idset::is_postgres(conn) {
        return Ok(());
    }
    let sql = format!(
        "SELECT COUNT(pg_advisory_xact_lock(x.h)) FROM (
            SELECT DISTINCT hashtextextended(j.value, 0) AS h FROM {} AS j ORDER BY h
         ) x",
        crate::idset::elements(conn, 1)
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(crate::idset::json(keys))
        .fetch_one(&mut *conn)
        .await?;
    Ok(())
}

fn lock_key(kind: Kind, key: &str) -> String {
    format!("{}/{key}", kind.as_str())
}

/// The keys of the records `ops` write.
fn keys_of(ops: &[BatchOp]) -> BTreeSet<String> {
    ops.iter()
        .map(|op| match op {
            BatchOp::Put(r) => lock_key(r.kind(), &r.key()),
            BatchOp::Delete(kind, key) => lock_key(*kind, key),
        })
        .collect()
}

/// How a writer locks the row it reads (PostgreSQL; SQLite has one writer at a time anyway).
#[derive(Clone, Copy)]
pub(crate) enum Lock {
    /// For a change of the row: other writers wait, references to it do not.
    Write,
    /// For a delete: references to it wait too.
    Delete,
}

/// The stored body of a record, its row locked until the transaction ends.
async fn load_body_locked(
    conn: &mut AnyConnection,
    kind: Kind,
    key: &str,
    lock: Lock,
) -> Result<Option<String>> {
    let clause = match (crate::idset::is_postgres(conn), lock) {
        (false, _) => "",
        (true, Lock::Write) => " FOR NO KEY UPDATE",
        (true, Lock::Delete) => " FOR UPDATE",
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT body FROM records WHERE kind = $1 AND id = $2{clause}"
    )))
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

pub(crate) fn parse(kind: Kind, key: &str, body: &str) -> Result<Record> {
    Record::from_json(kind, body).map_err(|e| StoreError::Corrupt {
        kind: kind.as_str(),
        id: key.to_owned(),
        message: e.to_string(),
    })
}

pub(crate) async fn strings(
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

/// Rules that span records and that a reference check alone does not catch.
async fn check_rules(conn: &mut AnyConnection, record: &Record) -> Result<()> {
    if let Record::Contract(c) = record {
        let sql = format!(
            "SELECT COUNT(DISTINCT i.location_id) FROM {} AS j
             JOIN in_items i ON i.kind = 'desk' AND i.id = j.value",
            crate::idset::elements(conn, 1)
        );
        let locations: i64 = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(crate::idset::json(c.desk_ids.iter().map(Id::as_str)))
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        if locations > 1 {
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

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| matches!(d.kind(), sqlx::error::ErrorKind::ForeignKeyViolation))
}

/// A record's references grouped by field, in the order they first appear: each group is
/// checked and written in one statement, however long its list.
fn refs_by_field(record: &Record) -> Vec<(&'static str, Kind, Vec<String>)> {
    let mut groups: Vec<(&'static str, Kind, Vec<String>)> = vec![];
    for r in record.refs() {
        match groups
            .iter_mut()
            .find(|(f, k, _)| *f == r.field && *k == r.kind)
        {
            Some((_, _, ids)) => ids.push(r.id),
            None => groups.push((r.field, r.kind, vec![r.id])),
        }
    }
    groups
}

/// The first reference of `record` to a record that does not exist: one query a field.
async fn first_missing(conn: &mut AnyConnection, record: &Record) -> Result<Option<crate::Ref>> {
    for (field, kind, ids) in refs_by_field(record) {
        let sql = format!(
            "SELECT j.value FROM {} AS j
             WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.kind = $2 AND r.id = j.value)",
            crate::idset::elements(conn, 1)
        );
        let missing: BTreeSet<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(crate::idset::json(&ids))
            .bind(kind.as_str())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        if let Some(id) = ids.into_iter().find(|id| missing.contains(id)) {
            return Ok(Some(crate::Ref { field, kind, id }));
        }
    }
    Ok(None)
}

/// `fresh`: the record is new, so it has no references to replace.
async fn write_refs(
    conn: &mut AnyConnection,
    record: &Record,
    key: &str,
    fresh: bool,
) -> Result<()> {
    let kind = record.kind().as_str();
    if !fresh {
        sqlx::query("DELETE FROM refs WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(key)
            .execute(&mut *conn)
            .await?;
    }
    for (field, ref_kind, ids) in refs_by_field(record) {
        let sql = format!(
            "INSERT INTO refs (kind, id, field, ref_kind, ref_id)
             SELECT $2, $3, $4, $5, j.value FROM {} AS j",
            crate::idset::elements(conn, 1)
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(crate::idset::json(&ids))
            .bind(kind)
            .bind(key)
            .bind(field)
            .bind(ref_kind.as_str())
            .execute(&mut *conn)
            .await;
        // The database enforces the references: a target deleted since the check above (by a
        // racing transaction) fails here instead of leaving the record pointing at nothing.
        done.map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::UnknownReference {
                    field,
                    kind: ref_kind.as_str(),
                    id: ids[0].clone(),
                }
            } else {
                e.into()
            }
        })?;
    }
    Ok(())
}

/// Opens a stay for each new member and closes the stay of each member who left: two
/// statements, whatever the team's size.
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
    let gone: Vec<&String> = current.difference(&wanted).collect();
    if !gone.is_empty() {
        let sql = format!(
            "UPDATE team_memberships SET left_at = $2
             WHERE team_id = $3 AND left_at IS NULL AND {}",
            crate::idset::contains(conn, "customer_id", 1)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(crate::idset::json(gone))
            .bind(now_ms)
            .bind(team.id.as_str())
            .execute(&mut *conn)
            .await?;
    }
    let joined: Vec<&String> = wanted.difference(&current).collect();
    if !joined.is_empty() {
        let sql = format!(
            "INSERT INTO team_memberships (team_id, customer_id, joined_at)
             SELECT $2, j.value, $3 FROM {} AS j",
            crate::idset::elements(conn, 1)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(crate::idset::json(joined))
            .bind(team.id.as_str())
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
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

    async fn put(&self, record: Record, now: Timestamp) -> Result<Written> {
        retrying(|| self.put_once(record.clone(), now)).await
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
        self.open_rows(kind, &rows)
    }

    async fn search(&self, kind: Kind, text: &str, limit: u32) -> Result<Vec<Record>> {
        let escaped = text
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        // The exact id first, then any whose fields hold the text; a scan of the kind, which
        // an operator's search can afford.
        let rows = sqlx::query(
            "SELECT id, body FROM records WHERE kind = $1 AND id = $2
             UNION ALL
             SELECT id, body FROM (
                SELECT id, body FROM records
                WHERE kind = $1 AND id <> $2 AND LOWER(body) LIKE $3 ESCAPE '\\'
                ORDER BY id LIMIT $4
             ) found",
        )
        .bind(kind.as_str())
        .bind(text)
        .bind(format!("%{escaped}%"))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        self.open_rows(kind, &rows[..rows.len().min(limit as usize)])
    }

    async fn customers_by_email(&self, email: &str) -> Result<Vec<Record>> {
        let rows = sqlx::query(
            "SELECT r.id, r.body FROM in_customer_emails e
             JOIN records r ON r.kind = 'customer' AND r.id = e.id
             WHERE e.email = $1 ORDER BY r.id",
        )
        .bind(email.trim().to_lowercase())
        .fetch_all(&self.pool)
        .await?;
        self.open_rows(Kind::Customer, &rows)
    }

    async fn hosted_visitors(&self, customer: &str, since: Timestamp) -> Result<Vec<Record>> {
        // The reference the visitor keeps to its host, and the visit's end as projected (which
        // runs `RELEVANT_AFTER_END` past the departure, so `since` is moved back as far).
        let since = since
            .checked_sub(crate::project::RELEVANT_AFTER_END)
            .unwrap_or(Timestamp::MIN);
        let rows = sqlx::query(
            "SELECT r.id, r.body FROM refs f
             JOIN in_visitors v ON v.id = f.id
             JOIN records r ON r.kind = 'visitor' AND r.id = f.id
             WHERE f.ref_kind = 'customer' AND f.ref_id = $1 AND f.kind = 'visitor'
               AND f.field = 'host_customer_id' AND v.until_ms >= $2
             ORDER BY r.id",
        )
        .bind(customer)
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        self.open_rows(Kind::Visitor, &rows)
    }

    async fn delete(&self, kind: Kind, key: &str, now: Timestamp) -> Result<bool> {
        retrying(|| self.delete_once(kind, key, now)).await
    }

    async fn apply_batch(
        &self,
        ops: Vec<BatchOp>,
        now: Timestamp,
        stop_at_error: bool,
    ) -> Result<Vec<std::result::Result<BatchDone, StoreError>>> {
        retrying(|| self.apply_batch_once(&ops, now, stop_at_error)).await
    }

    async fn subjects_reached(&self, record: &Record, now: Timestamp) -> Result<Vec<Subject>> {
        let mut conn = self.pool.acquire().await?;
        let reached = reach(&mut conn, record).await?;
        Ok(crate::reach::subjects(&mut conn, reached, &Bounds::at(now))
            .await?
            .into_iter()
            .collect())
    }

    async fn customers_inputs(&self, ids: &[Id], now: Timestamp) -> Result<Vec<CustomerInputs>> {
        crate::inputs::customers_inputs(self, ids, now).await
    }

    async fn visitor_inputs(&self, id: &Id) -> Result<Option<VisitorInputs>> {
        crate::inputs::visitor_inputs(self, id).await
    }

    async fn save_door_events(
        &self,
        connection: &str,
        events: &[NewDoorEvent],
        now: Timestamp,
    ) -> Result<u64> {
        crate::presence::save_events(self, connection, events, now).await
    }

    async fn pending_door_events(&self, limit: u32) -> Result<Vec<DoorEvent>> {
        crate::presence::pending(self, limit).await
    }

    async fn presence_day(
        &self,
        customer: &str,
        location: &str,
        local_date: &str,
        at: Timestamp,
    ) -> Result<PresenceDay> {
        crate::presence::day(self, customer, location, local_date, at).await
    }

    async fn record_presence(
        &self,
        event_id: &str,
        subject: Option<&str>,
        location: Option<&str>,
        outcome: &str,
        write: &PresenceWrite,
        now: Timestamp,
    ) -> Result<bool> {
        crate::presence::record(self, event_id, subject, location, outcome, write, now).await
    }

    async fn open_checkins_before(&self, local_date: &str) -> Result<Vec<Checkin>> {
        crate::presence::open_before(self, local_date).await
    }

    async fn close_checkin(&self, id: &str, at: Timestamp) -> Result<()> {
        crate::presence::close(self, id, at).await
    }

    async fn open_checkins_on(
        &self,
        local_dates: &BTreeMap<String, String>,
    ) -> Result<Vec<Checkin>> {
        crate::presence::open_on(self, local_dates).await
    }

    async fn checkins(
        &self,
        filter: &PresenceFilter,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<Checkin>> {
        crate::presence::checkins(self, filter, before, limit).await
    }

    async fn failed_checkins(
        &self,
        filter: &PresenceFilter,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<FailedCheckin>> {
        crate::presence::failed(self, filter, before, limit).await
    }

    async fn door_events(
        &self,
        filter: &PresenceFilter,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<DoorEvent>> {
        crate::presence::events(self, filter, before, limit).await
    }

    async fn event_cursor(&self, connection: &str) -> Result<Option<Timestamp>> {
        crate::presence::cursor(self, connection).await
    }

    async fn set_event_cursor(&self, connection: &str, at: Timestamp) -> Result<()> {
        crate::presence::set_cursor(self, connection, at).await
    }

    async fn event_subscription(&self, connection: &str) -> Result<Option<(String, String)>> {
        crate::presence::subscription(self, connection).await
    }

    async fn save_event_subscription(
        &self,
        connection: &str,
        secret_hash: &str,
        url: &str,
        provider_id: &str,
        now: Timestamp,
    ) -> Result<()> {
        crate::presence::save_subscription(self, connection, secret_hash, url, provider_id, now)
            .await
    }

    async fn hook_connection(&self, secret_hash: &str) -> Result<Option<String>> {
        crate::presence::hook_connection(self, secret_hash).await
    }

    async fn replace_directories(
        &self,
        connection: &str,
        kinds: &[(&str, &[DirectoryEntry])],
    ) -> Result<()> {
        crate::mirror::replace_directory(&self.pool, connection, kinds).await
    }

    async fn create_member_link(
        &self,
        token_hash: &str,
        customer_id: &str,
        mail: &OutgoingMail,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()> {
        crate::members::create_link(self, token_hash, customer_id, mail, now, expires_at).await
    }

    async fn use_member_link(
        &self,
        token_hash: &str,
        session_hash: &str,
        csrf: &str,
        now: Timestamp,
        session_expires_at: Timestamp,
    ) -> Result<Option<String>> {
        crate::members::use_link(
            self,
            token_hash,
            session_hash,
            csrf,
            now,
            session_expires_at,
        )
        .await
    }

    async fn member_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<MemberSession>> {
        crate::members::session(self, token_hash, now).await
    }

    async fn end_member_session(&self, token_hash: &str) -> Result<()> {
        crate::members::end_session(self, token_hash).await
    }

    async fn due_mail(&self, now: Timestamp, limit: u32) -> Result<Vec<OutgoingMail>> {
        crate::members::due_mail(self, now, limit).await
    }

    async fn mail_attempted(
        &self,
        id: &str,
        now: Timestamp,
        failure: Option<(&str, Timestamp)>,
    ) -> Result<()> {
        crate::members::mail_attempted(self, id, now, failure).await
    }

    async fn replace_group_doors(
        &self,
        connection: &str,
        groups: &BTreeMap<String, Vec<String>>,
    ) -> Result<()> {
        crate::members::replace_group_doors(self, connection, groups).await
    }

    async fn doors_of_groups(
        &self,
        connection: &str,
        groups: &[String],
    ) -> Result<(BTreeSet<String>, Vec<String>)> {
        crate::members::doors_of_groups(self, connection, groups).await
    }

    async fn record_remote_unlock(
        &self,
        id: &str,
        connection: &str,
        door: &str,
        customer: &str,
        at: Timestamp,
    ) -> Result<()> {
        crate::members::record_unlock(self, id, connection, door, customer, at).await
    }

    async fn forget_remote_unlock(&self, id: &str) -> Result<()> {
        crate::members::forget_unlock(self, id).await
    }

    async fn claim_remote_unlock(
        &self,
        connection: &str,
        door: &str,
        event_id: &str,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Option<String>> {
        crate::members::claim_unlock(self, connection, door, event_id, from, until).await
    }

    async fn remote_unlock_unclaimed(&self, connection: &str, since: Timestamp) -> Result<bool> {
        crate::members::unlock_unclaimed(self, connection, since).await
    }

    async fn observe_alert(
        &self,
        condition: &str,
        kind: &str,
        connection: Option<&str>,
        message: &str,
        now: Timestamp,
    ) -> Result<Alert> {
        crate::alerts::observe(self, condition, kind, connection, message, now).await
    }

    async fn send_alert(
        &self,
        condition: &str,
        now: Timestamp,
        quiet: SignedDuration,
        send: &AlertSend,
        expires_at: Timestamp,
    ) -> Result<bool> {
        crate::alerts::send(self, condition, now, quiet, send, expires_at).await
    }

    async fn resolve_alert(&self, condition: &str, now: Timestamp) -> Result<()> {
        crate::alerts::resolve(self, condition, now).await
    }

    async fn active_alerts(&self) -> Result<Vec<Alert>> {
        crate::alerts::active(self).await
    }

    async fn due_hooks(&self, now: Timestamp, limit: u32) -> Result<Vec<OutgoingHook>> {
        crate::alerts::due_hooks(self, now, limit).await
    }

    async fn hook_attempted(
        &self,
        id: &str,
        now: Timestamp,
        failure: Option<(&str, Timestamp)>,
    ) -> Result<()> {
        crate::alerts::hook_attempted(self, id, now, failure).await
    }

    async fn admin_count(&self) -> Result<i64> {
        crate::admins::count(self).await
    }

    async fn create_admin(
        &self,
        id: &str,
        email: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<Option<Admin>> {
        crate::admins::create(self, id, email, password_hash, now).await
    }

    async fn admins(&self) -> Result<Vec<Admin>> {
        crate::admins::list(self).await
    }

    async fn admin_credentials(&self, email: &str) -> Result<Option<(Admin, String)>> {
        crate::admins::credentials(self, email).await
    }

    async fn delete_admin(&self, id: &str) -> Result<AdminRemoval> {
        crate::admins::delete(self, id).await
    }

    async fn set_admin_password(&self, id: &str, password_hash: &str) -> Result<bool> {
        crate::admins::set_password(self, id, password_hash).await
    }

    async fn add_setup_code(
        &self,
        code_hash: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()> {
        crate::admins::add_setup_code(self, code_hash, now, expires_at).await
    }

    async fn create_first_admin(
        &self,
        code_hash: &str,
        admin: (&str, &str, &str),
        now: Timestamp,
    ) -> Result<FirstAdmin> {
        crate::admins::create_first(self, code_hash, admin, now).await
    }

    async fn create_admin_session(
        &self,
        token_hash: &str,
        admin_id: &str,
        csrf: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()> {
        crate::admins::create_session(self, token_hash, admin_id, csrf, now, expires_at).await
    }

    async fn admin_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<AdminSession>> {
        crate::admins::session(self, token_hash, now).await
    }

    async fn end_admin_session(&self, token_hash: &str) -> Result<()> {
        crate::admins::end_session(self, token_hash).await
    }

    async fn signin_failures(&self, key: &str, since: Timestamp) -> Result<i64> {
        crate::admins::failures(self, key, since).await
    }

    async fn record_signin_failure(
        &self,
        keys: &[&str],
        now: Timestamp,
        forget_before: Timestamp,
    ) -> Result<()> {
        crate::admins::record_failure(self, keys, now, forget_before).await
    }

    async fn clear_signin_failures(&self, key: &str) -> Result<()> {
        crate::admins::clear_failures(self, key).await
    }

    async fn put_oauth_state(
        &self,
        state_hash: &str,
        state: &OAuthState,
        expires_at: Timestamp,
    ) -> Result<()> {
        crate::admins::put_oauth_state(self, state_hash, state, expires_at).await
    }

    async fn take_oauth_state(
        &self,
        state_hash: &str,
        now: Timestamp,
    ) -> Result<Option<OAuthState>> {
        crate::admins::take_oauth_state(self, state_hash, now).await
    }

    async fn create_token(
        &self,
        name: &str,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<TokenInfo> {
        crate::log::create_token(self, name, token_hash, now).await
    }

    async fn tokens(&self) -> Result<Vec<(TokenInfo, Option<Timestamp>)>> {
        crate::log::tokens(self).await
    }

    async fn revoke_token(&self, id: &str) -> Result<bool> {
        crate::log::revoke_token(self, id).await
    }

    async fn token_by_hash(&self, token_hash: &str, now: Timestamp) -> Result<Option<TokenInfo>> {
        crate::log::token_by_hash(self, token_hash, now).await
    }

    async fn mark_due(&self, subject: &Subject, at: Timestamp) -> Result<()> {
        crate::schedule::mark_due(self, subject, at).await
    }

    async fn claim_in(
        &self,
        owner: &str,
        now: Timestamp,
        lease: SignedDuration,
        limit: u32,
        lane: Lane,
        running: &BTreeSet<Subject>,
    ) -> Result<Vec<Claim>> {
        crate::schedule::claim_due(self, owner, now, lease, limit, lane, running).await
    }

    async fn finish(&self, fence: &Fence, outcome: Outcome) -> Result<()> {
        crate::schedule::finish(self, fence, outcome).await
    }

    async fn renew_lease(&self, fence: &Fence, until: Timestamp) -> Result<bool> {
        crate::schedule::renew_lease(self, fence, until).await
    }

    async fn schedule_row(&self, subject: &Subject) -> Result<Option<ScheduleRow>> {
        crate::schedule::schedule_row(self, subject).await
    }

    async fn mark_drift(&self, subject: &Subject, at: Timestamp) -> Result<()> {
        crate::schedule::mark_drift(self, subject, at).await
    }

    async fn clear_drift(&self, fence: &Fence, seen: Timestamp) -> Result<()> {
        crate::schedule::clear_drift(self, fence, seen).await
    }

    async fn take_work_lease(
        &self,
        name: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        crate::schedule::take_work_lease(self, name, owner, now, until).await
    }

    async fn release_work_lease(&self, name: &str, owner: &str) -> Result<()> {
        crate::schedule::release_work_lease(self, name, owner).await
    }

    async fn set_held_past(
        &self,
        fence: &Fence,
        connection: &str,
        groups: &BTreeSet<String>,
        now: Timestamp,
    ) -> Result<()> {
        crate::mirror::set_held_past(&self.pool, fence, connection, groups, now).await
    }

    async fn held_past(&self, subject: Option<&Subject>, limit: u32) -> Result<Vec<HeldPast>> {
        crate::mirror::held_past(&self.pool, subject.map(Subject::key), limit).await
    }

    async fn held_past_counts(&self) -> Result<BTreeMap<String, i64>> {
        crate::mirror::held_past_counts(&self.pool).await
    }

    async fn next_due_in(&self, lane: Lane) -> Result<Option<Timestamp>> {
        crate::schedule::next_due_at(self, lane).await
    }

    async fn due_summary(&self, now: Timestamp) -> Result<DueSummary> {
        crate::schedule::due_summary(self, now).await
    }

    async fn mirror_user(&self, connection: &str, subject: &Subject) -> Result<Option<MirrorUser>> {
        crate::mirror::user(&self.pool, connection, &subject.key()).await
    }

    async fn mirror_connections_of(&self, subject: &Subject) -> Result<Vec<String>> {
        crate::mirror::connections_of(&self.pool, &subject.key()).await
    }

    async fn mirror_save(
        &self,
        fence: &Fence,
        connection: &str,
        user: Option<&MirrorUser>,
        audit: &[AuditEntry],
    ) -> Result<()> {
        crate::mirror::save(&self.pool, fence, connection, user, audit).await
    }

    async fn append_run_audit(&self, fence: &Fence, entries: &[AuditEntry]) -> Result<()> {
        crate::fence::append_audit(self, fence, entries).await
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

    async fn catalog_version(&self) -> Result<i64> {
        Ok(
            sqlx::query("SELECT version FROM catalog_version WHERE id = 1")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// Computed again only when a link, item, location or connection changed since (on any
    /// instance): one small read per reconcile otherwise.
    async fn managed_groups(&self, connection: &str) -> Result<BTreeSet<String>> {
        let version = self.catalog_version().await?;
        let cached = |m: &ManagedCache| {
            m.get(connection)
                .filter(|(v, _)| *v == version)
                .map(|(_, g)| g.clone())
        };
        if let Some(groups) = cached(&self.managed.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(groups);
        }
        let groups = crate::mirror::managed_groups(&self.pool, connection).await?;
        self.managed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(connection.to_owned(), (version, groups.clone()));
        Ok(groups)
    }

    async fn replace_directory(
        &self,
        connection: &str,
        kind: &str,
        entries: &[DirectoryEntry],
    ) -> Result<()> {
        crate::mirror::replace_directory(&self.pool, connection, &[(kind, entries)]).await
    }

    async fn request_invitation(&self, subject: &Subject, now: Timestamp) -> Result<()> {
        crate::invitations::request(self, subject, now).await
    }

    async fn invitation_requested(&self, subject: &Subject) -> Result<Option<Timestamp>> {
        crate::invitations::requested(self, subject).await
    }

    async fn clear_invitation_request(&self, fence: &Fence, at: Timestamp) -> Result<()> {
        crate::invitations::clear(self, fence, at).await
    }

    async fn mark_uninvited_due(&self, connection: &str, now: Timestamp) -> Result<u64> {
        crate::invitations::mark_uninvited_due(self, connection, now).await
    }

    async fn take_call_slot(
        &self,
        connection: &str,
        interval_ms: i64,
        hold_ms: i64,
    ) -> Result<i64> {
        let (now, max) = match self.backend {
            Backend::Postgres => (
                "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
                "GREATEST",
            ),
            Backend::Sqlite => (
                "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
                "MAX",
            ),
        };
        let sql = format!(
            "INSERT INTO call_slots (connection_id, next_ms) VALUES ($1, {now} + $3 + $2)
             ON CONFLICT (connection_id) DO UPDATE SET
                next_ms = {max}(call_slots.next_ms, {now} + $3) + $2
             RETURNING next_ms - $2 - {now}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(connection)
            .bind(interval_ms)
            .bind(hold_ms)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?.max(0))
    }

    async fn setup_problems(&self) -> Result<Vec<SetupProblem>> {
        let mut conn = self.pool.acquire().await?;
        crate::setup::problems(&mut conn).await
    }

    async fn group_names(&self, ids: &BTreeSet<String>) -> Result<BTreeMap<String, String>> {
        let ids: Vec<&String> = ids.iter().collect();
        let mut names = BTreeMap::new();
        for page in ids.chunks(crate::inputs::PAGE) {
            let sql = format!(
                "SELECT provider_id, name FROM provider_directory
                 WHERE kind = 'group' AND provider_id IN ({}) ORDER BY connection_id",
                crate::inputs::placeholders(1, page.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in page {
                q = q.bind(id.as_str());
            }
            for r in q.fetch_all(&self.pool).await? {
                names.insert(r.try_get(0)?, r.try_get(1)?);
            }
        }
        Ok(names)
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
        crate::log::append_audit(self, e).await
    }

    async fn audit(
        &self,
        f: &AuditFilter,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        crate::log::audit(self, f, before_seq, limit).await
    }
}

//! The dashboard's administrators, their sessions, sign-in failures (for rate limiting), the
//! first-run setup codes and the Brivo sign-ins under way. Session tokens, setup codes and OAuth
//! states are kept as hashes only, like API tokens, so a copy of the database does not sign
//! anyone in.

use crate::sql::{Backend, SqlStore, ms, ts};
use crate::*;
use sqlx::Row;

/// What removing an administrator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRemoval {
    Removed,
    NotFound,
    /// Refused: it was the last administrator, and a server without one could be claimed.
    LastAdmin,
}

/// What a first-run claim with a setup code came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstAdmin {
    Created(Admin),
    /// No setup code has that hash: mistyped, or from another server.
    WrongCode,
    /// The code was right but is past its end.
    ExpiredCode,
    /// An administrator exists already: the first run is over and every code with it.
    AdminExists,
}

/// Setup codes this long past their end are forgotten; until then a late one is told it expired.
const FORGET_SETUP_CODES_AFTER_MS: i64 = 24 * 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Admin {
    pub id: String,
    pub email: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    pub admin: Admin,
    /// The token every form of this session carries back.
    pub csrf: String,
    pub expires_at: Timestamp,
}

/// A Brivo sign-in started from the dashboard, waiting for its redirect back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    pub connection_id: String,
    pub redirect_uri: String,
}

fn admin(row: &sqlx::any::AnyRow) -> Result<Admin> {
    Ok(Admin {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        created_at: ts(row.try_get(2)?),
    })
}

pub(crate) async fn count(store: &SqlStore) -> Result<i64> {
    Ok(sqlx::query("SELECT COUNT(*) FROM admins")
        .fetch_one(&store.pool)
        .await?
        .try_get(0)?)
}

/// `None` when an administrator with that e-mail exists already.
pub(crate) async fn create(
    store: &SqlStore,
    id: &str,
    email: &str,
    password_hash: &str,
    now: Timestamp,
) -> Result<Option<Admin>> {
    let done = sqlx::query(
        "INSERT INTO admins (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)
            ON CONFLICT (email) DO NOTHING",
    )
    .bind(id)
    .bind(email)
    .bind(password_hash)
    .bind(ms(now))
    .execute(&store.pool)
    .await?;
    Ok((done.rows_affected() == 1).then(|| Admin {
        id: id.to_owned(),
        email: email.to_owned(),
        created_at: now,
    }))
}

pub(crate) async fn list(store: &SqlStore) -> Result<Vec<Admin>> {
    let rows = sqlx::query("SELECT id, email, created_at FROM admins ORDER BY email")
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(admin).collect()
}

/// The administrator with that e-mail and their password hash.
pub(crate) async fn credentials(store: &SqlStore, email: &str) -> Result<Option<(Admin, String)>> {
    let row =
        sqlx::query("SELECT id, email, created_at, password_hash FROM admins WHERE email = $1")
            .bind(email)
            .fetch_optional(&store.pool)
            .await?;
    row.map(|r| Ok((admin(&r)?, r.try_get(3)?))).transpose()
}

/// Removes an administrator and signs them out everywhere, unless none would be left.
///
/// The rule holds inside the transaction that deletes: on PostgreSQL every administrator row is
/// locked first (in one order, so removals wait for each other rather than deadlock), and a
/// removal that waited sees the rows the one before it deleted; a count taken without the lock
/// in READ COMMITTED would let two removals each see the other still there. SQLite has one
/// writer, and the first statement here is a write, so the transaction holds that lock from its
/// start.
pub(crate) async fn delete(store: &SqlStore, id: &str) -> Result<AdminRemoval> {
    let mut tx = store.pool.begin().await?;
    if store.backend == Backend::Postgres {
        sqlx::query("SELECT id FROM admins ORDER BY id FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM admins WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(AdminRemoval::NotFound);
    }
    let left: i64 = sqlx::query("SELECT COUNT(*) FROM admins")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    if left == 0 {
        // Dropping the transaction rolls the removal (and the sessions' end) back.
        return Ok(AdminRemoval::LastAdmin);
    }
    tx.commit().await?;
    Ok(AdminRemoval::Removed)
}

/// Gives an administrator a new password and signs them out everywhere.
pub(crate) async fn set_password(store: &SqlStore, id: &str, password_hash: &str) -> Result<bool> {
    let mut tx = store.pool.begin().await?;
    let done = sqlx::query("UPDATE admins SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Keeps a new first-run setup code's hash until `expires_at`. In the database rather than in
/// the process, so that any instance sharing it takes a code another one printed.
pub(crate) async fn add_setup_code(
    store: &SqlStore,
    code_hash: &str,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    sqlx::query("DELETE FROM setup_codes WHERE expires_at < $1")
        .bind(ms(now) - FORGET_SETUP_CODES_AFTER_MS)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO setup_codes (code_hash, created_at, expires_at) VALUES ($1, $2, $3)")
        .bind(code_hash)
        .bind(ms(now))
        .bind(ms(expires_at))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates the first administrator if `code_hash` is a live setup code's and none exists yet,
/// and then forgets every code: one claim ends the first run.
///
/// On PostgreSQL the codes are locked (in one order) before anything else is read, so that of
/// two claims at once the second waits, then finds the codes gone and the first's administrator
/// there. SQLite serves one process through one connection: claims take turns.
pub(crate) async fn create_first(
    store: &SqlStore,
    code_hash: &str,
    admin: (&str, &str, &str),
    now: Timestamp,
) -> Result<FirstAdmin> {
    let (id, email, password_hash) = admin;
    let mut tx = store.pool.begin().await?;
    let lock = match store.backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let codes = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT code_hash, expires_at FROM setup_codes ORDER BY code_hash{lock}"
    )))
    .fetch_all(&mut *tx)
    .await?;
    let admins: i64 = sqlx::query("SELECT COUNT(*) FROM admins")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    if admins > 0 {
        return Ok(FirstAdmin::AdminExists);
    }
    // Every stored hash is compared whole, whichever matches, so that the time taken does not
    // tell how close a guess came.
    let mut expires_at = None;
    for row in &codes {
        let stored: String = row.try_get(0)?;
        if same(&stored, code_hash) {
            expires_at = Some(row.try_get::<i64, _>(1)?);
        }
    }
    match expires_at {
        None => return Ok(FirstAdmin::WrongCode),
        Some(end) if end <= ms(now) => return Ok(FirstAdmin::ExpiredCode),
        Some(_) => {}
    }
    sqlx::query(
        "INSERT INTO admins (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(email)
    .bind(password_hash)
    .bind(ms(now))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM setup_codes")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(FirstAdmin::Created(Admin {
        id: id.to_owned(),
        email: email.to_owned(),
        created_at: now,
    }))
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(crate) async fn create_session(
    store: &SqlStore,
    token_hash: &str,
    admin_id: &str,
    csrf: &str,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<()> {
    // Sessions past their end are of no use to anyone: forget them as new ones begin.
    sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1")
        .bind(ms(now))
        .execute(&store.pool)
        .await?;
    sqlx::query(
        "INSERT INTO admin_sessions (token_hash, admin_id, csrf, created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(admin_id)
    .bind(csrf)
    .bind(ms(now))
    .bind(ms(expires_at))
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// The live session with that token hash, with its administrator.
pub(crate) async fn session(
    store: &SqlStore,
    token_hash: &str,
    now: Timestamp,
) -> Result<Option<AdminSession>> {
    let row = sqlx::query(
        "SELECT a.id, a.email, a.created_at, s.csrf, s.expires_at
            FROM admin_sessions s JOIN admins a ON a.id = s.admin_id
         WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(token_hash)
    .bind(ms(now))
    .fetch_optional(&store.pool)
    .await?;
    row.map(|r| {
        Ok(AdminSession {
            admin: admin(&r)?,
            csrf: r.try_get(3)?,
            expires_at: ts(r.try_get(4)?),
        })
    })
    .transpose()
}

pub(crate) async fn end_session(store: &SqlStore, token_hash: &str) -> Result<()> {
    sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// Failed sign-ins under `key` since `since`.
pub(crate) async fn failures(store: &SqlStore, key: &str, since: Timestamp) -> Result<i64> {
    Ok(
        sqlx::query("SELECT COUNT(*) FROM signin_failures WHERE key = $1 AND at > $2")
            .bind(key)
            .bind(ms(since))
            .fetch_one(&store.pool)
            .await?
            .try_get(0)?,
    )
}

/// Records a failed sign-in under each key, and forgets failures older than `forget_before`.
pub(crate) async fn record_failure(
    store: &SqlStore,
    keys: &[&str],
    now: Timestamp,
    forget_before: Timestamp,
) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    sqlx::query("DELETE FROM signin_failures WHERE at < $1")
        .bind(ms(forget_before))
        .execute(&mut *tx)
        .await?;
    for key in keys {
        sqlx::query("INSERT INTO signin_failures (key, at) VALUES ($1, $2)")
            .bind(*key)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn clear_failures(store: &SqlStore, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM signin_failures WHERE key = $1")
        .bind(key)
        .execute(&store.pool)
        .await?;
    Ok(())
}

pub(crate) async fn put_oauth_state(
    store: &SqlStore,
    state_hash: &str,
    state: &OAuthState,
    expires_at: Timestamp,
) -> Result<()> {
    sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
        .bind(ms(expires_at) - 3_600_000)
        .execute(&store.pool)
        .await?;
    sqlx::query(
        "INSERT INTO oauth_states (state_hash, connection_id, redirect_uri, expires_at)
            VALUES ($1, $2, $3, $4)",
    )
    .bind(state_hash)
    .bind(state.connection_id.as_str())
    .bind(state.redirect_uri.as_str())
    .bind(ms(expires_at))
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// The sign-in under way with that state, once: taking it removes it.
pub(crate) async fn take_oauth_state(
    store: &SqlStore,
    state_hash: &str,
    now: Timestamp,
) -> Result<Option<OAuthState>> {
    let row = sqlx::query(
        "DELETE FROM oauth_states WHERE state_hash = $1
            RETURNING connection_id, redirect_uri, expires_at",
    )
    .bind(state_hash)
    .fetch_optional(&store.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if row.try_get::<i64, _>(2)? <= ms(now) {
        return Ok(None);
    }
    Ok(Some(OAuthState {
        connection_id: row.try_get(0)?,
        redirect_uri: row.try_get(1)?,
    }))
}

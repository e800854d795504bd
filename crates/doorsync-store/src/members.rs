//! The member app's side of the store: one-time sign-in links and member sessions (kept as
//! hashes of their tokens only), the mail outbox, the doors each group opens, and the doors
//! doorsync unlocked for members.

use crate::reach::MARK_DUE;
use crate::sql::{SqlStore, ms, ts};
use crate::*;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSession {
    pub customer_id: String,
    /// The token every form of this session carries back.
    pub csrf: String,
    pub expires_at: Timestamp,
}

/// A mail to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutgoingMail {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
}

/// Keeps a sign-in link for the customer and queues the mail that carries it, in one
/// transaction: a link nobody was sent, or a mail for a link that does not exist, cannot be.
pub(crate) async fn create_link(
    store: &SqlStore,
    token_hash: &str,
    customer_id: &str,
    mail: &OutgoingMail,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    sqlx::query(
        "INSERT INTO member_links (token_hash, customer_id, created_at, expires_at)
            VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(customer_id)
    .bind(ms(now))
    .bind(ms(expires_at))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM member_links WHERE expires_at < $1")
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
    queue(&mut tx, mail, now, expires_at).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn queue(
    tx: &mut sqlx::AnyConnection,
    mail: &OutgoingMail,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO mail_outbox (id, to_addr, subject, body, created_at, expires_at,
            next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $5)",
    )
    .bind(mail.id.as_str())
    .bind(mail.to.as_str())
    .bind(mail.subject.as_str())
    .bind(mail.body.as_str())
    .bind(ms(now))
    .bind(ms(expires_at))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Uses a sign-in link: the customer it signs in, once, while it is valid; the session is
/// created in the same transaction.
pub(crate) async fn use_link(
    store: &SqlStore,
    token_hash: &str,
    session_hash: &str,
    csrf: &str,
    now: Timestamp,
    session_expires_at: Timestamp,
) -> Result<Option<String>> {
    let mut tx = store.pool.begin().await?;
    let row = sqlx::query(
        "UPDATE member_links SET used_at = $1
            WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
         RETURNING customer_id",
    )
    .bind(ms(now))
    .bind(token_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let customer: String = row.try_get(0)?;
    sqlx::query(
        "INSERT INTO member_sessions (token_hash, customer_id, csrf, created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(session_hash)
    .bind(customer.as_str())
    .bind(csrf)
    .bind(ms(now))
    .bind(ms(session_expires_at))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM member_sessions WHERE expires_at < $1")
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(customer))
}

pub(crate) async fn session(
    store: &SqlStore,
    token_hash: &str,
    now: Timestamp,
) -> Result<Option<MemberSession>> {
    let row = sqlx::query(
        "SELECT customer_id, csrf, expires_at FROM member_sessions
            WHERE token_hash = $1 AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(ms(now))
    .fetch_optional(&store.pool)
    .await?;
    row.map(|r| {
        Ok(MemberSession {
            customer_id: r.try_get(0)?,
            csrf: r.try_get(1)?,
            expires_at: ts(r.try_get(2)?),
        })
    })
    .transpose()
}

pub(crate) async fn end_session(store: &SqlStore, token_hash: &str) -> Result<()> {
    sqlx::query("DELETE FROM member_sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// Mail due for (another) delivery attempt, oldest first; mail past its expiry is dropped.
pub(crate) async fn due_mail(
    store: &SqlStore,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<OutgoingMail>> {
    let rows = due_rows(
        store,
        "mail_outbox",
        "id, to_addr, subject, body, attempts",
        now,
        limit,
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OutgoingMail {
                id: r.try_get(0)?,
                to: r.try_get(1)?,
                subject: r.try_get(2)?,
                body: r.try_get(3)?,
                attempts: r.try_get(4)?,
            })
        })
        .collect()
}

/// The `columns` of the entries of an outbox (`mail_outbox`, `webhook_outbox`) due for an
/// attempt, oldest first, leaving out those past their expiry. A read only: this is asked every
/// second; expired entries are deleted when an attempt is recorded.
pub(crate) async fn due_rows(
    store: &SqlStore,
    table: &'static str,
    columns: &'static str,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<sqlx::any::AnyRow>> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM {table}
            WHERE sent_at IS NULL AND next_attempt_at <= $1 AND expires_at > $1
         ORDER BY created_at, id LIMIT $2"
    )))
    .bind(ms(now))
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await?)
}

/// Records a delivery attempt: sent, or failed with the error and when to try again.
pub(crate) async fn mail_attempted(
    store: &SqlStore,
    id: &str,
    now: Timestamp,
    failure: Option<(&str, Timestamp)>,
) -> Result<()> {
    attempted(store, "mail_outbox", id, now, failure).await
}

/// Records an attempt at an entry of an outbox (`mail_outbox`, `webhook_outbox`: the same
/// bookkeeping columns), and forgets entries delivered a day ago (kept that long for support
/// questions) or past their expiry undelivered.
pub(crate) async fn attempted(
    store: &SqlStore,
    table: &'static str,
    id: &str,
    now: Timestamp,
    failure: Option<(&str, Timestamp)>,
) -> Result<()> {
    let q = match failure {
        None => sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET sent_at = $2, attempts = attempts + 1, last_error = NULL
                WHERE id = $1"
        )))
        .bind(id)
        .bind(ms(now)),
        Some((error, retry_at)) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET attempts = attempts + 1, last_error = $2,
                next_attempt_at = $3 WHERE id = $1"
        )))
        .bind(id)
        .bind(error)
        .bind(ms(retry_at)),
    };
    q.execute(&store.pool).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE sent_at < $1 OR (sent_at IS NULL AND expires_at <= $2)"
    )))
    .bind(ms(now) - 86_400_000)
    .bind(ms(now))
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// Replaces which doors the connection's groups open (for the groups listed).
pub(crate) async fn replace_group_doors(
    store: &SqlStore,
    connection: &str,
    groups: &BTreeMap<String, Vec<String>>,
) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    for (group, doors) in groups {
        sqlx::query("DELETE FROM group_doors WHERE connection_id = $1 AND group_id = $2")
            .bind(connection)
            .bind(group.as_str())
            .execute(&mut *tx)
            .await?;
        // The empty door marks the group as read, so that a group that opens no door is told
        // from one never read.
        for door in doors.iter().map(String::as_str).chain([""]) {
            sqlx::query(
                "INSERT INTO group_doors (connection_id, group_id, provider_door_id)
                    VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(connection)
            .bind(group.as_str())
            .bind(door)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The provider ids of the doors that any of the groups opens, and the groups among them whose
/// doors were never read.
pub(crate) async fn doors_of_groups(
    store: &SqlStore,
    connection: &str,
    groups: &[String],
) -> Result<(BTreeSet<String>, Vec<String>)> {
    let mut out = BTreeSet::new();
    let mut unread = vec![];
    for group in groups {
        let rows = sqlx::query(
            "SELECT provider_door_id FROM group_doors WHERE connection_id = $1 AND group_id = $2",
        )
        .bind(connection)
        .bind(group.as_str())
        .fetch_all(&store.pool)
        .await?;
        if rows.is_empty() {
            unread.push(group.clone());
        }
        for r in rows {
            let door: String = r.try_get(0)?;
            if !door.is_empty() {
                out.insert(door);
            }
        }
    }
    Ok((out, unread))
}

pub(crate) async fn record_unlock(
    store: &SqlStore,
    id: &str,
    connection: &str,
    door: &str,
    customer: &str,
    at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO remote_unlocks (id, connection_id, provider_door_id, customer_id, at)
            VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(connection)
    .bind(door)
    .bind(customer)
    .bind(ms(at))
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// The customer doorsync unlocked the door for within `[from, until]`, matched to the event
/// once: the same event asked again gets the same customer, another event none.
pub(crate) async fn claim_unlock(
    store: &SqlStore,
    connection: &str,
    door: &str,
    event_id: &str,
    from: Timestamp,
    until: Timestamp,
) -> Result<Option<String>> {
    let mut tx = store.pool.begin().await?;
    if let Some(r) = sqlx::query("SELECT customer_id FROM remote_unlocks WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await?
    {
        return Ok(Some(r.try_get(0)?));
    }
    let row = sqlx::query(
        "UPDATE remote_unlocks SET event_id = $1 WHERE id = (
            SELECT id FROM remote_unlocks
             WHERE connection_id = $2 AND provider_door_id = $3 AND event_id IS NULL
               AND at >= $4 AND at <= $5
             ORDER BY at, id LIMIT 1) AND event_id IS NULL
         RETURNING customer_id",
    )
    .bind(event_id)
    .bind(connection)
    .bind(door)
    .bind(ms(from))
    .bind(ms(until))
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.map(|r| Ok(r.try_get(0)?)).transpose()
}

pub(crate) async fn unlock_unclaimed(
    store: &SqlStore,
    connection: &str,
    since: Timestamp,
) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 FROM remote_unlocks
          WHERE connection_id = $1 AND event_id IS NULL AND at >= $2 LIMIT 1",
    )
    .bind(connection)
    .bind(ms(since))
    .fetch_optional(&store.pool)
    .await?;
    Ok(row.is_some())
}

pub(crate) async fn forget_unlock(store: &SqlStore, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM remote_unlocks WHERE id = $1 AND event_id IS NULL")
        .bind(id)
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// Marks the customer due (a pass day used may end their access).
pub(crate) async fn mark_customer_due(
    tx: &mut sqlx::AnyConnection,
    customer: &str,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(MARK_DUE)
        .bind(format!("customer:{customer}"))
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

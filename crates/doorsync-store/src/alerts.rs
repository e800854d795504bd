//! Alerts: conditions the operators should hear of, remembered so that each reaches them once an
//! hour at most while it lasts, and the outbox of the webhook calls that carry them.

use crate::sql::{SqlStore, ms, ts};
use crate::*;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Alert {
    /// What it is about, e.g. `connection_paused:brivo`: one alert per condition.
    pub condition: String,
    /// `connection_paused`, `credentials_refused` or `drift_found`.
    pub kind: String,
    pub connection_id: Option<String>,
    pub message: String,
    pub active_since: Timestamp,
    pub last_seen_at: Timestamp,
    pub last_sent_at: Option<Timestamp>,
}

/// A webhook call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingHook {
    pub id: String,
    pub url: String,
    pub body: String,
    pub attempts: i64,
}

/// What to send when an alert goes out.
#[derive(Debug, Clone, Default)]
pub struct AlertSend {
    pub hooks: Vec<OutgoingHook>,
    pub mails: Vec<OutgoingMail>,
}

const COLUMNS: &str =
    "condition, kind, connection_id, message, active_since, last_seen_at, last_sent_at";

fn alert(r: &sqlx::any::AnyRow) -> Result<Alert> {
    Ok(Alert {
        condition: r.try_get(0)?,
        kind: r.try_get(1)?,
        connection_id: r.try_get(2)?,
        message: r.try_get(3)?,
        active_since: ts(r.try_get(4)?),
        last_seen_at: ts(r.try_get(5)?),
        last_sent_at: r.try_get::<Option<i64>, _>(6)?.map(ts),
    })
}

/// Notes that a condition holds at `now` (a resolved one begins again) and returns it.
pub(crate) async fn observe(
    store: &SqlStore,
    condition: &str,
    kind: &str,
    connection: Option<&str>,
    message: &str,
    now: Timestamp,
) -> Result<Alert> {
    let mut tx = store.pool.begin().await?;
    sqlx::query(
        "INSERT INTO alerts (condition, kind, connection_id, message, active_since, last_seen_at)
            VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (condition) DO UPDATE SET message = excluded.message,
            last_seen_at = excluded.last_seen_at,
            active_since = CASE WHEN alerts.resolved_at IS NULL THEN alerts.active_since
                ELSE excluded.active_since END,
            last_sent_at = CASE WHEN alerts.resolved_at IS NULL THEN alerts.last_sent_at
                ELSE NULL END,
            resolved_at = NULL",
    )
    .bind(condition)
    .bind(kind)
    .bind(connection)
    .bind(message)
    .bind(ms(now))
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM alerts WHERE condition = $1"
    )))
    .bind(condition)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    alert(&row)
}

/// Sends an alert unless it was sent within `quiet` before `now`: marks it sent and queues its
/// webhook calls and mails in one transaction, so that however many instances see the
/// condition, it goes out once. `false` when it was not sent.
pub(crate) async fn send(
    store: &SqlStore,
    condition: &str,
    now: Timestamp,
    quiet: SignedDuration,
    send: &AlertSend,
    expires_at: Timestamp,
) -> Result<bool> {
    let mut tx = store.pool.begin().await?;
    let since = now.saturating_sub(quiet).unwrap_or(now);
    let claimed = sqlx::query(
        "UPDATE alerts SET last_sent_at = $1
            WHERE condition = $2 AND resolved_at IS NULL
              AND (last_sent_at IS NULL OR last_sent_at <= $3)",
    )
    .bind(ms(now))
    .bind(condition)
    .bind(ms(since))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        return Ok(false);
    }
    for h in &send.hooks {
        sqlx::query(
            "INSERT INTO webhook_outbox (id, url, body, created_at, expires_at, next_attempt_at)
                VALUES ($1, $2, $3, $4, $5, $4)",
        )
        .bind(h.id.as_str())
        .bind(h.url.as_str())
        .bind(h.body.as_str())
        .bind(ms(now))
        .bind(ms(expires_at))
        .execute(&mut *tx)
        .await?;
    }
    for m in &send.mails {
        crate::members::queue(&mut tx, m, now, expires_at).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Ends the conditions of `kind` at `connection` that no longer hold.
pub(crate) async fn resolve(store: &SqlStore, condition: &str, now: Timestamp) -> Result<()> {
    sqlx::query("UPDATE alerts SET resolved_at = $1 WHERE condition = $2 AND resolved_at IS NULL")
        .bind(ms(now))
        .bind(condition)
        .execute(&store.pool)
        .await?;
    Ok(())
}

pub(crate) async fn active(store: &SqlStore) -> Result<Vec<Alert>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM alerts WHERE resolved_at IS NULL ORDER BY active_since, condition"
    )))
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(alert).collect()
}

/// Webhook calls due for an attempt (those past their expiry are dropped).
pub(crate) async fn due_hooks(
    store: &SqlStore,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<OutgoingHook>> {
    let rows = crate::members::due_rows(
        store,
        "webhook_outbox",
        "id, url, body, attempts",
        now,
        limit,
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OutgoingHook {
                id: r.try_get(0)?,
                url: r.try_get(1)?,
                body: r.try_get(2)?,
                attempts: r.try_get(3)?,
            })
        })
        .collect()
}

pub(crate) async fn hook_attempted(
    store: &SqlStore,
    id: &str,
    now: Timestamp,
    failure: Option<(&str, Timestamp)>,
) -> Result<()> {
    crate::members::attempted(store, "webhook_outbox", id, now, failure).await
}

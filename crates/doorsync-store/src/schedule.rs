//! The schedule: one row per subject, leased to one worker at a time. A mark made while a lease
//! is held wins over the worker's next due time, so no trigger is lost.

use crate::reach::{MARK_DUE, notify};
use crate::sql::{SqlStore, ms, ts};
use crate::*;
use sqlx::Row;
use sqlx::any::AnyRow;

pub(crate) async fn mark_due(store: &SqlStore, subject: &Subject, at: Timestamp) -> Result<()> {
    let mut conn = store.pool.acquire().await?;
    sqlx::query(MARK_DUE)
        .bind(subject.key())
        .bind(ms(at))
        .execute(&mut *conn)
        .await?;
    notify(&mut conn, store.backend).await
}

/// Which due subjects a claim takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Everything due, revocations first.
    All,
    /// Only subjects at revocation priority: the lane kept free for them, so that a revocation
    /// never waits for a worker busy with grants and invitations.
    Revocations,
}

pub(crate) async fn claim_due(
    store: &SqlStore,
    owner: &str,
    now: Timestamp,
    lease: SignedDuration,
    limit: u32,
    lane: Lane,
    running: &BTreeSet<Subject>,
) -> Result<Vec<Claim>> {
    let lock = match store.backend {
        Backend::Sqlite => "",
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
    };
    let until = now.checked_add(lease).unwrap_or(Timestamp::MAX);
    // Plain index ranges, each in order so nothing is sorted: subjects whose owner died (lease
    // expired; never one this owner still runs), then the revocations due, then the rest due.
    // Each claim takes the subject's next fence token. An OR of these would scan the table.
    // The rows are picked once, in a materialized step: as a subquery of the update, PostgreSQL
    // may run the locking pick again for each row it joins (with SKIP LOCKED, each run finds
    // others), and claim more than the limit, leases no worker would ever run.
    let expired = "WITH picked AS MATERIALIZED (
            SELECT subject FROM schedule WHERE lease_owner IS NOT NULL AND lease_until <= $3
                {running}
            ORDER BY lease_until LIMIT $4 {lock})
         UPDATE schedule SET lease_owner = $1, lease_until = $2, next_due_at = NULL, fence = fence + 1
         WHERE subject IN (SELECT subject FROM picked)
         RETURNING subject, claimed_due_at, drift_at, fence";
    let due = "WITH picked AS MATERIALIZED (
            SELECT subject FROM schedule WHERE lease_owner IS NULL AND priority = {priority}
                AND next_due_at <= $3
            ORDER BY next_due_at LIMIT $4 {lock})
         UPDATE schedule SET lease_owner = $1, lease_until = $2, claimed_due_at = next_due_at, next_due_at = NULL, fence = fence + 1
         WHERE subject IN (SELECT subject FROM picked)
         RETURNING subject, claimed_due_at, drift_at, fence";
    let params: Vec<String> = (0..running.len()).map(|i| format!("${}", i + 5)).collect();
    let running_sql = match params.is_empty() {
        true => String::new(),
        false => format!(
            "AND NOT (lease_owner = $1 AND subject IN ({}))",
            params.join(", ")
        ),
    };
    let expired = expired.replace("{running}", &running_sql);
    let revocations = due.replace("{priority}", "0");
    // Each claim with whether it names the running subjects after $1 to $4.
    let claims = match lane {
        Lane::All => vec![
            (expired, true),
            (revocations, false),
            (due.replace("{priority}", "1"), false),
        ],
        Lane::Revocations => vec![(revocations, false)],
    };
    let mut out = vec![];
    for (sql, names_running) in claims {
        let left = i64::from(limit) - out.len() as i64;
        if left <= 0 {
            break;
        }
        let sql = sql.replace("{lock}", lock);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(owner)
            .bind(ms(until))
            .bind(ms(now))
            .bind(left);
        if names_running {
            for s in running {
                q = q.bind(s.key());
            }
        }
        let rows = q.fetch_all(&store.pool).await?;
        for r in &rows {
            let key: String = r.try_get(0)?;
            match Subject::parse_key(&key) {
                Some(subject) => {
                    let due_at = r.try_get::<Option<i64>, _>(1)?.map(ts);
                    let drift_at = r.try_get::<Option<i64>, _>(2)?.map(ts);
                    out.push(Claim {
                        subject,
                        due_at,
                        drift_at,
                        fence: r.try_get(3)?,
                    });
                }
                // No subject can be made of it, so no one would ever finish it.
                None => {
                    tracing::error!(key, "dropping an unreadable schedule row");
                    sqlx::query("DELETE FROM schedule WHERE subject = $1")
                        .bind(key)
                        .execute(&store.pool)
                        .await?;
                }
            }
        }
    }
    Ok(out)
}

pub(crate) async fn mark_drift(store: &SqlStore, subject: &Subject, at: Timestamp) -> Result<()> {
    let mut conn = store.pool.acquire().await?;
    sqlx::query(
        "INSERT INTO schedule (subject, next_due_at, drift_at) VALUES ($1, $2, $2)
         ON CONFLICT (subject) DO UPDATE SET drift_at = excluded.drift_at, next_due_at = CASE
            WHEN schedule.next_due_at IS NULL OR schedule.next_due_at > excluded.next_due_at
            THEN excluded.next_due_at ELSE schedule.next_due_at END",
    )
    .bind(subject.key())
    .bind(ms(at))
    .execute(&mut *conn)
    .await?;
    notify(&mut conn, store.backend).await
}

pub(crate) async fn clear_drift(store: &SqlStore, fence: &Fence, seen: Timestamp) -> Result<()> {
    sqlx::query(
        "UPDATE schedule SET drift_at = NULL
         WHERE subject = $1 AND lease_owner = $2 AND fence = $3 AND drift_at <= $4",
    )
    .bind(fence.subject.key())
    .bind(fence.owner.as_str())
    .bind(fence.token)
    .bind(ms(seen))
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// Takes a lease on connection-wide work when it is free, expired, or already ours.
pub(crate) async fn take_work_lease(
    store: &SqlStore,
    name: &str,
    owner: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<bool> {
    let row = sqlx::query(
        "INSERT INTO work_leases (name, owner, lease_until) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
         WHERE work_leases.owner = excluded.owner OR work_leases.lease_until <= $4
         RETURNING owner",
    )
    .bind(name)
    .bind(owner)
    .bind(ms(until))
    .bind(ms(now))
    .fetch_optional(&store.pool)
    .await?;
    Ok(row.is_some())
}

pub(crate) async fn release_work_lease(store: &SqlStore, name: &str, owner: &str) -> Result<()> {
    sqlx::query("DELETE FROM work_leases WHERE name = $1 AND owner = $2")
        .bind(name)
        .bind(owner)
        .execute(&store.pool)
        .await?;
    Ok(())
}

pub(crate) async fn finish(store: &SqlStore, fence: &Fence, outcome: Outcome) -> Result<()> {
    let earliest = "CASE WHEN next_due_at IS NULL THEN $2 WHEN $2 IS NULL THEN next_due_at
                    WHEN $2 < next_due_at THEN $2 ELSE next_due_at END";
    let (sql, next, error) = match outcome {
        Outcome::Done {
            next_due_at,
            revokes,
        } => (
            // The priority is the transition's when it is what comes next (a write's mark that
            // came in meanwhile may be earlier).
            format!(
                "UPDATE schedule SET lease_owner = NULL, lease_until = NULL, attempts = 0, last_error = NULL,
                 priority = CASE WHEN next_due_at IS NULL OR $2 <= next_due_at THEN {} ELSE priority END,
                 next_due_at = {earliest} WHERE subject = $1 AND lease_owner = $3 AND fence = $4",
                if revokes { 0 } else { 1 }
            ),
            next_due_at.map(ms),
            None,
        ),
        Outcome::Failed { retry_at, error } => (
            format!(
                "UPDATE schedule SET lease_owner = NULL, lease_until = NULL, attempts = attempts + 1,
                 last_error = $5, next_due_at = {earliest} WHERE subject = $1 AND lease_owner = $3 AND fence = $4"
            ),
            Some(ms(retry_at)),
            Some(error),
        ),
    };
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(fence.subject.key())
        .bind(next)
        .bind(fence.owner.as_str())
        .bind(fence.token);
    if let Some(e) = error {
        q = q.bind(e);
    }
    q.execute(&store.pool).await?;
    Ok(())
}

pub(crate) async fn renew_lease(store: &SqlStore, fence: &Fence, until: Timestamp) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE schedule SET lease_until = $1 WHERE subject = $2 AND lease_owner = $3 AND fence = $4",
    )
    .bind(ms(until))
    .bind(fence.subject.key())
    .bind(fence.owner.as_str())
    .bind(fence.token)
    .execute(&store.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn schedule_row(
    store: &SqlStore,
    subject: &Subject,
) -> Result<Option<ScheduleRow>> {
    let row = sqlx::query("SELECT * FROM schedule WHERE subject = $1")
        .bind(subject.key())
        .fetch_optional(&store.pool)
        .await?;
    row.as_ref().map(read_row).transpose()
}

pub(crate) async fn next_due_at(store: &SqlStore, lane: Lane) -> Result<Option<Timestamp>> {
    // A leased subject is next due when its lease runs out, whatever was marked meanwhile.
    let mut next: Option<i64> = None;
    let sqls: &[&str] = match lane {
        Lane::All => &[
            "SELECT MIN(next_due_at) FROM schedule WHERE lease_owner IS NULL AND priority = 0",
            "SELECT MIN(next_due_at) FROM schedule WHERE lease_owner IS NULL AND priority = 1",
            "SELECT MIN(lease_until) FROM schedule WHERE lease_owner IS NOT NULL",
        ],
        Lane::Revocations => {
            &["SELECT MIN(next_due_at) FROM schedule WHERE lease_owner IS NULL AND priority = 0"]
        }
    };
    for sql in sqls {
        let row = sqlx::query(*sql).fetch_one(&store.pool).await?;
        if let Some(t) = row.try_get::<Option<i64>, _>(0)? {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    }
    Ok(next.map(ts))
}

pub(crate) async fn due_summary(store: &SqlStore, now: Timestamp) -> Result<DueSummary> {
    let row = sqlx::query(
        "SELECT
            COUNT(CASE WHEN lease_owner IS NULL AND next_due_at <= $1 THEN 1 END),
            MIN(CASE WHEN lease_owner IS NULL AND next_due_at <= $1 THEN next_due_at END),
            COUNT(CASE WHEN lease_owner IS NOT NULL AND lease_until > $1 THEN 1 END)
         FROM schedule",
    )
    .bind(ms(now))
    .fetch_one(&store.pool)
    .await?;
    Ok(DueSummary {
        due: row.try_get(0)?,
        oldest_due_at: row.try_get::<Option<i64>, _>(1)?.map(ts),
        in_flight: row.try_get(2)?,
    })
}

fn read_row(row: &AnyRow) -> Result<ScheduleRow> {
    Ok(ScheduleRow {
        subject: row.try_get("subject")?,
        next_due_at: row.try_get::<Option<i64>, _>("next_due_at")?.map(ts),
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get::<Option<i64>, _>("lease_until")?.map(ts),
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        fence: row.try_get("fence")?,
    })
}

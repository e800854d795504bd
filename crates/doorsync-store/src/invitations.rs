//! Operators' requests for a new Mobile Pass invitation, served by the subject's reconcile (the
//! only writer of its mirror), and the subjects to invite once the allotment grows again.

use crate::reach::{MARK_DUE, notify};
use crate::sql::{SqlStore, ms, ts};
use crate::{Fence, Result};
use doorsync_core::Subject;
use jiff::Timestamp;
use sqlx::Row;

pub(crate) async fn request(store: &SqlStore, subject: &Subject, now: Timestamp) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    sqlx::query(
        "INSERT INTO invitation_requests (subject, requested_at) VALUES ($1, $2)
         ON CONFLICT (subject) DO UPDATE SET requested_at = excluded.requested_at",
    )
    .bind(subject.key())
    .bind(ms(now))
    .execute(&mut *tx)
    .await?;
    sqlx::query(MARK_DUE)
        .bind(subject.key())
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
    notify(&mut tx, store.backend).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn requested(store: &SqlStore, subject: &Subject) -> Result<Option<Timestamp>> {
    let row = sqlx::query("SELECT requested_at FROM invitation_requests WHERE subject = $1")
        .bind(subject.key())
        .fetch_optional(&store.pool)
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?.map(ts))
}

pub(crate) async fn clear(store: &SqlStore, fence: &Fence, at: Timestamp) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    crate::fence::guard(&mut tx, fence).await?;
    sqlx::query("DELETE FROM invitation_requests WHERE subject = $1 AND requested_at = $2")
        .bind(fence.subject.key())
        .bind(ms(at))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn mark_uninvited_due(
    store: &SqlStore,
    connection: &str,
    now: Timestamp,
) -> Result<u64> {
    let mut tx = store.pool.begin().await?;
    let done = sqlx::query(
        "INSERT INTO schedule (subject, next_due_at)
         SELECT subject, $2 FROM provider_users WHERE connection_id = $1 AND invited_at IS NULL
         ON CONFLICT (subject) DO UPDATE SET next_due_at = CASE
            WHEN schedule.next_due_at IS NULL OR schedule.next_due_at > excluded.next_due_at
            THEN excluded.next_due_at ELSE schedule.next_due_at END",
    )
    .bind(connection)
    .bind(ms(now))
    .execute(&mut *tx)
    .await?;
    notify(&mut tx, store.backend).await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

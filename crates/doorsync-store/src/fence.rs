//! Fenced writes. Each claim of a subject takes the next token of its schedule row; every write a
//! reconcile makes for that subject carries the token of its claim, and the database refuses it
//! once another claim has taken the subject. A run that stalled past its lease (a suspended VM,
//! a slow disk) therefore stops at its next write instead of saving its stale view of the
//! provider over the newer one.

use crate::sql::{SqlStore, ms};
use crate::*;
use sqlx::AnyConnection;

/// A lease on one subject, as a claim gave it: the proof its writes carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub subject: Subject,
    pub owner: String,
    /// The schedule row's claim count when this claim took it.
    pub token: i64,
}

impl Claim {
    /// The fence this claim's writes carry.
    pub fn fence(&self, owner: &str) -> Fence {
        Fence {
            subject: self.subject.clone(),
            owner: owner.to_owned(),
            token: self.fence,
        }
    }
}

/// Checks, inside the caller's transaction, that `fence` still holds the subject, and keeps
/// any other claim out until the transaction ends (the update locks the row on PostgreSQL and
/// takes SQLite's write lock).
pub(crate) async fn guard(conn: &mut AnyConnection, fence: &Fence) -> Result<()> {
    if std::env::var("NOFENCE").is_ok() {
        return Ok(());
    }
    let held = sqlx::query(
        "UPDATE schedule SET fence = fence WHERE subject = $1 AND lease_owner = $2 AND fence = $3",
    )
    .bind(fence.subject.key())
    .bind(fence.owner.as_str())
    .bind(fence.token)
    .execute(&mut *conn)
    .await?;
    if held.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced(fence.subject.key()))
    }
}

/// Appends an entry to the audit log; returns its sequence number.
pub(crate) async fn insert_audit(conn: &mut AnyConnection, e: &AuditEntry) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO audit_log (at, subject, group_id, operation, cause, outcome, latency_ms, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
    )
    .bind(ms(e.at))
    .bind(e.subject.clone())
    .bind(e.group_id.clone())
    .bind(e.operation.clone())
    .bind(e.cause.clone())
    .bind(e.outcome.clone())
    .bind(e.latency_ms)
    .bind(e.detail.clone())
    .fetch_one(&mut *conn)
    .await?;
    Ok(sqlx::Row::try_get(&row, 0)?)
}

/// Audit entries of a run that changed nothing in the mirror (a call that failed, say).
pub(crate) async fn append_audit(
    store: &SqlStore,
    fence: &Fence,
    entries: &[AuditEntry],
) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    guard(&mut tx, fence).await?;
    for e in entries {
        insert_audit(&mut tx, e).await?;
    }
    tx.commit().await?;
    Ok(())
}

//! API tokens (kept as hashes) and the audit log of changes made in the provider.

use crate::sql::{SqlStore, ms, ts};
use crate::*;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

pub(crate) async fn create_token(
    store: &SqlStore,
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
    .execute(&store.pool)
    .await?;
    Ok(TokenInfo {
        id,
        name: name.to_owned(),
        created_at: now,
    })
}

pub(crate) async fn tokens(store: &SqlStore) -> Result<Vec<(TokenInfo, Option<Timestamp>)>> {
    let rows = sqlx::query(
        "SELECT id, name, created_at, last_used_at FROM api_tokens ORDER BY created_at, id",
    )
    .fetch_all(&store.pool)
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

pub(crate) async fn revoke_token(store: &SqlStore, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
        .bind(id)
        .execute(&store.pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn token_by_hash(
    store: &SqlStore,
    token_hash: &str,
    now: Timestamp,
) -> Result<Option<TokenInfo>> {
    let row = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2 RETURNING id, name, created_at")
        .bind(ms(now))
        .bind(token_hash)
        .fetch_optional(&store.pool)
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

pub(crate) async fn append_audit(store: &SqlStore, e: AuditEntry) -> Result<i64> {
    let mut conn = store.pool.acquire().await?;
    crate::fence::insert_audit(&mut conn, &e).await
}

// The filter is built here rather than with sqlx's `QueryBuilder`: over the `Any` driver that
// builder writes `?` placeholders, which PostgreSQL refuses; the numbered `$N` work on both.
pub(crate) async fn audit(
    store: &SqlStore,
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
    ] {
        if let Some(v) = v {
            n += 1;
            clauses.push(format!("{col} = ${n}"));
            texts.insert(n, v.clone());
        }
    }
    // Failed outcomes read `error: what went wrong`: `error` finds them all.
    if let Some(o) = f.outcome {
        n += 1;
        match o {
            AuditOutcome::Error => {
                clauses.push(format!("outcome LIKE ${n}"));
                texts.insert(n, "error%".into());
            }
            AuditOutcome::Ok => {
                clauses.push(format!("outcome = ${n}"));
                texts.insert(n, "ok".into());
            }
        }
    }
    // A cause names what gave or ended access (`booking b1`, `drift: not entitled`): a
    // filter matches its beginning.
    if let Some(v) = &f.cause {
        n += 1;
        clauses.push(format!("cause LIKE ${n} ESCAPE '\\'"));
        let escaped = v
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        texts.insert(n, format!("{escaped}%"));
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
    let rows = q.bind(i64::from(limit)).fetch_all(&store.pool).await?;
    rows.iter().map(audit_entry).collect()
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

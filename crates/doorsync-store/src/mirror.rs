//! The mirror of provider state: which provider user serves each subject on each connection, its
//! memberships, and the directory (groups, sites, doors) read from the provider. The reconciler
//! plans against it, so a subject whose access is already right costs no provider call.

use crate::sql::{ms, ts};
use crate::{
    AuditEntry, ConnectionState, DirectoryEntry, Fence, HeldPast, MirrorUser, Result, StateChange,
};
use jiff::Timestamp;
use sqlx::{AnyConnection, AnyPool, Row};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) async fn user(
    pool: &AnyPool,
    connection: &str,
    subject: &str,
) -> Result<Option<MirrorUser>> {
    let mut conn = pool.acquire().await?;
    load_user(&mut conn, connection, subject).await
}

async fn load_user(
    conn: &mut AnyConnection,
    connection: &str,
    subject: &str,
) -> Result<Option<MirrorUser>> {
    let Some(row) = sqlx::query(
        "SELECT user_id, suspended, name, email, invited_at, external_id, invitation_state, invitation_checked_at
         FROM provider_users WHERE connection_id = $1 AND subject = $2",
    )
    .bind(connection)
    .bind(subject)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let user_id: String = row.try_get(0)?;
    let mut groups = BTreeSet::new();
    let mut added = BTreeSet::new();
    for r in sqlx::query(
        "SELECT group_id, added FROM provider_memberships WHERE connection_id = $1 AND user_id = $2",
    )
    .bind(connection)
    .bind(user_id.as_str())
    .fetch_all(&mut *conn)
    .await?
    {
        let g: String = r.try_get(0)?;
        if r.try_get::<i64, _>(1)? != 0 {
            added.insert(g.clone());
        }
        groups.insert(g);
    }
    Ok(Some(MirrorUser {
        user_id,
        suspended: row.try_get::<i64, _>(1)? != 0,
        name: row.try_get(2)?,
        email: row.try_get(3)?,
        invited_at: row.try_get::<Option<i64>, _>(4)?.map(ts),
        groups,
        added,
        external_id: row.try_get(5)?,
        invitation: row.try_get(6)?,
        invitation_checked_at: row.try_get::<Option<i64>, _>(7)?.map(ts),
    }))
}

/// Connections on which the subject has a provider user.
pub(crate) async fn connections_of(pool: &AnyPool, subject: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT connection_id FROM provider_users WHERE subject = $1 ORDER BY connection_id",
    )
    .bind(subject)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?)
}

/// Writes the subject's user on `connection` as it now is (`None`: it has none) with the audit
/// entries that say why, in one transaction refused unless `fence` still holds the subject.
/// Only what changed is written: the user's row, and the memberships joined, left or changed.
pub(crate) async fn save(
    pool: &AnyPool,
    fence: &Fence,
    connection: &str,
    user: Option<&MirrorUser>,
    audit: &[AuditEntry],
) -> Result<()> {
    let subject = fence.subject.key();
    let mut tx = pool.begin().await?;
    crate::fence::guard(&mut tx, fence).await?;
    let old = load_user(&mut tx, connection, &subject).await?;
    let same_user = matches!((&old, user), (Some(o), Some(u)) if o.user_id == u.user_id);
    if let Some(o) = old.as_ref().filter(|_| !same_user) {
        delete_memberships(&mut tx, connection, &o.user_id).await?;
        sqlx::query("DELETE FROM provider_users WHERE connection_id = $1 AND subject = $2")
            .bind(connection)
            .bind(subject.as_str())
            .execute(&mut *tx)
            .await?;
    }
    if let Some(u) = user {
        if !same_user {
            // A provider user serves one subject: a stale row naming the same user goes, and
            // its memberships are read afresh.
            sqlx::query("DELETE FROM provider_users WHERE connection_id = $1 AND user_id = $2")
                .bind(connection)
                .bind(u.user_id.as_str())
                .execute(&mut *tx)
                .await?;
            delete_memberships(&mut tx, connection, &u.user_id).await?;
        }
        upsert_user(&mut tx, connection, &subject, u).await?;
        let before = match old.as_ref().filter(|_| same_user) {
            Some(o) => (o.groups.clone(), o.added.clone()),
            None => (BTreeSet::new(), BTreeSet::new()),
        };
        write_memberships(&mut tx, connection, u, before).await?;
    }
    for e in audit {
        crate::fence::insert_audit(&mut tx, e).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn delete_memberships(conn: &mut AnyConnection, connection: &str, user: &str) -> Result<()> {
    sqlx::query("DELETE FROM provider_memberships WHERE connection_id = $1 AND user_id = $2")
        .bind(connection)
        .bind(user)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn upsert_user(
    conn: &mut AnyConnection,
    connection: &str,
    subject: &str,
    u: &MirrorUser,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO provider_users (connection_id, subject, user_id, suspended, name, email, invited_at, external_id, invitation_state, invitation_checked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (connection_id, subject) DO UPDATE SET user_id = excluded.user_id,
            suspended = excluded.suspended, name = excluded.name, email = excluded.email,
            invited_at = excluded.invited_at, external_id = excluded.external_id,
            invitation_state = excluded.invitation_state,
            invitation_checked_at = excluded.invitation_checked_at",
    )
    .bind(connection)
    .bind(subject)
    .bind(u.user_id.as_str())
    .bind(i64::from(u.suspended))
    .bind(u.name.clone())
    .bind(u.email.clone())
    .bind(u.invited_at.map(ms))
    .bind(u.external_id.clone())
    .bind(u.invitation.clone())
    .bind(u.invitation_checked_at.map(ms))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The user's memberships from `(groups, added)` as stored to `u`'s, one statement per
/// membership that changed.
async fn write_memberships(
    conn: &mut AnyConnection,
    connection: &str,
    u: &MirrorUser,
    (groups, added): (BTreeSet<String>, BTreeSet<String>),
) -> Result<()> {
    for g in groups.difference(&u.groups) {
        sqlx::query(
            "DELETE FROM provider_memberships WHERE connection_id = $1 AND group_id = $2 AND user_id = $3",
        )
        .bind(connection)
        .bind(g.as_str())
        .bind(u.user_id.as_str())
        .execute(&mut *conn)
        .await?;
    }
    for g in &u.groups {
        let now_added = u.added.contains(g);
        if groups.contains(g) && added.contains(g) == now_added {
            continue;
        }
        sqlx::query(
            "INSERT INTO provider_memberships (connection_id, group_id, user_id, added) VALUES ($1, $2, $3, $4)
             ON CONFLICT (connection_id, group_id, user_id) DO UPDATE SET added = excluded.added",
        )
        .bind(connection)
        .bind(g.as_str())
        .bind(u.user_id.as_str())
        .bind(i64::from(now_added))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Members of a group as the mirror has them: user id → subject.
pub(crate) async fn group_members(
    pool: &AnyPool,
    connection: &str,
    group: &str,
) -> Result<BTreeMap<String, String>> {
    let rows = sqlx::query(
        "SELECT m.user_id, u.subject FROM provider_memberships m
         JOIN provider_users u ON u.connection_id = m.connection_id AND u.user_id = m.user_id
         WHERE m.connection_id = $1 AND m.group_id = $2",
    )
    .bind(connection)
    .bind(group)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

pub(crate) async fn subject_of_user(
    pool: &AnyPool,
    connection: &str,
    user_id: &str,
) -> Result<Option<String>> {
    let row =
        sqlx::query("SELECT subject FROM provider_users WHERE connection_id = $1 AND user_id = $2")
            .bind(connection)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Groups doorsync owns on `connection`: those linked to an item of one of its locations, and
/// its visitor groups.
pub(crate) async fn managed_groups(pool: &AnyPool, connection: &str) -> Result<BTreeSet<String>> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query(
        "SELECT DISTINCT l.group_id FROM in_links l
            JOIN in_items i ON i.kind = l.kind AND i.id = l.item_id
            JOIN in_locations loc ON loc.id = i.location_id
         WHERE loc.connection_id = $1",
    )
    .bind(connection)
    .fetch_all(&mut *conn)
    .await?;
    let mut groups = BTreeSet::new();
    for row in rows {
        groups.insert(row.try_get::<String, _>(0)?);
    }
    if let Some(crate::Record::Connection(c)) =
        crate::sql::load(&mut conn, crate::Kind::Connection, connection).await?
    {
        groups.extend(c.visitor_group_ids);
    }
    Ok(groups)
}

/// Replaces the directory entries of each kind given, in one transaction: a reader sees the
/// groups, sites and doors of one read, never a mix of two.
pub(crate) async fn replace_directory(
    pool: &AnyPool,
    connection: &str,
    kinds: &[(&str, &[DirectoryEntry])],
) -> Result<()> {
    let mut tx = pool.begin().await?;
    for (kind, entries) in kinds {
        sqlx::query("DELETE FROM provider_directory WHERE connection_id = $1 AND kind = $2")
            .bind(connection)
            .bind(*kind)
            .execute(&mut *tx)
            .await?;
        for e in *entries {
            sqlx::query(
                "INSERT INTO provider_directory (connection_id, kind, provider_id, name, parent_id) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(connection)
            .bind(*kind)
            .bind(e.provider_id.as_str())
            .bind(e.name.as_str())
            .bind(e.parent_id.clone())
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn directory(
    pool: &AnyPool,
    connection: &str,
    kind: &str,
) -> Result<Vec<DirectoryEntry>> {
    let rows = sqlx::query(
        "SELECT provider_id, name, parent_id FROM provider_directory WHERE connection_id = $1 AND kind = $2
         ORDER BY provider_id",
    )
    .bind(connection)
    .bind(kind)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DirectoryEntry {
                provider_id: r.try_get(0)?,
                name: r.try_get(1)?,
                parent_id: r.try_get(2)?,
            })
        })
        .collect()
}

pub(crate) async fn state(pool: &AnyPool, connection: &str) -> Result<ConnectionState> {
    let row = sqlx::query(
        "SELECT paused_until, pause_reason, last_audit_at, next_audit_at, last_directory_at, month, calls_this_month, pauses,
            passes_allotted, passes_assigned, passes_out_since, passes_read_at
         FROM connection_state WHERE connection_id = $1",
    )
    .bind(connection)
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else {
        return Ok(ConnectionState::default());
    };
    let t = |i: usize| -> Result<Option<Timestamp>> { Ok(r.try_get::<Option<i64>, _>(i)?.map(ts)) };
    Ok(ConnectionState {
        paused_until: t(0)?,
        pause_reason: r.try_get(1)?,
        last_audit_at: t(2)?,
        next_audit_at: t(3)?,
        last_directory_at: t(4)?,
        month: r.try_get(5)?,
        calls_this_month: r.try_get(6)?,
        pauses: r.try_get(7)?,
        passes_allotted: r.try_get(8)?,
        passes_assigned: r.try_get(9)?,
        passes_out_since: t(10)?,
        passes_read_at: t(11)?,
    })
}

pub(crate) async fn change_state(
    pool: &AnyPool,
    connection: &str,
    change: StateChange,
) -> Result<()> {
    let upsert = |cols: &str| {
        let names: Vec<&str> = cols.split(", ").collect();
        let params: Vec<String> = (2..names.len() + 2).map(|i| format!("${i}")).collect();
        let sets: Vec<String> = names
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        format!(
            "INSERT INTO connection_state (connection_id, {cols}) VALUES ($1, {})
             ON CONFLICT (connection_id) DO UPDATE SET {}",
            params.join(", "),
            sets.join(", ")
        )
    };
    let q = match change {
        StateChange::Paused { until, reason, now } => sqlx::query(
            "INSERT INTO connection_state (connection_id, paused_until, pause_reason, pauses)
             VALUES ($1, $2, $3, 1)
             ON CONFLICT (connection_id) DO UPDATE SET paused_until = excluded.paused_until,
                pause_reason = excluded.pause_reason, pauses = connection_state.pauses + 1
             WHERE connection_state.paused_until IS NULL OR connection_state.paused_until <= $4",
        )
        .bind(connection)
        .bind(ms(until))
        .bind(reason)
        .bind(ms(now)),
        StateChange::Resumed { now } => sqlx::query(
            "UPDATE connection_state SET paused_until = NULL, pause_reason = NULL, pauses = 0
             WHERE connection_id = $1 AND (paused_until IS NULL OR paused_until <= $2)",
        )
        .bind(connection)
        .bind(ms(now)),
        StateChange::Audited { at: Some(at), next } => {
            sqlx::query(sqlx::AssertSqlSafe(upsert("last_audit_at, next_audit_at")))
                .bind(connection)
                .bind(ms(at))
                .bind(ms(next))
        }
        StateChange::Audited { at: None, next } => {
            sqlx::query(sqlx::AssertSqlSafe(upsert("next_audit_at")))
                .bind(connection)
                .bind(ms(next))
        }
        StateChange::DirectoryRead { at } => {
            sqlx::query(sqlx::AssertSqlSafe(upsert("last_directory_at")))
                .bind(connection)
                .bind(ms(at))
        }
        StateChange::PassesOut { now } => sqlx::query(
            "INSERT INTO connection_state (connection_id, passes_out_since) VALUES ($1, $2)
             ON CONFLICT (connection_id) DO UPDATE SET
                passes_out_since = COALESCE(connection_state.passes_out_since, excluded.passes_out_since)",
        )
        .bind(connection)
        .bind(ms(now)),
        StateChange::Allotment {
            allotted,
            assigned,
            at,
        } => sqlx::query(
            "INSERT INTO connection_state (connection_id, passes_allotted, passes_assigned, passes_read_at, passes_out_since)
             VALUES ($1, $2, $3, $4, CASE WHEN $2 > $3 THEN NULL ELSE $4 END)
             ON CONFLICT (connection_id) DO UPDATE SET
                passes_allotted = excluded.passes_allotted,
                passes_assigned = excluded.passes_assigned,
                passes_read_at = excluded.passes_read_at,
                passes_out_since = CASE WHEN excluded.passes_allotted > excluded.passes_assigned THEN NULL
                    ELSE COALESCE(connection_state.passes_out_since, excluded.passes_read_at) END",
        )
        .bind(connection)
        .bind(allotted)
        .bind(assigned)
        .bind(ms(at)),
    };
    q.execute(pool).await?;
    Ok(())
}

/// Adds `calls` to the connection's count for `month` (`YYYY-MM`), starting over in a new month.
pub(crate) async fn count_calls(
    pool: &AnyPool,
    connection: &str,
    month: &str,
    calls: i64,
) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO connection_state (connection_id, month, calls_this_month) VALUES ($1, $2, $3)
         ON CONFLICT (connection_id) DO UPDATE SET
            calls_this_month = CASE WHEN connection_state.month = excluded.month
                THEN connection_state.calls_this_month + excluded.calls_this_month
                ELSE excluded.calls_this_month END,
            month = excluded.month
         RETURNING calls_this_month",
    )
    .bind(connection)
    .bind(month)
    .bind(calls)
    .fetch_one(pool)
    .await?;
    Ok(row.try_get(0)?)
}

/// Subjects whose last reconcile failed, by the kind of error.
pub(crate) async fn error_counts(pool: &AnyPool) -> Result<BTreeMap<String, i64>> {
    let rows = sqlx::query(
        "SELECT last_error, COUNT(*) FROM schedule WHERE last_error IS NOT NULL GROUP BY last_error",
    )
    .fetch_all(pool)
    .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        let e: String = r.try_get(0)?;
        // Errors are stored as "kind: detail"; group by kind.
        let kind = e.split(':').next().unwrap_or("error").trim().to_owned();
        *out.entry(kind).or_insert(0) += r.try_get::<i64, _>(1)?;
    }
    Ok(out)
}

pub(crate) async fn set_held_past(
    pool: &AnyPool,
    fence: &Fence,
    connection: &str,
    groups: &BTreeSet<String>,
    now: Timestamp,
) -> Result<()> {
    let subject = fence.subject.key();
    let subject = subject.as_str();
    let mut tx = pool.begin().await?;
    crate::fence::guard(&mut tx, fence).await?;
    let known: BTreeSet<String> =
        sqlx::query("SELECT group_id FROM held_past WHERE connection_id = $1 AND subject = $2")
            .bind(connection)
            .bind(subject)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
    if &known == groups {
        return Ok(());
    }
    for g in known.difference(groups) {
        sqlx::query(
            "DELETE FROM held_past WHERE connection_id = $1 AND subject = $2 AND group_id = $3",
        )
        .bind(connection)
        .bind(subject)
        .bind(g.as_str())
        .execute(&mut *tx)
        .await?;
    }
    for g in groups.difference(&known) {
        sqlx::query(
            "INSERT INTO held_past (connection_id, subject, group_id, since) VALUES ($1, $2, $3, $4)",
        )
        .bind(connection)
        .bind(subject)
        .bind(g.as_str())
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn held_past(
    pool: &AnyPool,
    subject: Option<String>,
    limit: u32,
) -> Result<Vec<HeldPast>> {
    let rows = sqlx::query(
        "SELECT connection_id, subject, group_id, since FROM held_past
         WHERE $1 IS NULL OR subject = $1 ORDER BY since, subject, group_id LIMIT $2",
    )
    .bind(subject)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HeldPast {
                connection_id: r.try_get(0)?,
                subject: r.try_get(1)?,
                group_id: r.try_get(2)?,
                since: ts(r.try_get(3)?),
            })
        })
        .collect()
}

pub(crate) async fn held_past_counts(pool: &AnyPool) -> Result<BTreeMap<String, i64>> {
    let rows = sqlx::query("SELECT connection_id, COUNT(*) FROM held_past GROUP BY connection_id")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

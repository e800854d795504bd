//! A small migration runner: each backend has its own ordered SQL files, applied once each, in a
//! transaction, and recorded in `schema_migrations`.

use crate::sql::Backend;
use crate::{Result, StoreError};
use sqlx::{AnyPool, Row};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "provider_mirror",
        sql: include_str!("../migrations/sqlite/0002_provider_mirror.sql"),
    },
    Migration {
        version: 3,
        name: "integrity",
        sql: include_str!("../migrations/sqlite/0003_integrity.sql"),
    },
    Migration {
        version: 4,
        name: "references",
        sql: include_str!("../migrations/sqlite/0004_references.sql"),
    },
    Migration {
        version: 5,
        name: "mobile_passes",
        sql: include_str!("../migrations/sqlite/0005_mobile_passes.sql"),
    },
    Migration {
        version: 6,
        name: "inputs",
        sql: include_str!("../migrations/sqlite/0006_inputs.sql"),
    },
    Migration {
        version: 7,
        name: "catalog_version",
        sql: include_str!("../migrations/sqlite/0007_catalog_version.sql"),
    },
    Migration {
        version: 8,
        name: "call_slots",
        sql: include_str!("../migrations/sqlite/0008_call_slots.sql"),
    },
    Migration {
        version: 9,
        name: "schedule_priority",
        sql: include_str!("../migrations/sqlite/0009_schedule_priority.sql"),
    },
    Migration {
        version: 10,
        name: "admins",
        sql: include_str!("../migrations/sqlite/0010_admins.sql"),
    },
    Migration {
        version: 11,
        name: "presence",
        sql: include_str!("../migrations/sqlite/0011_presence.sql"),
    },
    Migration {
        version: 12,
        name: "event_subscriptions",
        sql: include_str!("../migrations/sqlite/0012_event_subscriptions.sql"),
    },
    Migration {
        version: 13,
        name: "member_app",
        sql: include_str!("../migrations/sqlite/0013_member_app.sql"),
    },
    Migration {
        version: 14,
        name: "alerts",
        sql: include_str!("../migrations/sqlite/0014_alerts.sql"),
    },
];

const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "provider_mirror",
        sql: include_str!("../migrations/postgres/0002_provider_mirror.sql"),
    },
    Migration {
        version: 3,
        name: "integrity",
        sql: include_str!("../migrations/postgres/0003_integrity.sql"),
    },
    Migration {
        version: 4,
        name: "references",
        sql: include_str!("../migrations/postgres/0004_references.sql"),
    },
    Migration {
        version: 5,
        name: "mobile_passes",
        sql: include_str!("../migrations/postgres/0005_mobile_passes.sql"),
    },
    Migration {
        version: 6,
        name: "inputs",
        sql: include_str!("../migrations/postgres/0006_inputs.sql"),
    },
    Migration {
        version: 7,
        name: "catalog_version",
        sql: include_str!("../migrations/postgres/0007_catalog_version.sql"),
    },
    Migration {
        version: 8,
        name: "call_slots",
        sql: include_str!("../migrations/postgres/0008_call_slots.sql"),
    },
    Migration {
        version: 9,
        name: "schedule_priority",
        sql: include_str!("../migrations/postgres/0009_schedule_priority.sql"),
    },
    Migration {
        version: 10,
        name: "admins",
        sql: include_str!("../migrations/postgres/0010_admins.sql"),
    },
    Migration {
        version: 11,
        name: "presence",
        sql: include_str!("../migrations/postgres/0011_presence.sql"),
    },
    Migration {
        version: 12,
        name: "event_subscriptions",
        sql: include_str!("../migrations/postgres/0012_event_subscriptions.sql"),
    },
    Migration {
        version: 13,
        name: "member_app",
        sql: include_str!("../migrations/postgres/0013_member_app.sql"),
    },
    Migration {
        version: 14,
        name: "alerts",
        sql: include_str!("../migrations/postgres/0014_alerts.sql"),
    },
];

/// An arbitrary constant: the advisory lock that keeps two instances from migrating at once.
const PG_MIGRATION_LOCK: i64 = 0x646f_6f72_7379_6e63;

pub(crate) async fn run(pool: &AnyPool, backend: Backend, now_ms: i64) -> Result<Vec<i64>> {
    let migrations = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let mut conn = pool.acquire().await?;
    if backend == Backend::Postgres {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"
        )))
        .execute(&mut *conn)
        .await?;
    }
    let result = apply(&mut conn, migrations, now_ms).await;
    if backend == Backend::Postgres {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"
        )))
        .execute(&mut *conn)
        .await?;
    }
    result
}

async fn apply(
    conn: &mut sqlx::AnyConnection,
    migrations: &[Migration],
    now_ms: i64,
) -> Result<Vec<i64>> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    let known = migrations.last().map_or(0, |m| m.version);
    if let Some(&newest) = applied.last()
        && newest > known
    {
        return Err(StoreError::Invalid {
            field: "database_url",
            message: format!(
                "the database is at schema version {newest}, newer than this doorsync ({known})"
            ),
        });
    }
    let mut done = vec![];
    for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        let fail = |source| StoreError::Migration {
            version: m.version,
            name: m.name,
            source,
        };
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(fail)?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        done.push(m.version);
    }
    Ok(done)
}

//! Migrations: each backend has its own ordered SQL files, embedded in the binary and applied by
//! sqlx's migrator, once each, in a transaction, with a checksum: a migration changed after it
//! was applied, or a database migrated by a newer doorsync, is refused. The files are listed
//! here with `include_str!` rather than through `sqlx::migrate!`, which would need sqlx's macros
//! feature and a second build of sqlx for the host; sqlx computes the same checksums either way.

use crate::sql::Backend;
use crate::{Result, StoreError};
use sqlx::migrate::{Migrate, MigrateError, Migration as SqlxMigration, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row, SqlSafeStr};
use std::borrow::Cow;

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
    Migration {
        version: 15,
        name: "customer_emails",
        sql: include_str!("../migrations/sqlite/0015_customer_emails.sql"),
    },
    Migration {
        version: 16,
        name: "fencing",
        sql: include_str!("../migrations/sqlite/0016_fencing.sql"),
    },
    Migration {
        version: 17,
        name: "setup_codes",
        sql: include_str!("../migrations/sqlite/0017_setup_codes.sql"),
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
    Migration {
        version: 15,
        name: "customer_emails",
        sql: include_str!("../migrations/postgres/0015_customer_emails.sql"),
    },
    Migration {
        version: 16,
        name: "fencing",
        sql: include_str!("../migrations/postgres/0016_fencing.sql"),
    },
    Migration {
        version: 17,
        name: "setup_codes",
        sql: include_str!("../migrations/postgres/0017_setup_codes.sql"),
    },
];

const TABLE: &str = "_sqlx_migrations";

fn migrator(backend: Backend) -> Migrator {
    let migrations = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|m| {
                SqlxMigration::new(
                    m.version,
                    Cow::Borrowed(m.name),
                    MigrationType::Simple,
                    AssertSqlSafe(Cow::Borrowed(m.sql)).into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Applies what the database lacks; returns the versions applied.
pub(crate) async fn run(pool: &AnyPool, backend: Backend, _now_ms: i64) -> Result<Vec<i64>> {
    let migrator = migrator(backend);
    let mut conn = pool.acquire().await?;
    conn.ensure_migrations_table(TABLE)
        .await
        .map_err(|e| migration_error(0, e.to_string()))?;
    adopt(&mut conn, &migrator).await?;
    let before = applied(&mut conn).await?;
    if let Err(e) = migrator.run(&mut *conn).await {
        // A refused run can return with sqlx's advisory lock still held by this session
        // (PostgreSQL): closing the connection, rather than pooling it, lets the lock go.
        let _ = conn.close().await;
        return Err(refused(e, &migrator));
    }
    let done: Vec<i64> = applied(&mut conn)
        .await?
        .into_iter()
        .filter(|v| !before.contains(v))
        .collect();
    for v in &done {
        let name = migrator
            .iter()
            .find(|m| m.version == *v)
            .map_or("", |m| m.description.as_ref());
        tracing::info!(version = v, name, "migration applied");
    }
    Ok(done)
}

async fn applied(conn: &mut AnyConnection) -> Result<Vec<i64>> {
    Ok(conn
        .list_applied_migrations(TABLE)
        .await
        .map_err(|e| migration_error(0, e.to_string()))?
        .into_iter()
        .map(|m| m.version)
        .collect())
}

/// A database migrated by the earlier runner (versions in `schema_migrations`, no checksums)
/// is taken over as it is: its versions are recorded as applied, with the checksums of the
/// files this doorsync carries, which are the ones it applied.
async fn adopt(conn: &mut AnyConnection, migrator: &Migrator) -> Result<()> {
    let Ok(rows) = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await
    else {
        return Ok(());
    };
    for r in rows {
        let version: i64 = r.try_get(0)?;
        let Some(m) = migrator.iter().find(|m| m.version == version) else {
            continue;
        };
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                VALUES ($1, $2, TRUE, $3, 0) ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(m.description.as_ref())
        .bind(m.checksum.to_vec())
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DROP TABLE IF EXISTS schema_migrations")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn migration_error(version: i64, message: String) -> StoreError {
    StoreError::Migration { version, message }
}

/// sqlx's refusals in words an operator acts on.
fn refused(e: MigrateError, migrator: &Migrator) -> StoreError {
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    match e {
        MigrateError::VersionMissing(v) => StoreError::Invalid {
            field: "database_url",
            message: format!(
                "the database is at schema version {v}, newer than this doorsync ({known}): run the doorsync that migrated it, or a newer one"
            ),
        },
        MigrateError::VersionMismatch(v) => migration_error(
            v,
            "this migration was changed after the database applied it (its checksum differs): the database and this doorsync disagree about its schema".into(),
        ),
        MigrateError::Dirty(v) => migration_error(
            v,
            "this migration failed part-way earlier; the database needs a look before doorsync can start".into(),
        ),
        MigrateError::ExecuteMigration(source, v) => migration_error(v, source.to_string()),
        other => migration_error(0, other.to_string()),
    }
}

//! The `in_*` tables: for each record that decides access, the columns the reconcile's and the
//! marking's queries filter and join on. Written and deleted with the record, in its
//! transaction; `backfill` projects the records stored before these tables existed.

use crate::Result;
use crate::record::{Kind, Record};
use crate::sql::{Backend, ms, parse};
use sqlx::{AnyConnection, Row};

/// Long enough after a booking, grant or visit ends that nothing about it can still change
/// anyone's access (the longest lag is a day), so older ones are left out of what is read.
pub const RELEVANT_AFTER_END: jiff::SignedDuration = jiff::SignedDuration::from_hours(48);

/// Removes what was projected of the record `kind`/`key`.
pub(crate) async fn unproject(conn: &mut AnyConnection, kind: Kind, key: &str) -> Result<()> {
    bump_catalog(conn, kind).await?;
    let (table, column): (&str, &str) = match kind {
        Kind::Pass | Kind::Resource | Kind::Desk => {
            sqlx::query("DELETE FROM in_items WHERE kind = $1 AND id = $2")
                .bind(kind.as_str())
                .bind(key)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        Kind::Link => {
            let (link_kind, item) = key.split_once('/').unwrap_or((key, ""));
            sqlx::query("DELETE FROM in_links WHERE kind = $1 AND item_id = $2")
                .bind(link_kind)
                .bind(item)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
        Kind::Booking => ("in_bookings", "id"),
        Kind::PassGrant => ("in_grants", "id"),
        Kind::Contract => {
            sqlx::query("DELETE FROM in_contract_desks WHERE contract_id = $1")
                .bind(key)
                .execute(&mut *conn)
                .await?;
            ("in_contracts", "id")
        }
        Kind::Team => ("in_teams", "id"),
        Kind::Location => ("in_locations", "id"),
        Kind::Visitor => ("in_visitors", "id"),
        Kind::Customer => ("in_customer_emails", "id"),
        Kind::Connection | Kind::Door => return Ok(()),
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE {column} = $1"
    )))
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether the groups a connection manages may change with a record of this kind.
fn shapes_catalog(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Link | Kind::Pass | Kind::Resource | Kind::Desk | Kind::Location | Kind::Connection
    )
}

async fn bump_catalog(conn: &mut AnyConnection, kind: Kind) -> Result<()> {
    if shapes_catalog(kind) {
        sqlx::query("UPDATE catalog_version SET version = version + 1 WHERE id = 1")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Writes the record's rows, replacing what an earlier version of it left (`fresh`: there was
/// none).
pub(crate) async fn project(conn: &mut AnyConnection, record: &Record, fresh: bool) -> Result<()> {
    let key = record.key();
    if fresh {
        bump_catalog(conn, record.kind()).await?;
    } else {
        unproject(conn, record.kind(), &key).await?;
    }
    match record {
        Record::Booking(b) => {
            sqlx::query("INSERT INTO in_bookings (id, customer_id, resource_id, end_ms) VALUES ($1, $2, $3, $4)")
                .bind(b.id.as_str())
                .bind(b.customer_id.as_str())
                .bind(b.resource_id.as_str())
                .bind(ms(b.end))
                .execute(&mut *conn)
                .await?;
        }
        Record::PassGrant(g) => {
            sqlx::query("INSERT INTO in_grants (id, customer_id, pass_id, until_ms) VALUES ($1, $2, $3, $4)")
                .bind(g.id.as_str())
                .bind(g.customer_id.as_str())
                .bind(g.pass_id.as_str())
                .bind(ms(g.valid_until))
                .execute(&mut *conn)
                .await?;
        }
        Record::Contract(c) => {
            sqlx::query("INSERT INTO in_contracts (id, customer_id, end_date) VALUES ($1, $2, $3)")
                .bind(c.id.as_str())
                .bind(c.customer_id.as_str())
                .bind(c.end_date.map(|d| d.to_string()))
                .execute(&mut *conn)
                .await?;
            let sql = format!(
                "INSERT INTO in_contract_desks (contract_id, desk_id) SELECT $2, j.value FROM {} AS j",
                crate::idset::elements(conn, 1)
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(crate::idset::json(c.desk_ids.iter().map(|d| d.as_str())))
                .bind(c.id.as_str())
                .execute(&mut *conn)
                .await?;
        }
        Record::Team(t) => {
            sqlx::query("INSERT INTO in_teams (id, paying_member_id) VALUES ($1, $2)")
                .bind(t.id.as_str())
                .bind(t.paying_member_id.as_str())
                .execute(&mut *conn)
                .await?;
        }
        Record::Location(l) => {
            sqlx::query("INSERT INTO in_locations (id, connection_id) VALUES ($1, $2)")
                .bind(l.id.as_str())
                .bind(l.connection_id.as_ref().map(|c| c.to_string()))
                .execute(&mut *conn)
                .await?;
        }
        Record::Visitor(v) => {
            let until = v
                .departure
                .unwrap_or(v.arrival)
                .checked_add(RELEVANT_AFTER_END)
                .unwrap_or(jiff::Timestamp::MAX);
            sqlx::query("INSERT INTO in_visitors (id, location_id, until_ms) VALUES ($1, $2, $3)")
                .bind(v.id.as_str())
                .bind(v.location_id.as_str())
                .bind(ms(until))
                .execute(&mut *conn)
                .await?;
        }
        Record::Pass(_) | Record::Resource(_) | Record::Desk(_) => {
            let location = match record {
                Record::Pass(p) => &p.location_id,
                Record::Resource(r) => &r.location_id,
                Record::Desk(d) => &d.location_id,
                _ => unreachable!("matched above"),
            };
            sqlx::query("INSERT INTO in_items (kind, id, location_id) VALUES ($1, $2, $3)")
                .bind(record.kind().as_str())
                .bind(key.as_str())
                .bind(location.as_str())
                .execute(&mut *conn)
                .await?;
        }
        Record::Link(l) => {
            sqlx::query("INSERT INTO in_links (kind, item_id, group_id) VALUES ($1, $2, $3)")
                .bind(l.kind.as_str())
                .bind(l.item_id.as_str())
                .bind(l.group_id.as_str())
                .execute(&mut *conn)
                .await?;
        }
        Record::Customer(c) => {
            sqlx::query("INSERT INTO in_customer_emails (id, email) VALUES ($1, $2)")
                .bind(c.id.as_str())
                .bind(c.email.as_str().to_lowercase())
                .execute(&mut *conn)
                .await?;
        }
        Record::Connection(_) | Record::Door(_) => {}
    }
    Ok(())
}

/// Projects every record stored before an `in_*` table existed, once for each: a migration that
/// adds tables leaves a marker naming them, which is deleted in the same transaction as the
/// projection, so a crash halfway starts over cleanly.
pub(crate) async fn backfill(conn: &mut AnyConnection, backend: Backend) -> Result<u64> {
    const MARKERS: &[(&str, &[Kind])] = &[
        (
            "inputs",
            &[
                Kind::Location,
                Kind::Pass,
                Kind::Resource,
                Kind::Desk,
                Kind::Link,
                Kind::Team,
                Kind::Booking,
                Kind::Contract,
                Kind::PassGrant,
                Kind::Visitor,
            ],
        ),
        ("customer_emails", &[Kind::Customer]),
    ];
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    // Instances starting together: the first takes the marker's lock, the others find it gone.
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let mut n = 0;
    for (marker, kinds) in MARKERS {
        let pending = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM backfill WHERE name = $1{lock}"
        )))
        .bind(*marker)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if !pending {
            continue;
        }
        for kind in *kinds {
            let rows = sqlx::query("SELECT id, body FROM records WHERE kind = $1")
                .bind(kind.as_str())
                .fetch_all(&mut *tx)
                .await?;
            for row in rows {
                let (id, body): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                project(&mut tx, &parse(*kind, &id, &body)?, false).await?;
                n += 1;
            }
        }
        sqlx::query("DELETE FROM backfill WHERE name = $1")
            .bind(*marker)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(n)
}

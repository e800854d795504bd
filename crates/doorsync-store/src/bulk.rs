//! The bulk intake's common case in a handful of statements a chunk: a platform's first load is
//! mostly new customers, bookings and pass grants, and writing them one at a time costs a round
//! trip to the database per statement (on SQLite, a hand-off to its worker thread), some seven
//! a record. A chunk made only of such records, none of them stored yet and every reference
//! found, is written here in multi-row statements; anything else (an update, a missing
//! reference, a key twice, another kind) is left to the per-record path, which reports each
//! failure on its own item.

use crate::record::{Kind, Record};
use crate::sql::ms;
use crate::{BatchOp, Result, Written};
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, BTreeSet};

/// Rows a multi-row statement writes at most: well under either backend's parameter limit.
const ROWS: usize = 50;

/// Ids a look-up binds at most.
const IDS: usize = 100;

/// The records of `ops` when every one is a put of a kind this path writes.
fn eligible(ops: &[BatchOp]) -> Option<Vec<Record>> {
    ops.iter()
        .map(|op| match op {
            BatchOp::Put(r)
                if matches!(r.kind(), Kind::Customer | Kind::Booking | Kind::PassGrant) =>
            {
                Some((**r).clone())
            }
            _ => None,
        })
        .collect()
}

/// `($first, …), (…), …`: `rows` tuples of `width` numbered parameters.
fn tuples(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let cols: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which of `keys` are stored.
async fn stored(
    conn: &mut AnyConnection,
    keys: &BTreeSet<(Kind, String)>,
) -> Result<BTreeSet<(Kind, String)>> {
    let mut by_kind: BTreeMap<Kind, Vec<&str>> = BTreeMap::new();
    for (k, id) in keys {
        by_kind.entry(*k).or_default().push(id);
    }
    let mut found = BTreeSet::new();
    for (kind, ids) in by_kind {
        for page in ids.chunks(IDS) {
            let sql = format!(
                "SELECT id FROM records WHERE kind = $1 AND id IN ({})",
                crate::inputs::placeholders(2, page.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(kind.as_str());
            for id in page {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&mut *conn).await? {
                found.insert((kind, row.try_get::<String, _>(0)?));
            }
        }
    }
    Ok(found)
}

/// Writes `ops` in multi-row statements when they are all new customers, bookings and pass
/// grants whose references hold; `None` (having written nothing) when the per-record path must
/// take them. An error leaves the transaction to be rolled back.
pub(crate) async fn insert_new(
    conn: &mut AnyConnection,
    ops: &[BatchOp],
    now: jiff::Timestamp,
) -> Result<Option<Vec<Written>>> {
    let Some(mut records) = eligible(ops) else {
        return Ok(None);
    };
    for r in &mut records {
        r.carry_over(None, now);
    }
    // A reference to a record of the chunk holds only when that record comes first, as it
    // would one write at a time.
    let mut position = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        if position.insert((r.kind(), r.key()), i).is_some() {
            return Ok(None);
        }
    }
    let mut outside = BTreeSet::new();
    for (i, r) in records.iter().enumerate() {
        for target in r.refs() {
            match position.get(&(target.kind, target.id.clone())) {
                Some(&j) if j < i => {}
                Some(_) => return Ok(None),
                None => {
                    outside.insert((target.kind, target.id));
                }
            }
        }
    }
    let new: BTreeSet<(Kind, String)> = position.into_keys().collect();
    if !stored(conn, &new).await?.is_empty() || stored(conn, &outside).await?.len() != outside.len()
    {
        return Ok(None);
    }

    let now_ms = ms(now);
    for page in records.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO records (kind, id, body, created_at, updated_at) VALUES {}",
            tuples(page.len(), 5)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in page {
            q = q
                .bind(r.kind().as_str())
                .bind(r.key())
                .bind(r.to_json())
                .bind(now_ms)
                .bind(now_ms);
        }
        q.execute(&mut *conn).await?;
    }

    let refs: Vec<(Kind, String, crate::record::Ref)> = records
        .iter()
        .flat_map(|r| {
            let (kind, key) = (r.kind(), r.key());
            r.refs().into_iter().map(move |x| (kind, key.clone(), x))
        })
        .collect();
    for page in refs.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO refs (kind, id, field, ref_kind, ref_id) VALUES {}",
            tuples(page.len(), 5)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (kind, key, x) in page {
            q = q
                .bind(kind.as_str())
                .bind(key.as_str())
                .bind(x.field)
                .bind(x.kind.as_str())
                .bind(x.id.as_str());
        }
        // The database enforces the references: a target deleted since the look-up fails the
        // chunk, and the per-record path names it.
        q.execute(&mut *conn).await?;
    }

    project(conn, &records).await?;

    // Each record reaches its customer alone; a new record only gives access, so the mark is
    // at normal priority.
    let subjects: BTreeSet<String> = records
        .iter()
        .filter_map(|r| match r {
            Record::Customer(c) => Some(c.id.as_str().to_owned()),
            Record::Booking(b) => Some(b.customer_id.as_str().to_owned()),
            Record::PassGrant(g) => Some(g.customer_id.as_str().to_owned()),
            _ => None,
        })
        .map(|id| format!("customer:{id}"))
        .collect();
    let subjects: Vec<String> = subjects.into_iter().collect();
    for page in subjects.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO schedule (subject, next_due_at, priority) VALUES {} {}",
            tuples(page.len(), 3),
            crate::reach::UPSERT_DUE
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in page {
            q = q.bind(s.as_str()).bind(now_ms).bind(1_i64);
        }
        q.execute(&mut *conn).await?;
    }

    Ok(Some(
        records
            .into_iter()
            .map(|record| Written {
                record,
                created: true,
            })
            .collect(),
    ))
}

/// The `in_bookings` and `in_grants` rows of the chunk (a customer projects nothing).
async fn project(conn: &mut AnyConnection, records: &[Record]) -> Result<()> {
    let rows: Vec<(&str, &str, &str, i64, &'static str)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Booking(b) => Some((
                b.id.as_str(),
                b.customer_id.as_str(),
                b.resource_id.as_str(),
                ms(b.end),
                "INSERT INTO in_bookings (id, customer_id, resource_id, end_ms) VALUES ",
            )),
            Record::PassGrant(g) => Some((
                g.id.as_str(),
                g.customer_id.as_str(),
                g.pass_id.as_str(),
                ms(g.valid_until),
                "INSERT INTO in_grants (id, customer_id, pass_id, until_ms) VALUES ",
            )),
            _ => None,
        })
        .collect();
    let mut by_table: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for row in rows {
        by_table.entry(row.4).or_default().push(row);
    }
    for (insert, rows) in by_table {
        for page in rows.chunks(ROWS) {
            let sql = format!("{insert}{}", tuples(page.len(), 4));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, customer, item, end, _) in page {
                q = q.bind(*id).bind(*customer).bind(*item).bind(*end);
            }
            q.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

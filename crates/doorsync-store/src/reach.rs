//! Who a write reaches: the subjects whose inputs a record touches, marked due in the writing
//! transaction (and, on PostgreSQL, announced to the other instances at commit).

use crate::record::{Kind, Record};
use crate::sql::{Backend, strings};
use crate::*;
use doorsync_core::*;
use sqlx::AnyConnection;
use std::collections::BTreeSet;

/// Who a record's change reaches.
pub(crate) enum Reach {
    Subjects(BTreeSet<Subject>),
    Everyone,
}

/// Customers holding a booking, grant or contract of the inventory item `kind`/`id`.
async fn customers_of_item(conn: &mut AnyConnection, kind: Kind, id: &str) -> Result<Vec<String>> {
    strings(
        conn,
        "SELECT DISTINCT c.ref_id FROM refs i
         JOIN refs c ON c.kind = i.kind AND c.id = i.id AND c.field = 'customer_id'
         WHERE i.ref_kind = $1 AND i.ref_id = $2 AND i.kind <> 'link'",
        &[kind.as_str(), id],
    )
    .await
}

/// Everyone who is or was in a team whose paying member is `customer`.
async fn team_members_of_payer(conn: &mut AnyConnection, customer: &str) -> Result<Vec<String>> {
    strings(
        conn,
        "SELECT DISTINCT tm.customer_id FROM refs t JOIN team_memberships tm ON tm.team_id = t.id
         WHERE t.kind = 'team' AND t.field = 'paying_member_id' AND t.ref_id = $1",
        &[customer],
    )
    .await
}

fn customer(id: &str) -> Option<Subject> {
    Id::parse(id).ok().map(Subject::Customer)
}

pub(crate) async fn reach(conn: &mut AnyConnection, record: &Record) -> Result<Reach> {
    let mut out = BTreeSet::new();
    let mut payers = vec![];
    match record {
        Record::Connection(_) | Record::Location(_) => return Ok(Reach::Everyone),
        Record::Door(_) => {}
        Record::Customer(x) => {
            out.insert(Subject::Customer(x.id.clone()));
        }
        Record::Team(x) => {
            out.extend(
                strings(
                    conn,
                    "SELECT customer_id FROM team_memberships WHERE team_id = $1",
                    &[x.id.as_str()],
                )
                .await?
                .iter()
                .filter_map(|c| customer(c)),
            );
            out.extend(x.member_ids.iter().cloned().map(Subject::Customer));
        }
        Record::Booking(x) => {
            out.insert(Subject::Customer(x.customer_id.clone()));
        }
        Record::PassGrant(x) => {
            out.insert(Subject::Customer(x.customer_id.clone()));
        }
        Record::Contract(x) => payers.push(x.customer_id.to_string()),
        Record::Visitor(x) => {
            out.insert(Subject::Visitor(x.id.clone()));
        }
        Record::Pass(_) | Record::Resource(_) | Record::Desk(_) | Record::Link(_) => {
            let (kind, id) = match record {
                Record::Link(l) => (Kind::of_link(l.kind), l.item_id.to_string()),
                other => (other.kind(), other.key()),
            };
            if let Record::Link(l) = record {
                // Whoever doorsync put in the group: a link that moves or goes may take them out.
                let added = strings(
                    conn,
                    "SELECT DISTINCT u.subject FROM provider_memberships m
                     JOIN provider_users u ON u.connection_id = m.connection_id AND u.user_id = m.user_id
                     WHERE m.group_id = $1 AND m.added = 1",
                    &[l.group_id.as_str()],
                )
                .await?;
                out.extend(added.iter().filter_map(|k| Subject::parse_key(k)));
            }
            let customers = customers_of_item(conn, kind, &id).await?;
            if kind == Kind::Desk {
                payers.extend(customers);
            } else {
                out.extend(customers.iter().filter_map(|c| customer(c)));
            }
        }
    }
    for payer in payers {
        out.extend(
            team_members_of_payer(conn, &payer)
                .await?
                .iter()
                .filter_map(|c| customer(c)),
        );
        out.extend(customer(&payer));
    }
    Ok(Reach::Subjects(out))
}

pub(crate) const MARK_DUE: &str = "INSERT INTO schedule (subject, next_due_at) VALUES ($1, $2)
    ON CONFLICT (subject) DO UPDATE SET next_due_at = CASE
        WHEN schedule.next_due_at IS NULL OR schedule.next_due_at > excluded.next_due_at
        THEN excluded.next_due_at ELSE schedule.next_due_at END";

/// The channel on which PostgreSQL tells every instance that someone became due.
pub const DUE_CHANNEL: &str = "doorsync_due";

/// On PostgreSQL, tells the other instances (at commit) that the schedule changed.
pub(crate) async fn notify(conn: &mut AnyConnection, backend: Backend) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(DUE_CHANNEL)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(crate) async fn mark(conn: &mut AnyConnection, reach: Reach, now_ms: i64) -> Result<()> {
    match reach {
        Reach::Subjects(subjects) => {
            for s in subjects {
                sqlx::query(MARK_DUE)
                    .bind(s.key())
                    .bind(now_ms)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Reach::Everyone => {
            for (prefix, kind) in [("customer:", "customer"), ("visitor:", "visitor")] {
                sqlx::query(
                    "INSERT INTO schedule (subject, next_due_at)
                     SELECT $1 || id, $2 FROM records WHERE kind = $3
                     ON CONFLICT (subject) DO UPDATE SET next_due_at = CASE
                        WHEN schedule.next_due_at IS NULL OR schedule.next_due_at > excluded.next_due_at
                        THEN excluded.next_due_at ELSE schedule.next_due_at END",
                )
                .bind(prefix)
                .bind(now_ms)
                .bind(kind)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

pub(crate) fn merge(a: Reach, b: Reach) -> Reach {
    match (a, b) {
        (Reach::Subjects(mut x), Reach::Subjects(y)) => {
            x.extend(y);
            Reach::Subjects(x)
        }
        _ => Reach::Everyone,
    }
}

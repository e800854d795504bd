//! Everything that decides one subject's access, gathered from the records: what they hold, the
//! teams they are in with their paying members' contracts, and the inventory and links involved.

use crate::reach::Bounds;
use crate::record::{Kind, Record};
use crate::sql::{SqlStore, load, parse, ts};
use crate::*;
use doorsync_core::*;
use jiff::Timestamp;
use sqlx::{AnyConnection, Row};
use std::collections::BTreeSet;

/// `$first, $first+1, ...` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records of `kind` with these ids, in one query.
async fn records_in(
    conn: &mut AnyConnection,
    kind: Kind,
    ids: &BTreeSet<Id>,
) -> Result<Vec<Record>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!(
        "SELECT id, body FROM records WHERE kind = $1 AND id IN ({})",
        placeholders(2, ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(kind.as_str());
    for id in ids {
        q = q.bind(id.as_str());
    }
    q.fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            parse(
                kind,
                &r.try_get::<String, _>(0)?,
                &r.try_get::<String, _>(1)?,
            )
        })
        .collect()
}

/// A customer's inputs in a handful of set-based queries in one read transaction, whatever the
/// length of their history: bookings, grants and team stays that ended more than
/// [`crate::project::RELEVANT_AFTER_END`] before `now` cannot change access and are left out.
pub(crate) async fn customer_inputs(
    store: &SqlStore,
    id: &Id,
    now: Timestamp,
) -> Result<Option<CustomerInputs>> {
    let mut tx = store.pool.begin().await?;
    let Some(Record::Customer(customer)) = load(&mut tx, Kind::Customer, id.as_str()).await? else {
        return Ok(None);
    };
    // The same time bounds as the marking's: what ended before them cannot change access.
    let Bounds {
        since_ms,
        since_date,
        ..
    } = Bounds::at(now);
    let mut inputs = CustomerInputs {
        customer,
        bookings: vec![],
        pass_grants: vec![],
        contracts: vec![],
        team_contracts: vec![],
        catalog: Catalog::default(),
    };
    let held = sqlx::query(
        "SELECT r.kind, r.id, r.body FROM in_bookings b
            JOIN records r ON r.kind = 'booking' AND r.id = b.id
            WHERE b.customer_id = $1 AND b.end_ms >= $2
         UNION ALL
         SELECT r.kind, r.id, r.body FROM in_grants g
            JOIN records r ON r.kind = 'pass_grant' AND r.id = g.id
            WHERE g.customer_id = $1 AND g.until_ms >= $2
         UNION ALL
         SELECT r.kind, r.id, r.body FROM in_contracts c
            JOIN records r ON r.kind = 'contract' AND r.id = c.id
            WHERE c.customer_id = $1 AND (c.end_date IS NULL OR c.end_date >= $3)",
    )
    .bind(id.as_str())
    .bind(since_ms)
    .bind(since_date.as_str())
    .fetch_all(&mut *tx)
    .await?;
    for row in held {
        let kind: String = row.try_get(0)?;
        let Some(kind) = Kind::parse(&kind) else {
            continue;
        };
        match parse(
            kind,
            &row.try_get::<String, _>(1)?,
            &row.try_get::<String, _>(2)?,
        )? {
            Record::Booking(b) => inputs.bookings.push(b),
            Record::PassGrant(g) => inputs.pass_grants.push(g),
            Record::Contract(c) => inputs.contracts.push(c),
            _ => {}
        }
    }
    // Stays in teams someone else pays for, and those payers' contracts.
    let stays = sqlx::query(
        "SELECT tm.team_id, tm.joined_at, tm.left_at, t.paying_member_id FROM team_memberships tm
            JOIN in_teams t ON t.id = tm.team_id
         WHERE tm.customer_id = $1 AND t.paying_member_id <> $1
            AND (tm.left_at IS NULL OR tm.left_at >= $2)",
    )
    .bind(id.as_str())
    .bind(since_ms)
    .fetch_all(&mut *tx)
    .await?;
    // CROSS JOIN keeps SQLite to this order (from the customer's stays out) even before its
    // planner has statistics; without them it may start from every contract instead.
    let payer_contracts = sqlx::query(
        "SELECT DISTINCT c.customer_id, r.id, r.body FROM team_memberships tm
            CROSS JOIN in_teams t
            CROSS JOIN in_contracts c
            CROSS JOIN records r
         WHERE t.id = tm.team_id AND c.customer_id = t.paying_member_id
            AND r.kind = 'contract' AND r.id = c.id
            AND tm.customer_id = $1 AND t.paying_member_id <> $1
            AND (tm.left_at IS NULL OR tm.left_at >= $2)
            AND (c.end_date IS NULL OR c.end_date >= $3)",
    )
    .bind(id.as_str())
    .bind(since_ms)
    .bind(since_date.as_str())
    .fetch_all(&mut *tx)
    .await?;
    let mut by_payer: std::collections::BTreeMap<String, Vec<Contract>> = Default::default();
    for row in payer_contracts {
        if let Record::Contract(c) = parse(
            Kind::Contract,
            &row.try_get::<String, _>(1)?,
            &row.try_get::<String, _>(2)?,
        )? {
            by_payer.entry(row.try_get(0)?).or_default().push(c);
        }
    }
    for row in stays {
        let payer: String = row.try_get(3)?;
        let (Ok(team_id), Ok(paying_member_id)) =
            (Id::parse(&row.try_get::<String, _>(0)?), Id::parse(&payer))
        else {
            continue;
        };
        let membership = TeamMembership {
            team_id,
            customer_id: id.clone(),
            joined_at: ts(row.try_get(1)?),
            left_at: row.try_get::<Option<i64>, _>(2)?.map(ts),
        };
        for contract in by_payer.get(&payer).into_iter().flatten() {
            inputs.team_contracts.push(TeamContract {
                membership: membership.clone(),
                paying_member_id: paying_member_id.clone(),
                contract: contract.clone(),
            });
        }
    }
    // The inventory involved, its links and its locations: one query per kind.
    let resources: BTreeSet<Id> = inputs
        .bookings
        .iter()
        .map(|b| b.resource_id.clone())
        .collect();
    let passes: BTreeSet<Id> = inputs
        .pass_grants
        .iter()
        .map(|g| g.pass_id.clone())
        .collect();
    let desks: BTreeSet<Id> = inputs
        .contracts
        .iter()
        .chain(inputs.team_contracts.iter().map(|t| &t.contract))
        .flat_map(|c| c.desk_ids.iter().cloned())
        .collect();
    let catalog = &mut inputs.catalog;
    let mut locations = BTreeSet::new();
    for (kind, link_kind, ids) in [
        (Kind::Resource, LinkKind::Resource, &resources),
        (Kind::Pass, LinkKind::Pass, &passes),
        (Kind::Desk, LinkKind::Desk, &desks),
    ] {
        for record in records_in(&mut tx, kind, ids).await? {
            match record {
                Record::Resource(r) => {
                    locations.insert(r.location_id.clone());
                    catalog.resources.insert(r.id.clone(), r);
                }
                Record::Pass(p) => {
                    locations.insert(p.location_id.clone());
                    catalog.passes.insert(p.id.clone(), p);
                }
                Record::Desk(d) => {
                    locations.insert(d.location_id.clone());
                    catalog.desks.insert(d.id.clone(), d);
                }
                _ => {}
            }
        }
        if ids.is_empty() {
            continue;
        }
        let sql = format!(
            "SELECT item_id, group_id FROM in_links WHERE kind = $1 AND item_id IN ({})",
            placeholders(2, ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(link_kind.as_str());
        for i in ids {
            q = q.bind(i.as_str());
        }
        for row in q.fetch_all(&mut *tx).await? {
            if let Ok(item) = Id::parse(&row.try_get::<String, _>(0)?) {
                catalog.links.insert((link_kind, item), row.try_get(1)?);
            }
        }
    }
    for record in records_in(&mut tx, Kind::Location, &locations).await? {
        if let Record::Location(l) = record {
            catalog.locations.insert(l.id.clone(), l);
        }
    }
    tx.commit().await?;
    Ok(Some(inputs))
}

pub(crate) async fn visitor_inputs(store: &SqlStore, id: &Id) -> Result<Option<VisitorInputs>> {
    let mut conn = store.pool.acquire().await?;
    let Some(Record::Visitor(visitor)) = load(&mut conn, Kind::Visitor, id.as_str()).await? else {
        return Ok(None);
    };
    let Some(Record::Location(location)) =
        load(&mut conn, Kind::Location, visitor.location_id.as_str()).await?
    else {
        return Ok(None);
    };
    let visitor_group_ids = match &location.connection_id {
        Some(c) => match load(&mut conn, Kind::Connection, c.as_str()).await? {
            Some(Record::Connection(conn)) => conn.visitor_group_ids,
            _ => vec![],
        },
        None => vec![],
    };
    Ok(Some(VisitorInputs {
        visitor,
        location,
        visitor_group_ids,
    }))
}

//! Everything that decides one subject's access, gathered from the records: what they hold, the
//! teams they are in with their paying members' contracts, and the inventory and links involved.

use crate::reach::Bounds;
use crate::record::{Kind, Record};
use crate::sql::{SqlStore, load, parse, ts};
use crate::*;
use doorsync_core::*;
use jiff::Timestamp;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// `$first, $first+1, ...` for `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Customers read together: the bound parameters of one query stay well under what either
/// backend allows, and a page's rows stay small.
pub(crate) const PAGE: usize = 500;

/// The whole catalog (locations, inventory and links), with the catalog version it was read at.
pub(crate) type CatalogCache = std::sync::Mutex<Option<(i64, Arc<Catalog>)>>;

/// The catalog at the current catalog version: read again only after a write to a location, an
/// item or a link, so a reconcile reads its customer's own records and nothing else.
async fn catalog(store: &SqlStore, conn: &mut AnyConnection) -> Result<Arc<Catalog>> {
    let version: i64 = sqlx::query("SELECT version FROM catalog_version WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    let lock = || store.catalog.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((v, c)) = lock().as_ref()
        && *v == version
    {
        return Ok(c.clone());
    }
    let mut catalog = Catalog::default();
    let rows = sqlx::query(
        "SELECT kind, id, body FROM records
            WHERE kind IN ('location', 'resource', 'desk', 'pass')",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let Some(kind) = Kind::parse(&row.try_get::<String, _>(0)?) else {
            continue;
        };
        match parse(
            kind,
            &row.try_get::<String, _>(1)?,
            &row.try_get::<String, _>(2)?,
        )? {
            Record::Location(l) => {
                catalog.locations.insert(l.id.clone(), l);
            }
            Record::Resource(r) => {
                catalog.resources.insert(r.id.clone(), r);
            }
            Record::Desk(d) => {
                catalog.desks.insert(d.id.clone(), d);
            }
            Record::Pass(p) => {
                catalog.passes.insert(p.id.clone(), p);
            }
            _ => {}
        }
    }
    for row in sqlx::query("SELECT kind, item_id, group_id FROM in_links")
        .fetch_all(&mut *conn)
        .await?
    {
        let kind = LinkKind::parse(&row.try_get::<String, _>(0)?);
        if let (Some(kind), Ok(item)) = (kind, Id::parse(&row.try_get::<String, _>(1)?)) {
            catalog.links.insert((kind, item), row.try_get(2)?);
        }
    }
    let catalog = Arc::new(catalog);
    *lock() = Some((version, catalog.clone()));
    Ok(catalog)
}

/// The part of `full` a customer's inputs involve: the items they hold, those items' links and
/// locations, as a reconcile of that customer alone would read them.
fn involved(full: &Catalog, inputs: &CustomerInputs) -> Catalog {
    let mut out = Catalog::default();
    let link = |kind: LinkKind, id: &Id, out: &mut Catalog| {
        if let Some(g) = full.links.get(&(kind, id.clone())) {
            out.links.insert((kind, id.clone()), g.clone());
        }
    };
    let mut locations = BTreeSet::new();
    for b in &inputs.bookings {
        if let Some(r) = full.resources.get(&b.resource_id) {
            locations.insert(r.location_id.clone());
            out.resources.insert(r.id.clone(), r.clone());
            link(LinkKind::Resource, &r.id, &mut out);
        }
    }
    for g in &inputs.pass_grants {
        if let Some(p) = full.passes.get(&g.pass_id) {
            locations.insert(p.location_id.clone());
            out.passes.insert(p.id.clone(), p.clone());
            link(LinkKind::Pass, &p.id, &mut out);
        }
    }
    let contracts = inputs
        .contracts
        .iter()
        .chain(inputs.team_contracts.iter().map(|t| &t.contract));
    for id in contracts.flat_map(|c| &c.desk_ids) {
        if let Some(d) = full.desks.get(id) {
            locations.insert(d.location_id.clone());
            out.desks.insert(d.id.clone(), d.clone());
            link(LinkKind::Desk, &d.id, &mut out);
        }
    }
    for id in locations {
        if let Some(l) = full.locations.get(&id) {
            out.locations.insert(id, l.clone());
        }
    }
    out
}

/// A query over a page of customers: `{ids}` in `sql` becomes their placeholders, numbered
/// after the `fixed` parameters bound first.
fn for_page<'q>(
    sql: &str,
    since: (Option<i64>, Option<&'q str>),
    ids: &'q [Id],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let fixed = usize::from(since.0.is_some()) + usize::from(since.1.is_some());
    let sql = sql.replace("{ids}", &placeholders(fixed + 1, ids.len()));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some(ms) = since.0 {
        q = q.bind(ms);
    }
    if let Some(date) = since.1 {
        q = q.bind(date);
    }
    for id in ids {
        q = q.bind(id.as_str());
    }
    q
}

/// Customers' inputs in a handful of set-based queries per page of customers, whatever the
/// length of their histories: bookings, grants and team stays that ended more than
/// [`crate::project::RELEVANT_AFTER_END`] before `now` cannot change access and are left out.
/// In the order of `ids`; a customer that does not exist is left out.
pub(crate) async fn customers_inputs(
    store: &SqlStore,
    ids: &[Id],
    now: Timestamp,
) -> Result<Vec<CustomerInputs>> {
    let mut out = Vec::with_capacity(ids.len());
    for page in ids.chunks(PAGE) {
        let mut tx = store.pool.begin().await?;
        out.extend(page_inputs(store, &mut tx, page, now).await?);
        tx.commit().await?;
    }
    Ok(out)
}

async fn page_inputs(
    store: &SqlStore,
    conn: &mut AnyConnection,
    ids: &[Id],
    now: Timestamp,
) -> Result<Vec<CustomerInputs>> {
    // The same time bounds as the marking's: what ended before them cannot change access.
    let Bounds {
        since_ms,
        since_date,
        ..
    } = Bounds::at(now);
    let since = (Some(since_ms), Some(since_date.as_str()));
    let full = catalog(store, conn).await?;
    let mut by_id: BTreeMap<Id, CustomerInputs> = BTreeMap::new();
    for row in for_page(
        "SELECT id, body FROM records WHERE kind = 'customer' AND id IN ({ids})",
        (None, None),
        ids,
    )
    .fetch_all(&mut *conn)
    .await?
    {
        if let Record::Customer(customer) = parse(
            Kind::Customer,
            &row.try_get::<String, _>(0)?,
            &row.try_get::<String, _>(1)?,
        )? {
            by_id.insert(
                customer.id.clone(),
                CustomerInputs {
                    customer,
                    bookings: vec![],
                    pass_grants: vec![],
                    contracts: vec![],
                    team_contracts: vec![],
                    catalog: Catalog::default(),
                    pass_days: BTreeMap::new(),
                },
            );
        }
    }
    if by_id.is_empty() {
        return Ok(vec![]);
    }
    // CROSS JOIN: from the customers' rows out, never from every record of the kind (SQLite's
    // planner prefers the latter for a long IN list).
    let held = for_page(
        "SELECT r.kind, r.id, r.body FROM in_bookings b CROSS JOIN records r
            WHERE r.kind = 'booking' AND r.id = b.id
                AND b.customer_id IN ({ids}) AND b.end_ms >= $1
         UNION ALL
         SELECT r.kind, r.id, r.body FROM in_grants g CROSS JOIN records r
            WHERE r.kind = 'pass_grant' AND r.id = g.id
                AND g.customer_id IN ({ids}) AND g.until_ms >= $1
         UNION ALL
         SELECT r.kind, r.id, r.body FROM in_contracts c CROSS JOIN records r
            WHERE r.kind = 'contract' AND r.id = c.id
                AND c.customer_id IN ({ids}) AND (c.end_date IS NULL OR c.end_date >= $2)",
        since,
        ids,
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in held {
        let Some(kind) = Kind::parse(&row.try_get::<String, _>(0)?) else {
            continue;
        };
        let record = parse(
            kind,
            &row.try_get::<String, _>(1)?,
            &row.try_get::<String, _>(2)?,
        )?;
        let owner = match &record {
            Record::Booking(b) => &b.customer_id,
            Record::PassGrant(g) => &g.customer_id,
            Record::Contract(c) => &c.customer_id,
            _ => continue,
        };
        let Some(inputs) = by_id.get_mut(owner) else {
            continue;
        };
        match record {
            Record::Booking(b) => inputs.bookings.push(b),
            Record::PassGrant(g) => inputs.pass_grants.push(g),
            Record::Contract(c) => inputs.contracts.push(c),
            _ => {}
        }
    }
    // The days used of grants with a day count: the last one may end the grant's access.
    let counted: Vec<Id> = by_id
        .values()
        .flat_map(|i| &i.pass_grants)
        .filter(|g| g.uses.is_some())
        .map(|g| g.id.clone())
        .collect();
    if !counted.is_empty() {
        for row in for_page(
            "SELECT g.customer_id, d.grant_id, d.local_date FROM pass_days d
                CROSS JOIN in_grants g WHERE g.id = d.grant_id AND d.grant_id IN ({ids})",
            (None, None),
            &counted,
        )
        .fetch_all(&mut *conn)
        .await?
        {
            let (Ok(customer), Ok(grant), Ok(date)) = (
                Id::parse(&row.try_get::<String, _>(0)?),
                Id::parse(&row.try_get::<String, _>(1)?),
                row.try_get::<String, _>(2)?.parse::<jiff::civil::Date>(),
            ) else {
                continue;
            };
            if let Some(inputs) = by_id.get_mut(&customer) {
                let days = inputs.pass_days.entry(grant).or_default();
                days.push(date);
                days.sort();
            }
        }
    }
    // Stays in teams someone else pays for, and those payers' contracts.
    let stays = for_page(
        "SELECT tm.customer_id, tm.team_id, tm.joined_at, tm.left_at, t.paying_member_id
            FROM team_memberships tm
            JOIN in_teams t ON t.id = tm.team_id
         WHERE tm.customer_id IN ({ids}) AND t.paying_member_id <> tm.customer_id
            AND (tm.left_at IS NULL OR tm.left_at >= $1)",
        (Some(since_ms), None),
        ids,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut payer_contracts: BTreeMap<String, Vec<Contract>> = BTreeMap::new();
    if !stays.is_empty() {
        // CROSS JOIN keeps SQLite to this order (from the customers' stays out) even before its
        // planner has statistics; without them it may start from every contract instead.
        for row in for_page(
            "SELECT DISTINCT c.customer_id, r.id, r.body FROM team_memberships tm
                CROSS JOIN in_teams t
                CROSS JOIN in_contracts c
                CROSS JOIN records r
             WHERE t.id = tm.team_id AND c.customer_id = t.paying_member_id
                AND r.kind = 'contract' AND r.id = c.id
                AND tm.customer_id IN ({ids}) AND t.paying_member_id <> tm.customer_id
                AND (tm.left_at IS NULL OR tm.left_at >= $1)
                AND (c.end_date IS NULL OR c.end_date >= $2)",
            since,
            ids,
        )
        .fetch_all(&mut *conn)
        .await?
        {
            if let Record::Contract(c) = parse(
                Kind::Contract,
                &row.try_get::<String, _>(1)?,
                &row.try_get::<String, _>(2)?,
            )? {
                payer_contracts.entry(row.try_get(0)?).or_default().push(c);
            }
        }
    }
    for row in stays {
        let (Ok(customer_id), Ok(team_id), Ok(paying_member_id)) = (
            Id::parse(&row.try_get::<String, _>(0)?),
            Id::parse(&row.try_get::<String, _>(1)?),
            Id::parse(&row.try_get::<String, _>(4)?),
        ) else {
            continue;
        };
        let Some(inputs) = by_id.get_mut(&customer_id) else {
            continue;
        };
        let membership = TeamMembership {
            team_id,
            customer_id,
            joined_at: ts(row.try_get(2)?),
            left_at: row.try_get::<Option<i64>, _>(3)?.map(ts),
        };
        for contract in payer_contracts
            .get(paying_member_id.as_str())
            .into_iter()
            .flatten()
        {
            inputs.team_contracts.push(TeamContract {
                membership: membership.clone(),
                paying_member_id: paying_member_id.clone(),
                contract: contract.clone(),
            });
        }
    }
    Ok(ids
        .iter()
        .filter_map(|id| by_id.remove(id))
        .map(|mut inputs| {
            inputs.catalog = involved(&full, &inputs);
            inputs
        })
        .collect())
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

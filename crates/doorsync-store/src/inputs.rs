//! Everything that decides one subject's access, gathered from the records: what they hold, the
//! teams they are in with their paying members' contracts, and the inventory and links involved.

use crate::record::{Kind, Record, link_key};
use crate::sql::{SqlStore, load, strings, ts};
use crate::*;
use doorsync_core::*;
use sqlx::Row;
use std::collections::BTreeSet;

pub(crate) async fn customer_inputs(store: &SqlStore, id: &Id) -> Result<Option<CustomerInputs>> {
    let mut conn = store.pool.acquire().await?;
    let Some(Record::Customer(customer)) = load(&mut conn, Kind::Customer, id.as_str()).await?
    else {
        return Ok(None);
    };
    let mut inputs = CustomerInputs {
        customer,
        bookings: vec![],
        pass_grants: vec![],
        contracts: vec![],
        team_contracts: vec![],
        catalog: Catalog::default(),
    };
    let held = sqlx::query("SELECT kind, id FROM refs WHERE ref_kind = 'customer' AND ref_id = $1 AND field = 'customer_id'")
        .bind(id.as_str())
        .fetch_all(&mut *conn)
        .await?;
    for row in held {
        let (kind, key): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let Some(kind) = Kind::parse(&kind) else {
            continue;
        };
        match load(&mut conn, kind, &key).await? {
            Some(Record::Booking(b)) => inputs.bookings.push(b),
            Some(Record::PassGrant(g)) => inputs.pass_grants.push(g),
            Some(Record::Contract(c)) => inputs.contracts.push(c),
            _ => {}
        }
    }
    let stays = sqlx::query(
        "SELECT team_id, joined_at, left_at FROM team_memberships WHERE customer_id = $1",
    )
    .bind(id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    for row in stays {
        let team_id: String = row.try_get(0)?;
        let Some(Record::Team(team)) = load(&mut conn, Kind::Team, &team_id).await? else {
            continue;
        };
        if team.paying_member_id == *id {
            continue;
        }
        let membership = TeamMembership {
            team_id: team.id.clone(),
            customer_id: id.clone(),
            joined_at: ts(row.try_get(1)?),
            left_at: row.try_get::<Option<i64>, _>(2)?.map(ts),
        };
        let contracts = strings(
            &mut conn,
            "SELECT id FROM refs WHERE ref_kind = 'customer' AND ref_id = $1 AND kind = 'contract' AND field = 'customer_id'",
            &[team.paying_member_id.as_str()],
        )
        .await?;
        for c in contracts {
            if let Some(Record::Contract(contract)) = load(&mut conn, Kind::Contract, &c).await? {
                inputs.team_contracts.push(TeamContract {
                    membership: membership.clone(),
                    paying_member_id: team.paying_member_id.clone(),
                    contract,
                });
            }
        }
    }
    let mut items: BTreeSet<(Kind, Id)> = BTreeSet::new();
    items.extend(
        inputs
            .bookings
            .iter()
            .map(|b| (Kind::Resource, b.resource_id.clone())),
    );
    items.extend(
        inputs
            .pass_grants
            .iter()
            .map(|g| (Kind::Pass, g.pass_id.clone())),
    );
    let all_contracts = inputs
        .contracts
        .iter()
        .chain(inputs.team_contracts.iter().map(|t| &t.contract));
    items.extend(all_contracts.flat_map(|c| c.desk_ids.iter().map(|d| (Kind::Desk, d.clone()))));
    let catalog = &mut inputs.catalog;
    let mut locations = BTreeSet::new();
    for (kind, item) in items {
        let (link_kind, location) = match load(&mut conn, kind, item.as_str()).await? {
            Some(Record::Resource(r)) => {
                let l = r.location_id.clone();
                catalog.resources.insert(item.clone(), r);
                (LinkKind::Resource, l)
            }
            Some(Record::Pass(p)) => {
                let l = p.location_id.clone();
                catalog.passes.insert(item.clone(), p);
                (LinkKind::Pass, l)
            }
            Some(Record::Desk(d)) => {
                let l = d.location_id.clone();
                catalog.desks.insert(item.clone(), d);
                (LinkKind::Desk, l)
            }
            _ => continue,
        };
        locations.insert(location);
        if let Some(Record::Link(link)) =
            load(&mut conn, Kind::Link, &link_key(link_kind, item.as_str())).await?
        {
            catalog.links.insert((link_kind, item), link.group_id);
        }
    }
    for l in locations {
        if let Some(Record::Location(loc)) = load(&mut conn, Kind::Location, l.as_str()).await? {
            catalog.locations.insert(l, loc);
        }
    }
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

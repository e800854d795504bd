//! Setup that cannot silently do nothing: a link to a group its connection's account does not
//! have, a location on a site the account does not have, a location without a connection whose
//! items are linked. Writes are refused once the directory is known; what a later directory read
//! (or a location losing its connection) breaks is listed for `sync/status`.

use crate::record::{Kind, Record};
use crate::sql::load;
use crate::{Result, StoreError};
use doorsync_core::{Id, Link, LinkKind, Location};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

/// A piece of setup that gives nobody access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SetupProblem {
    /// `link` or `location`.
    pub kind: &'static str,
    /// The link (`resource:R`) or the location id.
    pub id: String,
    pub field: &'static str,
    pub connection_id: Option<String>,
    /// `group_not_in_directory`, `site_not_in_directory` or `no_connection`.
    pub problem: &'static str,
    pub message: String,
}

/// Whether the connection's directory has been read since it last changed, and what it holds.
async fn known(
    conn: &mut AnyConnection,
    connection: &str,
    kind: &str,
    provider_id: &str,
) -> Result<Option<bool>> {
    let read = sqlx::query(
        "SELECT 1 FROM connection_state WHERE connection_id = $1 AND last_directory_at IS NOT NULL",
    )
    .bind(connection)
    .fetch_optional(&mut *conn)
    .await?
    .is_some();
    if !read {
        return Ok(None);
    }
    let found = sqlx::query(
        "SELECT 1 FROM provider_directory WHERE connection_id = $1 AND kind = $2 AND provider_id = $3",
    )
    .bind(connection)
    .bind(kind)
    .bind(provider_id)
    .fetch_optional(&mut *conn)
    .await?
    .is_some();
    Ok(Some(found))
}

/// The location an item belongs to.
async fn item_location(
    conn: &mut AnyConnection,
    kind: LinkKind,
    item: &Id,
) -> Result<Option<Location>> {
    let location_id = match (kind, load(conn, Kind::of_link(kind), item.as_str()).await?) {
        (LinkKind::Pass, Some(Record::Pass(p))) => p.location_id,
        (LinkKind::Resource, Some(Record::Resource(r))) => r.location_id,
        (LinkKind::Desk, Some(Record::Desk(d))) => d.location_id,
        _ => return Ok(None),
    };
    Ok(
        match load(conn, Kind::Location, location_id.as_str()).await? {
            Some(Record::Location(l)) => Some(l),
            _ => None,
        },
    )
}

async fn link_problem(conn: &mut AnyConnection, link: &Link) -> Result<Option<SetupProblem>> {
    let Some(location) = item_location(conn, link.kind, &link.item_id).await? else {
        return Ok(None);
    };
    let id = format!("{}:{}", link.kind.as_str(), link.item_id);
    let Some(connection) = location.connection_id.map(|c| c.to_string()) else {
        return Ok(None);
    };
    Ok(
        match known(conn, &connection, "group", link.group_id.as_str()).await? {
            Some(false) => Some(SetupProblem {
                kind: "link",
                id,
                field: "group_id",
                problem: "group_not_in_directory",
                message: format!(
                    "group {:?} is not one of the groups of connection {connection:?} (GET /api/v1/connections/{connection}/directory lists them)",
                    link.group_id.as_str()
                ),
                connection_id: Some(connection),
            }),
            _ => None,
        },
    )
}

async fn location_problem(
    conn: &mut AnyConnection,
    location: &Location,
) -> Result<Option<SetupProblem>> {
    let (Some(connection), Some(site)) = (&location.connection_id, &location.site_id) else {
        return Ok(None);
    };
    let connection = connection.to_string();
    Ok(match known(conn, &connection, "site", site).await? {
        Some(false) => Some(SetupProblem {
            kind: "location",
            id: location.id.to_string(),
            field: "site_id",
            problem: "site_not_in_directory",
            message: format!(
                "site {site:?} is not one of the sites of connection {connection:?} (GET /api/v1/connections/{connection}/directory lists them)"
            ),
            connection_id: Some(connection),
        }),
        None | Some(true) => None,
    })
}

/// Refuses a link or a location that names a group or site its connection's directory, once
/// read, does not have.
pub(crate) async fn check(conn: &mut AnyConnection, record: &Record) -> Result<()> {
    let problem = match record {
        Record::Link(l) => link_problem(conn, l).await?,
        Record::Location(l) => location_problem(conn, l).await?,
        _ => None,
    };
    match problem {
        Some(p) => Err(StoreError::Invalid {
            field: p.field,
            message: p.message,
        }),
        None => Ok(()),
    }
}

/// Every link and location that gives nobody access as things stand.
pub(crate) async fn problems(conn: &mut AnyConnection) -> Result<Vec<SetupProblem>> {
    let mut out = vec![];
    let rows = sqlx::query(
        "SELECT kind, id FROM records WHERE kind IN ('link', 'location') ORDER BY kind, id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?;
    let mut linked_locations = std::collections::BTreeMap::<String, usize>::new();
    for (kind, id) in keys {
        let kind = if kind == "link" {
            Kind::Link
        } else {
            Kind::Location
        };
        match load(conn, kind, &id).await? {
            Some(Record::Link(l)) => {
                if let Some(loc) = item_location(conn, l.kind, &l.item_id).await? {
                    *linked_locations.entry(loc.id.to_string()).or_default() += 1;
                }
                out.extend(link_problem(conn, &l).await?);
            }
            Some(Record::Location(l)) => out.extend(location_problem(conn, &l).await?),
            _ => {}
        }
    }
    for (location, links) in linked_locations {
        if let Some(Record::Location(l)) = load(conn, Kind::Location, &location).await?
            && l.connection_id.is_none()
        {
            out.push(SetupProblem {
                kind: "location",
                id: location,
                field: "connection_id",
                connection_id: None,
                problem: "no_connection",
                message: format!(
                    "the location has no connection, so its {links} linked item(s) give nobody access"
                ),
            });
        }
    }
    Ok(out)
}

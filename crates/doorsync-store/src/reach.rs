//! Who a write reaches: the subjects whose inputs a record touches, marked due in the writing
//! transaction (and, on PostgreSQL, announced to the other instances at commit).

use crate::record::{Kind, Record};
use crate::sql::{Backend, strings};
use crate::*;
use doorsync_core::*;
use sqlx::AnyConnection;
use std::collections::BTreeSet;

/// A parameter of a reach query, in the order the query numbers them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param {
    /// The id of the record written.
    Key,
    /// Epoch ms before which an ended booking, grant, stay or visit no longer matters.
    SinceMs,
    /// The same bound as a civil date, for contracts' end dates.
    SinceDate,
}

/// A query that selects the keys (`customer:ID`, `visitor:ID`) of the subjects a write reaches,
/// as column `s`, so that they are marked in one statement however many they are.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    sql: String,
    params: &'static [Param],
    key: String,
    /// The groups whose memberships the change may end, as a condition on `m`
    /// (`provider_memberships`) and `u` (`provider_users`) with the query's parameters; `None`:
    /// any. Only a subject that holds one is marked at revocation priority.
    may_end: Option<String>,
}

/// Who a record's change reaches: subjects named one by one, and sets selected in SQL.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    pub subjects: BTreeSet<Subject>,
    pub queries: Vec<Query>,
}

impl Reach {
    pub(crate) fn merge(mut self, other: Reach) -> Reach {
        self.subjects.extend(other.subjects);
        self.queries.extend(other.queries);
        self
    }
}

/// The time bounds of the queries at `now`.
pub(crate) struct Bounds {
    pub now_ms: i64,
    pub since_ms: i64,
    pub since_date: String,
}

impl Bounds {
    pub(crate) fn at(now: jiff::Timestamp) -> Bounds {
        let since = now
            .checked_sub(crate::project::RELEVANT_AFTER_END)
            .unwrap_or(now);
        // A contract's end date is a civil date in its location's zone: a day's slack on top.
        let day_before = since
            .checked_sub(jiff::SignedDuration::from_hours(24))
            .unwrap_or(since);
        Bounds {
            now_ms: crate::sql::ms(now),
            since_ms: crate::sql::ms(since),
            since_date: jiff::tz::TimeZone::UTC
                .to_datetime(day_before)
                .date()
                .to_string(),
        }
    }
}

use Param::*;

/// Customers holding a current booking, grant or contract (with the teams of its payer) of
/// items chosen by `items`, a condition on `i` (`in_items`) whose one parameter is the key;
/// and visitors at locations chosen by `visits`, a condition on `v` (`in_visitors`).
fn holders(items: &str, visits: &str) -> String {
    format!(
        "SELECT 'customer:' || b.customer_id AS s FROM in_items i
            JOIN in_bookings b ON b.resource_id = i.id
            WHERE i.kind = 'resource' AND {items} AND b.end_ms >= $2
         UNION SELECT 'customer:' || g.customer_id FROM in_items i
            JOIN in_grants g ON g.pass_id = i.id
            WHERE i.kind = 'pass' AND {items} AND g.until_ms >= $2
         UNION SELECT 'customer:' || c.customer_id FROM in_items i
            JOIN in_contract_desks d ON d.desk_id = i.id
            JOIN in_contracts c ON c.id = d.contract_id
            WHERE i.kind = 'desk' AND {items} AND (c.end_date IS NULL OR c.end_date >= $3)
         UNION SELECT 'customer:' || tm.customer_id FROM in_items i
            JOIN in_contract_desks d ON d.desk_id = i.id
            JOIN in_contracts c ON c.id = d.contract_id
            JOIN in_teams t ON t.paying_member_id = c.customer_id
            JOIN team_memberships tm ON tm.team_id = t.id
            WHERE i.kind = 'desk' AND {items} AND (c.end_date IS NULL OR c.end_date >= $3)
                AND (tm.left_at IS NULL OR tm.left_at >= $2)
         UNION SELECT 'visitor:' || v.id FROM in_visitors v WHERE {visits} AND v.until_ms >= $2"
    )
}

const KEY_SINCE_DATE: &[Param] = &[Key, SinceMs, SinceDate];

/// The groups linked to items chosen by `items` (a condition on `it`, `in_items`), and a
/// visitor's groups.
fn linked_groups(items: &str) -> String {
    format!(
        "u.subject LIKE 'visitor:%' OR m.group_id IN (SELECT lk.group_id FROM in_links lk
            JOIN in_items it ON it.kind = lk.kind AND it.id = lk.item_id WHERE {items})"
    )
}

fn at_location(location: &str) -> Query {
    Query {
        sql: holders("i.location_id = $1", "v.location_id = $1"),
        params: KEY_SINCE_DATE,
        key: location.to_owned(),
        may_end: Some(linked_groups("it.location_id = $1")),
    }
}

/// Whom a location's new lead or lag reaches: those with bookings of its rooms, and its
/// visitors (passes and contracts do not use the buffers); only a room's or a visitor's group
/// can be ended by it.
fn bookings_at_location(location: &str) -> Query {
    Query {
        sql: "SELECT 'customer:' || b.customer_id AS s FROM in_items i
                JOIN in_bookings b ON b.resource_id = i.id
                WHERE i.kind = 'resource' AND i.location_id = $1 AND b.end_ms >= $2
              UNION SELECT 'visitor:' || v.id FROM in_visitors v
                WHERE v.location_id = $1 AND v.until_ms >= $2"
            .into(),
        params: &[Key, SinceMs],
        key: location.to_owned(),
        may_end: Some(linked_groups(
            "it.location_id = $1 AND it.kind = 'resource'",
        )),
    }
}

/// Everyone at the connection's locations, and every subject with a user on it (exempt users
/// and the no-access policy concern them wherever their access came from).
fn on_connection(connection: &str) -> Query {
    let locations = "(SELECT id FROM in_locations WHERE connection_id = $1)";
    Query {
        sql: format!(
            "{} UNION SELECT subject FROM provider_users WHERE connection_id = $1",
            holders(
                &format!("i.location_id IN {locations}"),
                &format!("v.location_id IN {locations}")
            )
        ),
        params: KEY_SINCE_DATE,
        key: connection.to_owned(),
        may_end: None,
    }
}

fn holders_of_item(kind: Kind, id: &str) -> Query {
    let condition = format!("i.id = $1 AND i.kind = '{}'", kind.as_str());
    Query {
        sql: holders(&condition, "1 = 0"),
        params: KEY_SINCE_DATE,
        key: id.to_owned(),
        may_end: Some(format!(
            "m.group_id IN (SELECT lk.group_id FROM in_links lk WHERE lk.kind = '{}' AND lk.item_id = $1)",
            kind.as_str()
        )),
    }
}

/// Whoever doorsync put in the group: a link that moves or goes may take them out.
fn added_to_group(group: &str) -> Query {
    Query {
        sql: "SELECT DISTINCT u.subject AS s FROM provider_memberships m
              JOIN provider_users u ON u.connection_id = m.connection_id AND u.user_id = m.user_id
              WHERE m.group_id = $1 AND m.added = 1"
            .into(),
        params: &[Key],
        key: group.to_owned(),
        may_end: Some("m.group_id = $1".into()),
    }
}

/// Everyone who is or was in a team whose paying member is `customer`.
fn team_of_payer(customer: &str) -> Query {
    Query {
        sql: "SELECT DISTINCT 'customer:' || tm.customer_id AS s FROM in_teams t
              JOIN team_memberships tm ON tm.team_id = t.id
              WHERE t.paying_member_id = $1"
            .into(),
        params: &[Key],
        key: customer.to_owned(),
        may_end: None,
    }
}

/// Whom a record reaches, by itself (a subject's own record, a link, an item, a location).
pub(crate) async fn reach(conn: &mut AnyConnection, record: &Record) -> Result<Reach> {
    let mut out = Reach::default();
    match record {
        Record::Connection(c) => out.queries.push(on_connection(c.id.as_str())),
        Record::Location(l) => out.queries.push(at_location(l.id.as_str())),
        Record::Door(_) => {}
        Record::Customer(x) => {
            out.subjects.insert(Subject::Customer(x.id.clone()));
        }
        Record::Team(x) => {
            out.subjects.extend(
                strings(
                    conn,
                    "SELECT customer_id FROM team_memberships WHERE team_id = $1",
                    &[x.id.as_str()],
                )
                .await?
                .iter()
                .filter_map(|c| customer(c)),
            );
            out.subjects
                .extend(x.member_ids.iter().cloned().map(Subject::Customer));
        }
        Record::Booking(x) => {
            out.subjects
                .insert(Subject::Customer(x.customer_id.clone()));
        }
        Record::PassGrant(x) => {
            out.subjects
                .insert(Subject::Customer(x.customer_id.clone()));
        }
        Record::Contract(x) => {
            out.subjects
                .insert(Subject::Customer(x.customer_id.clone()));
            out.queries.push(team_of_payer(x.customer_id.as_str()));
        }
        Record::Visitor(x) => {
            out.subjects.insert(Subject::Visitor(x.id.clone()));
        }
        Record::Pass(_) | Record::Resource(_) | Record::Desk(_) => {
            out.queries
                .push(holders_of_item(record.kind(), &record.key()));
        }
        Record::Link(l) => {
            out.queries.push(added_to_group(l.group_id.as_str()));
            out.queries
                .push(holders_of_item(Kind::of_link(l.kind), l.item_id.as_str()));
        }
    }
    Ok(out)
}

/// Whom replacing `old` with `new` reaches: a change of name only reaches nobody, nor does a
/// change of where or how a connection signs in (its directory is read again instead), of its
/// call budget or rate, or of whether the member app lists doors.
pub(crate) async fn reach_change(
    conn: &mut AnyConnection,
    old: Option<&Record>,
    new: &Record,
) -> Result<Reach> {
    match (old, new) {
        // Written again as it was (a nightly reconciliation): nobody's access can change.
        (Some(o), n) if o == n => return Ok(Reach::default()),
        (Some(Record::Location(o)), Record::Location(n)) => {
            let renamed = Location {
                name: n.name.clone(),
                ..o.clone()
            };
            if &renamed == n {
                return Ok(Reach::default());
            }
            let rebuffered = Location {
                lead: n.lead,
                lag: n.lag,
                ..renamed
            };
            if &rebuffered == n {
                return Ok(Reach {
                    subjects: BTreeSet::new(),
                    queries: vec![bookings_at_location(n.id.as_str())],
                });
            }
        }
        (None, Record::Connection(_)) => return Ok(Reach::default()),
        (Some(Record::Connection(o)), Record::Connection(n)) => {
            let same_policy = Connection {
                api_url: n.api_url.clone(),
                auth_url: n.auth_url.clone(),
                credentials: n.credentials.clone(),
                monthly_call_budget: n.monthly_call_budget,
                requests_per_second: n.requests_per_second,
                list_doors_in_app: n.list_doors_in_app,
                ..o.clone()
            };
            if &same_policy == n {
                return Ok(Reach::default());
            }
        }
        (Some(Record::Resource(o)), Record::Resource(n)) => {
            let renamed = Resource {
                name: n.name.clone(),
                ..o.clone()
            };
            if &renamed == n {
                return Ok(Reach::default());
            }
        }
        (Some(Record::Pass(o)), Record::Pass(n)) => {
            let renamed = Pass {
                name: n.name.clone(),
                ..o.clone()
            };
            if &renamed == n {
                return Ok(Reach::default());
            }
        }
        (Some(Record::Desk(o)), Record::Desk(n)) => {
            let renamed = Desk {
                name: n.name.clone(),
                ..o.clone()
            };
            if &renamed == n {
                return Ok(Reach::default());
            }
        }
        _ => {}
    }
    let before = match old {
        Some(o) => reach(conn, o).await?,
        None => Reach::default(),
    };
    Ok(before.merge(reach(conn, new).await?))
}

/// The subjects `reach` selects, read (for the plan preview).
pub(crate) async fn subjects(
    conn: &mut AnyConnection,
    reach: Reach,
    bounds: &Bounds,
) -> Result<BTreeSet<Subject>> {
    let mut out = reach.subjects;
    for q in reach.queries {
        let rows = bind(sqlx::query(sqlx::AssertSqlSafe(q.sql.clone())), &q, bounds)
            .fetch_all(&mut *conn)
            .await?;
        for r in rows {
            out.extend(Subject::parse_key(&sqlx::Row::try_get::<String, _>(&r, 0)?));
        }
    }
    Ok(out)
}

fn bind<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    q: &Query,
    bounds: &Bounds,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for p in q.params {
        query = match p {
            Key => query.bind(q.key.clone()),
            SinceMs => query.bind(bounds.since_ms),
            SinceDate => query.bind(bounds.since_date.clone()),
        };
    }
    query
}

fn customer(id: &str) -> Option<Subject> {
    Id::parse(id).ok().map(Subject::Customer)
}

/// How a mark meets a subject's schedule row: the earlier due time wins, and so does its
/// priority, but a revocation already due no later than the mark keeps its own. A subject due
/// later to lose access, marked now for anything else, is claimed now as what it is marked for:
/// its reconcile then sets the priority of what comes next.
macro_rules! upsert_due {
    () => {
        "ON CONFLICT (subject) DO UPDATE SET
    priority = CASE WHEN schedule.next_due_at IS NOT NULL
            AND schedule.next_due_at <= excluded.next_due_at
            AND schedule.priority < excluded.priority
        THEN schedule.priority ELSE excluded.priority END,
    next_due_at = CASE
        WHEN schedule.next_due_at IS NULL OR schedule.next_due_at > excluded.next_due_at
        THEN excluded.next_due_at ELSE schedule.next_due_at END"
    };
}
pub(crate) const UPSERT_DUE: &str = upsert_due!();

/// Marks one subject due at `$2`, at normal priority.
pub(crate) const MARK_DUE: &str = concat!(
    "INSERT INTO schedule (subject, next_due_at, priority) VALUES ($1, $2, 1) ",
    upsert_due!()
);

/// How urgent a write's mark is. A write that may take access away (a change or a delete of
/// what someone holds) is claimed with the revocations, ahead of grants and invitations due
/// earlier, for each subject that holds a membership it may end: until its subject is
/// reconciled nobody knows whether it revokes, and access that lingers is the worst failure.
/// Everyone else it reaches is re-planned at normal priority, so that a real revocation never
/// waits behind thousands of reconciles that change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Urgency {
    /// Normal priority (a new record only gives access).
    Keep,
    /// Revocation priority (0), for a subject holding a membership the change may end, until
    /// the reconcile sets the subject's own.
    MayRevoke,
}

impl Urgency {
    /// The priority a mark of `subject` (an SQL expression) gives.
    fn priority(self, subject: &str, may_end: Option<&str>) -> String {
        match self {
            Urgency::Keep => "1".into(),
            Urgency::MayRevoke => format!(
                "CASE WHEN EXISTS (SELECT 1 FROM provider_users u
                    JOIN provider_memberships m ON m.connection_id = u.connection_id AND m.user_id = u.user_id
                    WHERE u.subject = {subject}{}) THEN 0 ELSE 1 END",
                may_end.map(|c| format!(" AND ({c})")).unwrap_or_default()
            ),
        }
    }
}

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

/// `sql` with its parameters `$1`, `$2`, ... numbered from `$first + 1` instead, so that
/// several queries can stand in one statement.
fn renumber(sql: &str, first: usize) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + first).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

/// Marks every subject `reach` names or selects due at `now`, in one statement however many
/// they are. The rows are taken in the order of their keys, so that two writes marking
/// overlapping sets at once wait for each other instead of deadlocking.
pub(crate) async fn mark(
    conn: &mut AnyConnection,
    reach: Reach,
    bounds: &Bounds,
    urgency: Urgency,
) -> Result<()> {
    if reach.subjects.is_empty() && reach.queries.is_empty() {
        return Ok(());
    }
    // $1: the subjects named, $2: now; then each query's own parameters.
    let mut sources = vec![format!(
        "SELECT j.value AS s, {} AS p FROM {} AS j",
        urgency.priority("j.value", None),
        crate::idset::elements(conn, 1)
    )];
    let mut next = 2;
    for (i, q) in reach.queries.iter().enumerate() {
        let priority = urgency.priority(&format!("q{i}.s"), q.may_end.as_deref());
        sources.push(format!(
            "SELECT q{i}.s, {} FROM ({}) q{i}",
            renumber(&priority, next),
            renumber(&q.sql, next)
        ));
        next += q.params.len();
    }
    // A subject reached twice gets its most urgent priority, as two marks one after the other
    // would give it.
    let sql = format!(
        "INSERT INTO schedule (subject, next_due_at, priority)
         SELECT x.s, $2, MIN(x.p) FROM ({}) x WHERE x.s IS NOT NULL GROUP BY x.s ORDER BY x.s
         {UPSERT_DUE}",
        sources.join(" UNION ALL ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(crate::idset::json(reach.subjects.iter().map(Subject::key)))
        .bind(bounds.now_ms);
    for q in &reach.queries {
        query = bind(query, q, bounds);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn renumber_moves_every_parameter() {
        assert_eq!(
            super::renumber("a = $1 AND b >= $2 OR c = $1 AND d = $12 AND e = '$'", 3),
            "a = $4 AND b >= $5 OR c = $4 AND d = $15 AND e = '$'"
        );
    }
}

//! Door events, kept once by the provider's event id, and what presence made of them: check-ins
//! (with what covered each), check-outs, failed check-ins, and the days used of passes.

use crate::sql::{SqlStore, ms, ts};
use crate::*;
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NewDoorEvent {
    pub event_id: String,
    pub occurred_at: Timestamp,
    pub provider_door_id: Option<String>,
    pub door_name: Option<String>,
    pub provider_user_id: Option<String>,
    pub granted: bool,
    pub action: String,
    /// The door was opened remotely (the provider names its administrator as the actor).
    pub remote_unlock: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DoorEvent {
    #[serde(flatten)]
    pub event: NewDoorEvent,
    pub connection_id: String,
    pub received_at: Timestamp,
    pub processed_at: Option<Timestamp>,
    /// `customer:ID` when the user is a customer's.
    pub subject: Option<String>,
    pub location_id: Option<String>,
    /// `check_in`, `check_out`, `failed_check_in`, `denied`, or `none` (a door without a role,
    /// or not one of a location's).
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Checkin {
    pub id: String,
    pub customer_id: String,
    pub location_id: String,
    /// The location's local date of the check-in.
    pub local_date: String,
    pub checked_in_at: Timestamp,
    pub checked_out_at: Option<Timestamp>,
    /// `booking`, `contract`, `pass`, `pass_day` or `same_day`.
    pub covered_kind: String,
    pub covered_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FailedCheckin {
    pub id: String,
    pub customer_id: Option<String>,
    pub provider_user_id: Option<String>,
    pub location_id: String,
    pub at: Timestamp,
    pub reason: String,
}

/// What presence makes of one door event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceWrite {
    /// A door event only (denied, a door without a role, a door of no location).
    Nothing,
    CheckIn {
        checkin: Checkin,
        /// A pass grant with a day count whose day this check-in used.
        pass_day: Option<String>,
    },
    /// Closes the customer's open check-in at the location, if any.
    CheckOut {
        customer_id: String,
        location_id: String,
        at: Timestamp,
    },
    Failed(FailedCheckin),
}

/// A customer's day at a location so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceDay {
    /// Days used of each of the customer's pass grants with a day count.
    pub days_used: BTreeMap<String, u32>,
    /// A covered check-in at the location on that local date, at or before the instant asked
    /// about (an event reported late is judged by what came before it).
    pub covered_today: bool,
}

/// Filters of the presence lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceFilter {
    pub customer_id: Option<String>,
    pub location_id: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

pub(crate) async fn save_events(
    store: &SqlStore,
    connection: &str,
    events: &[NewDoorEvent],
    now: Timestamp,
) -> Result<u64> {
    let mut tx = store.pool.begin().await?;
    let mut added = 0;
    for e in events {
        let done = sqlx::query(
            "INSERT INTO door_events (event_id, connection_id, occurred_at, provider_door_id,
                door_name, provider_user_id, granted, action, received_at, remote_unlock)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(e.event_id.as_str())
        .bind(connection)
        .bind(ms(e.occurred_at))
        .bind(e.provider_door_id.as_deref())
        .bind(e.door_name.as_deref())
        .bind(e.provider_user_id.as_deref())
        .bind(i64::from(e.granted))
        .bind(e.action.as_str())
        .bind(ms(now))
        .bind(i64::from(e.remote_unlock))
        .execute(&mut *tx)
        .await?;
        added += done.rows_affected();
    }
    tx.commit().await?;
    Ok(added)
}

const EVENT_COLUMNS: &str = "event_id, occurred_at, provider_door_id, door_name, provider_user_id, granted, action, connection_id, received_at, processed_at, subject, location_id, outcome, remote_unlock";

fn door_event(r: &AnyRow) -> Result<DoorEvent> {
    Ok(DoorEvent {
        event: NewDoorEvent {
            event_id: r.try_get(0)?,
            occurred_at: ts(r.try_get(1)?),
            provider_door_id: r.try_get(2)?,
            door_name: r.try_get(3)?,
            provider_user_id: r.try_get(4)?,
            granted: r.try_get::<i64, _>(5)? != 0,
            action: r.try_get(6)?,
            remote_unlock: r.try_get::<i64, _>(13)? != 0,
        },
        connection_id: r.try_get(7)?,
        received_at: ts(r.try_get(8)?),
        processed_at: r.try_get::<Option<i64>, _>(9)?.map(ts),
        subject: r.try_get(10)?,
        location_id: r.try_get(11)?,
        outcome: r.try_get(12)?,
    })
}

/// Events not processed yet, oldest first.
pub(crate) async fn pending(store: &SqlStore, limit: u32) -> Result<Vec<DoorEvent>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM door_events WHERE processed_at IS NULL
            ORDER BY occurred_at, event_id LIMIT $1"
    )))
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(door_event).collect()
}

pub(crate) async fn day(
    store: &SqlStore,
    customer: &str,
    location: &str,
    local_date: &str,
    at: Timestamp,
) -> Result<PresenceDay> {
    let mut out = PresenceDay::default();
    for r in sqlx::query(
        "SELECT d.grant_id, COUNT(*) FROM pass_days d
            JOIN in_grants g ON g.id = d.grant_id
         WHERE g.customer_id = $1 GROUP BY d.grant_id",
    )
    .bind(customer)
    .fetch_all(&store.pool)
    .await?
    {
        out.days_used
            .insert(r.try_get(0)?, r.try_get::<i64, _>(1)?.max(0) as u32);
    }
    out.covered_today = sqlx::query(
        "SELECT 1 FROM checkins WHERE customer_id = $1 AND location_id = $2 AND local_date = $3
            AND checked_in_at <= $4",
    )
    .bind(customer)
    .bind(location)
    .bind(local_date)
    .bind(ms(at))
    .fetch_optional(&store.pool)
    .await?
    .is_some();
    Ok(out)
}

/// Records what presence made of an event and marks it processed, in one transaction; an
/// event processed already (by another instance) changes nothing.
pub(crate) async fn record(
    store: &SqlStore,
    event_id: &str,
    subject: Option<&str>,
    location: Option<&str>,
    outcome: &str,
    write: &PresenceWrite,
    now: Timestamp,
) -> Result<bool> {
    let mut tx = store.pool.begin().await?;
    let claimed = sqlx::query(
        "UPDATE door_events SET processed_at = $1, subject = $2, location_id = $3, outcome = $4
            WHERE event_id = $5 AND processed_at IS NULL",
    )
    .bind(ms(now))
    .bind(subject)
    .bind(location)
    .bind(outcome)
    .bind(event_id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        return Ok(false);
    }
    match write {
        PresenceWrite::Nothing => {}
        PresenceWrite::CheckIn {
            checkin: c,
            pass_day,
        } => {
            sqlx::query(
                "INSERT INTO checkins (id, customer_id, location_id, local_date, checked_in_at,
                    covered_kind, covered_id) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(c.id.as_str())
            .bind(c.customer_id.as_str())
            .bind(c.location_id.as_str())
            .bind(c.local_date.as_str())
            .bind(ms(c.checked_in_at))
            .bind(c.covered_kind.as_str())
            .bind(c.covered_id.as_deref())
            .execute(&mut *tx)
            .await?;
            if let Some(grant) = pass_day {
                sqlx::query(
                    "INSERT INTO pass_days (grant_id, local_date, location_id, checkin_id)
                        VALUES ($1, $2, $3, $4) ON CONFLICT (grant_id, local_date) DO NOTHING",
                )
                .bind(grant.as_str())
                .bind(c.local_date.as_str())
                .bind(c.location_id.as_str())
                .bind(c.id.as_str())
                .execute(&mut *tx)
                .await?;
                // The last day of a grant may end its access: let the reconcile look.
                crate::members::mark_customer_due(&mut tx, &c.customer_id, now).await?;
                crate::reach::notify(&mut tx, store.backend).await?;
            }
        }
        PresenceWrite::CheckOut {
            customer_id,
            location_id,
            at,
        } => {
            sqlx::query(
                "UPDATE checkins SET checked_out_at = $1
                    WHERE customer_id = $2 AND location_id = $3 AND checked_out_at IS NULL
                        AND checked_in_at <= $1",
            )
            .bind(ms(*at))
            .bind(customer_id.as_str())
            .bind(location_id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        PresenceWrite::Failed(f) => {
            sqlx::query(
                "INSERT INTO failed_checkins (id, customer_id, provider_user_id, location_id, at,
                    reason) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(f.id.as_str())
            .bind(f.customer_id.as_deref())
            .bind(f.provider_user_id.as_deref())
            .bind(f.location_id.as_str())
            .bind(ms(f.at))
            .bind(f.reason.as_str())
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// Open check-ins of a local date before `local_date`, to close at their local midnight.
pub(crate) async fn open_before(store: &SqlStore, local_date: &str) -> Result<Vec<Checkin>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CHECKIN_COLUMNS} FROM checkins
            WHERE checked_out_at IS NULL AND local_date < $1"
    )))
    .bind(local_date)
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(checkin).collect()
}

pub(crate) async fn close(store: &SqlStore, id: &str, at: Timestamp) -> Result<()> {
    sqlx::query("UPDATE checkins SET checked_out_at = $1 WHERE id = $2 AND checked_out_at IS NULL")
        .bind(ms(at))
        .bind(id)
        .execute(&store.pool)
        .await?;
    Ok(())
}

const CHECKIN_COLUMNS: &str = "id, customer_id, location_id, local_date, checked_in_at, checked_out_at, covered_kind, covered_id";

fn checkin(r: &AnyRow) -> Result<Checkin> {
    Ok(Checkin {
        id: r.try_get(0)?,
        customer_id: r.try_get(1)?,
        location_id: r.try_get(2)?,
        local_date: r.try_get(3)?,
        checked_in_at: ts(r.try_get(4)?),
        checked_out_at: r.try_get::<Option<i64>, _>(5)?.map(ts),
        covered_kind: r.try_get(6)?,
        covered_id: r.try_get(7)?,
    })
}

/// One of the presence lists: its table, columns, time and id columns, and its customer column.
struct List {
    columns: &'static str,
    table: &'static str,
    time: &'static str,
    id: &'static str,
    customer: &'static str,
}

/// The query for a page of `list`, newest first, paged by `(time, id)` strictly before `before`.
/// Built here rather than with sqlx's `QueryBuilder`, which over the `Any` driver writes `?`
/// placeholders that PostgreSQL refuses.
fn filtered(
    list: &List,
    f: &PresenceFilter,
    before: Option<(i64, String)>,
    limit: u32,
) -> (String, Vec<Bind>) {
    let (time_col, id_col) = (list.time, list.id);
    let mut clauses = vec![];
    let mut binds = vec![];
    let mut n = 0;
    let mut push = |clause: String, b: Bind, binds: &mut Vec<Bind>, n: &mut usize| {
        *n += 1;
        clauses.push(clause.replace('?', &format!("${n}")));
        binds.push(b);
    };
    if let Some(c) = &f.customer_id {
        push(
            format!("{} = ?", list.customer),
            Bind::Text(c.clone()),
            &mut binds,
            &mut n,
        );
    }
    if let Some(l) = &f.location_id {
        push(
            "location_id = ?".into(),
            Bind::Text(l.clone()),
            &mut binds,
            &mut n,
        );
    }
    if let Some(s) = f.since {
        push(
            format!("{time_col} >= ?"),
            Bind::Int(ms(s)),
            &mut binds,
            &mut n,
        );
    }
    if let Some(u) = f.until {
        push(
            format!("{time_col} < ?"),
            Bind::Int(ms(u)),
            &mut binds,
            &mut n,
        );
    }
    if let Some((t, id)) = before {
        n += 2;
        clauses.push(format!(
            "({time_col} < ${} OR ({time_col} = ${} AND {id_col} < ${n}))",
            n - 1,
            n - 1
        ));
        binds.push(Bind::Int(t));
        binds.push(Bind::Text(id));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    binds.push(Bind::Int(i64::from(limit)));
    (
        format!(
            "SELECT {} FROM {} {filter} ORDER BY {time_col} DESC, {id_col} DESC LIMIT ${}",
            list.columns,
            list.table,
            n + 1
        ),
        binds,
    )
}

enum Bind {
    Text(String),
    Int(i64),
}

async fn fetch(store: &SqlStore, sql: String, binds: Vec<Bind>) -> Result<Vec<AnyRow>> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Int(i) => q.bind(i),
        };
    }
    Ok(q.fetch_all(&store.pool).await?)
}

/// A page cursor `TIME_MS:ID`.
pub fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (t, id) = c.split_once(':')?;
    Some((t.parse().ok()?, id.to_owned()))
}

pub(crate) async fn checkins(
    store: &SqlStore,
    f: &PresenceFilter,
    before: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<Checkin>> {
    let list = List {
        columns: CHECKIN_COLUMNS,
        table: "checkins",
        time: "checked_in_at",
        id: "id",
        customer: "customer_id",
    };
    let (sql, binds) = filtered(&list, f, before, limit);
    fetch(store, sql, binds)
        .await?
        .iter()
        .map(checkin)
        .collect()
}

pub(crate) async fn failed(
    store: &SqlStore,
    f: &PresenceFilter,
    before: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<FailedCheckin>> {
    let list = List {
        columns: "id, customer_id, provider_user_id, location_id, at, reason",
        table: "failed_checkins",
        time: "at",
        id: "id",
        customer: "customer_id",
    };
    let (sql, binds) = filtered(&list, f, before, limit);
    fetch(store, sql, binds)
        .await?
        .iter()
        .map(|r| {
            Ok(FailedCheckin {
                id: r.try_get(0)?,
                customer_id: r.try_get(1)?,
                provider_user_id: r.try_get(2)?,
                location_id: r.try_get(3)?,
                at: ts(r.try_get(4)?),
                reason: r.try_get(5)?,
            })
        })
        .collect()
}

pub(crate) async fn events(
    store: &SqlStore,
    f: &PresenceFilter,
    before: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<DoorEvent>> {
    let f = PresenceFilter {
        customer_id: f.customer_id.as_ref().map(|c| format!("customer:{c}")),
        ..f.clone()
    };
    let list = List {
        columns: EVENT_COLUMNS,
        table: "door_events",
        time: "occurred_at",
        id: "event_id",
        customer: "subject",
    };
    let (sql, binds) = filtered(&list, &f, before, limit);
    fetch(store, sql, binds)
        .await?
        .iter()
        .map(door_event)
        .collect()
}

/// Who is in now: check-ins still open on `local_date` at each location.
pub(crate) async fn open_on(
    store: &SqlStore,
    local_dates: &BTreeMap<String, String>,
) -> Result<Vec<Checkin>> {
    let mut out = vec![];
    for (location, date) in local_dates {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECKIN_COLUMNS} FROM checkins
                WHERE location_id = $1 AND local_date = $2 AND checked_out_at IS NULL
             ORDER BY checked_in_at"
        )))
        .bind(location.as_str())
        .bind(date.as_str())
        .fetch_all(&store.pool)
        .await?;
        for r in &rows {
            out.push(checkin(r)?);
        }
    }
    Ok(out)
}

pub(crate) async fn cursor(store: &SqlStore, connection: &str) -> Result<Option<Timestamp>> {
    Ok(
        sqlx::query("SELECT read_until FROM event_cursors WHERE connection_id = $1")
            .bind(connection)
            .fetch_optional(&store.pool)
            .await?
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .map(ts),
    )
}

pub(crate) async fn set_cursor(store: &SqlStore, connection: &str, at: Timestamp) -> Result<()> {
    sqlx::query(
        "INSERT INTO event_cursors (connection_id, read_until) VALUES ($1, $2)
            ON CONFLICT (connection_id) DO UPDATE SET read_until = excluded.read_until",
    )
    .bind(connection)
    .bind(ms(at))
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// A connection's event subscription: the public address it delivers to and the provider's id.
pub(crate) async fn subscription(
    store: &SqlStore,
    connection: &str,
) -> Result<Option<(String, String)>> {
    let row = sqlx::query(
        "SELECT url, provider_subscription_id FROM event_subscriptions WHERE connection_id = $1",
    )
    .bind(connection)
    .fetch_optional(&store.pool)
    .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

pub(crate) async fn save_subscription(
    store: &SqlStore,
    connection: &str,
    secret_hash: &str,
    url: &str,
    provider_id: &str,
    now: Timestamp,
) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    sqlx::query("DELETE FROM event_subscriptions WHERE connection_id = $1")
        .bind(connection)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO event_subscriptions (connection_id, secret_hash, url, provider_subscription_id,
            created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(connection)
    .bind(secret_hash)
    .bind(url)
    .bind(provider_id)
    .bind(ms(now))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The connection whose webhook secret has this hash.
pub(crate) async fn hook_connection(store: &SqlStore, secret_hash: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT connection_id FROM event_subscriptions WHERE secret_hash = $1")
        .bind(secret_hash)
        .fetch_optional(&store.pool)
        .await?;
    row.map(|r| Ok(r.try_get(0)?)).transpose()
}

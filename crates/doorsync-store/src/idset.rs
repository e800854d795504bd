//! A set of ids bound as one parameter (a JSON array) and read as a table, so that a statement
//! over a set is one statement with one parameter whatever the set's size: neither SQLite's
//! limit on an expression's depth (a long `OR` or `IN` list) nor PostgreSQL's 65,535 bound
//! parameters can refuse it, and a team of thousands costs a few statements, not thousands.

use sqlx::AnyConnection;

/// The JSON array bound for [`elements`].
pub(crate) fn json<S: AsRef<str>>(ids: impl IntoIterator<Item = S>) -> String {
    serde_json::Value::Array(
        ids.into_iter()
            .map(|s| serde_json::Value::String(s.as_ref().to_owned()))
            .collect(),
    )
    .to_string()
}

/// A subquery with one text column, `value`: the elements of the JSON array bound as `$n`.
/// Give it an alias (`{} AS j`) where it stands in a `FROM`.
pub(crate) fn elements(conn: &AnyConnection, n: usize) -> String {
    if is_postgres(conn) {
        format!("(SELECT value FROM jsonb_array_elements_text(CAST(${n} AS jsonb)))")
    } else {
        format!("(SELECT value FROM json_each(${n}))")
    }
}

/// `column` is one of the elements of the JSON array bound as `$n`. On PostgreSQL an array
/// compared with `= ANY`, not an `IN` subquery: knowing nothing of the array's length, the
/// planner may otherwise test every row of the table against every element (a team's 10,000
/// stays against 5,000 members who left: 4 s), where `= ANY` probes the column's index once
/// an element.
pub(crate) fn contains(conn: &AnyConnection, column: &str, n: usize) -> String {
    let set = elements(conn, n);
    if is_postgres(conn) {
        format!("{column} = ANY(ARRAY{set})")
    } else {
        format!("{column} IN {set}")
    }
}

pub(crate) fn is_postgres(conn: &AnyConnection) -> bool {
    conn.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME
}

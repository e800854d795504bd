//! Writes under pressure, over real HTTP on each backend: writers racing to create one id, and
//! teams and contracts as large as the documented limits (and one beyond).

use doorsync_core::Clock;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use testkit::{App, Backend};
use tokio::task::JoinSet;

/// The documented limits (README, "Limits").
const MAX_MEMBERS: usize = doorsync_store::MAX_TEAM_MEMBERS;
const MAX_DESKS: usize = doorsync_store::MAX_CONTRACT_DESKS;
// A team of 10,000 must work (issue 21).
const _: () = assert!(MAX_MEMBERS >= 10_000);

/// Location L with resource R, pass P and desk D; customers a and b.
async fn seed(app: &App) {
    let puts = [
        (
            "/api/v1/locations/L",
            json!({"name": "Soho", "timezone": "Europe/London"}),
        ),
        (
            "/api/v1/passes/P",
            json!({"location_id": "L", "name": "Day pass"}),
        ),
        (
            "/api/v1/resources/R",
            json!({"location_id": "L", "name": "Room 1"}),
        ),
        (
            "/api/v1/desks/D",
            json!({"location_id": "L", "name": "Desk"}),
        ),
        (
            "/api/v1/customers/a",
            json!({"name": "Ana", "email": "ana@example.com"}),
        ),
        (
            "/api/v1/customers/b",
            json!({"name": "Ben", "email": "ben@example.com"}),
        ),
    ];
    for (path, body) in puts {
        let (status, got) = app.put_json(path, body).await;
        assert_eq!(status, 201, "{path}: {got}");
    }
}

/// The body writer `w` sends for a new record of `collection`: writers differ, as two clients
/// pushing their own view of one record would.
fn racing_body(collection: &str, w: usize) -> Value {
    let name = format!("Writer {w}");
    let customer = ["a", "b"][w % 2];
    let members = [vec!["a", "b"], vec!["b"], vec!["a"]][w % 3].clone();
    let status = ["active", "cancelled"][w % 2];
    match collection {
        "customers" => json!({"name": name, "email": format!("w{w}@example.com")}),
        "bookings" => json!({"customer_id": customer, "resource_id": "R",
            "start": "2026-06-01T10:00:00Z", "end": format!("2026-06-01T1{}:00:00Z", 1 + w % 5)}),
        "teams" => {
            json!({"name": name, "paying_member_id": "a", "member_ids": members})
        }
        "contracts" => json!({"customer_id": customer, "desk_ids": ["D"],
            "start_date": "2026-06-01", "status": status}),
        "pass-grants" => json!({"customer_id": customer, "pass_id": "P",
            "valid_from": "2026-06-01T00:00:00Z", "valid_until": "2026-07-01T00:00:00Z"}),
        "visitors" => json!({"name": name, "email": "vi@example.com", "host_customer_id": "a",
            "location_id": "L", "arrival": "2026-06-01T14:00:00Z"}),
        other => panic!("no racing body for {other}"),
    }
}

/// Rows that a write doubled: a reference, a projection or an open team stay twice.
async fn doubled_rows(app: &App) -> Vec<String> {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
    let mut out = vec![];
    for sql in [
        "SELECT kind || ' ' || id || ' ' || ref_id FROM refs
            GROUP BY kind, id, field, ref_kind, ref_id HAVING COUNT(*) > 1",
        "SELECT team_id || ' ' || customer_id FROM team_memberships WHERE left_at IS NULL
            GROUP BY team_id, customer_id HAVING COUNT(*) > 1",
        "SELECT contract_id || ' ' || desk_id FROM in_contract_desks
            GROUP BY contract_id, desk_id HAVING COUNT(*) > 1",
    ] {
        out.extend(
            sqlx::query_scalar::<_, String>(sql)
                .fetch_all(&mut conn)
                .await
                .unwrap(),
        );
    }
    let _ = conn.close().await;
    out
}

/// Writers that `PUT` one new id at the same instant: each answers 200 or 201, exactly one of
/// them 201, and what they wrote holds no row twice. On PostgreSQL the writes truly overlap;
/// on SQLite they queue on its one writer.
async fn writers_racing_to_create_one_id_get_one_201_and_never_a_500(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    seed(&app).await;
    const ROUNDS: usize = 40;
    const WRITERS: usize = 4;
    let collections = [
        "customers",
        "bookings",
        "teams",
        "contracts",
        "pass-grants",
        "visitors",
    ];
    let mut failures = vec![];
    let mut races = 0;
    for round in 0..ROUNDS {
        let mut set = JoinSet::new();
        for collection in collections {
            let path = format!("/api/v1/{collection}/race-{round}");
            for w in 0..WRITERS {
                let request = app.put(&path, racing_body(collection, w + round));
                let path = path.clone();
                set.spawn(async move {
                    let res = request.send().await.expect("request");
                    let status = res.status().as_u16();
                    (path, status, res.text().await.unwrap_or_default())
                });
            }
            races += 1;
        }
        let mut created: BTreeMap<String, usize> = BTreeMap::new();
        while let Some(done) = set.join_next().await {
            let (path, status, body) = done.unwrap();
            match status {
                201 => *created.entry(path).or_default() += 1,
                200 => {
                    created.entry(path).or_default();
                }
                _ => failures.push(format!("{path}: {status} {body}")),
            }
        }
        for (path, n) in created {
            if n != 1 {
                failures.push(format!("{path}: {n} writers were told they created it"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} things went wrong in {races} races: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    assert_eq!(doubled_rows(&app).await, Vec::<String>::new());
    for collection in collections {
        let (status, _) = app
            .get_json(&format!("/api/v1/{collection}/race-{}", ROUNDS - 1))
            .await;
        assert_eq!(status, 200, "{collection}");
    }
    app.stop().await;
}

async fn post_batch(app: &App, operations: &Value) -> (u16, Value) {
    let res = app
        .client
        .post(app.url("/api/v1/batch"))
        .bearer_auth(&app.token)
        .json(&json!({ "operations": operations }))
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Batches carrying the same new records at once (a platform's load started twice): every
/// operation answers 200 or 201, and each record is created by exactly one of them.
async fn batches_racing_to_create_the_same_records_never_fail_an_item(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    seed(&app).await;
    const ROUNDS: usize = 15;
    const BATCHES: usize = 3;
    let mut failures = vec![];
    for round in 0..ROUNDS {
        // Customers and what they hold; a team and a contract send the chunk down the
        // one-record-at-a-time path on some rounds, the multi-row path on others.
        // Groups of operations; a later one may refer to an earlier one of its own group.
        let mut groups = vec![];
        for i in 0..20 {
            let c = format!("bc-{round}-{i}");
            groups.push(vec![
                json!({"op": "put", "collection": "customers", "id": c,
                    "body": {"name": "Cy", "email": format!("{c}@example.com")}}),
                json!({"op": "put", "collection": "bookings", "id": format!("bb-{round}-{i}"),
                    "body": {"customer_id": c, "resource_id": "R",
                        "start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z"}}),
            ]);
        }
        if round % 2 == 1 {
            groups.push(vec![
                json!({"op": "put", "collection": "teams", "id": format!("bt-{round}"),
                    "body": {"name": "T", "paying_member_id": "a", "member_ids": ["a", "b"]}}),
                json!({"op": "put", "collection": "contracts", "id": format!("bk-{round}"),
                    "body": {"customer_id": "a", "desk_ids": ["D"], "start_date": "2026-06-01"}}),
            ]);
        }
        let mut set = JoinSet::new();
        for b in 0..BATCHES {
            // Each batch in its own order: a writer is not promised its peers' order.
            let mut mine = groups.clone();
            if b % 2 == 1 {
                mine.reverse();
            }
            let ops: Vec<Value> = mine.into_iter().flatten().collect();
            let request = app
                .client
                .post(app.url("/api/v1/batch"))
                .bearer_auth(&app.token)
                .json(&json!({ "operations": ops }));
            set.spawn(async move {
                let res = request.send().await.expect("request");
                let status = res.status().as_u16();
                (
                    b,
                    status,
                    res.json::<Value>().await.unwrap_or(Value::Null),
                    ops,
                )
            });
        }
        let mut created: BTreeMap<String, usize> = BTreeMap::new();
        while let Some(done) = set.join_next().await {
            let (b, status, body, ops) = done.unwrap();
            if status != 200 {
                failures.push(format!("round {round} batch {b}: {status} {body}"));
                continue;
            }
            for r in body["results"].as_array().unwrap() {
                let op = &ops[r["index"].as_u64().unwrap() as usize];
                let key = format!("{}/{}", op["collection"], op["id"]);
                match r["status"].as_u64() {
                    Some(201) => *created.entry(key).or_default() += 1,
                    Some(200) => {
                        created.entry(key).or_default();
                    }
                    _ => failures.push(format!("round {round} batch {b} {key}: {r}")),
                }
            }
        }
        for (key, n) in created {
            if n != 1 {
                failures.push(format!("{key}: created by {n} batches"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    assert_eq!(doubled_rows(&app).await, Vec::<String>::new());
    app.stop().await;
}

/// Creates `n` records of `collection` with ids `{prefix}{i}`, in batches.
async fn create_many(
    app: &App,
    collection: &str,
    prefix: &str,
    n: usize,
    body: impl Fn(usize) -> Value,
) {
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(5_000) {
        let ops: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({"op": "put", "collection": collection, "id": format!("{prefix}{i}"), "body": body(i)}))
            .collect();
        let (status, got) = post_batch(app, &Value::Array(ops)).await;
        assert_eq!(status, 200, "{got:.300}");
        assert_eq!(got["summary"]["failed"], 0, "{:.300}", got.to_string());
    }
}

/// Subjects whose ids start with `prefix` that are due exactly at `at`.
async fn due_at(app: &App, prefix: &str, at: jiff::Timestamp) -> i64 {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM schedule WHERE subject LIKE $1 AND next_due_at = $2",
    )
    .bind(format!("customer:{prefix}%"))
    .bind(at.as_millisecond())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    n
}

async fn forget_due(app: &App) {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("UPDATE schedule SET next_due_at = NULL")
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
}

fn assert_refused(status: u16, body: &Value, field: &str, what: &str) {
    assert_eq!(status, 422, "{what}: {body:.300}");
    assert_eq!(body["error"]["field"], field, "{what}: {body:.300}");
}

/// A team of the largest size allowed is written (and changed) in a few statements and marks
/// every member due; one member more is refused naming `member_ids`, by every way in.
async fn a_team_as_large_as_the_limit_is_written_and_one_beyond_is_refused(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    seed(&app).await;
    create_many(
        &app,
        "customers",
        "m-",
        MAX_MEMBERS + 1,
        |i| json!({"name": "Member", "email": format!("m{i}@example.com")}),
    )
    .await;
    let members = |n: usize| -> Vec<String> { (0..n).map(|i| format!("m-{i}")).collect() };
    forget_due(&app).await;
    let now = app.clock.now();
    let team = json!({"name": "Big", "paying_member_id": "a", "member_ids": members(MAX_MEMBERS)});
    let (status, got) = app.put_json("/api/v1/teams/big", team).await;
    assert_eq!(status, 201, "{got:.300}");
    assert_eq!(got["member_ids"].as_array().unwrap().len(), MAX_MEMBERS);
    assert_eq!(due_at(&app, "m-", now).await, MAX_MEMBERS as i64);

    // Half leave: every member is marked again, those who left to lose access at once.
    forget_due(&app).await;
    let (status, got) = app
        .patch_json(
            "/api/v1/teams/big",
            json!({"member_ids": members(MAX_MEMBERS / 2)}),
        )
        .await;
    assert_eq!(status, 200, "{got:.300}");
    assert_eq!(due_at(&app, "m-", now).await, MAX_MEMBERS as i64);

    let beyond =
        json!({"name": "Big", "paying_member_id": "a", "member_ids": members(MAX_MEMBERS + 1)});
    let (status, got) = app.put_json("/api/v1/teams/big", beyond.clone()).await;
    assert_refused(status, &got, "member_ids", "PUT");
    let (status, got) = app
        .patch_json(
            "/api/v1/teams/big",
            json!({"member_ids": members(MAX_MEMBERS + 1)}),
        )
        .await;
    assert_refused(status, &got, "member_ids", "PATCH");
    let (status, got) = post_batch(
        &app,
        &json!([{"op": "put", "collection": "teams", "id": "big2", "body": beyond}]),
    )
    .await;
    assert_eq!(status, 200, "{got:.300}");
    assert_eq!(got["results"][0]["status"], 422, "{got:.300}");
    assert_eq!(
        got["results"][0]["error"]["field"], "member_ids",
        "{got:.300}"
    );
    // Nothing of the refused writes was kept.
    let (_, stored) = app.get_json("/api/v1/teams/big").await;
    assert_eq!(
        stored["member_ids"].as_array().unwrap().len(),
        MAX_MEMBERS / 2
    );
    assert_eq!(app.get_json("/api/v1/teams/big2").await.0, 404);
    app.stop().await;
}

/// A contract for as many desks as allowed is written; one desk more is refused naming
/// `desk_ids`.
async fn a_contract_as_large_as_the_limit_is_written_and_one_beyond_is_refused(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    seed(&app).await;
    create_many(
        &app,
        "desks",
        "d-",
        MAX_DESKS,
        |i| json!({"location_id": "L", "name": format!("Desk {i}")}),
    )
    .await;
    let desks = |n: usize| -> Vec<String> { (0..n).map(|i| format!("d-{i}")).collect() };
    let contract =
        |n: usize| json!({"customer_id": "a", "desk_ids": desks(n), "start_date": "2026-06-01"});
    let (status, got) = app
        .put_json("/api/v1/contracts/big", contract(MAX_DESKS))
        .await;
    assert_eq!(status, 201, "{got:.300}");
    let (status, got) = app
        .put_json("/api/v1/contracts/big", contract(MAX_DESKS))
        .await;
    assert_eq!(status, 200, "{got:.300}");
    let mut over = contract(MAX_DESKS);
    over["desk_ids"].as_array_mut().unwrap().push(json!("D"));
    let (status, got) = app.put_json("/api/v1/contracts/big", over.clone()).await;
    assert_refused(status, &got, "desk_ids", "PUT");
    let (status, got) = app
        .patch_json(
            "/api/v1/contracts/big",
            json!({"desk_ids": over["desk_ids"]}),
        )
        .await;
    assert_refused(status, &got, "desk_ids", "PATCH");
    let (status, got) = post_batch(
        &app,
        &json!([{"op": "put", "collection": "contracts", "id": "big2", "body": over}]),
    )
    .await;
    assert_eq!(status, 200, "{got:.300}");
    assert_eq!(got["results"][0]["status"], 422, "{got:.300}");
    assert_eq!(
        got["results"][0]["error"]["field"], "desk_ids",
        "{got:.300}"
    );
    // A missing desk among many is named.
    let mut ghost = contract(MAX_DESKS);
    ghost["desk_ids"][MAX_DESKS - 1] = json!("ghost");
    let (status, got) = app.put_json("/api/v1/contracts/big", ghost).await;
    assert_eq!(status, 422, "{got:.300}");
    assert_eq!(got["error"]["field"], "desk_ids", "{got:.300}");
    assert!(
        got["error"]["message"].as_str().unwrap().contains("ghost"),
        "{got}"
    );
    app.stop().await;
}

testkit::on_both_backends!(
    writers_racing_to_create_one_id_get_one_201_and_never_a_500,
    batches_racing_to_create_the_same_records_never_fail_an_item,
    a_team_as_large_as_the_limit_is_written_and_one_beyond_is_refused,
    a_contract_as_large_as_the_limit_is_written_and_one_beyond_is_refused,
);

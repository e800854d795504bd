//! The REST API over real HTTP, on each backend.

use serde_json::{Value, json};
use testkit::{App, Backend};

/// Location L (Europe/London) with pass P, resource R, desks D1 and D2, door X; customers a, b.
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
            json!({"location_id": "L", "name": "Room 1", "lead": "PT10M"}),
        ),
        (
            "/api/v1/desks/D1",
            json!({"location_id": "L", "name": "Office 1", "kind": "office"}),
        ),
        (
            "/api/v1/desks/D2",
            json!({"location_id": "L", "name": "Desk 2"}),
        ),
        (
            "/api/v1/doors/X",
            json!({"location_id": "L", "name": "Front door", "presence_role": "check_in"}),
        ),
        (
            "/api/v1/customers/a",
            json!({"name": "Ana", "email": "ana@example.com"}),
        ),
        (
            "/api/v1/customers/b",
            json!({"name": "Ben", "email": "ben@example.com", "phone": "+44 20 7946 0000"}),
        ),
    ];
    for (path, body) in puts {
        let (status, got) = app.put_json(path, body).await;
        assert_eq!(status, 201, "{path}: {got}");
    }
}

async fn every_collection_is_upserted_read_listed_and_deleted(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    seed(&app).await;
    let cases = [
        (
            "connections",
            json!({"api_url": "https://api.brivo.com/v1/api", "api_key": "k", "password": "p", "visitor_group_ids": ["9"]}),
        ),
        (
            "locations",
            json!({"name": "Annex", "timezone": "America/New_York", "lag": "PT5M"}),
        ),
        ("passes", json!({"location_id": "L", "name": "10-day pass"})),
        ("resources", json!({"location_id": "L", "name": "Booth"})),
        (
            "desks",
            json!({"location_id": "L", "name": "Desk 9", "kind": "desk"}),
        ),
        (
            "customers",
            json!({"name": "Cy", "email": "cy@example.com", "status": "suspended"}),
        ),
        (
            "teams",
            json!({"name": "Acme", "paying_member_id": "a", "member_ids": ["b"]}),
        ),
        (
            "bookings",
            json!({"customer_id": "a", "resource_id": "R", "start": "2026-06-01T10:00:00Z", "end": "2026-06-01T12:00:00+01:00"}),
        ),
        (
            "contracts",
            json!({"customer_id": "a", "desk_ids": ["D1", "D2"], "start_date": "2026-06-01", "end_date": "2026-12-31"}),
        ),
        (
            "pass-grants",
            json!({"customer_id": "b", "pass_id": "P", "valid_from": "2026-06-01T00:00:00Z", "valid_until": "2026-07-01T00:00:00Z", "uses": 10}),
        ),
        (
            "visitors",
            json!({"name": "Vi", "email": "vi@example.com", "host_customer_id": "a", "location_id": "L", "arrival": "2026-06-01T14:00:00Z"}),
        ),
        ("doors", json!({"location_id": "L", "name": "Floor 2"})),
    ];
    for (collection, body) in cases {
        let one = format!("/api/v1/{collection}/new-1");
        let (status, created) = app.put_json(&one, body.clone()).await;
        assert_eq!(status, 201, "{collection}: {created}");
        assert_eq!(created["id"], "new-1", "{collection}");
        let (status, again) = app.put_json(&one, body.clone()).await;
        assert_eq!(status, 200, "{collection}: the same PUT replaces");
        let (status, read) = app.get_json(&one).await;
        assert_eq!((status, &read), (200, &again), "{collection}");
        for (k, v) in body.as_object().unwrap() {
            if ["api_key", "password"].contains(&k.as_str()) {
                assert!(
                    read.get(k).is_none(),
                    "{collection}: secrets are never returned"
                );
            } else if k == "end" {
                assert_eq!(read[k], "2026-06-01T11:00:00Z", "instants come back in UTC");
            } else {
                assert_eq!(&read[k], v, "{collection}.{k}");
            }
        }
        // An empty merge patch changes nothing; a patch of one field changes only that one.
        let (status, patched) = app.patch_json(&one, json!({})).await;
        assert_eq!((status, &patched), (200, &read), "{collection}");
        let (field, value) = match collection {
            "connections" => ("no_access_policy", json!("suspend")),
            "locations" | "passes" | "resources" | "desks" | "customers" | "teams" | "visitors"
            | "doors" => ("name", json!("Patched")),
            "bookings" => ("status", json!("cancelled")),
            "contracts" => ("end_date", json!("2026-11-30")),
            "pass-grants" => ("uses", json!(3)),
            other => panic!("no patch case for {other}"),
        };
        let (status, patched) = app.patch_json(&one, json!({ field: value })).await;
        assert_eq!(status, 200, "{collection}: {patched}");
        assert_eq!(patched[field], value, "{collection}");
        for (k, v) in read.as_object().unwrap() {
            if k != field && k != "cancelled_at" && k != "status_since" {
                assert_eq!(
                    &patched[k], v,
                    "{collection}.{k} changed by a patch of {field}"
                );
            }
        }
        let (status, page) = app
            .get_json(&format!("/api/v1/{collection}?limit=500"))
            .await;
        assert_eq!(status, 200);
        assert!(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["id"] == "new-1"),
            "{collection}"
        );
        let res = app.delete(&one).send().await.unwrap();
        assert_eq!(res.status(), 204, "{collection}");
        assert_eq!(app.get_json(&one).await.0, 404, "{collection}");
        assert_eq!(
            app.delete(&one).send().await.unwrap().status(),
            404,
            "{collection}"
        );
    }
    app.stop().await;
}

async fn lists_page_with_a_cursor(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    for i in 0..7 {
        let body = json!({"name": format!("C{i}"), "email": format!("c{i}@example.com")});
        assert_eq!(
            app.put_json(&format!("/api/v1/customers/c{i}"), body)
                .await
                .0,
            201
        );
    }
    let mut seen = vec![];
    let mut path = "/api/v1/customers?limit=3".to_owned();
    loop {
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/customers?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
    for bad in ["limit=0", "limit=501", "limit=x", "colour=red"] {
        let (status, body) = app.get_json(&format!("/api/v1/customers?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    app.stop().await;
}

async fn tokens_guard_everything_but_health(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            app.client.get(app.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    for path in [
        "/api/v1/customers",
        "/api/v1/openapi.json",
        "/api/v1/customers/a/access",
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let res = app
            .client
            .get(app.url(path))
            .bearer_auth("ds_wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path}");
    }
    let res = app
        .client
        .put(app.url("/api/v1/customers/a"))
        .json(&json!({"name": "A", "email": "a@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        app.get_json("/api/v1/customers/a").await.0,
        404,
        "an unauthorised write leaves nothing"
    );
    app.stop().await;
}

/// Each bad request: its status, code and field, and proof that nothing was written.
async fn bad_input_is_refused_with_the_field_and_leaves_nothing(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    seed(&app).await;
    let booking = |start: &str, end: &str| json!({"customer_id": "a", "resource_id": "R", "start": start, "end": end});
    let long_id = format!("/api/v1/customers/{}", "x".repeat(129));
    let cases: Vec<(&str, &str, Value, u16, &str, &str)> = vec![
        (
            "malformed JSON",
            "/api/v1/customers/z",
            Value::String("{\"name\": ".into()),
            400,
            "malformed_json",
            "body",
        ),
        (
            "unknown field",
            "/api/v1/customers/z",
            json!({"name": "Z", "email": "z@example.com", "colour": "red"}),
            422,
            "validation_failed",
            "colour",
        ),
        (
            "wrong type",
            "/api/v1/customers/z",
            json!({"name": 5, "email": "z@example.com"}),
            422,
            "validation_failed",
            "name",
        ),
        (
            "missing field",
            "/api/v1/customers/z",
            json!({"name": "Z"}),
            422,
            "validation_failed",
            "email",
        ),
        (
            "not an e-mail",
            "/api/v1/customers/z",
            json!({"name": "Z", "email": "z at example"}),
            422,
            "validation_failed",
            "email",
        ),
        (
            "bad status",
            "/api/v1/customers/z",
            json!({"name": "Z", "email": "z@example.com", "status": "gone"}),
            422,
            "validation_failed",
            "status",
        ),
        (
            "empty name",
            "/api/v1/customers/z",
            json!({"name": "  ", "email": "z@example.com"}),
            422,
            "validation_failed",
            "name",
        ),
        (
            "forbidden id",
            "/api/v1/customers/a%20b",
            json!({"name": "Z", "email": "z@example.com"}),
            400,
            "invalid_id",
            "id",
        ),
        (
            "id too long",
            &long_id,
            json!({"name": "Z", "email": "z@example.com"}),
            400,
            "invalid_id",
            "id",
        ),
        (
            "ends before it starts",
            "/api/v1/bookings/z",
            booking("2026-06-01T11:00:00Z", "2026-06-01T10:00:00Z"),
            422,
            "validation_failed",
            "end",
        ),
        (
            "ends as it starts",
            "/api/v1/bookings/z",
            booking("2026-06-01T11:00:00Z", "2026-06-01T11:00:00Z"),
            422,
            "validation_failed",
            "end",
        ),
        (
            "no offset",
            "/api/v1/bookings/z",
            booking("2026-06-01T10:00:00", "2026-06-01T11:00:00Z"),
            422,
            "validation_failed",
            "start",
        ),
        (
            "unknown zone",
            "/api/v1/locations/z",
            json!({"name": "Z", "timezone": "Europe/Atlantis"}),
            422,
            "validation_failed",
            "timezone",
        ),
        (
            "bad duration",
            "/api/v1/locations/z",
            json!({"name": "Z", "timezone": "UTC", "lead": "15 minutes please"}),
            422,
            "validation_failed",
            "lead",
        ),
        (
            "negative lead",
            "/api/v1/resources/z",
            json!({"location_id": "L", "name": "Z", "lead": "-PT5M"}),
            422,
            "validation_failed",
            "lead",
        ),
        (
            "a date that does not exist",
            "/api/v1/contracts/z",
            json!({"customer_id": "a", "desk_ids": ["D1"], "start_date": "2026-02-30"}),
            422,
            "validation_failed",
            "start_date",
        ),
        (
            "contract ends before it starts",
            "/api/v1/contracts/z",
            json!({"customer_id": "a", "desk_ids": ["D1"], "start_date": "2026-06-02", "end_date": "2026-06-01"}),
            422,
            "validation_failed",
            "end_date",
        ),
        (
            "no desks",
            "/api/v1/contracts/z",
            json!({"customer_id": "a", "desk_ids": [], "start_date": "2026-06-02"}),
            422,
            "validation_failed",
            "desk_ids",
        ),
        (
            "desk listed twice",
            "/api/v1/contracts/z",
            json!({"customer_id": "a", "desk_ids": ["D1", "D1"], "start_date": "2026-06-02"}),
            422,
            "validation_failed",
            "desk_ids[1]",
        ),
        (
            "bad id inside the body",
            "/api/v1/contracts/z",
            json!({"customer_id": "a", "desk_ids": ["D1", "no way"], "start_date": "2026-06-02"}),
            422,
            "validation_failed",
            "desk_ids[1]",
        ),
        (
            "desk of another location",
            "/api/v1/contracts/z",
            json!({"customer_id": "a", "desk_ids": ["D1", "D-NY"], "start_date": "2026-06-02"}),
            422,
            "validation_failed",
            "desk_ids",
        ),
        (
            "unknown customer",
            "/api/v1/bookings/z",
            json!({"customer_id": "ghost", "resource_id": "R", "start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z"}),
            422,
            "unknown_reference",
            "customer_id",
        ),
        (
            "unknown resource",
            "/api/v1/bookings/z",
            json!({"customer_id": "a", "resource_id": "ghost", "start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z"}),
            422,
            "unknown_reference",
            "resource_id",
        ),
        (
            "unknown team member",
            "/api/v1/teams/z",
            json!({"name": "T", "paying_member_id": "a", "member_ids": ["b", "ghost"]}),
            422,
            "unknown_reference",
            "member_ids",
        ),
        (
            "unknown connection",
            "/api/v1/locations/z",
            json!({"name": "Z", "timezone": "UTC", "connection_id": "ghost"}),
            422,
            "unknown_reference",
            "connection_id",
        ),
        (
            "grant ends before it starts",
            "/api/v1/pass-grants/z",
            json!({"customer_id": "a", "pass_id": "P", "valid_from": "2026-06-02T00:00:00Z", "valid_until": "2026-06-01T00:00:00Z"}),
            422,
            "validation_failed",
            "valid_until",
        ),
        (
            "zero uses",
            "/api/v1/pass-grants/z",
            json!({"customer_id": "a", "pass_id": "P", "valid_from": "2026-06-01T00:00:00Z", "valid_until": "2026-06-02T00:00:00Z", "uses": 0}),
            422,
            "validation_failed",
            "uses",
        ),
        (
            "negative uses",
            "/api/v1/pass-grants/z",
            json!({"customer_id": "a", "pass_id": "P", "valid_from": "2026-06-01T00:00:00Z", "valid_until": "2026-06-02T00:00:00Z", "uses": -1}),
            422,
            "validation_failed",
            "uses",
        ),
        (
            "a duration in jiff's friendly form, not ISO 8601",
            "/api/v1/resources/z",
            json!({"location_id": "L", "name": "Room", "lead": "15m"}),
            422,
            "validation_failed",
            "lead",
        ),
        (
            "a duration finer than a millisecond",
            "/api/v1/resources/z",
            json!({"location_id": "L", "name": "Room", "lag": "PT0.0001S"}),
            422,
            "validation_failed",
            "lag",
        ),
        (
            "year 0000",
            "/api/v1/contracts/z",
            json!({"customer_id": "a", "desk_ids": ["D1"], "start_date": "0000-01-01"}),
            422,
            "validation_failed",
            "start_date",
        ),
        (
            "a booking in year 0000",
            "/api/v1/bookings/z",
            json!({"customer_id": "a", "resource_id": "R", "start": "0000-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z"}),
            422,
            "validation_failed",
            "start",
        ),
        (
            "a bidirectional override in a name",
            "/api/v1/customers/z",
            json!({"name": "Ana \u{202E}nimda", "email": "z@example.com"}),
            422,
            "validation_failed",
            "name",
        ),
        (
            "a bidirectional isolate in an e-mail",
            "/api/v1/customers/z",
            json!({"name": "Ana", "email": "z\u{2067}@example.com"}),
            422,
            "validation_failed",
            "email",
        ),
        (
            "visit ends before it starts",
            "/api/v1/visitors/z",
            json!({"name": "V", "email": "v@example.com", "host_customer_id": "a", "location_id": "L", "arrival": "2026-06-01T10:00:00Z", "departure": "2026-06-01T09:00:00Z"}),
            422,
            "validation_failed",
            "departure",
        ),
        (
            "not a URL",
            "/api/v1/connections/z",
            json!({"api_url": "ftp://x"}),
            422,
            "validation_failed",
            "api_url",
        ),
        (
            "plain http to a remote host",
            "/api/v1/connections/z",
            json!({"api_url": "http://api.example.com/v1/api"}),
            422,
            "validation_failed",
            "api_url",
        ),
        (
            "NUL in a URL",
            "/api/v1/connections/z",
            json!({"auth_url": "https://auth.example.com\u{0000}/x"}),
            422,
            "validation_failed",
            "auth_url",
        ),
        (
            "credentials in a URL",
            "/api/v1/connections/z",
            json!({"api_url": "https://me:pw@api.example.com"}),
            422,
            "validation_failed",
            "api_url",
        ),
        (
            "bad policy",
            "/api/v1/connections/z",
            json!({"no_access_policy": "shrug"}),
            422,
            "validation_failed",
            "no_access_policy",
        ),
        (
            "bad presence role",
            "/api/v1/doors/z",
            json!({"location_id": "L", "name": "Z", "presence_role": "sideways"}),
            422,
            "validation_failed",
            "presence_role",
        ),
        (
            "JSON that is not an object",
            "/api/v1/customers/z",
            json!([1, 2]),
            422,
            "validation_failed",
            "body",
        ),
    ];
    // A desk in another location, for the cross-location case.
    assert_eq!(
        app.put_json(
            "/api/v1/locations/NY",
            json!({"name": "NY", "timezone": "America/New_York"})
        )
        .await
        .0,
        201
    );
    assert_eq!(
        app.put_json(
            "/api/v1/desks/D-NY",
            json!({"location_id": "NY", "name": "NY desk"})
        )
        .await
        .0,
        201
    );
    for (what, path, body, status, code, field) in cases {
        let req = app.client.put(app.url(path)).bearer_auth(&app.token);
        let req = match &body {
            Value::String(raw) => req
                .header("content-type", "application/json")
                .body(raw.clone()),
            other => req.json(other),
        };
        let res = req.send().await.unwrap();
        let got_status = res.status().as_u16();
        let got: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(got_status, status, "{what}: {got}");
        assert_eq!(got["error"]["code"], code, "{what}: {got}");
        assert_eq!(got["error"]["field"], field, "{what}: {got}");
        assert!(
            got["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        let collection = path.split('/').nth(3).unwrap();
        let (_, after) = app.get_json(&format!("/api/v1/{collection}/z")).await;
        assert_eq!(
            after["error"]["code"], "not_found",
            "{what}: a rejected write leaves nothing"
        );
    }
    // Too big: 1 MiB and a byte.
    let big = format!(
        "{{\"name\": \"{}\", \"email\": \"z@example.com\"}}",
        "x".repeat(1024 * 1024)
    );
    let res = app
        .client
        .put(app.url("/api/v1/customers/z"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );
    let res = app
        .client
        .put(app.url("/api/v1/customers/z"))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("name=z")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(app.get_json("/api/v1/customers/z").await.0, 404);
    // No Content-Type, or one that only starts like JSON's: 415 too.
    for ct in [None, Some("application/jsonfoo")] {
        let mut req = app
            .client
            .put(app.url("/api/v1/customers/z"))
            .bearer_auth(&app.token)
            .body(r#"{"name": "Z", "email": "z@example.com"}"#);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 415, "{ct:?}");
    }
    assert_eq!(app.get_json("/api/v1/customers/z").await.0, 404);
    // Ids `.` and `..` name no record (sent raw: an HTTP client would resolve them away).
    for bad in ["%2E", "%2E%2E"] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let url = reqwest::Url::parse(&app.url("/")).unwrap();
        let mut s = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap()))
            .await
            .unwrap();
        let body = r#"{"name": "Dot", "email": "dot@example.com"}"#;
        let req = format!(
            "PUT /api/v1/customers/{bad} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            app.token,
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{bad}: {out}");
    }
    // Merge patches: null restores a default, a bad value names its field, nothing half-written.
    let (status, r) = app
        .patch_json("/api/v1/resources/R", json!({"lead": null}))
        .await;
    assert_eq!((status, &r["lead"]), (200, &Value::Null), "{r}");
    assert_eq!(r["name"], "Room 1", "{r}");
    let (status, r) = app
        .patch_json(
            "/api/v1/resources/R",
            json!({"lead": "15m", "name": "Renamed"}),
        )
        .await;
    assert_eq!((status, &r["error"]["field"]), (422, &json!("lead")), "{r}");
    assert_eq!(
        app.get_json("/api/v1/resources/R").await.1["name"],
        "Room 1"
    );
    let (status, r) = app
        .patch_json("/api/v1/resources/R", json!({"id": "other"}))
        .await;
    assert_eq!((status, &r["error"]["field"]), (422, &json!("id")), "{r}");
    let (status, _) = app.patch_json("/api/v1/resources/R", json!([1])).await;
    assert_eq!(status, 422);
    let (status, _) = app
        .patch_json("/api/v1/resources/ghost", json!({"name": "x"}))
        .await;
    assert_eq!(status, 404);
    // The scheme of the Authorization header is case-insensitive.
    for scheme in ["BEARER", "bearer", "Bearer", "bEaReR"] {
        let res = app
            .client
            .get(app.url("/api/v1/customers"))
            .header("authorization", format!("{scheme} {}", app.token))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{scheme}");
    }
    // A customer still referenced cannot be deleted, and stays.
    let booking = json!({"customer_id": "a", "resource_id": "R", "start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z"});
    assert_eq!(app.put_json("/api/v1/bookings/B", booking).await.0, 201);
    let res = app.delete("/api/v1/customers/a").send().await.unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "in_use"
    );
    assert_eq!(app.get_json("/api/v1/customers/a").await.0, 200);
    // Unknown routes and methods answer in the same error shape.
    let (status, body) = app.get_json("/api/v1/nothing-here").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let res = app
        .client
        .post(app.url("/api/v1/customers/a"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    app.stop().await;
}

async fn links_control_items_and_access_explains_why(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    seed(&app).await;
    // The app's clock reads 2026-06-01T09:00Z; the booking starts at 10:00 with a 10-minute lead.
    let booking = json!({"customer_id": "a", "resource_id": "R", "start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z"});
    assert_eq!(app.put_json("/api/v1/bookings/B", booking).await.0, 201);
    let (_, access) = app.get_json("/api/v1/customers/a/access").await;
    assert_eq!(
        access["groups"],
        json!([]),
        "an unlinked room opens nothing: {access}"
    );
    let (status, link) = app
        .put_json("/api/v1/links/resource/R", json!({"group_id": "501"}))
        .await;
    assert_eq!(status, 201, "{link}");
    assert_eq!(
        link,
        json!({"kind": "resource", "item_id": "R", "group_id": "501"})
    );
    assert_eq!(
        app.put_json("/api/v1/links/resource/R", json!({"group_id": "502"}))
            .await
            .0,
        200
    );
    assert_eq!(
        app.get_json("/api/v1/links/resource/R").await.1["group_id"],
        "502"
    );
    let (_, access) = app.get_json("/api/v1/customers/a/access").await;
    let groups = access["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{access}");
    assert_eq!(groups[0]["group_id"], "502");
    assert_eq!(groups[0]["state"], "due");
    assert_eq!(groups[0]["from"], "2026-06-01T09:50:00Z");
    assert_eq!(groups[0]["until"], "2026-06-01T11:15:00Z");
    assert_eq!(groups[0]["reasons"][0]["cause"]["booking_id"], "B");
    app.clock.set("2026-06-01T10:30:00Z".parse().unwrap());
    let (_, access) = app.get_json("/api/v1/customers/a/access").await;
    // Entitled now, but the location has no connection, so nothing opens: it says so.
    assert_eq!(access["groups"][0]["state"], "no_connection", "{access}");
    assert_eq!(access["customer_id"], "a", "{access}");
    // A contract reaches the team of its paying member.
    assert_eq!(
        app.put_json("/api/v1/links/desk/D1", json!({"group_id": "601"}))
            .await
            .0,
        201
    );
    let contract = json!({"customer_id": "a", "desk_ids": ["D1"], "start_date": "2026-06-01"});
    assert_eq!(app.put_json("/api/v1/contracts/K", contract).await.0, 201);
    assert_eq!(
        app.put_json(
            "/api/v1/teams/T",
            json!({"name": "Acme", "paying_member_id": "a", "member_ids": ["b"]})
        )
        .await
        .0,
        201
    );
    let (_, access) = app.get_json("/api/v1/customers/b/access").await;
    assert_eq!(access["groups"][0]["group_id"], "601", "{access}");
    assert_eq!(
        access["groups"][0]["reasons"][0]["cause"]["kind"],
        "team_contract"
    );
    // Bad link requests.
    assert_eq!(
        app.put_json("/api/v1/links/planet/R", json!({"group_id": "1"}))
            .await
            .0,
        400
    );
    assert_eq!(
        app.put_json("/api/v1/links/resource/ghost", json!({"group_id": "1"}))
            .await
            .0,
        404
    );
    assert_eq!(
        app.put_json("/api/v1/links/resource/R", json!({"group_id": ""}))
            .await
            .0,
        422
    );
    assert_eq!(app.get_json("/api/v1/customers/ghost/access").await.0, 404);
    let (_, links) = app.get_json("/api/v1/links").await;
    assert_eq!(links["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.delete("/api/v1/links/resource/R")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(app.get_json("/api/v1/links/resource/R").await.0, 404);
    app.stop().await;
}

async fn openapi_describes_every_route(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    let (status, doc) = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    // The description is gathered from the routers' handlers; each operation it names must
    // reach a handler: the router's own "no such route" and "method not allowed" never answer.
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{kind}", "resource")
            .replace("{id}", "x")
            .replace("{item_id}", "x");
        for method in item.as_object().unwrap().keys() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let res = app
                .client
                .request(method.clone(), app.url(&concrete))
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            let code = body["error"]["code"].as_str().unwrap_or("");
            assert!(
                status != 405 && !(status == 404 && body["error"]["message"] == "no such route"),
                "{method} {path} is described but not routed: {status} {code}"
            );
            operations += 1;
        }
    }
    assert!(operations > 70, "{operations} operations described");
    // Every response of every operation is typed: JSON answers name a schema, never a free
    // object, and every operation has a success answer.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|c| c.starts_with('2')),
                "{method} {path} has no success answer"
            );
            for (code, r) in responses {
                if let Some(schema) = r.pointer("/content/application~1json/schema") {
                    assert!(
                        schema.get("$ref").is_some() || path == "/api/v1/openapi.json",
                        "{method} {path} {code} answers an unnamed schema: {schema}"
                    );
                }
            }
        }
    }
    // Every schema a path names exists.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in text
        .split("#/components/schemas/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
    {
        assert!(schemas.contains_key(name), "missing schema {name}");
    }
    for path in [
        "/app/api/v1/me",
        "/app/api/v1/doors/{id}/unlock",
        "/app/api/v1/session",
    ] {
        assert!(paths.contains_key(path), "{path} is not described");
    }
    app.stop().await;
}

/// Every field of every collection, replaced by each wrong kind of value or left out, and bodies
/// that are not objects at all: always a 4xx or a 2xx in the error shape, never a 5xx.
async fn no_mangled_body_gets_a_500(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    seed(&app).await;
    let valid = [
        (
            "connections",
            json!({"api_url": "https://x.example/v1/api", "no_access_policy": "suspend", "visitor_group_ids": ["1"], "exempt_user_ids": [], "enabled": true, "monthly_call_budget": 1000}),
        ),
        (
            "locations",
            json!({"name": "N", "timezone": "UTC", "lead": "PT1M", "lag": "PT1M"}),
        ),
        ("passes", json!({"location_id": "L", "name": "N"})),
        (
            "resources",
            json!({"location_id": "L", "name": "N", "lead": "PT1M"}),
        ),
        (
            "desks",
            json!({"location_id": "L", "name": "N", "kind": "desk"}),
        ),
        (
            "doors",
            json!({"location_id": "L", "name": "N", "presence_role": "none"}),
        ),
        (
            "customers",
            json!({"name": "N", "email": "n@example.com", "phone": "1", "status": "active"}),
        ),
        (
            "teams",
            json!({"name": "N", "paying_member_id": "a", "member_ids": ["b"]}),
        ),
        (
            "bookings",
            json!({"customer_id": "a", "resource_id": "R", "start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z", "status": "confirmed"}),
        ),
        (
            "contracts",
            json!({"customer_id": "a", "desk_ids": ["D1"], "start_date": "2026-06-01", "end_date": "2026-06-30", "status": "active"}),
        ),
        (
            "pass-grants",
            json!({"customer_id": "a", "pass_id": "P", "valid_from": "2026-06-01T00:00:00Z", "valid_until": "2026-07-01T00:00:00Z", "uses": 3}),
        ),
        (
            "visitors",
            json!({"name": "V", "email": "v@example.com", "host_customer_id": "a", "location_id": "L", "arrival": "2026-06-01T10:00:00Z", "departure": "2026-06-01T12:00:00Z"}),
        ),
    ];
    let wrong = [
        Value::Null,
        json!(0),
        json!(-1),
        json!(1e300),
        json!(""),
        json!("x\u{0}y"),
        json!("9999-99-99T99:99:99Z"),
        json!([]),
        json!({}),
        json!(true),
        Value::String("ä".repeat(5000)),
    ];
    let mut tried = 0;
    for (collection, body) in &valid {
        let path = format!("/api/v1/{collection}/fuzz");
        assert!(
            matches!(app.put_json(&path, body.clone()).await.0, 200 | 201),
            "{collection} base body"
        );
        let fields: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        for field in &fields {
            let mut without = body.clone();
            without.as_object_mut().unwrap().remove(field);
            let mut variants = vec![without];
            for w in &wrong {
                let mut v = body.clone();
                v[field.as_str()] = w.clone();
                variants.push(v);
            }
            for v in variants {
                let (status, got) = app.put_json(&path, v.clone()).await;
                tried += 1;
                assert!(
                    status < 500,
                    "{collection}.{field}: {status} for {v}: {got}"
                );
                if status >= 400 {
                    assert!(
                        got["error"]["code"].is_string(),
                        "{collection}.{field}: error shape {got}"
                    );
                }
            }
        }
        for raw in [
            "",
            "null",
            "[]",
            "\"x\"",
            "{\"a\":",
            &"[".repeat(5000),
            "{\"name\": \"\\ud800\"}",
        ] {
            let res = app
                .client
                .put(app.url(&path))
                .bearer_auth(&app.token)
                .header("content-type", "application/json")
                .body(raw.to_owned())
                .send()
                .await
                .unwrap();
            tried += 1;
            assert!(
                res.status().is_client_error(),
                "{collection}: {} for {raw:.40}",
                res.status()
            );
        }
    }
    assert!(tried > 500, "{tried}");
    app.stop().await;
}

testkit::on_both_backends!(
    no_mangled_body_gets_a_500,
    every_collection_is_upserted_read_listed_and_deleted,
    lists_page_with_a_cursor,
    tokens_guard_everything_but_health,
    bad_input_is_refused_with_the_field_and_leaves_nothing,
    links_control_items_and_access_explains_why,
    openapi_describes_every_route,
    a_batch_applies_each_operation_on_its_own_in_order,
    times_outside_the_years_served_are_refused_in_words,
    readyz_keeps_the_database_error_to_the_log,
);

/// Anyone may ask whether doorsync is ready; the database's own error text (its host, its user,
/// what failed) goes to the log, not to them.
async fn readyz_keeps_the_database_error_to_the_log(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.store.close().await;
    let cause = doorsync_store::Store::ping(app.store.as_ref())
        .await
        .unwrap_err()
        .to_string();
    for ask in [app.client.get(app.url("/readyz")), app.get("/readyz")] {
        let res = ask.send().await.unwrap();
        assert_eq!(res.status(), 503);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_ready", "{body}");
        assert_eq!(
            body["error"]["message"],
            "doorsync cannot reach its database; the details are in its log",
            "{body}"
        );
        assert!(!body.to_string().contains(&cause), "{body}");
    }
    app.stop().await;
}

/// What the API says of a time it cannot take, in the README's words (no parser's internals).
const INSTANT_WORDS: &str = "must be an RFC 3339 instant with an offset, such as 2026-06-01T10:00:00Z, in the years 1900 to 9998";
const DATE_WORDS: &str = "must be a date YYYY-MM-DD in the years 1900 to 9998";

/// A booking in year 9999 (or any time past what the rules compute with, or not a time at all)
/// is a 422 naming the field, in words, through PUT, PATCH and the batch alike.
async fn times_outside_the_years_served_are_refused_in_words(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    seed(&app).await;
    let ok_start = "2026-06-01T10:00:00Z";
    let ok_end = "2026-06-01T11:00:00Z";
    let booking = |start: &str, end: &str| json!({"customer_id": "a", "resource_id": "R", "start": start, "end": end});
    let grant = |from: &str, until: &str| json!({"customer_id": "a", "pass_id": "P", "valid_from": from, "valid_until": until});
    let visitor = |arrival: &str, departure: &str| json!({"name": "Vi", "email": "vi@example.com", "host_customer_id": "a", "location_id": "L", "arrival": arrival, "departure": departure});
    let contract = |start: &str, end: &str| json!({"customer_id": "a", "desk_ids": ["D1"], "start_date": start, "end_date": end});
    let mut cases: Vec<(&str, Value, &str, &str)> = vec![];
    for bad in [
        "9999-12-31T23:59:59Z",
        "9999-12-30T00:00:00Z",
        "9999-01-01T00:00:00Z",
        "1899-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
        "+10000-01-01T00:00:00Z",
        "2026-06-01T10:00:00",
        "tomorrow",
    ] {
        cases.push(("bookings", booking(ok_start, bad), "end", INSTANT_WORDS));
        cases.push(("bookings", booking(bad, ok_end), "start", INSTANT_WORDS));
        cases.push((
            "pass-grants",
            grant(ok_start, bad),
            "valid_until",
            INSTANT_WORDS,
        ));
        cases.push((
            "visitors",
            visitor(ok_start, bad),
            "departure",
            INSTANT_WORDS,
        ));
        cases.push(("visitors", visitor(bad, ok_end), "arrival", INSTANT_WORDS));
    }
    for bad in [
        "9999-12-31",
        "10000-01-01",
        "1899-12-31",
        "2026-13-01",
        "soon",
    ] {
        cases.push((
            "contracts",
            contract("2026-06-01", bad),
            "end_date",
            DATE_WORDS,
        ));
        cases.push((
            "contracts",
            contract(bad, "2026-06-30"),
            "start_date",
            DATE_WORDS,
        ));
    }
    for (i, (collection, body, field, words)) in cases.iter().enumerate() {
        let (status, answer) = app
            .put_json(&format!("/api/v1/{collection}/y{i}"), body.clone())
            .await;
        assert_eq!(status, 422, "{collection} {body}: {answer}");
        let e = &answer["error"];
        assert_eq!(
            (
                e["code"].as_str(),
                e["field"].as_str(),
                e["message"].as_str()
            ),
            (Some("validation_failed"), Some(*field), Some(*words)),
            "{collection} {body}"
        );
    }
    // The same through a merge patch of a stored booking, and through the batch.
    let (status, _) = app
        .put_json("/api/v1/bookings/ok", booking(ok_start, ok_end))
        .await;
    assert_eq!(status, 201);
    let (status, answer) = app
        .patch_json(
            "/api/v1/bookings/ok",
            json!({"end": "9999-12-31T23:59:59Z"}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["field"], "end", "{answer}");
    assert_eq!(answer["error"]["message"], INSTANT_WORDS, "{answer}");
    let operations: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (collection, body, _, _))| json!({"op": "put", "collection": collection, "id": format!("z{i}"), "body": body}))
        .collect();
    let res = app
        .client
        .post(app.url("/api/v1/batch"))
        .bearer_auth(&app.token)
        .json(&json!({"operations": operations}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    for (r, (collection, sent, field, words)) in
        body["results"].as_array().unwrap().iter().zip(&cases)
    {
        assert_eq!(r["status"], 422, "{collection} {sent}: {r}");
        assert_eq!(r["error"]["field"], *field, "{collection} {sent}: {r}");
        assert_eq!(r["error"]["message"], *words, "{collection} {sent}: {r}");
    }
    // The last year served is taken, buffers and all.
    let (status, answer) = app
        .put_json(
            "/api/v1/bookings/late",
            booking("9998-12-31T22:00:00Z", "9998-12-31T23:59:59.999Z"),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = app.get_json("/api/v1/customers/a/access").await;
    assert_eq!(status, 200, "{answer}");
    // Filters take the same instants, and say so in the same words.
    let res = app
        .get("/api/v1/audit?since=9999-12-31T23:59:59Z")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["error"]["field"], "since", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with(INSTANT_WORDS),
        "{answer}"
    );
    app.stop().await;
}

mod limits {
    use axum::Router;
    use axum::routing::get;
    use doorsync_web::server::{Limits, serve};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn start(
        limits: Limits,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().route("/healthz", get(|| async { "ok\n" }));
        let task = tokio::spawn(async move {
            serve(listener, app, limits, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        (addr, stop, task)
    }

    /// A connection that sends half a request and then nothing.
    async fn half_request(addr: std::net::SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        s
    }

    /// Reads until the server closes; `true` when it did within `within`.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(within, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    async fn health(addr: std::net::SocketAddr) -> Option<String> {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .ok()?
            .ok()?;
        Some(out)
    }

    #[tokio::test]
    async fn slow_clients_are_cut_off_and_cannot_starve_the_service() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(300),
            max_connections: 8,
            per_client: 8,
            drain_timeout: Duration::from_secs(1),
        };
        let (addr, stop, task) = start(limits).await;
        let mut slow = vec![];
        for _ in 0..8 {
            slow.push(half_request(addr).await);
        }
        // Over the cap: it takes the place of one waiting, and is cut off in its turn.
        let mut extra = half_request(addr).await;
        assert!(closed_within(&mut extra, Duration::from_secs(5)).await);
        // The slow ones are cut off by the header deadline...
        for s in &mut slow {
            assert!(
                closed_within(s, Duration::from_secs(5)).await,
                "a half-sent request held its connection open"
            );
        }
        // ...and an idle keep-alive connection too.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(closed_within(&mut idle, Duration::from_secs(5)).await);
        // Then the service answers again.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut answered = None;
        while tokio::time::Instant::now() < deadline {
            answered = health(addr).await;
            if answered.is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            answered.is_some_and(|a| a.starts_with("HTTP/1.1 200")),
            "no answer after the slow clients were cut off"
        );
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_ends_within_its_drain_time_despite_a_half_sent_request() {
        let limits = Limits {
            header_read_timeout: Duration::from_secs(600),
            max_connections: 8,
            per_client: 8,
            drain_timeout: Duration::from_millis(500),
        };
        let (addr, stop, task) = start(limits).await;
        let _held = half_request(addr).await;
        // Let the server take the connection before it is told to stop.
        assert!(health(addr).await.is_some());
        stop.send(()).unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_ok(),
            "shutdown waited for a client that never finishes its request"
        );
    }
}

async fn a_batch_applies_each_operation_on_its_own_in_order(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    seed(&app).await;
    let put = |collection: &str, id: &str, body: Value| json!({"op": "put", "collection": collection, "id": id, "body": body});
    let booking = |customer: &str| json!({"customer_id": customer, "resource_id": "R", "start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z"});
    let operations = json!([
        put("customers", "c1", json!({"name": "Cy", "email": "cy@example.com"})),
        // Refers to the customer created just before it, in the same chunk.
        put("bookings", "bk1", booking("c1")),
        put("bookings", "bk2", booking("ghost")),
        {"op": "patch", "collection": "customers", "id": "c1", "body": {"name": "Cy Twice"}},
        put("links", "resource/R", json!({"group_id": "77"})),
        {"op": "delete", "collection": "customers", "id": "a-missing-one"},
        {"op": "delete", "collection": "customers", "id": "c1"},
        {"op": "explode", "collection": "customers", "id": "c1"},
        put("customers", "a", json!({"name": "Ana", "email": "ana@example.com"})),
    ]);
    let res = app
        .client
        .post(app.url("/api/v1/batch"))
        .bearer_auth(&app.token)
        .json(&json!({"operations": operations}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [201, 201, 422, 200, 201, 404, 409, 422, 200],
        "{body}"
    );
    assert_eq!(
        body["results"][2]["error"]["field"], "customer_id",
        "{body}"
    );
    assert_eq!(body["results"][6]["error"]["code"], "in_use", "{body}");
    assert_eq!(
        body["summary"],
        json!({"created": 3, "replaced": 2, "deleted": 0, "failed": 4})
    );
    assert_eq!(
        app.get_json("/api/v1/customers/c1").await.1["name"],
        "Cy Twice"
    );
    assert_eq!(app.get_json("/api/v1/bookings/bk2").await.0, 404);
    assert_eq!(
        app.get_json("/api/v1/links/resource/R").await.1["group_id"],
        "77"
    );
    // Too many operations at once.
    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"op": "delete", "collection": "customers", "id": format!("x{i}")}))
        .collect();
    let res = app
        .client
        .post(app.url("/api/v1/batch"))
        .bearer_auth(&app.token)
        .json(&json!({"operations": many}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    app.stop().await;
}

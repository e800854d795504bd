//! The OpenAPI description holds both ways: every status it documents for an operation is one
//! the running service answers (each is produced here, on purpose), and every answer seen here
//! is documented. The fuzzer (`scripts/fuzz-api`) checks the second half on generated data; it
//! cannot reach records that exist, Brivo's failures or a member's session, which this does.

use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use testkit::sync::SyncApp;
use testkit::{App, Backend};

enum Body {
    None,
    Json(Value),
    /// A content type and the raw bytes.
    Raw(&'static str, Vec<u8>),
}

/// Sends requests, holds each JSON answer to the schema the description gives for its status,
/// and remembers `(method, path template, status)` of every answer.
struct Probe {
    http: reqwest::Client,
    doc: Value,
    seen: BTreeSet<(String, String, u16)>,
}

impl Probe {
    /// `template` is the description's path, `path` the one requested.
    async fn call(
        &mut self,
        base: &str,
        token: Option<&str>,
        method: Method,
        template: &str,
        path: &str,
        body: Body,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.clone(), format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(ct, bytes) => req.header("content-type", ct).body(bytes),
        };
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let json = res
            .headers()
            .get("content-type")
            .is_some_and(|c| c.as_bytes().starts_with(b"application/json"));
        let body = res.json().await.unwrap_or(Value::Null);
        let m = method.as_str().to_lowercase();
        let schema = &self.doc["paths"][template][&m]["responses"][status.to_string()]["content"]["application/json"]
            ["schema"];
        if json && !schema.is_null() && template != "/api/v1/openapi.json" {
            conforms(
                &self.doc,
                schema,
                &body,
                &format!("{method} {path} {status}"),
            );
        }
        self.seen.insert((m, template.to_owned(), status));
        (status, body)
    }
}

/// Brivo's answers are read live: on a loaded machine a call can outlast the client's timeout
/// (a 502), so a call whose answer is Brivo's is made again, within a deadline, until Brivo
/// answers.
async fn until_brivo_answers(
    p: &mut Probe,
    base: &str,
    token: &str,
    method: Method,
    template: &str,
    path: &str,
) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, got) = p
            .call(
                base,
                Some(token),
                method.clone(),
                template,
                path,
                Body::None,
            )
            .await;
        if status != 502 || tokio::time::Instant::now() > deadline {
            return (status, got);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn big_json() -> Body {
    let filler = "x".repeat(1024 * 1024 + 1);
    Body::Raw(
        "application/json",
        json!({ "name": filler }).to_string().into_bytes(),
    )
}

fn text() -> Body {
    Body::Raw("text/plain", b"name=x".to_vec())
}

fn malformed() -> Body {
    Body::Raw("application/json", b"{\"name\":".to_vec())
}

/// `value` is what `schema` describes: the fields of its objects described (where the schema
/// is closed) and required ones present, its arrays' items, and the type of every value.
/// Enough of JSON Schema for what the description uses: `$ref`, `allOf`, objects, arrays,
/// `type`, `enum`.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return conforms(doc, &doc["components"]["schemas"][name], value, at);
    }
    if let Some(parts) = schema["allOf"].as_array() {
        // Each part sees only the fields it describes (an allOf of open objects).
        for part in parts {
            conforms(doc, part, value, at);
        }
        return;
    }
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    assert!(
        types.is_empty()
            || types.contains(&kind)
            || (kind == "integer" && types.contains(&"number")),
        "{at}: {kind} {value}, described as {types:?}"
    );
    if let Some(values) = schema["enum"].as_array() {
        assert!(
            values.contains(value),
            "{at}: {value} is not one of {values:?}"
        );
    }
    match value {
        Value::Object(fields) => {
            let properties = schema["properties"].as_object();
            let closed = schema["additionalProperties"] == false;
            for (name, v) in fields {
                match properties.and_then(|p| p.get(name)) {
                    Some(described) => conforms(doc, described, v, &format!("{at}.{name}")),
                    None => assert!(!closed, "{at}: {name} is not described"),
                }
            }
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                assert!(
                    fields.contains_key(name),
                    "{at}: required {name} is missing"
                );
            }
        }
        Value::Array(items) if !schema["items"].is_null() => {
            for (i, item) in items.iter().enumerate() {
                conforms(doc, &schema["items"], item, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

/// The statuses every write with a body can answer for its body: 400, 413, 415, 422.
async fn body_refusals(
    p: &mut Probe,
    base: &str,
    token: &str,
    method: Method,
    template: &str,
    path: &str,
    unknown: Value,
) {
    for (body, want) in [
        (malformed(), 400),
        (big_json(), 413),
        (text(), 415),
        (Body::Json(unknown), 422),
    ] {
        let (status, got) = p
            .call(base, Some(token), method.clone(), template, path, body)
            .await;
        assert_eq!(status, want, "{method} {path}: {got}");
    }
}

async fn every_documented_status_is_answered(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT0S", "PT0S").await else {
        return;
    };
    let Some(bare) = App::spawn(backend).await else {
        return;
    };
    let (_, doc) = s.app.get_json("/api/v1/openapi.json").await;
    let base = s.app.base.clone();
    let base = base.as_str();
    let t = s.app.token.clone();
    let t = t.as_str();
    let mut p = Probe {
        http: reqwest::Client::new(),
        doc: doc.clone(),
        seen: BTreeSet::new(),
    };
    use Method as M;
    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_hours(1);
    let at = |h: i64| now.checked_add(hour * h as i32).unwrap().to_string();
    s.customer("ana").await;
    s.customer("ben").await;
    // Records that others name, so that deleting those is refused; Ana's booking now opens the
    // meeting room's door for her.
    for (path, body) in [
        (
            "/api/v1/bookings/keep-b",
            json!({"customer_id": "ana", "resource_id": "room-1", "start": at(-1), "end": at(2)}),
        ),
        (
            "/api/v1/contracts/keep-c",
            json!({"customer_id": "ben", "desk_ids": ["office-1"], "start_date": "2026-01-01"}),
        ),
        (
            "/api/v1/pass-grants/keep-g",
            json!({"customer_id": "ben", "pass_id": "day-pass", "valid_from": at(-1), "valid_until": at(2)}),
        ),
        (
            "/api/v1/visitors/keep-v",
            json!({"name": "Vic", "email": "vic@example.com", "host_customer_id": "ben", "location_id": "hq", "arrival": at(3)}),
        ),
    ] {
        s.put_ok(path, body).await;
    }

    // Every collection, the same way; `referenced` is a record others name.
    let collections = [
        (
            "connections",
            json!({"api_url": s.sim.api_url(), "auth_url": s.sim.auth_url(), "enabled": false}),
            Some("brivo"),
        ),
        (
            "locations",
            json!({"name": "N", "timezone": "UTC"}),
            Some("hq"),
        ),
        (
            "passes",
            json!({"location_id": "hq", "name": "N"}),
            Some("day-pass"),
        ),
        (
            "resources",
            json!({"location_id": "hq", "name": "N"}),
            Some("room-1"),
        ),
        (
            "desks",
            json!({"location_id": "hq", "name": "N", "kind": "desk"}),
            Some("office-1"),
        ),
        ("doors", json!({"location_id": "hq", "name": "N"}), None),
        (
            "customers",
            json!({"name": "N", "email": "n@example.com"}),
            Some("ana"),
        ),
        (
            "teams",
            json!({"name": "N", "paying_member_id": "ana", "member_ids": ["ben"]}),
            None,
        ),
        (
            "bookings",
            json!({"customer_id": "ben", "resource_id": "room-2", "start": at(5), "end": at(6)}),
            None,
        ),
        (
            "contracts",
            json!({"customer_id": "ben", "desk_ids": ["office-2"], "start_date": "2030-01-01"}),
            None,
        ),
        (
            "pass-grants",
            json!({"customer_id": "ben", "pass_id": "day-pass", "valid_from": at(5), "valid_until": at(6)}),
            None,
        ),
        (
            "visitors",
            json!({"name": "V", "email": "v@example.com", "host_customer_id": "ben", "location_id": "hq", "arrival": at(5)}),
            None,
        ),
    ];
    for (c, body, referenced) in collections {
        let many = format!("/api/v1/{c}");
        let one = format!("/api/v1/{c}/{{id}}");
        let k = format!("/api/v1/{c}/k1");
        let bad = format!("/api/v1/{c}/bad%20id");
        let nope = format!("/api/v1/{c}/nope");
        let call = |m: Method, tmpl: &str, path: &str, token: Option<&str>| {
            (
                m,
                tmpl.to_owned(),
                path.to_owned(),
                token.map(str::to_owned),
            )
        };
        for (m, tmpl, path, token) in [
            call(M::GET, &many, &many, Some(t)),
            call(M::GET, &many, &format!("{many}?limit=0"), Some(t)),
            call(M::GET, &many, &many, None),
        ] {
            p.call(base, token.as_deref(), m, &tmpl, &path, Body::None)
                .await;
        }
        for want in [201, 200] {
            let (status, got) = p
                .call(base, Some(t), M::PUT, &one, &k, Body::Json(body.clone()))
                .await;
            assert_eq!(status, want, "PUT {k}: {got}");
            conforms(
                &doc,
                &doc["paths"][&one]["put"]["responses"]["200"],
                &got,
                &k,
            );
        }
        p.call(base, Some(t), M::PUT, &one, &bad, Body::Json(body.clone()))
            .await;
        p.call(base, None, M::PUT, &one, &k, Body::Json(body.clone()))
            .await;
        body_refusals(&mut p, base, t, M::PUT, &one, &k, json!({"unknown": 1})).await;
        for (path, token) in [(&k, Some(t)), (&bad, Some(t)), (&nope, Some(t)), (&k, None)] {
            p.call(base, token, M::GET, &one, path, Body::None).await;
        }
        let merge =
            |v: Value| Body::Raw("application/merge-patch+json", v.to_string().into_bytes());
        for (path, token) in [(&k, Some(t)), (&bad, Some(t)), (&nope, Some(t)), (&k, None)] {
            p.call(base, token, M::PATCH, &one, path, merge(json!({})))
                .await;
        }
        body_refusals(&mut p, base, t, M::PATCH, &one, &k, json!({"unknown": 1})).await;
        if let Some(r) = referenced {
            let (status, got) = p
                .call(
                    base,
                    Some(t),
                    M::DELETE,
                    &one,
                    &format!("{many}/{r}"),
                    Body::None,
                )
                .await;
            assert_eq!(status, 409, "DELETE {c}/{r}: {got}");
        }
        for (path, token) in [(&bad, Some(t)), (&nope, Some(t)), (&k, None), (&k, Some(t))] {
            p.call(base, token, M::DELETE, &one, path, Body::None).await;
        }
    }
    // A connection whose credentials were sealed with another key cannot be rewritten without
    // bringing them again.
    let elsewhere = doorsync_store::SqlStore::connect(&s.app.db.url)
        .await
        .unwrap()
        .with_secret_key(
            doorsync_store::SecretKey::parse(&doorsync_store::SecretKey::generate()).unwrap(),
        );
    use doorsync_core::*;
    let sealed = doorsync_store::Record::Connection(Connection {
        id: Id::parse("sealed").unwrap(),
        provider: Provider::Brivo,
        api_url: Some(s.sim.api_url()),
        auth_url: Some(s.sim.auth_url()),
        credentials: Credentials {
            api_key: Some("k".into()),
            ..Default::default()
        },
        no_access_policy: NoAccessPolicy::RemoveFromGroups,
        visitor_group_ids: vec![],
        exempt_user_ids: vec![],
        redeem_passes_automatically: false,
        list_doors_in_app: true,
        link_users_by_email: false,
        monthly_call_budget: DEFAULT_MONTHLY_CALL_BUDGET,
        requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
        enabled: false,
    });
    doorsync_store::Store::put(&elsewhere, sealed, now)
        .await
        .unwrap();
    let one = "/api/v1/connections/{id}";
    let (status, got) = p
        .call(
            base,
            Some(t),
            M::PUT,
            one,
            "/api/v1/connections/sealed",
            Body::Json(json!({"api_url": s.sim.api_url(), "auth_url": s.sim.auth_url()})),
        )
        .await;
    assert_eq!(status, 409, "{got}");
    let (status, got) = p
        .call(
            base,
            Some(t),
            M::PATCH,
            one,
            "/api/v1/connections/sealed",
            Body::Raw("application/merge-patch+json", b"{}".to_vec()),
        )
        .await;
    assert_eq!(status, 409, "{got}");

    // A door Brivo no longer lists shows when it went, and takes a patch of its role.
    let gone = doorsync_store::Record::Door(Door {
        id: Id::parse("gone").unwrap(),
        location_id: Id::parse("hq").unwrap(),
        name: "Old door".into(),
        presence_role: PresenceRole::None,
        provider_door_id: Some("999999".into()),
        gone_at: Some(now),
    });
    doorsync_store::Store::put(&elsewhere, gone, now)
        .await
        .unwrap();
    let one = "/api/v1/doors/{id}";
    let (status, got) = p
        .call(base, Some(t), M::GET, one, "/api/v1/doors/gone", Body::None)
        .await;
    assert_eq!(status, 200, "{got}");
    assert!(got["gone_at"].is_string(), "{got}");
    conforms(
        &doc,
        &doc["paths"][one]["get"]["responses"]["200"],
        &got,
        "a gone door",
    );
    let (status, got) = p
        .call(
            base,
            Some(t),
            M::PATCH,
            one,
            "/api/v1/doors/gone",
            Body::Raw(
                "application/merge-patch+json",
                br#"{"presence_role": "check_in"}"#.to_vec(),
            ),
        )
        .await;
    assert_eq!(status, 200, "{got}");

    // Links.
    s.put_ok(
        "/api/v1/resources/r-new",
        json!({"location_id": "hq", "name": "New room"}),
    )
    .await;
    let room2 = s.group("Meeting Room 2").to_string();
    // A link to a group the directory does not list is refused once the directory has been read
    // since the connection last changed (the writes above changed it): wait for that read.
    assert!(
        s.eventually(std::time::Duration::from_secs(30), || async {
            doorsync_store::Store::connection_state(s.app.store.as_ref(), "brivo")
                .await
                .is_ok_and(|c| c.last_directory_at.is_some())
        })
        .await,
        "the directory was never read again"
    );
    let link = "/api/v1/links/{kind}/{item_id}";
    for (m, path, token, body) in [
        (M::GET, "/api/v1/links", Some(t), Body::None),
        (M::GET, "/api/v1/links?limit=0", Some(t), Body::None),
        (M::GET, "/api/v1/links", None, Body::None),
    ] {
        p.call(base, token, m, "/api/v1/links", path, body).await;
    }
    for (m, path, token, body) in [
        (
            M::PUT,
            "/api/v1/links/resource/r-new",
            Some(t),
            Body::Json(json!({"group_id": room2})),
        ),
        (
            M::PUT,
            "/api/v1/links/resource/r-new",
            Some(t),
            Body::Json(json!({"group_id": room2})),
        ),
        (
            M::PUT,
            "/api/v1/links/bogus/x",
            Some(t),
            Body::Json(json!({"group_id": room2})),
        ),
        (
            M::PUT,
            "/api/v1/links/resource/nope",
            Some(t),
            Body::Json(json!({"group_id": room2})),
        ),
        (
            M::PUT,
            "/api/v1/links/resource/r-new",
            None,
            Body::Json(json!({"group_id": room2})),
        ),
        (M::GET, "/api/v1/links/resource/r-new", Some(t), Body::None),
        (M::GET, "/api/v1/links/bogus/x", Some(t), Body::None),
        (M::GET, "/api/v1/links/resource/nope", Some(t), Body::None),
        (M::GET, "/api/v1/links/resource/r-new", None, Body::None),
        (M::DELETE, "/api/v1/links/bogus/x", Some(t), Body::None),
        (
            M::DELETE,
            "/api/v1/links/resource/nope",
            Some(t),
            Body::None,
        ),
        (M::DELETE, "/api/v1/links/resource/r-new", None, Body::None),
    ] {
        p.call(base, token, m, link, path, body).await;
    }
    body_refusals(
        &mut p,
        base,
        t,
        M::PUT,
        link,
        "/api/v1/links/resource/r-new",
        json!({"group_id": "no-such-group"}),
    )
    .await;
    p.call(
        base,
        Some(t),
        M::DELETE,
        link,
        "/api/v1/links/resource/r-new",
        Body::None,
    )
    .await;

    // Reads and controls by id.
    for (tmpl, id, m) in [
        ("/api/v1/customers/{id}/access", "ana", M::GET),
        ("/api/v1/visitors/{id}/access", "keep-v", M::GET),
        ("/api/v1/customers/{id}/invitation", "ana", M::POST),
        ("/api/v1/connections/{id}/directory", "brivo", M::GET),
    ] {
        for (id, token) in [
            (id, Some(t)),
            ("bad%20id", Some(t)),
            ("nope", Some(t)),
            (id, None),
        ] {
            let path = tmpl.replace("{id}", id);
            p.call(base, token, m.clone(), tmpl, &path, Body::None)
                .await;
        }
    }
    // Lists and the rest of the token's API.
    for tmpl in [
        "/api/v1/audit",
        "/api/v1/checkins",
        "/api/v1/failed-checkins",
        "/api/v1/door-events",
    ] {
        for (path, token) in [
            (tmpl.to_owned(), Some(t)),
            (format!("{tmpl}?limit=0"), Some(t)),
            (tmpl.to_owned(), None),
        ] {
            p.call(base, token, M::GET, tmpl, &path, Body::None).await;
        }
    }
    for tmpl in [
        "/api/v1/presence",
        "/api/v1/sync/status",
        "/metrics",
        "/api/v1/openapi.json",
    ] {
        for token in [Some(t), None] {
            p.call(base, token, M::GET, tmpl, tmpl, Body::None).await;
        }
    }
    let resync = "/api/v1/sync/resync";
    for (path, token) in [
        (resync.to_owned(), Some(t)),
        (format!("{resync}?wait=true"), Some(t)),
        (format!("{resync}?wait=maybe"), Some(t)),
        (resync.to_owned(), None),
    ] {
        p.call(base, token, M::POST, resync, &path, Body::None)
            .await;
    }
    let plan = "/api/v1/plan";
    let change = json!({"links": [{"kind": "resource", "item_id": "room-1", "group_id": null}]});
    p.call(
        base,
        Some(t),
        M::POST,
        plan,
        plan,
        Body::Json(change.clone()),
    )
    .await;
    p.call(base, None, M::POST, plan, plan, Body::Json(change))
        .await;
    body_refusals(&mut p, base, t, M::POST, plan, plan, json!({})).await;
    let batch = "/api/v1/batch";
    let ops = json!({"operations": [{"op": "delete", "collection": "customers", "id": "nobody"}]});
    p.call(
        base,
        Some(t),
        M::POST,
        batch,
        batch,
        Body::Json(ops.clone()),
    )
    .await;
    p.call(base, None, M::POST, batch, batch, Body::Json(ops))
        .await;
    for (body, want) in [
        (malformed(), 400),
        (
            Body::Raw(
                "application/json",
                format!("{{\"operations\": [\"{}\"]}}", "x".repeat(33 * 1024 * 1024)).into_bytes(),
            ),
            413,
        ),
        (text(), 415),
        (Body::Json(json!({"operations": 5})), 422),
    ] {
        let (status, got) = p.call(base, Some(t), M::POST, batch, batch, body).await;
        assert_eq!(status, want, "batch: {got}");
    }

    // The member app: Ana signs in by mail.
    let signin = "/app/api/v1/signin";
    let (status, _) = p
        .call(
            &bare.base,
            None,
            M::POST,
            signin,
            signin,
            Body::Json(json!({"email": "ana@example.com"})),
        )
        .await;
    assert_eq!(status, 503, "no mail set up");
    let mails_before = s.inbox.all().len();
    let (status, _) = p
        .call(
            base,
            None,
            M::POST,
            signin,
            signin,
            Body::Json(json!({"email": "ana@example.com"})),
        )
        .await;
    assert_eq!(status, 202);
    body_refusals(
        &mut p,
        base,
        t,
        M::POST,
        signin,
        signin,
        json!({"email": 5}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let link = loop {
        let mails = s.inbox.all();
        if let Some(m) = mails[mails_before.min(mails.len())..]
            .iter()
            .find(|m| m.to.iter().any(|to| to == "ana@example.com"))
        {
            break m
                .body
                .lines()
                .find(|l| l.contains("/app/signin/"))
                .expect("a link")
                .trim()
                .to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "no sign-in mail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let session = "/app/api/v1/session";
    let link_token = link.rsplit('/').next().unwrap().to_owned();
    let (status, got) = p
        .call(
            base,
            None,
            M::POST,
            session,
            session,
            Body::Json(json!({"token": link_token})),
        )
        .await;
    assert_eq!(status, 201, "{got}");
    let member = got["token"].as_str().unwrap().to_owned();
    let m = member.as_str();
    p.call(
        base,
        None,
        M::POST,
        session,
        session,
        Body::Json(json!({"token": link_token})),
    )
    .await;
    body_refusals(
        &mut p,
        base,
        t,
        M::POST,
        session,
        session,
        json!({"token": 5}),
    )
    .await;
    for _ in 0..6 {
        p.call(
            base,
            None,
            M::POST,
            signin,
            signin,
            Body::Json(json!({"email": "ana@example.com"})),
        )
        .await;
    }
    for tmpl in [
        "/app/api/v1/me",
        "/app/api/v1/doors",
        "/app/api/v1/mobile-pass",
    ] {
        for token in [Some(m), Some(t)] {
            p.call(base, token, M::GET, tmpl, tmpl, Body::None).await;
        }
    }
    let pass = "/app/api/v1/mobile-pass";
    let (status, got) = until_brivo_answers(&mut p, base, m, M::GET, pass, pass).await;
    assert_eq!(status, 200, "{got}");
    // Ana opens the meeting room's door once Brivo holds her booking's group.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let room_door = loop {
        let res = p
            .http
            .get(format!("{base}/app/api/v1/doors"))
            .bearer_auth(m)
            .send()
            .await
            .unwrap();
        let v: Value = res.json().await.unwrap();
        if let Some(d) = v["items"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["name"] == "Meeting Room 1 Door"))
        {
            break d["id"].as_str().unwrap().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "doors: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sim_doors = s.brivo.list_access_points(None).await.unwrap();
    let sim_room = sim_doors
        .iter()
        .find(|d| d.name == "Meeting Room 1 Door")
        .unwrap()
        .clone();
    let unlock = "/app/api/v1/doors/{id}/unlock";
    let room_unlock = format!("/app/api/v1/doors/{room_door}/unlock");
    let (status, got) = until_brivo_answers(&mut p, base, m, M::POST, unlock, &room_unlock).await;
    assert_eq!(status, 204, "{got}");
    p.call(
        base,
        Some(m),
        M::POST,
        unlock,
        "/app/api/v1/doors/nope/unlock",
        Body::None,
    )
    .await;
    p.call(base, Some(t), M::POST, unlock, &room_unlock, Body::None)
        .await;
    s.fault(json!({"path": "/v1/api/access-points/*/activate", "kind": "status", "status": 400, "count": 1}))
        .await;
    let (status, got) = p
        .call(base, Some(m), M::POST, unlock, &room_unlock, Body::None)
        .await;
    assert_eq!(status, 502, "{got}");
    s.fault(json!({"path": "/v1/api/users/*/credentials/digital-invitations", "kind": "status", "status": 400}))
        .await;
    let (status, got) = p
        .call(
            base,
            Some(m),
            M::GET,
            "/app/api/v1/mobile-pass",
            "/app/api/v1/mobile-pass",
            Body::None,
        )
        .await;
    assert_eq!(status, 502, "{got}");
    s.clear_faults().await;
    for (path, body, want) in [
        (
            format!("/__sim/panels/{}", sim_room.control_panel_id.unwrap()),
            json!({"online": false}),
            412,
        ),
        (
            format!("/__sim/panels/{}", sim_room.control_panel_id.unwrap()),
            json!({"online": true}),
            204,
        ),
        (
            format!("/__sim/access-points/{}", sim_room.id),
            json!({"activation_enabled": false}),
            403,
        ),
    ] {
        let res = s
            .http
            .put(format!("{}{path}", s.sim.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let (status, got) =
            until_brivo_answers(&mut p, base, m, M::POST, unlock, &room_unlock).await;
        assert_eq!(status, want, "{body}: {got}");
    }
    for token in [Some(m), Some(m), Some(t)] {
        p.call(base, token, M::DELETE, session, session, Body::None)
            .await;
    }

    // Held to the description.
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for code in op["responses"].as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone(), code.parse::<u16>().unwrap()));
            }
        }
    }
    let never: Vec<_> = documented.difference(&p.seen).collect();
    let undocumented: Vec<_> = p.seen.difference(&documented).collect();
    assert!(
        never.is_empty() && undocumented.is_empty(),
        "documented but never answered: {never:#?}\nanswered but not documented: {undocumented:#?}"
    );
    assert!(documented.len() > 400, "{} statuses", documented.len());
    bare.stop().await;
    s.stop().await;
}

testkit::on_both_backends!(every_documented_status_is_answered);

//! One write path: every dashboard form that writes a record refuses what the API refuses, with
//! the same rules for credentials; and an instance that cannot read the stored credentials never
//! erases them.

use crate::dashboard::admin;
use doorsync_core::{Clock, Credentials};
use doorsync_store::{DirectoryEntry, Kind, Record, SecretKey, SqlStore, Store};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::{App, Backend};

const CONNECTION: &str = "/admin/connections/brivo";
const LOCATION: &str = "/admin/locations/hq";

/// Every credential an operator can type, as the API takes them.
fn full_credentials(suffix: &str) -> Value {
    json!({
        "api_key": format!("key-{suffix}"),
        "client_id": format!("client-{suffix}"),
        "client_secret": format!("secret-{suffix}"),
        "admin_id": format!("admin-{suffix}"),
        "password": format!("password-{suffix}"),
    })
}

fn credentials(suffix: &str) -> Credentials {
    Credentials {
        api_key: Some(format!("key-{suffix}")),
        client_id: Some(format!("client-{suffix}")),
        client_secret: Some(format!("secret-{suffix}")),
        admin_id: Some(format!("admin-{suffix}")),
        password: Some(format!("password-{suffix}")),
        refresh_token: None,
    }
}

async fn stored_credentials(store: &dyn Store) -> Credentials {
    match store.get(Kind::Connection, "brivo").await.unwrap() {
        Some(Record::Connection(c)) => c.credentials,
        other => panic!("no connection: {other:?}"),
    }
}

async fn call(app: &App, method: Method, path: &str, body: Value) -> (u16, Value) {
    let mut req = app
        .client
        .request(method.clone(), app.url(path))
        .bearer_auth(&app.token);
    req = if method == Method::PATCH {
        req.header("content-type", "application/merge-patch+json")
            .body(body.to_string())
    } else {
        req.json(&body)
    };
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A connection with every credential, pointing at Brivo's (made-up) hosts, and a location of
/// it at a site, with a pass, a room and an office; the directory as Brivo would list it, with
/// entries whose ids the API refuses.
async fn space(app: &App) {
    let mut connection = full_credentials("1");
    connection["api_url"] = json!("https://api.brivo.test");
    connection["auth_url"] = json!("https://auth.brivo.test");
    connection["enabled"] = json!(false);
    let (status, got) = app.put_json("/api/v1/connections/brivo", connection).await;
    assert_eq!(status, 201, "{got}");
    for (path, body) in [
        (
            "/api/v1/locations/hq",
            json!({"name": "HQ", "timezone": "Europe/London", "connection_id": "brivo", "site_id": "10"}),
        ),
        (
            "/api/v1/passes/day",
            json!({"location_id": "hq", "name": "Day Pass"}),
        ),
        (
            "/api/v1/resources/room-1",
            json!({"location_id": "hq", "name": "Room 1"}),
        ),
        (
            "/api/v1/desks/office-1",
            json!({"location_id": "hq", "name": "Office 1", "kind": "office"}),
        ),
        ("/api/v1/links/resource/room-1", json!({"group_id": "100"})),
    ] {
        let (status, got) = app.put_json(path, body).await;
        assert_eq!(status, 201, "{path}: {got}");
    }
    let entry = |id: &str, name: &str, parent: Option<&str>| DirectoryEntry {
        provider_id: id.into(),
        name: name.into(),
        parent_id: parent.map(str::to_owned),
    };
    for (kind, entries) in [
        (
            "group",
            vec![
                entry("100", "Room 1", None),
                entry("bad group", "Bad", None),
            ],
        ),
        (
            "site",
            vec![entry("10", "HQ", None), entry("bad site", "Bad", None)],
        ),
        ("door", vec![entry("500", "Front door", Some("10"))]),
    ] {
        app.store
            .replace_directory("brivo", kind, &entries)
            .await
            .unwrap();
    }
}

/// What the API shows of everything the dashboard's forms write.
async fn snapshot(app: &App) -> Vec<Value> {
    let mut all = vec![];
    for path in [
        "/api/v1/connections?limit=100",
        "/api/v1/locations?limit=100",
        "/api/v1/passes?limit=100",
        "/api/v1/resources?limit=100",
        "/api/v1/desks?limit=100",
        "/api/v1/doors?limit=100",
        "/api/v1/links?limit=100",
    ] {
        let (status, got) = app.get_json(path).await;
        assert_eq!(status, 200, "{path}: {got}");
        all.push(got);
    }
    all
}

/// A dashboard form, the API call that writes the same thing, and what the page must say.
struct Twin {
    page: &'static str,
    form: &'static str,
    fields: Vec<(&'static str, String)>,
    api: (Method, String, Value),
    says: &'static str,
}

fn settings(field: &'static str, value: &str) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("no_access_policy", "remove_from_groups".to_owned()),
        ("client_id", "client-1".to_owned()),
        ("api_url", "https://api.brivo.test".to_owned()),
        ("auth_url", "https://auth.brivo.test".to_owned()),
    ];
    fields.retain(|(k, _)| *k != field);
    fields.push((field, value.to_owned()));
    fields
}

fn item(kind: &str, id: &str, name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("kind", kind.to_owned()),
        ("id", id.to_owned()),
        ("name", name.to_owned()),
    ]
}

fn edit(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("name", name.to_owned()),
        ("timezone", "Europe/London".to_owned()),
        ("lead_minutes", "15".to_owned()),
        ("lag_minutes", "15".to_owned()),
    ]
}

const BIDI: &str = "Invoice\u{202e}fdp.exe";
const ESCAPE: &str = "Room \u{1b}[2J";
const NUL: &str = "Desk\u{0}1";

fn twins() -> Vec<Twin> {
    let patch = |path: &str, body: Value| (Method::PATCH, path.to_owned(), body);
    let put = |path: &str, body: Value| (Method::PUT, path.to_owned(), body);
    let mut twins = vec![];
    for (field, value, says) in [
        (
            "api_url",
            "https://user:pw@api.brivo.test",
            "user name or password",
        ),
        (
            "api_url",
            "https://api.brivo.test/?next=1",
            "query or fragment",
        ),
        (
            "auth_url",
            "https://auth.brivo.test/#f",
            "query or fragment",
        ),
        ("api_url", "http://api.brivo.test", "loopback host"),
        ("visitor_group_ids", "bad group", "visible characters"),
    ] {
        let value_json = if field == "visitor_group_ids" {
            json!([value])
        } else {
            json!(value)
        };
        twins.push(Twin {
            page: CONNECTION,
            form: "/admin/connections/brivo/settings",
            fields: settings(field, value),
            api: patch("/api/v1/connections/brivo", json!({ field: value_json })),
            says,
        });
    }
    twins.push(Twin {
        page: "/admin/connections",
        form: "/admin/connections",
        fields: vec![("id", "bad id!".to_owned())],
        api: put("/api/v1/connections/bad%20id!", json!({})),
        says: "1 to 128 letters, digits",
    });
    twins.push(Twin {
        page: CONNECTION,
        form: "/admin/connections/brivo/sites",
        fields: vec![("site:hq", "bad site".to_owned())],
        api: patch("/api/v1/locations/hq", json!({"site_id": "bad site"})),
        says: "site_id",
    });
    for (name, says) in [
        (BIDI, "bidirectional override"),
        (ESCAPE, "control characters"),
        (NUL, "control characters"),
    ] {
        twins.push(Twin {
            page: "/admin/locations",
            form: "/admin/locations",
            fields: vec![
                ("id", "l2".to_owned()),
                ("name", name.to_owned()),
                ("timezone", "UTC".to_owned()),
            ],
            api: put(
                "/api/v1/locations/l2",
                json!({"name": name, "timezone": "UTC"}),
            ),
            says,
        });
        twins.push(Twin {
            page: LOCATION,
            form: "/admin/locations/hq/edit",
            fields: edit(name),
            api: patch("/api/v1/locations/hq", json!({ "name": name })),
            says,
        });
        for (kind, collection, id) in [
            ("pass", "passes", "p2"),
            ("resource", "resources", "r2"),
            ("desk", "desks", "d2"),
            ("office", "desks", "o2"),
            // Renaming what exists.
            ("pass", "passes", "day"),
            ("resource", "resources", "room-1"),
            ("office", "desks", "office-1"),
        ] {
            let mut body = json!({"location_id": "hq", "name": name});
            if collection == "desks" {
                body["kind"] = json!(if kind == "office" { "office" } else { "desk" });
            }
            twins.push(Twin {
                page: LOCATION,
                form: "/admin/locations/hq/items",
                fields: item(kind, id, name),
                api: put(&format!("/api/v1/{collection}/{id}"), body),
                says,
            });
        }
    }
    // Step 2 refuses before it shows the plan, and on confirmation.
    for form in ["/admin/locations/hq/review", "/admin/locations/hq/apply"] {
        twins.push(Twin {
            page: LOCATION,
            form,
            fields: vec![("resource:room-1", "bad group".to_owned())],
            api: put(
                "/api/v1/links/resource/room-1",
                json!({"group_id": "bad group"}),
            ),
            says: "group_id",
        });
        twins.push(Twin {
            page: LOCATION,
            form,
            fields: vec![("door:500", "sideways".to_owned())],
            api: put(
                "/api/v1/doors/brivo:door:500",
                json!({"location_id": "hq", "name": "Front door", "presence_role": "sideways", "provider_door_id": "500"}),
            ),
            says: "sideways",
        });
    }
    twins
}

/// Every dashboard form against its API twin: what the API refuses, the form refuses too, in
/// words, and nothing is stored.
async fn every_dashboard_form_refuses_what_the_api_refuses(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    space(&app).await;
    let mut b = admin(&app, "ops@example.com").await;
    let before = snapshot(&app).await;
    for twin in twins() {
        let what = format!("{} {:?}", twin.form, twin.fields);
        let (method, path, body) = twin.api.clone();
        let (status, got) = call(&app, method, &path, body).await;
        assert!(
            (400..500).contains(&status),
            "the API twin of {what} refuses it: {status} {got}"
        );
        let fields: Vec<(&str, &str)> = twin.fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let p = b.submit(twin.page, twin.form, &fields).await;
        assert!(
            (400..500).contains(&p.status.as_u16()),
            "{what}: {} {}",
            p.status,
            p.body
        );
        assert!(p.has(twin.says), "{what} says {:?}: {}", twin.says, p.body);
        assert_eq!(snapshot(&app).await, before, "{what} stored nothing");
    }
    assert_eq!(
        stored_credentials(app.store.as_ref()).await,
        credentials("1")
    );
    app.stop().await;
}

/// Re-pointing a connection in the dashboard keeps only the credentials typed in that form:
/// none of the stored ones goes to the new host.
async fn the_dashboard_sends_no_stored_secret_to_a_new_host(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    space(&app).await;
    let mut b = admin(&app, "ops@example.com").await;
    // The same URLs, a secret left empty: everything stored is kept.
    let fields = settings("client_secret", "");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = b
        .submit(CONNECTION, "/admin/connections/brivo/settings", &fields)
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        stored_credentials(app.store.as_ref()).await,
        credentials("1")
    );
    // Elsewhere, with only the client id in the form (as the page fills it in).
    let p = b
        .submit(
            CONNECTION,
            "/admin/connections/brivo/settings",
            &[
                ("no_access_policy", "remove_from_groups"),
                ("client_id", "client-1"),
                ("api_url", "https://brivo.attacker.test"),
                ("auth_url", "https://auth.attacker.test"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        stored_credentials(app.store.as_ref()).await,
        Credentials {
            client_id: Some("client-1".into()),
            ..Default::default()
        },
        "only what the form brought goes to the new host"
    );
    let (_, c) = app.get_json("/api/v1/connections/brivo").await;
    assert_eq!(c["api_url"], "https://brivo.attacker.test");
    assert_eq!(c["credentials_set"], json!(["client_id"]));
    // Back, with a key typed: the key goes, nothing else comes back.
    let p = b
        .submit(
            CONNECTION,
            "/admin/connections/brivo/settings",
            &[
                ("no_access_policy", "remove_from_groups"),
                ("client_id", ""),
                ("api_key", "key-2"),
                ("api_url", "https://api.brivo.test"),
                ("auth_url", "https://auth.brivo.test"),
            ],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        stored_credentials(app.store.as_ref()).await,
        Credentials {
            api_key: Some("key-2".into()),
            ..Default::default()
        }
    );
    // The Admin ID and password form adds to what is stored, where it points now.
    let p = b
        .submit(
            CONNECTION,
            "/admin/connections/brivo/password",
            &[("admin_id", "admin-2"), ("password", "password-2")],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        stored_credentials(app.store.as_ref()).await,
        Credentials {
            api_key: Some("key-2".into()),
            admin_id: Some("admin-2".into()),
            password: Some("password-2".into()),
            ..Default::default()
        }
    );
    app.stop().await;
}

/// An instance started with another secret key cannot read the stored credentials: a write
/// that brings only some of them is refused on every surface, and they stay as they were; one
/// that brings all of them replaces them.
async fn a_wrong_key_never_erases_stored_credentials(backend: Backend) {
    let Some(app) = App::spawn(backend).await else {
        return;
    };
    space(&app).await;
    // The credentials as the instance with the right key seals them.
    let right = SqlStore::connect(&app.db.url)
        .await
        .unwrap()
        .with_secret_key(SecretKey::parse(&SecretKey::generate()).unwrap());
    let Some(Record::Connection(mut c)) = right.get(Kind::Connection, "brivo").await.unwrap()
    else {
        panic!("no connection")
    };
    c.credentials = credentials("right");
    right
        .put(Record::Connection(c), app.clock.now())
        .await
        .unwrap();
    let mut b = admin(&app, "ops@example.com").await;
    let partial = [
        (Method::PATCH, json!({"client_id": "client-new"})),
        (
            Method::PATCH,
            json!({"api_key": "key-new", "client_id": "client-new", "client_secret": "secret-new"}),
        ),
        (
            Method::PUT,
            json!({"api_url": "https://api.brivo.test", "auth_url": "https://auth.brivo.test", "client_id": "client-new"}),
        ),
        (Method::PATCH, json!({"enabled": true})),
    ];
    for (method, body) in partial {
        let (status, got) = call(
            &app,
            method.clone(),
            "/api/v1/connections/brivo",
            body.clone(),
        )
        .await;
        assert_eq!(status, 409, "{method} {body}: {got}");
        assert_eq!(got["error"]["code"], "credentials_unreadable", "{got}");
        let (status, got) = call(
            &app,
            Method::POST,
            "/api/v1/batch",
            json!({"operations": [{"op": method.as_str().to_lowercase(), "collection": "connections", "id": "brivo", "body": body}]}),
        )
        .await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(
            got["results"][0]["status"], 409,
            "batch {method} {body}: {got}"
        );
        assert_eq!(stored_credentials(&right).await, credentials("right"));
    }
    let fields = settings("client_secret", "secret-new");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (form, fields) in [
        ("/admin/connections/brivo/settings", fields),
        (
            "/admin/connections/brivo/password",
            vec![("admin_id", "admin-new"), ("password", "password-new")],
        ),
    ] {
        let p = b.submit(CONNECTION, form, &fields).await;
        assert_eq!(p.status, 422, "{form}: {}", p.body);
        assert!(p.has("left untouched"), "{form}: {}", p.body);
        assert_eq!(stored_credentials(&right).await, credentials("right"));
    }
    // All of them (an empty one cleared): a full replacement, sealed with this instance's key.
    let mut all = full_credentials("new");
    all["admin_id"] = json!("");
    let (status, got) = call(&app, Method::PATCH, "/api/v1/connections/brivo", all).await;
    assert_eq!(status, 200, "{got}");
    let mut want = credentials("new");
    want.admin_id = None;
    assert_eq!(stored_credentials(app.store.as_ref()).await, want);
    right.close().await;
    app.stop().await;
}

testkit::on_both_backends!(
    every_dashboard_form_refuses_what_the_api_refuses,
    the_dashboard_sends_no_stored_secret_to_a_new_host,
    a_wrong_key_never_erases_stored_credentials,
);

//! Alerts that reach someone, over real HTTP and SMTP: refused credentials and a pause alert
//! the operators' webhook (signed) and their e-mail, once; drift found by the audit alerts too;
//! `sync/status` shows what holds.

use doorsync_engine::Engine;
use doorsync_engine::alerts::{AlertConfig, AlertWebhook};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::Backend;
use testkit::sync::{SyncApp, factory, fast_engine};

const SECRET: &str = "a-secret-of-some-length";

type Calls = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP receiver that keeps each call's signature header and body.
async fn receiver() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let keep = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let keep = keep.clone();
            async move {
                let sig = headers
                    .get("x-doorsync-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                keep.lock().unwrap().push((sig, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

/// Checks the signature the way a receiver would: HMAC-SHA256 of `t.body` with the secret.
fn verified(signature: &str, body: &str) -> bool {
    use hmac::{KeyInit, Mac};
    let Some((t, v1)) = signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == v1
}

async fn refused_credentials_and_drift_alert_the_operators(backend: Backend) {
    let (url, calls) = receiver().await;
    let Some(s) = SyncApp::spawn_with(backend, "PT0S", "PT0S", |store, clock, env| {
        Arc::new(Engine::new(
            store,
            clock,
            factory(),
            doorsync_engine::EngineConfig {
                public_url: Some(env.base.clone()),
                mail: Some(env.mail.clone()),
                alerts: AlertConfig {
                    webhook: Some(AlertWebhook {
                        url: url.clone(),
                        secret: SECRET.into(),
                    }),
                    emails: vec!["ops@example.com".into()],
                    pause_after: Duration::ZERO,
                },
                ..fast_engine("alerts")
            },
        ))
    })
    .await
    else {
        return;
    };
    // Drift: someone adds a member of staff to a group doorsync manages; the audit takes them
    // out and says so.
    s.customer("ana").await;
    let staff = s
        .brivo
        .list_users(None)
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.external_id.is_none())
        .unwrap()
        .id;
    s.brivo
        .add_user_to_group(s.group("Meeting Room 1"), staff)
        .await
        .unwrap();
    let res = s
        .http
        .post(format!("{}/api/v1/sync/resync", s.app.base))
        .bearer_auth(&s.app.token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let has = |kind: &'static str| {
        let calls = calls.clone();
        move || {
            let calls = calls.clone();
            async move {
                calls
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(_, b)| serde_json::from_str::<Value>(b).unwrap()["kind"] == kind)
            }
        }
    };
    assert!(
        s.eventually(Duration::from_secs(20), has("drift_found"))
            .await,
        "no drift alert"
    );
    // The status lists it while it holds; an audit that finds nothing resolves it.
    let drift_listed = || async {
        let (_, status) = s.app.get_json("/api/v1/sync/status").await;
        status["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "drift_found")
    };
    assert!(drift_listed().await);
    let res = s
        .http
        .post(format!("{}/api/v1/sync/resync?wait=true", s.app.base))
        .bearer_auth(&s.app.token)
        .send()
        .await
        .unwrap();
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["audits"][0]["strangers_removed"], 0, "{report}");
    assert!(
        !drift_listed().await,
        "a clean audit resolves the drift alert"
    );

    // Refused credentials: the next call fails to sign in, the connection pauses, and both
    // the pause (alerting at once here) and the credentials alert.
    let (status, body) = s
        .app
        .patch_json(
            "/api/v1/connections/brivo",
            json!({"password": "wrong-password"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.customer("ben").await;
    assert!(
        s.eventually(Duration::from_secs(30), has("credentials_refused"))
            .await,
        "no credentials alert: {:?}",
        calls.lock().unwrap()
    );
    assert!(
        s.eventually(Duration::from_secs(20), has("connection_paused"))
            .await
    );
    for (sig, body) in calls.lock().unwrap().iter() {
        assert!(verified(sig, body), "a bad signature {sig} on {body}");
        assert!(
            !verified(sig, &body.replace("brivo", "other")),
            "the signature covers the body"
        );
    }
    let (_, status) = s.app.get_json("/api/v1/sync/status").await;
    let kinds: Vec<&str> = status["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"credentials_refused"), "{status}");
    assert_eq!(status["alerting"]["webhook"], true);
    let refused = status["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "credentials_refused")
        .unwrap()
        .clone();
    assert!(refused["last_sent_at"].is_string(), "{refused}");
    // The operators' mail, over SMTP.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mails = s.inbox.all();
        if mails
            .iter()
            .any(|m| m.to == ["ops@example.com"] && m.subject.contains("credentials refused"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alert mail: {mails:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once an hour per condition: the condition seen again later sends nothing more.
    let sent: jiff::Timestamp = refused["last_sent_at"].as_str().unwrap().parse().unwrap();
    s.customer("chloe").await;
    assert!(
        s.eventually(Duration::from_secs(20), || async {
            let (_, status) = s.app.get_json("/api/v1/sync/status").await;
            status["alerts"].as_array().unwrap().iter().any(|a| {
                a["kind"] == "credentials_refused"
                    && a["last_seen_at"]
                        .as_str()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|t| {
                            t.duration_since(sent) > jiff::SignedDuration::from_secs(2)
                        })
            })
        })
        .await
    );
    let count = |kind: &str| {
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, b)| serde_json::from_str::<Value>(b).unwrap()["kind"] == kind)
            .count()
    };
    assert_eq!(count("credentials_refused"), 1);
    assert_eq!(count("connection_paused"), 1);
    s.stop().await;
}

testkit::on_both_backends!(refused_credentials_and_drift_alert_the_operators);

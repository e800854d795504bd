//! The sync engine end to end: doorsync on real time against brivo-sim over real HTTP, with
//! short buffers, polling with deadlines. Access integrity is checked from brivo-sim's
//! membership history alone.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use testkit::Backend;
use testkit::sync::{SyncApp, check_integrity};

const WAIT: Duration = Duration::from_secs(15);
const TOLERANCE: Duration = Duration::from_secs(1);

fn at(t: Timestamp, secs: f64) -> String {
    t.checked_add(SignedDuration::from_secs_f64(secs))
        .unwrap()
        .to_string()
}

async fn integrity(s: &SyncApp, customers: &[&str], t0: Timestamp, tolerance: Duration) {
    let mut ents = BTreeMap::new();
    for c in customers {
        ents.insert(c.to_string(), s.entitlements(c).await);
    }
    let v = check_integrity(
        &s.sim.membership_history(),
        &ents,
        t0,
        Timestamp::now(),
        tolerance,
    );
    assert!(v.is_empty(), "access integrity violated: {v:#?}");
}

async fn a_booking_opens_its_room_from_lead_to_lag(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    s.customer("ana").await;
    let t0 = Timestamp::now();
    let booking = json!({"customer_id": "ana", "resource_id": "room-1", "start": at(t0, 3.0), "end": at(t0, 5.0)});
    s.put_ok("/api/v1/bookings/b1", booking).await;
    assert!(
        s.eventually(WAIT, || async {
            s.members("Meeting Room 1").await == ["ana"]
        })
        .await,
        "granted"
    );
    let granted = Timestamp::now();
    assert!(
        s.eventually(WAIT, || async {
            s.members("Meeting Room 1").await.is_empty()
        })
        .await,
        "revoked"
    );
    assert!(
        granted.duration_since(t0) >= SignedDuration::from_millis(1500),
        "not granted before the lead"
    );
    integrity(&s, &["ana"], t0, TOLERANCE).await;
    // The audit log says why.
    let (_, audit) = s
        .app
        .get_json("/api/v1/audit?customer_id=ana&operation=add_to_group")
        .await;
    assert_eq!(audit["items"][0]["cause"], "booking:b1", "{audit}");
    assert_eq!(audit["items"][0]["outcome"], "ok");
    let (_, audit) = s
        .app
        .get_json("/api/v1/audit?customer_id=ana&operation=remove_from_group")
        .await;
    assert_eq!(audit["items"][0]["cause"], "ended booking:b1", "{audit}");
    // The outcome filter reads ok or error, and nothing else.
    let (_, ok) = s
        .app
        .get_json("/api/v1/audit?customer_id=ana&outcome=ok")
        .await;
    assert!(ok["items"].as_array().unwrap().len() >= 2, "{ok}");
    let (_, failed) = s
        .app
        .get_json("/api/v1/audit?customer_id=ana&outcome=error")
        .await;
    assert_eq!(failed["items"], serde_json::json!([]));
    let (status, refused) = s.app.get_json("/api/v1/audit?outcome=fine").await;
    assert_eq!(
        (status, refused["error"]["field"].as_str()),
        (400, Some("outcome"))
    );
    s.stop().await;
}

async fn edits_and_cancellations_take_access_away_at_once(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    s.customer("ana").await;
    s.customer("ben").await;
    let t0 = Timestamp::now();
    s.put_ok("/api/v1/bookings/a1", json!({"customer_id": "ana", "resource_id": "room-1", "start": at(t0, 1.0), "end": at(t0, 600.0)}))
        .await;
    s.put_ok("/api/v1/bookings/b1", json!({"customer_id": "ben", "resource_id": "room-2", "start": at(t0, 1.0), "end": at(t0, 600.0)}))
        .await;
    assert!(
        s.eventually(WAIT, || async {
            s.members("Meeting Room 1").await == ["ana"]
        })
        .await
    );
    assert!(
        s.eventually(WAIT, || async {
            s.members("Meeting Room 2").await == ["ben"]
        })
        .await
    );
    // Cancelling ends access now; moving a booking later ends it until the new start.
    s.put_ok(
        "/api/v1/bookings/a1",
        json!({"customer_id": "ana", "resource_id": "room-1", "start": at(t0, 1.0), "end": at(t0, 600.0), "status": "cancelled"}),
    )
    .await;
    let moved = Timestamp::now();
    s.put_ok("/api/v1/bookings/b1", json!({"customer_id": "ben", "resource_id": "room-2", "start": at(moved, 5.0), "end": at(moved, 600.0)}))
        .await;
    assert!(
        s.eventually(WAIT, || async {
            s.members("Meeting Room 1").await.is_empty()
        })
        .await
    );
    assert!(
        s.eventually(WAIT, || async {
            s.members("Meeting Room 2").await.is_empty()
        })
        .await
    );
    assert!(
        s.eventually(WAIT, || async {
            s.members("Meeting Room 2").await == ["ben"]
        })
        .await,
        "back at the new start"
    );
    // Deleting a booking is a cancellation too.
    assert_eq!(
        s.app
            .delete("/api/v1/bookings/b1")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert!(
        s.eventually(WAIT, || async {
            s.members("Meeting Room 2").await.is_empty()
        })
        .await
    );
    integrity(&s, &["ana"], t0, TOLERANCE).await;
    s.stop().await;
}

async fn a_contract_reaches_the_team_while_they_are_in_it(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    for c in ["boss", "ana", "ben"] {
        s.customer(c).await;
    }
    let today = Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::get("Europe/London").unwrap())
        .date();
    let yesterday = today.yesterday().unwrap();
    let t0 = Timestamp::now();
    s.put_ok(
        "/api/v1/contracts/k1",
        json!({"customer_id": "boss", "desk_ids": ["office-1"], "start_date": today.to_string()}),
    )
    .await;
    // A contract that ended yesterday opens nothing.
    s.put_ok(
        "/api/v1/contracts/k0",
        json!({"customer_id": "ben", "desk_ids": ["office-2"], "start_date": "2026-01-01", "end_date": yesterday.to_string()}),
    )
    .await;
    s.put_ok(
        "/api/v1/teams/acme",
        json!({"name": "Acme", "paying_member_id": "boss", "member_ids": ["ana", "ben"]}),
    )
    .await;
    assert!(
        s.eventually(WAIT, || async {
            s.members("Private Office 1").await == ["ana", "ben", "boss"]
        })
        .await
    );
    assert!(s.members("Private Office 2").await.is_empty());
    // Ben leaves the team: his access ends now, the others keep theirs.
    s.put_ok(
        "/api/v1/teams/acme",
        json!({"name": "Acme", "paying_member_id": "boss", "member_ids": ["ana"]}),
    )
    .await;
    assert!(
        s.eventually(WAIT, || async {
            s.members("Private Office 1").await == ["ana", "boss"]
        })
        .await
    );
    // Cancelling the contract ends it for everyone.
    s.put_ok(
        "/api/v1/contracts/k1",
        json!({"customer_id": "boss", "desk_ids": ["office-1"], "start_date": today.to_string(), "status": "cancelled"}),
    )
    .await;
    assert!(
        s.eventually(WAIT, || async {
            s.members("Private Office 1").await.is_empty()
        })
        .await
    );
    integrity(&s, &["boss", "ana", "ben"], t0, TOLERANCE).await;
    s.stop().await;
}

async fn pass_grant_for(s: &SyncApp, customer: &str, grant: &str) {
    let now = Timestamp::now();
    s.put_ok(
        &format!("/api/v1/pass-grants/{grant}"),
        json!({"customer_id": customer, "pass_id": "day-pass", "valid_from": at(now, -3600.0), "valid_until": at(now, 3600.0)}),
    )
    .await;
}

async fn set_status(s: &SyncApp, customer: &str, status: &str) {
    s.put_ok(
        &format!("/api/v1/customers/{customer}"),
        json!({"name": format!("Member {customer}"), "email": format!("{customer}@example.com"), "status": status}),
    )
    .await;
}

async fn each_no_access_policy_is_applied_and_undone(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    for policy in ["remove_from_groups", "suspend", "delete"] {
        set_connection(&s, "no_access_policy", json!(policy)).await;
        let c = format!("m-{}", policy.replace('_', "-"));
        s.customer(&c).await;
        pass_grant_for(&s, &c, &format!("g-{c}")).await;
        assert!(
            s.eventually(WAIT, || async { s.members("Day Pass").await.contains(&c) })
                .await,
            "{policy}: granted"
        );
        let user = s
            .brivo
            .find_user_by_external_id(&c)
            .await
            .unwrap()
            .expect("user")
            .id;
        set_status(&s, &c, "suspended").await;
        assert!(
            s.eventually(WAIT, || async { !s.members("Day Pass").await.contains(&c) })
                .await,
            "{policy}: revoked"
        );
        let present = s.eventually(WAIT, || async {
            let u = s.brivo.find_user_by_external_id(&c).await.unwrap();
            match policy {
                "remove_from_groups" => u.is_some_and(|u| !u.suspended),
                "suspend" => u.is_some_and(|u| u.suspended),
                _ => u.is_none(),
            }
        });
        assert!(
            present.await,
            "{policy}: the user is left, suspended or deleted"
        );
        set_status(&s, &c, "active").await;
        assert!(
            s.eventually(WAIT, || async { s.members("Day Pass").await.contains(&c) })
                .await,
            "{policy}: back"
        );
        let u = s
            .brivo
            .find_user_by_external_id(&c)
            .await
            .unwrap()
            .expect("user again");
        assert!(!u.suspended, "{policy}: reinstated");
        assert_eq!(
            u.id == user,
            policy != "delete",
            "{policy}: a deleted user is created again, others are kept"
        );
    }
    s.stop().await;
}

async fn visitors_get_the_visitor_groups_for_their_visit(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    s.customer("host").await;
    let t0 = Timestamp::now();
    s.put_ok(
        "/api/v1/visitors/v1",
        json!({"name": "Vera Visitor", "email": "vera@example.com", "host_customer_id": "host", "location_id": "hq",
               "arrival": at(t0, 2.0), "departure": at(t0, 4.0)}),
    )
    .await;
    assert!(
        s.eventually(WAIT, || async {
            s.members("Visitors").await == ["visitor:v1"]
        })
        .await,
        "in during the visit"
    );
    assert!(
        s.eventually(WAIT, || async { s.members("Visitors").await.is_empty() })
            .await,
        "out after it"
    );
    let (_, access) = s.app.get_json("/api/v1/visitors/v1/access").await;
    assert_eq!(access["groups"], json!([]), "{access}");
    s.stop().await;
}

async fn drift_is_repaired_and_unmanaged_groups_are_left_alone(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    s.customer("ana").await;
    pass_grant_for(&s, "ana", "g1").await;
    assert!(
        s.eventually(WAIT, || async { s.members("Day Pass").await == ["ana"] })
            .await
    );
    let ana = s
        .brivo
        .find_user_by_external_id("ana")
        .await
        .unwrap()
        .unwrap()
        .id;
    // A stranger and an exempt cleaner are added by hand; ana is removed by hand.
    let new = |first: &str| brivo_client::NewUser {
        first_name: first.into(),
        last_name: "Hand".into(),
        ..Default::default()
    };
    let stranger = s.brivo.create_user(&new("Stranger")).await.unwrap().id;
    let cleaner = s.brivo.create_user(&new("Cleaner")).await.unwrap().id;
    set_connection(&s, "exempt_user_ids", json!([cleaner.to_string()])).await;
    let day = s.group("Day Pass");
    let staff = s.group("Staff");
    for u in [stranger, cleaner] {
        s.brivo.add_user_to_group(day, u).await.unwrap();
    }
    s.brivo.add_user_to_group(staff, stranger).await.unwrap();
    s.brivo.remove_user_from_group(day, ana).await.unwrap();
    let staff_before = s.members("Staff").await;

    let report = resync(&s).await;
    let audit = &report["audits"][0];
    assert_eq!(audit["strangers_removed"], 1, "{report}");
    assert_eq!(audit["missing_members"], 1, "{report}");
    assert!(
        s.eventually(WAIT, || async {
            let m = s.members("Day Pass").await;
            m.contains(&"ana".to_string()) && m.len() == 2
        })
        .await,
        "ana is back, the stranger gone, the exempt cleaner kept: {:?}",
        s.members("Day Pass").await
    );
    let members = s.brivo.group_members(day).await.unwrap();
    assert!(members.iter().any(|u| u.id == cleaner));
    assert!(!members.iter().any(|u| u.id == stranger));
    assert_eq!(
        s.members("Staff").await,
        staff_before,
        "an unmanaged group is never touched"
    );
    let (_, metrics) = (
        200,
        s.app
            .get("/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(
        metrics.contains("doorsync_drift_findings_total{kind=\"stranger_removed\"} 1"),
        "{metrics}"
    );
    let (_, status) = s.app.get_json("/api/v1/sync/status").await;
    assert!(
        status["connections"][0]["last_audit_at"].is_string(),
        "{status}"
    );
    assert!(
        status["connections"][0]["calls_this_month"]
            .as_i64()
            .unwrap()
            > 0,
        "{status}"
    );
    s.stop().await;
}

/// Runs the drift audit now and answers its report; it must succeed.
async fn resync(s: &SyncApp) -> serde_json::Value {
    let res = s
        .app
        .client
        .post(s.app.url("/api/v1/sync/resync?wait=true"))
        .bearer_auth(&s.app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Changes one setting of the test connection (credentials, write-only, are kept by the PUT).
async fn set_connection(s: &SyncApp, key: &str, value: serde_json::Value) {
    let (_, conn) = s.app.get_json("/api/v1/connections/brivo").await;
    let mut conn = conn.as_object().unwrap().clone();
    for k in ["id", "credentials_set"] {
        conn.remove(k);
    }
    conn.insert(key.into(), value);
    s.put_ok("/api/v1/connections/brivo", serde_json::Value::Object(conn))
        .await;
}

async fn status(s: &SyncApp) -> serde_json::Value {
    s.app.get_json("/api/v1/sync/status").await.1
}

async fn setup_that_gives_nobody_access_is_refused_or_flagged(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    let directory_read =
        || async { !status(&s).await["connections"][0]["last_directory_at"].is_null() };
    assert!(s.eventually(WAIT, directory_read).await, "directory read");
    // Once the directory is known, a group or site it lacks is refused, naming the field.
    let (code, body) = s
        .app
        .put_json(
            "/api/v1/links/resource/room-1",
            json!({"group_id": "987654"}),
        )
        .await;
    assert_eq!(
        (code, &body["error"]["field"]),
        (422, &json!("group_id")),
        "{body}"
    );
    let (code, body) = s
        .app
        .patch_json("/api/v1/locations/hq", json!({"site_id": "987654"}))
        .await;
    assert_eq!(
        (code, &body["error"]["field"]),
        (422, &json!("site_id")),
        "{body}"
    );
    assert!(
        status(&s).await["setup_problems"] == json!([]),
        "{}",
        status(&s).await
    );
    // A group deleted in Brivo after it was linked: flagged at the next directory read.
    s.brivo
        .delete_group(s.group("Private Office 2"))
        .await
        .unwrap();
    let (code, _) = s
        .app
        .patch_json(
            "/api/v1/connections/brivo",
            json!({"monthly_call_budget": 100001}),
        )
        .await;
    assert_eq!(code, 200);
    let flagged = || async {
        status(&s).await["setup_problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "desk:office-2" && p["problem"] == "group_not_in_directory")
    };
    assert!(s.eventually(WAIT, flagged).await, "{}", status(&s).await);
    // A location without a connection whose items are linked gives nobody access: said so.
    s.put_ok(
        "/api/v1/locations/annex",
        json!({"name": "Annex", "timezone": "Europe/London"}),
    )
    .await;
    s.put_ok(
        "/api/v1/resources/annex-room",
        json!({"location_id": "annex", "name": "Annex Room"}),
    )
    .await;
    s.put_ok(
        "/api/v1/links/resource/annex-room",
        json!({"group_id": s.group("Meeting Room 1").to_string()}),
    )
    .await;
    let problems = status(&s).await["setup_problems"].clone();
    assert!(
        problems
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "annex" && p["problem"] == "no_connection"),
        "{problems}"
    );
}

async fn sim_config(s: &SyncApp, body: serde_json::Value) {
    let res = s
        .http
        .put(format!("{}/__sim/config", s.sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{body}");
}

async fn sim_outbox(s: &SyncApp) -> Vec<serde_json::Value> {
    let v: serde_json::Value = s
        .http
        .get(format!("{}/__sim/outbox", s.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array().cloned().unwrap_or_default()
}

/// Brivo's answers about the account, not one customer: a 403 on group endpoints pauses the
/// connection with a message an operator can act on; no Wallet Passes left stops invitations
/// (access is still granted) until the allotment grows; and an operator can ask for a new
/// invitation.
async fn brivo_refusals_of_the_whole_account_pause_or_stop_what_they_concern(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    // The administrator loses the Account Config Tool role.
    sim_config(&s, json!({"config_tool_admin": false})).await;
    s.customer("ana").await;
    pass_grant_for(&s, "ana", "g-ana").await;
    let paused = || async {
        status(&s).await["connections"][0]["pause_reason"]
            .as_str()
            .is_some_and(|r| {
                r.contains("provider_permission") && r.contains("Account Config Tool Administrator")
            })
    };
    assert!(s.eventually(WAIT, paused).await, "{}", status(&s).await);
    sim_config(&s, json!({"config_tool_admin": true})).await;
    assert!(
        s.eventually(WAIT, || async { s.members("Day Pass").await == ["ana"] })
            .await,
        "granted once the role is back: {}",
        status(&s).await
    );
    assert!(
        s.eventually(WAIT, || async { sim_outbox(&s).await.len() == 1 })
            .await
    );
    // No passes left: ben gets his access, no invitation, and the status says why.
    sim_config(&s, json!({"wallet_passes": 1})).await;
    s.customer("ben").await;
    pass_grant_for(&s, "ben", "g-ben").await;
    assert!(
        s.eventually(WAIT, || async {
            s.members("Day Pass").await == ["ana", "ben"]
        })
        .await
    );
    let out =
        || async { !status(&s).await["connections"][0]["mobile_passes"]["out_since"].is_null() };
    assert!(s.eventually(WAIT, out).await, "{}", status(&s).await);
    assert_eq!(sim_outbox(&s).await.len(), 1);
    // The allotment grows: ben is invited without anyone touching him.
    sim_config(&s, json!({"wallet_passes": 10})).await;
    assert!(
        s.eventually(WAIT, || async { sim_outbox(&s).await.len() == 2 })
            .await,
        "{}",
        status(&s).await
    );
    assert!(status(&s).await["connections"][0]["mobile_passes"]["out_since"].is_null());
    // An operator asks for a new invitation for ana.
    let res = s
        .app
        .client
        .post(s.app.url("/api/v1/customers/ana/invitation"))
        .bearer_auth(&s.app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert!(
        s.eventually(WAIT, || async {
            sim_outbox(&s)
                .await
                .iter()
                .filter(|m| m["to"] == "ana@example.com")
                .count()
                == 2
        })
        .await
    );
    let res = s
        .app
        .client
        .post(s.app.url("/api/v1/customers/ghost/invitation"))
        .bearer_auth(&s.app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

async fn faults_are_survived_and_everything_converges(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    let people = ["c0", "c1", "c2", "c3", "c4", "c5"];
    for c in people {
        s.customer(c).await;
    }
    let t0 = Timestamp::now();
    s.fault(json!({"path": "/v1/api/groups/*/users/*", "method": "PUT", "kind": "status", "status": 503, "count": 2})).await;
    s.fault(json!({"path": "/v1/api/groups/*/users/*", "kind": "over_qps", "retry_after_secs": 1, "count": 2})).await;
    s.fault(json!({"path": "/v1/api/users", "method": "POST", "kind": "drop", "count": 1}))
        .await;
    s.fault(json!({"path": "/v1/api/users/*/groups", "kind": "latency", "latency_ms": 2500, "count": 1})).await;
    s.http
        .post(format!("{}/__sim/tokens/expire", s.sim.base_url()))
        .send()
        .await
        .unwrap();
    for c in &people[..3] {
        s.put_ok(&format!("/api/v1/bookings/b-{c}"), json!({"customer_id": c, "resource_id": "room-1", "start": at(t0, 2.0), "end": at(t0, 8.0)}))
            .await;
    }
    for c in &people[3..] {
        pass_grant_for(&s, c, &format!("g-{c}")).await;
    }
    // Grants valid since an hour ago are known from now on; judge from here.
    let written = Timestamp::now();
    assert!(
        s.eventually(WAIT, || async {
            s.members("Meeting Room 1").await == ["c0", "c1", "c2"]
        })
        .await
    );
    assert!(
        s.eventually(WAIT, || async {
            s.members("Day Pass").await == ["c3", "c4", "c5"]
        })
        .await
    );
    assert!(
        s.eventually(WAIT, || async {
            s.members("Meeting Room 1").await.is_empty()
        })
        .await
    );
    for c in people {
        let users = s.brivo.list_users(None).await.unwrap();
        assert_eq!(
            users
                .iter()
                .filter(|u| u.external_id.as_deref() == Some(c))
                .count(),
            1,
            "{c}: one user, never two"
        );
    }
    let before_outage = Timestamp::now();
    // The faults cost known delays (two Retry-After: 1, a 2.5 s stall past a 2 s timeout).
    integrity(&s, &people, written, Duration::from_secs(5)).await;

    // Brivo goes down: the connection pauses, and nothing is lost when it returns.
    s.fault(json!({"path": "/v1/api/*", "kind": "status", "status": 503}))
        .await;
    set_status(&s, "c3", "suspended").await;
    s.put_ok("/api/v1/bookings/b-late", json!({"customer_id": "c0", "resource_id": "room-2", "start": at(before_outage, 1.0), "end": at(before_outage, 60.0)}))
        .await;
    assert!(
        s.eventually(WAIT, || async {
            status(&s).await["connections"][0]["paused_until"].is_string()
        })
        .await,
        "the connection pauses while Brivo is down"
    );
    let paused = status(&s).await;
    assert!(
        paused["connections"][0]["pause_reason"]
            .as_str()
            .unwrap()
            .contains("provider_unavailable"),
        "{paused}"
    );
    s.clear_faults().await;
    let back = Timestamp::now();
    assert!(
        s.eventually(WAIT, || async {
            s.members("Day Pass").await == ["c4", "c5"]
        })
        .await,
        "c3 revoked after the outage"
    );
    assert!(
        s.eventually(WAIT, || async {
            s.members("Meeting Room 2").await == ["c0"]
        })
        .await
    );
    let converged = Timestamp::now();
    assert!(
        converged.duration_since(back) < SignedDuration::from_secs(5),
        "converged within 5 s of Brivo's return"
    );
    assert!(
        s.eventually(WAIT, || async { status(&s).await["due"] == 0 })
            .await
    );
    s.stop().await;
}

async fn a_crash_mid_burst_loses_nothing(backend: Backend) {
    let Some(mut s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    let people: Vec<String> = (0..24).map(|i| format!("p{i:02}")).collect();
    for c in &people {
        s.customer(c).await;
        pass_grant_for(&s, c, &format!("g-{c}")).await;
    }
    assert!(
        s.eventually(WAIT, || async { !s.members("Day Pass").await.is_empty() })
            .await
    );
    s.run.take().unwrap().crash();
    let store: std::sync::Arc<dyn doorsync_store::Store> = s.app.store.clone();
    let second = testkit::sync::EngineRun::start(testkit::sync::engine_on(store, "after-crash"));
    assert!(
        s.eventually(Duration::from_secs(30), || async {
            s.members("Day Pass").await == people
        })
        .await,
        "all converge after the restart: {:?}",
        s.members("Day Pass").await
    );
    let users = s.brivo.list_users(None).await.unwrap();
    for c in &people {
        assert_eq!(
            users
                .iter()
                .filter(|u| u.external_id.as_deref() == Some(c.as_str()))
                .count(),
            1,
            "{c}"
        );
    }
    second.stop().await;
    s.stop().await;
}

async fn invitations_and_profile_changes_reach_brivo(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    s.customer("ana").await;
    pass_grant_for(&s, "ana", "g1").await;
    assert!(
        s.eventually(WAIT, || async { s.members("Day Pass").await == ["ana"] })
            .await
    );
    let outbox = || async {
        let v: serde_json::Value = s
            .http
            .get(format!("{}/__sim/outbox", s.sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array().cloned().unwrap_or_default()
    };
    assert!(
        s.eventually(WAIT, || async { outbox().await.len() == 1 })
            .await,
        "one Mobile Pass invitation"
    );
    assert_eq!(outbox().await[0]["to"], "ana@example.com");
    s.put_ok(
        "/api/v1/customers/ana",
        json!({"name": "Ana Maria Lima", "email": "ana.lima@example.com"}),
    )
    .await;
    assert!(
        s.eventually(WAIT, || async {
            let u = s
                .brivo
                .find_user_by_external_id("ana")
                .await
                .unwrap()
                .unwrap();
            u.last_name == "Lima" && u.emails.iter().any(|e| e.address == "ana.lima@example.com")
        })
        .await,
        "name and e-mail pushed"
    );
    pass_grant_for(&s, "ana", "g2").await;
    assert!(
        s.eventually(WAIT, || async { status(&s).await["due"] == 0 })
            .await
    );
    assert_eq!(outbox().await.len(), 1, "no second invitation");
    // The preview of an unlink names who would lose what, and applies nothing.
    let res = s
        .app
        .client
        .post(s.app.url("/api/v1/plan"))
        .bearer_auth(&s.app.token)
        .json(&json!({"links": [{"kind": "pass", "item_id": "day-pass", "group_id": null}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let plan: serde_json::Value = res.json().await.unwrap();
    // Nothing else manages "Day Pass", but doorsync put ana there itself: unlinking takes her
    // out, and the preview says so before it happens.
    assert_eq!(
        (plan["removes"].as_i64(), plan["releases"].as_i64()),
        (Some(1), Some(0)),
        "{plan}"
    );
    assert_eq!(plan["changes"][0]["customer_id"], "ana");
    assert_eq!(plan["changes"][0]["op"], "remove");
    assert_eq!(
        s.members("Day Pass").await,
        ["ana"],
        "a preview applies nothing"
    );
    // A member put in "Day Pass" by hand stays when the link goes; ana, whom doorsync added, leaves.
    let by_hand = s
        .brivo
        .create_user(&brivo_client::NewUser {
            first_name: "Hand".into(),
            last_name: "Made".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    s.brivo
        .add_user_to_group(s.group("Day Pass"), by_hand.id)
        .await
        .unwrap();
    let res = s
        .app
        .delete("/api/v1/links/pass/day-pass")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(
        s.eventually(WAIT, || async {
            s.members("Day Pass").await == [format!("#{}", by_hand.id)]
        })
        .await,
        "{:?}",
        s.members("Day Pass").await
    );
    let metrics = s
        .app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "doorsync_reconciles_total{outcome=\"ok\"}",
        "doorsync_provider_calls_total{",
        "doorsync_transition_lateness_seconds_count",
        "doorsync_due_subjects",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    s.stop().await;
}

/// Two instances on one PostgreSQL keep together to the API key's calls per second: with
/// brivo-sim enforcing the same limit, Brivo never answers over-QPS.
#[tokio::test]
async fn two_instances_share_the_api_keys_rate_through_postgres() {
    let Some(mut s) = SyncApp::spawn(Backend::Postgres, "PT1S", "PT1S").await else {
        return;
    };
    s.run.take().unwrap().stop().await;
    set_connection(&s, "requests_per_second", json!(10)).await;
    let res = s
        .http
        .put(format!("{}/__sim/rate-limit", s.sim.base_url()))
        .json(&json!({"per_second": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let people: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
    for c in &people {
        s.customer(c).await;
        pass_grant_for(&s, c, &format!("g-{c}")).await;
    }
    s.http
        .delete(format!("{}/__sim/requests", s.sim.base_url()))
        .send()
        .await
        .unwrap();
    let store = |owner: &str| {
        let url = s.app.db.url.clone();
        let owner = owner.to_owned();
        async move {
            let st = doorsync_store::SqlStore::connect(&url)
                .await
                .unwrap()
                .with_secret_key(
                    doorsync_store::SecretKey::parse(testkit::TEST_SECRET_KEY).unwrap(),
                );
            testkit::sync::paced_engine_on(std::sync::Arc::new(st), &owner)
        }
    };
    let run_a = testkit::sync::EngineRun::start(store("engine-a").await);
    let run_b = testkit::sync::EngineRun::start(store("engine-b").await);
    // Watched through doorsync, not Brivo: the test's own calls would count against the key.
    let held = || async {
        for c in &people {
            let (_, v) = s
                .app
                .get_json(&format!("/api/v1/customers/{c}/access"))
                .await;
            if v["groups"][0]["state"] != "held" {
                return false;
            }
        }
        true
    };
    assert!(
        s.eventually(Duration::from_secs(60), held).await,
        "{}",
        status(&s).await
    );
    run_a.stop().await;
    run_b.stop().await;
    let requests: serde_json::Value = s
        .http
        .get(format!("{}/__sim/requests", s.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let count = |status: u64| -> u64 {
        requests
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == status)
            .map(|r| r["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(count(403), 0, "over-QPS answers: {requests}");
    assert!(count(204) >= people.len() as u64, "{requests}");
    assert_eq!(s.members("Day Pass").await, people);
    s.stop().await;
}

#[tokio::test]
async fn two_engines_share_one_postgres_without_overlap() {
    let Some(mut s) = SyncApp::spawn(Backend::Postgres, "PT1S", "PT1S").await else {
        return;
    };
    // Both engines start together on work that is already due, so each gets its share.
    s.run.take().unwrap().stop().await;
    let people: Vec<String> = (0..30).map(|i| format!("q{i:02}")).collect();
    for c in &people {
        s.customer(c).await;
        pass_grant_for(&s, c, &format!("g-{c}")).await;
    }
    let other = doorsync_store::SqlStore::connect(&s.app.db.url)
        .await
        .unwrap()
        .with_secret_key(doorsync_store::SecretKey::parse(testkit::TEST_SECRET_KEY).unwrap());
    let b = testkit::sync::engine_on(std::sync::Arc::new(other), "engine-b");
    let a = s.app.engine.clone().unwrap();
    let run_a = testkit::sync::EngineRun::start(a.clone());
    let run_b = testkit::sync::EngineRun::start(b.clone());
    assert!(
        s.eventually(Duration::from_secs(30), || async {
            s.members("Day Pass").await == people
        })
        .await
    );
    assert!(
        s.eventually(WAIT, || async { status(&s).await["errors"] == json!({}) })
            .await,
        "{}",
        status(&s).await
    );
    run_a.stop().await;
    run_b.stop().await;
    let mut spans = a.spans();
    spans.extend(b.spans());
    assert!(
        a.spans().iter().any(|x| x.owner == "test-engine"),
        "engine A worked"
    );
    assert!(
        b.spans().iter().any(|x| x.owner == "engine-b"),
        "engine B worked"
    );
    for (i, x) in spans.iter().enumerate() {
        for y in &spans[i + 1..] {
            if x.subject == y.subject {
                assert!(
                    x.end <= y.start || y.end <= x.start,
                    "{} reconciled twice at once",
                    x.subject
                );
            }
        }
    }
    for c in &people {
        let id = doorsync_core::Subject::Customer(doorsync_core::Id::parse(c).unwrap());
        assert!(spans.iter().any(|x| x.subject == id), "{c} was reconciled");
    }
    s.stop().await;
}

async fn a_pass_grant_opens_and_closes_on_time_and_users_link_by_email(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    // The directory read from Brivo names the groups to link to.
    assert!(
        s.eventually(WAIT, || async {
            // A read is whole once `read_at` is set: groups, sites and doors are each replaced
            // in turn before it.
            let (_, d) = s.app.get_json("/api/v1/connections/brivo/directory").await;
            d["read_at"].is_string()
                && d["groups"]
                    .as_array()
                    .is_some_and(|g| g.iter().any(|g| g["name"] == "Meeting Room 1"))
        })
        .await
    );
    let (_, d) = s.app.get_json("/api/v1/connections/brivo/directory").await;
    assert!(
        d["doors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "Front Door" && x["site_id"].is_string()),
        "{d}"
    );
    assert_eq!(
        s.app.get_json("/api/v1/connections/nope/directory").await.0,
        404
    );
    // A Brivo user made by hand, with the customer's e-mail but no externalId, is linked, not duplicated.
    set_connection(&s, "link_users_by_email", json!(true)).await;
    let existing = s
        .brivo
        .create_user(&brivo_client::NewUser {
            first_name: "Old".into(),
            last_name: "Record".into(),
            emails: vec![brivo_client::Email::work("zoe@example.com")],
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    s.put_ok(
        "/api/v1/customers/zoe",
        json!({"name": "Zoe Record", "email": "zoe@example.com"}),
    )
    .await;
    let t0 = Timestamp::now();
    s.put_ok(
        "/api/v1/pass-grants/zg",
        json!({"customer_id": "zoe", "pass_id": "day-pass", "valid_from": at(t0, 2.0), "valid_until": at(t0, 5.0)}),
    )
    .await;
    assert!(
        s.eventually(WAIT, || async { s.members("Day Pass").await == ["zoe"] })
            .await,
        "granted at valid_from"
    );
    let granted = Timestamp::now();
    assert!(
        s.eventually(WAIT, || async { s.members("Day Pass").await.is_empty() })
            .await,
        "revoked at valid_until"
    );
    assert!(granted.duration_since(t0) >= SignedDuration::from_millis(1500));
    let members = s.brivo.list_users(None).await.unwrap();
    let zoes: Vec<_> = members
        .iter()
        .filter(|u| u.emails.iter().any(|e| e.address == "zoe@example.com"))
        .collect();
    assert_eq!(zoes.len(), 1, "linked, not duplicated");
    assert_eq!(zoes[0].id, existing);
    integrity(&s, &["zoe"], t0, TOLERANCE).await;
    s.stop().await;
}

async fn users_deleted_by_hand_come_back_and_missing_groups_are_reported(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    s.customer("ana").await;
    s.customer("ben").await;
    pass_grant_for(&s, "ana", "g1").await;
    assert!(
        s.eventually(WAIT, || async { s.members("Day Pass").await == ["ana"] })
            .await
    );
    let old = s
        .brivo
        .find_user_by_external_id("ana")
        .await
        .unwrap()
        .unwrap()
        .id;
    s.brivo.delete_user(old).await.unwrap();
    resync(&s).await;
    assert!(
        s.eventually(WAIT, || async { s.members("Day Pass").await == ["ana"] })
            .await,
        "ana is back"
    );
    let new = s
        .brivo
        .find_user_by_external_id("ana")
        .await
        .unwrap()
        .unwrap()
        .id;
    assert_ne!(new, old, "a new Brivo user");
    // A linked group deleted in Brivo: the error is reported, nobody's user is thrown away.
    s.brivo
        .delete_group(s.group("Meeting Room 2"))
        .await
        .unwrap();
    let t0 = Timestamp::now();
    s.put_ok("/api/v1/bookings/b1", json!({"customer_id": "ben", "resource_id": "room-2", "start": at(t0, 0.0), "end": at(t0, 600.0)}))
        .await;
    assert!(
        s.eventually(WAIT, || async {
            status(&s).await["errors"]["provider_rejected"]
                .as_i64()
                .unwrap_or(0)
                >= 1
        })
        .await,
        "{}",
        status(&s).await
    );
    let (_, access) = s.app.get_json("/api/v1/customers/ben/access").await;
    assert!(
        access["sync"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("provider_rejected")),
        "{access}"
    );
    assert!(
        access["sync"]["attempts"].as_i64().unwrap() >= 1,
        "{access}"
    );
    // Entitled, not in Brivo, and the attempt failed: the view tells it from "held".
    let room = &access["groups"][0];
    assert_eq!(room["state"], "failing", "{access}");
    assert!(
        room["error"]
            .as_str()
            .is_some_and(|e| e.contains("provider_rejected")),
        "{access}"
    );
    assert_eq!(room["group_name"], "Meeting Room 2", "{access}");
    let (_, access) = s.app.get_json("/api/v1/customers/ana/access").await;
    assert_eq!(
        access["provider"][0]["user_id"],
        new.to_string(),
        "{access}"
    );
    assert_eq!(
        access["provider"][0]["groups"],
        json!([s.group("Day Pass").to_string()]),
        "{access}"
    );
    assert!(access["sync"]["last_error"].is_null(), "{access}");
    let ben = s.brivo.list_users(None).await.unwrap();
    assert_eq!(
        ben.iter()
            .filter(|u| u.external_id.as_deref() == Some("ben"))
            .count(),
        1
    );
    let (_, audit) = s
        .app
        .get_json("/api/v1/audit?customer_id=ben&operation=add_to_group")
        .await;
    assert!(
        audit["items"][0]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("error"),
        "{audit}"
    );
    s.stop().await;
}

async fn one_bad_group_does_not_stop_the_audit_and_visitors_never_take_over_users(
    backend: Backend,
) {
    let Some(s) = SyncApp::spawn(backend, "PT1S", "PT1S").await else {
        return;
    };
    // A linked group deleted in Brivo (a link to a group the directory lacks is refused).
    s.brivo
        .delete_group(s.group("Meeting Room 2"))
        .await
        .unwrap();
    let new = |first: &str| brivo_client::NewUser {
        first_name: first.into(),
        last_name: "Hand".into(),
        ..Default::default()
    };
    let stranger = s.brivo.create_user(&new("Stranger")).await.unwrap().id;
    s.brivo
        .add_user_to_group(s.group("Private Office 1"), stranger)
        .await
        .unwrap();
    let report = resync(&s).await;
    let audit = &report["audits"][0];
    assert_eq!(
        audit["errors"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(
        audit["strangers_removed"], 1,
        "the other groups were still audited: {report}"
    );
    let (_, st) = s.app.get_json("/api/v1/sync/status").await;
    let next: Timestamp = st["connections"][0]["next_audit_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(next > Timestamp::now(), "the next audit is not now: {st}");
    // A visitor with a member's e-mail gets a user of their own, even with linking by e-mail on.
    set_connection(&s, "link_users_by_email", json!(true)).await;
    s.customer("ana").await;
    pass_grant_for(&s, "ana", "g1").await;
    assert!(
        s.eventually(WAIT, || async { s.members("Day Pass").await == ["ana"] })
            .await
    );
    let t0 = Timestamp::now();
    s.put_ok(
        "/api/v1/visitors/v1",
        json!({"name": "Ana's Guest", "email": "ana@example.com", "host_customer_id": "ana", "location_id": "hq",
               "arrival": at(t0, 0.0), "departure": at(t0, 600.0)}),
    )
    .await;
    assert!(
        s.eventually(WAIT, || async {
            s.members("Visitors").await == ["visitor:v1"]
        })
        .await
    );
    assert_eq!(
        s.members("Day Pass").await,
        ["ana"],
        "the member keeps her user and her access"
    );
    s.stop().await;
}

testkit::on_both_backends!(
    one_bad_group_does_not_stop_the_audit_and_visitors_never_take_over_users,
    users_deleted_by_hand_come_back_and_missing_groups_are_reported,
    a_pass_grant_opens_and_closes_on_time_and_users_link_by_email,
    faults_are_survived_and_everything_converges,
    a_crash_mid_burst_loses_nothing,
    invitations_and_profile_changes_reach_brivo,
    a_booking_opens_its_room_from_lead_to_lag,
    edits_and_cancellations_take_access_away_at_once,
    a_contract_reaches_the_team_while_they_are_in_it,
    each_no_access_policy_is_applied_and_undone,
    visitors_get_the_visitor_groups_for_their_visit,
    drift_is_repaired_and_unmanaged_groups_are_left_alone,
    setup_that_gives_nobody_access_is_refused_or_flagged,
    brivo_refusals_of_the_whole_account_pause_or_stop_what_they_concern,
    a_location_given_a_site_has_its_doors_at_once,
);

/// The checker itself must catch both kinds of violation.
#[test]
fn the_integrity_checker_finds_excess_and_missing_access() {
    use brivo_sim::{MembershipChange, MembershipOp};
    use doorsync_core::{Cause, Entitlement, Id};
    let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
    let change = |at: i64, op| MembershipChange {
        at: t(at),
        group_id: 7,
        user_id: 1,
        external_id: Some("ana".into()),
        op,
    };
    let ent = |from: i64, until: i64| Entitlement {
        group_id: "7".into(),
        from: t(from),
        until: Some(t(until)),
        cause: Cause::Visitor {
            visitor_id: Id::parse("v").unwrap(),
        },
    };
    let ents = BTreeMap::from([("ana".to_string(), vec![ent(10, 20)])]);
    let tol = Duration::from_secs(1);
    // Served on time (within the tolerance): nothing to report.
    let ok = [
        change(10, MembershipOp::Add),
        change(21, MembershipOp::Remove),
    ];
    assert!(check_integrity(&ok, &ents, t(0), t(30), tol).is_empty());
    // Kept 5 s too long, and granted 4 s late.
    let bad = [
        change(14, MembershipOp::Add),
        change(25, MembershipOp::Remove),
    ];
    let v = check_integrity(&bad, &ents, t(0), t(30), tol);
    assert!(
        v.iter()
            .any(|x| matches!(x, testkit::sync::Violation::Excess { from, .. } if *from == t(21))),
        "{v:?}"
    );
    assert!(
        v.iter().any(
            |x| matches!(x, testkit::sync::Violation::Missing { until, .. } if *until == t(14))
        ),
        "{v:?}"
    );
    // Never granted at all.
    assert!(!check_integrity(&[], &ents, t(0), t(30), tol).is_empty());
}

/// On PostgreSQL an instance hears another's write through LISTEN/NOTIFY: with a 30-second poll,
/// it still acts within a second or two.
#[tokio::test]
async fn another_instance_hears_a_write_at_once_through_postgres() {
    let Some(mut s) = SyncApp::spawn(Backend::Postgres, "PT1S", "PT1S").await else {
        return;
    };
    s.run.take().unwrap().stop().await;
    let other = doorsync_store::SqlStore::connect(&s.app.db.url)
        .await
        .unwrap()
        .with_secret_key(doorsync_store::SecretKey::parse(testkit::TEST_SECRET_KEY).unwrap());
    let config = doorsync_engine::EngineConfig {
        idle_poll: Duration::from_secs(30),
        ..testkit::sync::fast_engine("instance-b")
    };
    let b = std::sync::Arc::new(doorsync_engine::Engine::new(
        std::sync::Arc::new(other.clone()),
        std::sync::Arc::new(testkit::sync::SystemClock),
        testkit::sync::factory(),
        config,
    ));
    let waker = b.clone();
    let listening = other
        .on_due(move || waker.wake())
        .await
        .unwrap()
        .expect("a listener on PostgreSQL");
    let run = testkit::sync::EngineRun::start(b);
    assert!(
        s.eventually(WAIT, || async { status(&s).await["due"] == 0 })
            .await
    );
    // Idle now, the engine sleeps on its 30 s poll; only the notification can wake it sooner.
    s.customer("ana").await;
    let written = std::time::Instant::now();
    pass_grant_for(&s, "ana", "g1").await;
    assert!(
        s.eventually(WAIT, || async { s.members("Day Pass").await == ["ana"] })
            .await
    );
    assert!(
        written.elapsed() < Duration::from_secs(5),
        "acted after {:?}, not at its 30 s poll",
        written.elapsed()
    );
    listening.abort();
    run.stop().await;
    s.stop().await;
}

/// A location given a site (here the site moves from one location to another) has its doors at
/// once, from the directory already read: the next read is an hour away in these tests.
async fn a_location_given_a_site_has_its_doors_at_once(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT0S", "PT0S").await else {
        return;
    };
    let doors_at = |location: &'static str| {
        let s = &s;
        async move {
            let (_, v) = s.app.get_json("/api/v1/doors?limit=100").await;
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["location_id"] == location)
                .count()
        }
    };
    assert!(
        s.eventually(WAIT, || async { doors_at("hq").await == 13 })
            .await,
        "the first directory read keeps the site's 13 doors"
    );
    let site = s.brivo.list_sites(None).await.unwrap()[0].id.to_string();
    s.put_ok(
        "/api/v1/locations/annex",
        json!({"name": "Annex", "timezone": "Europe/London", "connection_id": "brivo"}),
    )
    .await;
    let (status, body) = s
        .app
        .patch_json("/api/v1/locations/hq", json!({"site_id": null}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .app
        .patch_json("/api/v1/locations/annex", json!({"site_id": site}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        s.eventually(WAIT, || async { doors_at("annex").await == 13 })
            .await,
        "the doors move with the site: {} at the annex",
        doors_at("annex").await
    );
    s.stop().await;
}

//! Doors: remote unlock, swipes, access events, event subscriptions and webhook delivery
//! (reference §13, §14, §15).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Harness, eventually};
use crate::seed::{CLEANER_USER_ID, FIRST_DOOR_ID, FIRST_GROUP_ID, PANEL_ID, SITE_ID};

const FRONT_DOOR: u64 = FIRST_DOOR_ID;
const OFFICE_1_DOOR: u64 = FIRST_DOOR_ID + 7;

async fn swipe(h: &Harness, user: u64, door: u64) -> Value {
    let r = h
        .admin(
            Method::POST,
            "/swipe",
            Some(json!({"user_id": user, "access_point_id": door})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

fn action(event: &Value) -> u64 {
    event["securityAction"]["securityActionId"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn activate_answers_200_with_no_body_and_records_a_pulse() {
    let h = Harness::start().await;
    let r = h
        .call(
            Method::POST,
            &format!("/access-points/{FRONT_DOOR}/activate"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text.is_empty());
    let events = h.get("/events/access").await.json();
    let pulse = &events["data"][0];
    assert_eq!(action(pulse), 5064);
    assert_eq!(
        pulse["securityAction"]["action"],
        "Administrator Pulse Output"
    );
    assert_eq!(pulse["eventObject"]["id"], FRONT_DOOR);
    assert_eq!(pulse["actor"]["name"], "Sim Admin");
    assert_eq!(
        h.post("/access-points/1/activate", json!({})).await.status,
        404
    );
}

#[tokio::test]
async fn activate_is_412_while_the_panel_is_offline() {
    let h = Harness::start().await;
    let r = h
        .admin(
            Method::PUT,
            &format!("/panels/{PANEL_ID}"),
            Some(json!({"online": false})),
        )
        .await;
    assert_eq!(r.status, 200);
    let path = format!("/access-points/{FRONT_DOOR}/activate");
    let r = h.call(Method::POST, &path, None).await;
    assert_eq!(r.status, 412);
    assert_eq!(
        r.json(),
        json!({"message": "Access point is not connected", "code": 412})
    );
    h.admin(
        Method::PUT,
        &format!("/panels/{PANEL_ID}"),
        Some(json!({"online": true})),
    )
    .await;
    assert_eq!(h.call(Method::POST, &path, None).await.status, 200);
}

#[tokio::test]
async fn activate_is_403_when_remote_activation_is_off() {
    let h = Harness::start().await;
    let r = h
        .admin(
            Method::PUT,
            &format!("/access-points/{FRONT_DOOR}"),
            Some(json!({"activation_enabled": false})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        h.get(&format!("/access-points/{FRONT_DOOR}")).await.json()["activationEnabled"],
        false
    );
    let r = h
        .call(
            Method::POST,
            &format!("/access-points/{FRONT_DOOR}/activate"),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "You are not allowed to perform that action"
    );
}

#[tokio::test]
async fn swipes_open_only_for_unsuspended_members_of_a_group_that_opens_the_door() {
    let h = Harness::start().await;
    // The seeded cleaner is in Staff, which opens every door.
    let open = swipe(&h, CLEANER_USER_ID, FRONT_DOOR).await;
    assert_eq!(action(&open), 2004);
    assert_eq!(open["securityAction"]["action"], "Open");
    assert_eq!(open["securityAction"]["exception"], false);
    assert_eq!(open["actor"]["id"], CLEANER_USER_ID);
    assert_eq!(open["site"]["id"], SITE_ID);
    assert_eq!(open["eventData"]["actionAllowed"], true);
    assert_eq!(open["eventData"]["userGroupName"], "Staff");

    // A Day Pass opens the front door but not an office.
    let member = h.create_user("Ada", "Lovelace", Some("cust-1")).await;
    assert_eq!(action(&swipe(&h, member, FRONT_DOOR).await), 5018);
    h.put(&format!("/groups/{FIRST_GROUP_ID}/users/{member}"), None)
        .await;
    assert_eq!(action(&swipe(&h, member, FRONT_DOOR).await), 2004);
    let denied = swipe(&h, member, OFFICE_1_DOOR).await;
    assert_eq!(action(&denied), 5018);
    assert_eq!(denied["securityAction"]["exception"], true);

    h.put(
        &format!("/users/{member}/suspended"),
        Some(json!({"suspended": true})),
    )
    .await;
    let suspended = swipe(&h, member, FRONT_DOOR).await;
    assert_eq!(action(&suspended), 5017);
    assert_eq!(suspended["eventData"]["actionAllowed"], false);

    let unknown = swipe(&h, 42, FRONT_DOOR).await;
    assert_eq!(action(&unknown), 5012);
    assert!(unknown.get("actor").is_none());

    let no_door = h
        .admin(
            Method::POST,
            "/swipe",
            Some(json!({"user_id": member, "access_point_id": 1})),
        )
        .await;
    assert_eq!(no_door.status, 404);
}

#[tokio::test]
async fn a_redeemed_mobile_pass_appears_as_the_swipes_credential() {
    let h = Harness::start().await;
    let inv = h
        .post(
            &format!("/users/{CLEANER_USER_ID}/credentials/digital-invitations"),
            json!({"referenceId": "cleaner@flexspace.example"}),
        )
        .await
        .json();
    let code = inv["accessCode"].as_str().unwrap();
    h.admin(Method::POST, &format!("/invitations/{code}/redeem"), None)
        .await;
    let event = swipe(&h, CLEANER_USER_ID, FRONT_DOOR).await;
    assert_eq!(
        event["eventData"]["credentials"][0]["id"],
        inv["credentialId"]
    );
    assert_eq!(
        event["eventData"]["credentialObjectId"],
        inv["credentialId"]
    );
}

#[tokio::test]
async fn event_listing_pages_by_time_newest_first_within_a_24_hour_window() {
    let h = Harness::start().await;
    let mut uuids = Vec::new();
    for _ in 0..5 {
        uuids.push(swipe(&h, CLEANER_USER_ID, FRONT_DOOR).await["uuid"].clone());
    }
    uuids.reverse();

    let first = h.get("/events/access?pageSize=2").await;
    assert_eq!(first.status, 200);
    let first = first.json();
    assert_eq!(first["pageSize"], 2);
    assert!(first.get("count").is_none());
    assert!(first.get("offset").is_none());
    let mut seen = Vec::new();
    let mut page = first;
    loop {
        let data = page["data"].as_array().unwrap().clone();
        if data.is_empty() {
            break;
        }
        seen.extend(data.iter().map(|e| e["uuid"].clone()));
        let oldest = data.last().unwrap()["occurred"]
            .as_str()
            .unwrap()
            .to_string();
        page = h
            .get(&format!("/events/access?pageSize=2&offset={oldest}"))
            .await
            .json();
    }
    assert_eq!(seen, uuids, "newest first, nothing skipped or repeated");

    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_hours(1);
    let window = format!(
        "/events/access?filter=occurred__gt:{};occurred__lt:{}",
        now.checked_sub(hour).unwrap(),
        now.checked_add(hour).unwrap()
    );
    assert_eq!(
        h.get(&window).await.json()["data"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    let too_wide = format!(
        "/events/access?filter=occurred__gt:{};occurred__lt:{}",
        now.checked_sub(jiff::SignedDuration::from_hours(30))
            .unwrap(),
        now
    );
    let r = h.get(&too_wide).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "Invalid listing criteria provided");

    let both = h
        .get(&format!(
            "/events/access?filter=object__eq:{FRONT_DOOR};site__eq:{SITE_ID}"
        ))
        .await;
    assert_eq!(both.status, 400);

    let elsewhere = h
        .get(&format!("/events/access?filter=object__eq:{OFFICE_1_DOOR}"))
        .await
        .json();
    assert!(elsewhere["data"].as_array().unwrap().is_empty());
    let exceptions = h
        .get("/events/access?filter=event_type__eq:exception")
        .await
        .json();
    assert!(exceptions["data"].as_array().unwrap().is_empty());
}

async fn swipe_at(h: &Harness, user: u64, door: u64, occurred: jiff::Timestamp) -> Value {
    let r = h
        .admin(
            Method::POST,
            "/swipe",
            Some(
                json!({"user_id": user, "access_point_id": door, "occurred": occurred.to_string()}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

fn uuids_of(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not an event page: {page}"))
        .iter()
        .map(|e| e["uuid"].as_str().unwrap().to_string())
        .collect()
}

/// Brivo truncates both `occurred` bounds to the hour and then allows at most 24 hours
/// between them (reference §14).
#[tokio::test]
async fn occurred_bounds_are_truncated_to_the_hour() {
    use jiff::{SignedDuration, Timestamp};
    let h = Harness::start().await;
    let min = SignedDuration::from_mins;
    let top = crate::events::hour_floor(Timestamp::now());
    let a = swipe_at(&h, CLEANER_USER_ID, FRONT_DOOR, top - min(30)).await;
    let b = swipe_at(&h, CLEANER_USER_ID, FRONT_DOOR, top).await;
    let c = swipe(&h, CLEANER_USER_ID, FRONT_DOOR).await;
    assert_eq!(
        a["occurred"],
        format!("{}", (top - min(30)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    );
    let [a, b, c] = [a, b, c].map(|e| e["uuid"].as_str().unwrap().to_string());
    let list = |gt: Timestamp, lt: Timestamp| {
        format!("/events/access?filter=occurred__gt:{gt};occurred__lt:{lt}")
    };

    // A lower bound just after A is cut back to A's hour, so A is listed.
    let r = h
        .get(&list(
            top - min(30) + SignedDuration::from_secs(5),
            top + min(60),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(uuids_of(&r.json()), [c.clone(), b.clone(), a.clone()]);
    let count = h
        .get(&format!(
            "/events/counts/access?filter=occurred__gt:{};occurred__lt:{}",
            top - min(25),
            top + min(60)
        ))
        .await;
    assert_eq!(count.json()["count"], 3);

    // An upper bound inside the current hour is cut back to its top: the current hour's events
    // (B at the very top, C now) are not listed, only A.
    let r = h
        .get(&list(
            top - min(120),
            top + min(59) + SignedDuration::from_secs(59),
        ))
        .await;
    assert_eq!(uuids_of(&r.json()), std::slice::from_ref(&a));
    // A few seconds inside one hour collapse to an empty window (not an error).
    let r = h.get(&list(top - min(20), top - min(19))).await;
    assert_eq!(r.status, 200);
    assert!(uuids_of(&r.json()).is_empty());

    // The 24-hour limit applies to the truncated bounds.
    let day = SignedDuration::from_hours(24);
    let r = h.get(&list(top - day - min(30), top)).await;
    assert_eq!(r.status, 400, "25 hours once truncated");
    assert_eq!(r.json()["message"], "Invalid listing criteria provided");
    let r = h.get(&list(top - day + min(10), top + min(50))).await;
    assert_eq!(
        r.status, 200,
        "24 h 40 min as sent, 24 h once truncated: {}",
        r.text
    );
    assert_eq!(uuids_of(&r.json()), std::slice::from_ref(&a));
    // Only an upper bound: the 24 hours before its hour.
    let r = h
        .get(&format!(
            "/events/access?filter=occurred__lt:{}",
            top + min(61)
        ))
        .await;
    assert_eq!(uuids_of(&r.json()), [c, b, a]);
}

#[tokio::test]
async fn swipes_can_be_placed_in_the_past_but_not_the_future() {
    use jiff::{SignedDuration, Timestamp};
    let h = Harness::start().await;
    let now = swipe(&h, CLEANER_USER_ID, FRONT_DOOR).await;
    let earlier = Timestamp::now() - SignedDuration::from_hours(3);
    let old = swipe_at(&h, CLEANER_USER_ID, FRONT_DOOR, earlier).await;
    let twin = swipe_at(&h, CLEANER_USER_ID, FRONT_DOOR, earlier).await;
    assert_ne!(old["occurred"], twin["occurred"], "instants stay distinct");
    assert!(old["processed"].as_str().unwrap() > old["occurred"].as_str().unwrap());
    // Newest first, whatever order they were recorded in.
    let all = h
        .get(&format!(
            "/events/access?filter=occurred__gt:{}",
            earlier - SignedDuration::from_hours(1)
        ))
        .await
        .json();
    let uuids = uuids_of(&all);
    assert_eq!(uuids.len(), 3);
    assert_eq!(uuids[0], now["uuid"].as_str().unwrap());
    assert_eq!(uuids[1], twin["uuid"].as_str().unwrap());
    assert_eq!(uuids[2], old["uuid"].as_str().unwrap());

    let future = Timestamp::now() + SignedDuration::from_hours(1);
    let r = h
        .admin(
            Method::POST,
            "/swipe",
            Some(json!({"user_id": CLEANER_USER_ID, "access_point_id": FRONT_DOOR, "occurred": future.to_string()})),
        )
        .await;
    assert_eq!(r.status, 400);
}

type Received = Arc<Mutex<Vec<Value>>>;

/// A webhook receiver on 127.0.0.1:0 that keeps every body it is sent.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State(r): State<Received>, Json(v): Json<Value>| async move {
                    r.lock().unwrap().push(v);
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, received)
}

#[tokio::test]
async fn subscriptions_receive_matching_events_by_webhook() {
    let h = Harness::start().await;
    let (url, all) = receiver().await;
    let (office_url, office_only) = receiver().await;
    let r = h
        .post(
            "/event-subscriptions",
            json!({"name": "all", "url": url, "criteria": []}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sub = r.json();
    assert!(sub["id"].is_u64());
    assert!(sub["encryptedSecretWord"].is_string());
    h.post(
        "/event-subscriptions",
        json!({"name": "office", "url": office_url, "criteria": [
            {"criteriaType": "ACCESS-POINT", "criteriaOperationType": "EQ", "criteriaValue": OFFICE_1_DOOR},
            {"criteriaType": "SITE", "criteriaOperationType": "EQ", "criteriaValue": SITE_ID}
        ]}),
    )
    .await;

    let event = swipe(&h, CLEANER_USER_ID, FRONT_DOOR).await;
    let delivered = eventually(Duration::from_secs(5), || {
        let all = all.clone();
        async move { all.lock().unwrap().first().cloned() }
    })
    .await;
    assert_eq!(delivered, event);
    assert_eq!(action(&delivered), 2004);

    swipe(&h, CLEANER_USER_ID, OFFICE_1_DOOR).await;
    let office_event = eventually(Duration::from_secs(5), || {
        let o = office_only.clone();
        async move { o.lock().unwrap().first().cloned() }
    })
    .await;
    assert_eq!(office_event["eventObject"]["id"], OFFICE_1_DOOR);
    eventually(Duration::from_secs(5), || {
        let all = all.clone();
        async move { (all.lock().unwrap().len() == 2).then_some(()) }
    })
    .await;
    assert_eq!(
        office_only.lock().unwrap().len(),
        1,
        "the front door swipe did not match"
    );
    let deliveries = h.admin(Method::GET, "/deliveries", None).await.json();
    assert!(
        deliveries
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["delivered"] == true)
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_then_reported() {
    let h = Harness::start().await;
    // A port nothing listens on: bind, note the port, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    h.post(
        "/event-subscriptions",
        json!({"name": "broken", "url": format!("http://{closed}/hook"),
               "errorEmail": "ops@example.com", "criteria": []}),
    )
    .await;
    swipe(&h, CLEANER_USER_ID, FRONT_DOOR).await;
    let delivery = eventually(Duration::from_secs(10), || {
        let h = &h;
        async move {
            let d = h.admin(Method::GET, "/deliveries", None).await.json();
            d.as_array().unwrap().first().cloned()
        }
    })
    .await;
    assert_eq!(delivery["delivered"], false);
    assert_eq!(delivery["attempts"], 3);
    let outbox = h.admin(Method::GET, "/outbox", None).await.json();
    assert_eq!(outbox[0]["to"], "ops@example.com");
}

/// A receiver answering 202 is not a delivery: Brivo "doesn't like 202" (reference §15).
#[tokio::test]
async fn a_202_answer_is_a_failed_delivery() {
    let h = Harness::start().await;
    let app =
        axum::Router::new().route("/hook", post(|| async { axum::http::StatusCode::ACCEPTED }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    h.post(
        "/event-subscriptions",
        json!({"name": "accepted", "url": url, "criteria": []}),
    )
    .await;
    swipe(&h, CLEANER_USER_ID, FRONT_DOOR).await;
    let delivery = eventually(Duration::from_secs(10), || {
        let h = &h;
        async move {
            let d = h.admin(Method::GET, "/deliveries", None).await.json();
            d.as_array().unwrap().first().cloned()
        }
    })
    .await;
    assert_eq!(delivery["delivered"], false);
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["status"], 202);
}

#[tokio::test]
async fn event_subscription_crud() {
    let h = Harness::start().await;
    let created = h
        .post(
            "/event-subscriptions",
            json!({"name": "Site 1", "url": "http://127.0.0.1:9/hook", "criteria": [
                {"criteriaType": "SITE", "criteriaOperationType": "EQ", "criteriaValue": SITE_ID}
            ]}),
        )
        .await
        .json();
    let id = created["id"].as_u64().unwrap();
    assert!(created["criteria"][0]["id"].is_u64());
    assert_eq!(created["criteria"][0]["criteriaValue"], SITE_ID);

    let bad = h
        .post(
            "/event-subscriptions",
            json!({"name": "x", "url": "http://127.0.0.1:9/hook", "criteria": [
                {"criteriaType": "SITE", "criteriaOperationType": "EQ", "criteriaValue": 1}
            ]}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json()["message"],
        "Event subscription contained invalid Site criteria"
    );

    assert_eq!(
        h.get(&format!("/event-subscriptions/{id}")).await.json(),
        created
    );
    let updated = h
        .put(
            &format!("/event-subscriptions/{id}"),
            Some(json!({"name": "Renamed", "url": "http://127.0.0.1:9/other", "criteria": []})),
        )
        .await
        .json();
    assert_eq!(updated["name"], "Renamed");
    assert_eq!(
        updated["encryptedSecretWord"],
        created["encryptedSecretWord"]
    );
    let list = h
        .get("/event-subscriptions?filter=name__eq:renamed")
        .await
        .json();
    assert_eq!(list["count"], 1);
    assert_eq!(
        h.delete(&format!("/event-subscriptions/{id}")).await.status,
        204
    );
    assert_eq!(
        h.get(&format!("/event-subscriptions/{id}")).await.status,
        404
    );
}

//! Presence over real HTTP with brivo-sim: swipes at a check-in door become check-ins (covered
//! by a booking, or by a day of a pass, once a day), at a check-out door check-outs, and an
//! unknown user's entry a failed check-in; events read again are kept once.

use serde_json::{Value, json};
use std::time::Duration;
use testkit::Backend;
use testkit::sync::SyncApp;

async fn swipe(s: &SyncApp, user: &str, door: u64) {
    let res = s
        .http
        .post(format!("{}/__sim/swipe", s.sim.base_url()))
        .json(&json!({"user_id": user.parse::<u64>().unwrap(), "access_point_id": door}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

async fn user_of(s: &SyncApp, customer: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = s
            .app
            .get_json(&format!("/api/v1/customers/{customer}/access"))
            .await;
        if let Some(u) = v["provider"][0]["user_id"].as_str() {
            return u.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{customer} got no Brivo user: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn items(s: &SyncApp, path: &str) -> Vec<Value> {
    let (status, v) = s.app.get_json(path).await;
    assert_eq!(status, 200, "{path}: {v}");
    v["items"].as_array().cloned().unwrap_or_default()
}

async fn swipes_become_check_ins_check_outs_and_failed_check_ins(backend: Backend) {
    let Some(mut s) = SyncApp::spawn(backend, "PT0S", "PT0S").await else {
        return;
    };
    let site = s.brivo.list_sites(None).await.unwrap()[0].id;
    let doors = s.brivo.list_access_points(None).await.unwrap();
    let door = |name: &str| {
        doors
            .iter()
            .find(|d| d.name == name && d.site_id == Some(site))
            .unwrap_or_else(|| panic!("no door {name}"))
            .id
    };
    let (front, floor) = (door("Front Door"), door("Floor 1 Door"));
    // Reading the directory made a door record for every door of the location's site, with no
    // role; the operator gives two of them one.
    let at_site = doors.iter().filter(|d| d.site_id == Some(site)).count();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let synced = loop {
        let synced = items(&s, "/api/v1/doors?limit=100").await;
        if synced.len() == at_site {
            break synced;
        }
        assert!(tokio::time::Instant::now() < deadline, "doors: {synced:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (provider, role) in [(front, "check_in"), (floor, "check_out")] {
        let d = synced
            .iter()
            .find(|d| d["provider_door_id"].as_str() == Some(provider.to_string().as_str()))
            .expect("a synced door");
        assert_eq!(d["presence_role"], "none");
        assert_eq!(d["location_id"], "hq");
        let id = d["id"].as_str().unwrap();
        let (status, body) = s
            .app
            .patch_json(
                &format!("/api/v1/doors/{id}"),
                json!({"presence_role": role}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // Ana has a booking now; Ben a pass with one day.
    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_hours(1);
    s.customer("ana").await;
    s.put_ok(
        "/api/v1/bookings/ana-1",
        json!({"customer_id": "ana", "resource_id": "room-1", "start": now.checked_sub(hour).unwrap(), "end": now.checked_add(hour).unwrap()}),
    )
    .await;
    s.customer("ben").await;
    s.put_ok(
        "/api/v1/pass-grants/ben-1",
        json!({"customer_id": "ben", "pass_id": "day-pass", "valid_from": now.checked_sub(hour).unwrap(), "valid_until": now.checked_add(hour * 48).unwrap(), "uses": 1}),
    )
    .await;
    let (ana, ben) = (user_of(&s, "ana").await, user_of(&s, "ben").await);
    swipe(&s, &ana, front).await;
    swipe(&s, &ben, front).await;
    swipe(&s, &ben, front).await;
    // A user doorsync does not know (the account's staff).
    let stranger = s
        .brivo
        .list_users(None)
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.external_id.is_none())
        .expect("a user doorsync did not make")
        .id
        .to_string();
    swipe(&s, &stranger, front).await;
    assert!(
        s.eventually(Duration::from_secs(20), || async {
            items(&s, "/api/v1/checkins").await.len() == 3
                && items(&s, "/api/v1/failed-checkins").await.len() == 1
        })
        .await,
        "checkins {:?} failed {:?}",
        items(&s, "/api/v1/checkins").await,
        items(&s, "/api/v1/failed-checkins").await
    );
    let ana_in = items(&s, "/api/v1/checkins?customer_id=ana").await;
    assert_eq!(ana_in.len(), 1);
    assert_eq!(ana_in[0]["covered_kind"], "booking");
    assert_eq!(ana_in[0]["covered_id"], "ana-1");
    let ben_in = items(&s, "/api/v1/checkins?customer_id=ben").await;
    let kinds: Vec<&str> = ben_in
        .iter()
        .map(|c| c["covered_kind"].as_str().unwrap())
        .collect();
    // Newest first: the second entry of the day costs no day.
    assert_eq!(kinds, ["same_day", "pass_day"]);
    let failed = items(&s, "/api/v1/failed-checkins").await;
    assert_eq!(failed[0]["reason"], "not_a_customer");
    assert_eq!(failed[0]["provider_user_id"], stranger);
    let (_, presence) = s.app.get_json("/api/v1/presence").await;
    // Ana and Ben are in (Ben once, though he came in twice).
    assert_eq!(presence["locations"][0]["count"], 2, "{presence}");
    // Ana leaves through the check-out door.
    swipe(&s, &ana, floor).await;
    assert!(
        s.eventually(Duration::from_secs(20), || async {
            items(&s, "/api/v1/checkins?customer_id=ana").await[0]["checked_out_at"].is_string()
        })
        .await
    );
    let (_, presence) = s.app.get_json("/api/v1/presence").await;
    assert_eq!(presence["locations"][0]["count"], 1, "{presence}");
    // Downtime: doorsync stops; a swipe two hours back is reported late; doorsync comes back
    // with its last read three hours ago and reads the gap, across hour windows.
    s.run.take().expect("engine").stop().await;
    let store: &dyn doorsync_store::Store = s.app.store.as_ref();
    store
        .set_event_cursor("brivo", now.checked_sub(hour * 3).unwrap())
        .await
        .unwrap();
    let res = s
        .http
        .post(format!("{}/__sim/swipe", s.sim.base_url()))
        .json(
            &json!({"user_id": ana.parse::<u64>().unwrap(), "access_point_id": front,
                      "occurred": now.checked_sub(hour * 2).unwrap()}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    s.run = Some(testkit::sync::EngineRun::start(
        s.app.engine.clone().expect("engine"),
    ));
    assert!(
        s.eventually(Duration::from_secs(20), || async {
            items(&s, "/api/v1/failed-checkins?customer_id=ana")
                .await
                .len()
                == 1
        })
        .await,
        "the missed event was read: {:?}",
        items(&s, "/api/v1/door-events?limit=100")
            .await
            .iter()
            .map(|e| (
                e["occurred_at"].clone(),
                e["outcome"].clone(),
                e["subject"].clone()
            ))
            .collect::<Vec<_>>()
    );
    let late = items(&s, "/api/v1/failed-checkins?customer_id=ana").await;
    // Her booking began an hour ago: two hours ago it had not started.
    assert_eq!(late[0]["reason"], "booking_not_started", "{late:?}");
    // Every event is kept once, though the reads overlap; each says what it became.
    let events = items(&s, "/api/v1/door-events?limit=100").await;
    assert_eq!(events.len(), 6, "{events:?}");
    let outcomes: Vec<&str> = events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        outcomes,
        [
            "check_out",
            "failed_check_in",
            "check_in",
            "check_in",
            "check_in",
            "failed_check_in"
        ]
    );
    assert_eq!(items(&s, "/api/v1/checkins").await.len(), 3);
    // The dashboard's presence page says the same, in words.
    let store: &dyn doorsync_store::Store = s.app.store.as_ref();
    store
        .create_admin("adm_ops", "ops@example.com", "not-a-hash", now)
        .await
        .unwrap();
    store
        .create_admin_session(
            &doorsync_web::auth::hash("session-token"),
            "adm_ops",
            "csrf",
            jiff::Timestamp::now(),
            jiff::Timestamp::now().checked_add(hour).unwrap(),
        )
        .await
        .unwrap();
    let page = s
        .http
        .get(s.app.url("/admin/presence"))
        .header("cookie", "doorsync_admin=session-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("HQ: 1 in now"), "{page}");
    assert!(
        page.contains("Member ben") && page.contains("pass day ben-1"),
        "{page}"
    );
    assert!(page.contains("not a customer"), "{page}");
    // brivo-sim also delivered each event to the webhook: one subscription, to this service.
    let subs = s.brivo.list_event_subscriptions().await.unwrap();
    assert_eq!(subs.len(), 1, "{subs:?}");
    let hook = subs[0].url.clone();
    assert!(
        hook.starts_with(&format!("{}/hooks/brivo/", s.app.base)),
        "{hook}"
    );
    // An event delivered twice more counts once still; a wrong secret learns nothing.
    let events_before = items(&s, "/api/v1/door-events?limit=100").await.len();
    let sim_events = s
        .brivo
        .access_event_pages(brivo_client::EventQuery::between(
            now.checked_sub(hour).unwrap(),
            jiff::Timestamp::now(),
        ))
        .all()
        .await
        .unwrap();
    for _ in 0..2 {
        let res = s
            .http
            .post(&hook)
            .json(&sim_events[0])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let wrong = s
        .http
        .post(format!("{}/hooks/brivo/{}", s.app.base, "0".repeat(64)))
        .json(&sim_events[0])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    assert_eq!(wrong.text().await.unwrap(), "");
    assert_eq!(
        items(&s, "/api/v1/door-events?limit=100").await.len(),
        events_before
    );
    // Paging and filters.
    let (_, page) = s.app.get_json("/api/v1/door-events?limit=2").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, next) = s
        .app
        .get_json(&format!("/api/v1/door-events?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(next["items"][0]["outcome"], "check_in");
    let (status, _) = s.app.get_json("/api/v1/checkins?since=yesterday").await;
    assert_eq!(status, 400);
    let (status, _) = s.app.get_json("/api/v1/checkins?colour=red").await;
    assert_eq!(status, 400);
    s.stop().await;
}

testkit::on_both_backends!(
    swipes_become_check_ins_check_outs_and_failed_check_ins,
    an_idle_connection_reads_no_events,
);

async fn event_calls(s: &SyncApp) -> (u64, Value) {
    let requests: Value = s
        .http
        .get(format!("{}/__sim/requests", s.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.contains("/events")))
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    (events, requests)
}

/// With no door given a presence role and no remote unlock waiting, nothing would use the
/// events: the polls that come due make no call for them (the quota's biggest spender before).
async fn an_idle_connection_reads_no_events(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT0S", "PT0S").await else {
        return;
    };
    let store = doorsync_store::SqlStore::connect(&s.app.db.url)
        .await
        .unwrap();
    use doorsync_store::Store;
    s.http
        .delete(format!("{}/__sim/requests", s.sim.base_url()))
        .send()
        .await
        .unwrap();
    // Every due poll moves the cursor; several of them (0.5 s apart) have come due by then.
    let start = jiff::Timestamp::now();
    let polled = s
        .eventually(Duration::from_secs(20), || async {
            store
                .event_cursor("brivo")
                .await
                .unwrap()
                .is_some_and(|t| t.duration_since(start).as_secs_f64() > 3.0)
        })
        .await;
    assert!(polled, "the event poll never came due");
    let (events, requests) = event_calls(&s).await;
    assert_eq!(
        events, 0,
        "event reads with nothing to use them: {requests}"
    );
}

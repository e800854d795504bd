//! The member app over real HTTP with brivo-sim and a real SMTP conversation: a member signs in
//! with a link e-mailed to them, sees only their own access, opens only the doors they hold now
//! (an offline door and one without remote unlock say so), and the unlock comes back from Brivo
//! as theirs, once.

use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::Backend;
use testkit::sync::SyncApp;

/// The sign-in link in the latest mail to `to`, once it arrives.
async fn link_for(s: &SyncApp, to: &str, before: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mails: Vec<_> = s
            .inbox
            .all()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == to))
            .collect();
        if mails.len() > before {
            let body = &mails.last().unwrap().body;
            let link = body
                .lines()
                .find(|l| l.contains("/app/signin/"))
                .unwrap_or_else(|| panic!("no link in {body}"));
            return link.trim().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "no mail to {to}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mails_to(s: &SyncApp, to: &str) -> usize {
    s.inbox
        .all()
        .iter()
        .filter(|m| m.to.iter().any(|t| t == to))
        .count()
}

async fn ask_link(s: &SyncApp, email: &str) -> u16 {
    s.http
        .post(format!("{}/app/api/v1/signin", s.app.base))
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A member session token for `email`, through the JSON API.
async fn session_for(s: &SyncApp, email: &str) -> String {
    let before = mails_to(s, email);
    assert_eq!(ask_link(s, email).await, 202);
    let link = link_for(s, email, before).await;
    let token = link.rsplit('/').next().unwrap();
    let res = s
        .http
        .post(format!("{}/app/api/v1/session", s.app.base))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    v["token"].as_str().unwrap().to_owned()
}

async fn member_get(s: &SyncApp, token: &str, path: &str) -> (u16, Value) {
    let res = s
        .http
        .get(format!("{}{path}", s.app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn unlock(s: &SyncApp, token: &str, door: &str) -> (u16, Value) {
    let res = s
        .http
        .post(format!("{}/app/api/v1/doors/{door}/unlock", s.app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn cookie_value(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (pair, _) = v.split_once(';').unwrap_or((v, ""));
        let (k, val) = pair.split_once('=')?;
        (k == name).then(|| val.to_owned())
    })
}

fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

async fn a_member_signs_in_by_mail_and_opens_only_their_doors(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT0S", "PT0S").await else {
        return;
    };
    let (status, body) = s
        .app
        .patch_json(
            "/api/v1/connections/brivo",
            json!({"list_doors_in_app": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_hours(1);
    s.customer("ana").await;
    s.customer("ben").await;
    s.put_ok(
        "/api/v1/bookings/ana-1",
        json!({"customer_id": "ana", "resource_id": "room-1", "start": now.checked_sub(hour).unwrap(), "end": now.checked_add(hour).unwrap()}),
    )
    .await;
    s.put_ok(
        "/api/v1/pass-grants/ana-pass",
        json!({"customer_id": "ana", "pass_id": "day-pass", "valid_from": now.checked_sub(hour).unwrap(), "valid_until": now.checked_add(hour * 240).unwrap(), "uses": 10}),
    )
    .await;
    s.put_ok(
        "/api/v1/visitors/vic",
        json!({"name": "Vic Guest", "email": "vic@example.com", "host_customer_id": "ana", "location_id": "hq", "arrival": now.checked_add(hour).unwrap()}),
    )
    .await;
    s.put_ok(
        "/api/v1/visitors/other",
        json!({"name": "Someone Else's", "email": "else@example.com", "host_customer_id": "ben", "location_id": "hq", "arrival": now.checked_add(hour).unwrap()}),
    )
    .await;
    // The front door checks people in.
    let sim_doors = s.brivo.list_access_points(None).await.unwrap();
    let provider_door = |name: &str| sim_doors.iter().find(|d| d.name == name).unwrap().clone();
    let front = provider_door("Front Door");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let doors = loop {
        let (_, v) = s.app.get_json("/api/v1/doors?limit=100").await;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= 13 {
            break items;
        }
        assert!(tokio::time::Instant::now() < deadline, "doors: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let door_id = |provider: u64| -> String {
        doors
            .iter()
            .find(|d| d["provider_door_id"].as_str() == Some(provider.to_string().as_str()))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let front_id = door_id(front.id);
    let (status, _) = s
        .app
        .patch_json(
            &format!("/api/v1/doors/{front_id}"),
            json!({"presence_role": "check_in"}),
        )
        .await;
    assert_eq!(status, 200);

    // Signing in through the pages: the mail's link shows a button, the button signs in once.
    let page = s
        .http
        .get(format!("{}/app", s.app.base))
        .send()
        .await
        .unwrap();
    let csrf_cookie = cookie_value(&page, "doorsync_member_csrf").expect("a csrf cookie");
    let html = page.text().await.unwrap();
    let csrf = hidden_csrf(&html);
    let form = |email: &str, csrf: &str| format!("csrf={csrf}&email={}", email.replace('@', "%40"));
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |path: String, body: String, cookie: String| {
        no_redirects
            .post(format!("{}{path}", s.app.base))
            .header(COOKIE, cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let no_token = post(
        "/app/signin".into(),
        form("ana@example.com", ""),
        String::new(),
    )
    .await
    .unwrap();
    assert_eq!(no_token.status(), 403);
    let sent = post(
        "/app/signin".into(),
        form("Ana@Example.com", &csrf),
        format!("doorsync_member_csrf={csrf_cookie}"),
    )
    .await
    .unwrap();
    assert_eq!(sent.status(), 200);
    assert!(
        sent.text()
            .await
            .unwrap()
            .contains("sign-in link is on its way")
    );
    let link = link_for(&s, "ana@example.com", 0).await;
    assert!(link.starts_with(&s.app.base), "{link}");
    let path = link.strip_prefix(&s.app.base).unwrap().to_owned();
    let confirm = s.http.get(&link).send().await.unwrap();
    assert_eq!(confirm.status(), 200);
    assert!(
        confirm
            .text()
            .await
            .unwrap()
            .contains("Sign in to the member app")
    );
    let signed = post(
        path.clone(),
        format!("csrf={csrf}"),
        format!("doorsync_member_csrf={csrf_cookie}"),
    )
    .await
    .unwrap();
    assert_eq!(signed.status(), 303);
    let session = cookie_value(&signed, "doorsync_member").expect("a session cookie");
    let again = post(
        path,
        format!("csrf={csrf}"),
        format!("doorsync_member_csrf={csrf_cookie}"),
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 410, "a link works once");
    // An address nobody has gets the same answer, and no mail.
    assert_eq!(ask_link(&s, "nobody@example.com").await, 202);

    // Her page: her booking in the location's zone, and the doors she holds now.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let home = loop {
        let res = s
            .http
            .get(format!("{}/app", s.app.base))
            .header(COOKIE, format!("doorsync_member={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let html = res.text().await.unwrap();
        if html.contains("Meeting Room 1 Door") {
            break html;
        }
        assert!(tokio::time::Instant::now() < deadline, "no doors: {html}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(home.contains("Meeting Room 1</strong>, HQ"), "{home}");
    assert!(home.contains("Europe/London"));
    assert!(!home.contains("Office 1 Door"), "a door she does not hold");
    let page_csrf = hidden_csrf(&home);

    // The JSON API, with a session of its own.
    let ana = session_for(&s, "ana@example.com").await;
    let (status, me) = member_get(&s, &ana, "/app/api/v1/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], "ana");
    assert_eq!(me["bookings"][0]["resource"], "Meeting Room 1");
    assert_eq!(me["bookings"][0]["start"]["zone"], "Europe/London");
    assert_eq!(me["passes"][0]["name"], "Day Pass");
    assert_eq!(me["passes"][0]["days_left"], 10);
    assert_eq!(me["visitors"].as_array().unwrap().len(), 1, "{me}");
    assert_eq!(me["visitors"][0]["name"], "Vic Guest");
    let (_, doors_v) = member_get(&s, &ana, "/app/api/v1/doors").await;
    let names: Vec<&str> = doors_v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Front Door") && names.contains(&"Meeting Room 1 Door"),
        "{names:?}"
    );
    assert!(!names.contains(&"Office 1 Door"), "{names:?}");

    // Opening the front door: Brivo reports the administrator; doorsync counts it for Ana, once.
    assert_eq!(unlock(&s, &ana, &front_id).await.0, 204);
    assert!(
        s.eventually(Duration::from_secs(20), || async {
            let (_, v) = s.app.get_json("/api/v1/checkins?customer_id=ana").await;
            v["items"].as_array().is_some_and(|i| i.len() == 1)
        })
        .await,
        "the unlock did not check Ana in"
    );
    let (_, events) = s.app.get_json("/api/v1/door-events?limit=100").await;
    let pulses: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["remote_unlock"] == true)
        .collect();
    assert_eq!(pulses.len(), 1, "{events}");
    assert_eq!(pulses[0]["subject"], "customer:ana");
    assert_eq!(pulses[0]["outcome"], "check_in");
    // The sim's own admin pulse (nobody asked doorsync) counts for nobody.
    let res = s.brivo.activate_access_point(front.id).await;
    assert!(res.is_ok());
    assert!(
        s.eventually(Duration::from_secs(20), || async {
            let (_, v) = s.app.get_json("/api/v1/door-events?limit=100").await;
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["remote_unlock"] == true && e["outcome"].is_string())
                .count()
                == 2
        })
        .await
    );
    let (_, v) = s.app.get_json("/api/v1/door-events?limit=100").await;
    let other = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["remote_unlock"] == true && e["subject"].is_null())
        .cloned()
        .expect("the administrator's own unlock");
    assert_eq!(other["outcome"], "none");

    // An offline door, and a door without remote unlock, say so; nothing else is tried.
    let room_door = provider_door("Meeting Room 1 Door");
    let room_id = door_id(room_door.id);
    let res = s
        .http
        .put(format!(
            "{}/__sim/panels/{}",
            s.sim.base_url(),
            room_door.control_panel_id.unwrap()
        ))
        .json(&json!({"online": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, body) = unlock(&s, &ana, &room_id).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (412, Some("door_offline"))
    );
    let page = post(
        format!("/app/doors/{room_id}/unlock"),
        format!("csrf={page_csrf}"),
        format!("doorsync_member={session}"),
    )
    .await
    .unwrap();
    assert_eq!(page.status(), 412);
    assert!(page.text().await.unwrap().contains("This door is offline"));
    let floor = provider_door("Floor 1 Door");
    let res = s
        .http
        .put(format!(
            "{}/__sim/access-points/{}",
            s.sim.base_url(),
            floor.id
        ))
        .json(&json!({"activation_enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, body) = unlock(&s, &ana, &door_id(floor.id)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("remote_unlock_off"))
    );
    let page = post(
        format!("/app/doors/{}/unlock", door_id(floor.id)),
        format!("csrf={page_csrf}"),
        format!("doorsync_member={session}"),
    )
    .await
    .unwrap();
    assert_eq!(page.status(), 403);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Remote unlock is off for this door")
    );
    // A form without the session's token opens nothing.
    let forged = post(
        format!("/app/doors/{front_id}/unlock"),
        "csrf=forged".into(),
        format!("doorsync_member={session}"),
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), 403);

    // Ben holds nothing: no doors, and Ana's doors are not his to open.
    let ben = session_for(&s, "ben@example.com").await;
    let (_, v) = member_get(&s, &ben, "/app/api/v1/doors").await;
    assert_eq!(v["items"], json!([]));
    let (status, _) = unlock(&s, &ben, &front_id).await;
    assert_eq!(status, 404);
    let (status, _) = unlock(&s, &ana, &door_id(provider_door("Office 1 Door").id)).await;
    assert_eq!(status, 404, "a door Ana does not hold");
    let (status, _) = unlock(&s, &ana, "no-such-door").await;
    assert_eq!(status, 404);
    let (_, me) = member_get(&s, &ben, "/app/api/v1/me").await;
    assert_eq!(me["id"], "ben");
    assert_eq!(me["bookings"], json!([]));
    assert_eq!(me["passes"], json!([]));
    assert_eq!(me["visitors"][0]["name"], "Someone Else's");

    // Sessions are apart: the API's token is no member session, a member's is no API token,
    // and a member's cookie opens no dashboard page.
    assert_eq!(member_get(&s, &s.app.token, "/app/api/v1/me").await.0, 401);
    let res = s
        .http
        .get(format!("{}/api/v1/customers/ana", s.app.base))
        .bearer_auth(&ana)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = no_redirects
        .get(format!("{}/admin/customers", s.app.base))
        .header(
            COOKIE,
            format!("doorsync_admin={session}; doorsync_member={session}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);

    // The Mobile Pass: its code only for a space that redeems passes automatically.
    assert!(
        s.eventually(Duration::from_secs(20), || async {
            member_get(&s, &ana, "/app/api/v1/mobile-pass").await.1["status"] == "pending"
        })
        .await
    );
    let (_, pass) = member_get(&s, &ana, "/app/api/v1/mobile-pass").await;
    assert_eq!(pass["code"], Value::Null);
    let (status, _) = s
        .app
        .patch_json(
            "/api/v1/connections/brivo",
            json!({"redeem_passes_automatically": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, pass) = member_get(&s, &ana, "/app/api/v1/mobile-pass").await;
    let code = pass["code"].as_str().expect("a code").to_owned();
    let outbox: Value = s
        .http
        .get(format!("{}/__sim/outbox", s.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        outbox.to_string().contains(&code),
        "the sim's invitation has {code}"
    );

    // Signing out ends the session on the server.
    let res = s
        .http
        .delete(format!("{}/app/api/v1/session", s.app.base))
        .bearer_auth(&ana)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(member_get(&s, &ana, "/app/api/v1/me").await.0, 401);

    // Links are limited per address: five in 15 minutes (Ana asked for two so far).
    for _ in 0..3 {
        assert_eq!(ask_link(&s, "ana@example.com").await, 202);
    }
    assert_eq!(ask_link(&s, "ana@example.com").await, 429);
    assert_eq!(mails_to(&s, "nobody@example.com"), 0);
    s.stop().await;
}

async fn the_last_day_of_a_pass_ends_its_access_at_local_midnight(backend: Backend) {
    let Some(s) = SyncApp::spawn(backend, "PT0S", "PT0S").await else {
        return;
    };
    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_hours(1);
    let until = now.checked_add(hour * 72).unwrap();
    s.customer("ben").await;
    s.put_ok(
        "/api/v1/pass-grants/ben-1",
        json!({"customer_id": "ben", "pass_id": "day-pass", "valid_from": now.checked_sub(hour).unwrap(), "valid_until": until, "uses": 1}),
    )
    .await;
    let (status, _) = s
        .app
        .patch_json(
            "/api/v1/locations/hq",
            json!({"end_access_when_days_used": true}),
        )
        .await;
    assert_eq!(status, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (user, doors) = loop {
        let (_, v) = s.app.get_json("/api/v1/customers/ben/access").await;
        let (_, d) = s.app.get_json("/api/v1/doors?limit=100").await;
        let doors = d["items"].as_array().cloned().unwrap_or_default();
        if let Some(u) = v["provider"][0]["user_id"].as_str()
            && doors.len() >= 13
        {
            break (u.to_owned(), doors);
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let front = doors.iter().find(|d| d["name"] == "Front Door").unwrap();
    let (status, _) = s
        .app
        .patch_json(
            &format!("/api/v1/doors/{}", front["id"].as_str().unwrap()),
            json!({"presence_role": "check_in"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, v) = s.app.get_json("/api/v1/customers/ben/access").await;
    assert_eq!(v["groups"][0]["until"], json!(until), "{v}");
    let res = s
        .http
        .post(format!("{}/__sim/swipe", s.sim.base_url()))
        .json(&json!({"user_id": user.parse::<u64>().unwrap(), "access_point_id": front["provider_door_id"].as_str().unwrap().parse::<u64>().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The day is used: the grant now ends at the next local midnight in London.
    let midnight = now
        .to_zoned_datetime(jiff::tz::TimeZone::get("Europe/London").unwrap())
        .date()
        .tomorrow()
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::get("Europe/London").unwrap())
        .unwrap()
        .timestamp();
    assert!(
        s.eventually(Duration::from_secs(20), || async {
            let (_, v) = s.app.get_json("/api/v1/customers/ben/access").await;
            v["groups"][0]["until"] == json!(midnight)
        })
        .await,
        "the grant still runs to {until}"
    );
    let (_, v) = s.app.get_json("/api/v1/checkins?customer_id=ben").await;
    assert_eq!(v["items"][0]["covered_kind"], "pass_day");
    s.stop().await;
}

testkit::on_both_backends!(
    a_member_signs_in_by_mail_and_opens_only_their_doors,
    the_last_day_of_a_pass_ends_its_access_at_local_midnight
);

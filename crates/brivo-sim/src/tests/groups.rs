//! Groups, membership, paging and the demo seed (reference §4, §5, §10).

use reqwest::Method;
use serde_json::{Value, json};

use super::Harness;
use crate::MembershipOp;
use crate::seed::{CLEANER_USER_ID, STAFF_GROUP_ID};

/// The spec documents the group name as a query parameter of `POST /groups`.
#[tokio::test]
async fn create_group_with_the_name_in_the_query_string() {
    let h = Harness::start().await;
    let r = h
        .call(Method::POST, "/groups?name=Night%20Owls", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json()["id"].as_u64().unwrap();
    let r = h.get(&format!("/groups/{id}")).await;
    assert_eq!(r.json()["name"], "Night Owls");
    // The body still wins, and a name too long is refused either way.
    let r = h
        .call(
            Method::POST,
            "/groups?name=ignored",
            Some(json!({"name": "body"})),
        )
        .await;
    assert_eq!(r.json()["name"], "body");
    let long = "x".repeat(36);
    let r = h
        .call(Method::POST, &format!("/groups?name={long}"), None)
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn create_get_delete_group_as_recorded() {
    let h = Harness::start().await;
    let r = h.post("/groups", json!({"name": "group"})).await;
    assert_eq!(r.status, 200);
    let created = r.json();
    assert_eq!(created["name"], "group");
    assert_eq!(created["keypadUnlock"], false);
    assert_eq!(created["immuneToAntipassback"], false);
    let id = created["id"].as_u64().unwrap();

    let got = h.get(&format!("/groups/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), created);

    let renamed = h
        .put(&format!("/groups/{id}"), Some(json!({"name": "renamed"})))
        .await;
    assert_eq!(renamed.json()["name"], "renamed");

    let deleted = h.delete(&format!("/groups/{id}")).await;
    assert_eq!(deleted.status, 204);
    let gone = h.get(&format!("/groups/{id}")).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.text, r#"{"message":"Unknown Group","code":404}"#);
}

#[tokio::test]
async fn group_names_are_limited_to_35_characters() {
    let h = Harness::start().await;
    let ok = "x".repeat(35);
    assert_eq!(h.post("/groups", json!({"name": ok})).await.status, 200);
    let r = h.post("/groups", json!({"name": "x".repeat(36)})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"code": 400, "message": "Group creation requires a name parameter of 35 characters or less"})
    );
    assert_eq!(h.post("/groups", json!({})).await.status, 400);
}

#[tokio::test]
async fn membership_changes_are_idempotent_204s_and_recorded() {
    let h = Harness::start().await;
    let g = h.create_group("group").await;
    let u = h.create_user("first", "last", Some("cust-1")).await;
    let path = format!("/groups/{g}/users/{u}");
    for _ in 0..2 {
        let r = h.put(&path, None).await;
        assert_eq!(r.status, 204);
        assert!(r.text.is_empty());
    }
    let members = h
        .get(&format!("/groups/{g}/users?offset=0&pageSize=100"))
        .await;
    assert_eq!(
        members.json(),
        json!({"data": [{"id": u, "externalId": "cust-1", "firstName": "first", "lastName": "last", "suspended": false}],
               "offset": 0, "pageSize": 100, "count": 1})
    );
    let groups = h
        .get(&format!("/users/{u}/groups?offset=0&pageSize=100"))
        .await;
    assert_eq!(
        groups.json(),
        json!({"data": [{"id": g, "name": "group"}], "count": 1})
    );
    for _ in 0..2 {
        assert_eq!(h.delete(&path).await.status, 204);
    }
    let members = h
        .get(&format!("/groups/{g}/users?offset=0&pageSize=100"))
        .await;
    assert_eq!(
        members.json(),
        json!({"data": [], "offset": 0, "pageSize": 100, "count": 0})
    );

    let history: Vec<_> = h
        .sim
        .membership_history()
        .into_iter()
        .filter(|c| c.group_id == g)
        .collect();
    assert_eq!(history.len(), 2, "repeats record nothing");
    assert_eq!(history[0].op, MembershipOp::Add);
    assert_eq!(history[1].op, MembershipOp::Remove);
    assert!(history[0].at <= history[1].at);

    let since = jiff::Timestamp::now();
    h.put(&path, None).await;
    h.delete(&format!("/groups/{g}")).await;
    let r = h
        .admin(
            Method::GET,
            &format!("/memberships/history?since={since}&group_id={g}"),
            None,
        )
        .await;
    let ops: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["op"].clone(),
                c["user_id"].clone(),
                c["external_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            (json!("add"), json!(u), json!("cust-1")),
            (json!("remove"), json!(u), json!("cust-1"))
        ],
        "deleting a group removes its members"
    );

    assert_eq!(
        h.put(&format!("/groups/{g}/users/{u}"), None).await.status,
        404
    );
}

#[tokio::test]
async fn a_user_holds_at_most_16_groups_and_over_limit_requests_change_nothing() {
    let h = Harness::start().await;
    let u = h.create_user("first", "last", None).await;
    let mut groups = Vec::new();
    for i in 0..17 {
        groups.push(h.create_group(&format!("Limit {i}")).await);
    }
    let too_many = h
        .post(
            &format!("/users/{u}/groups"),
            json!({"addGroups": groups, "removeGroups": []}),
        )
        .await;
    assert_eq!(too_many.status, 400);
    assert_eq!(
        h.get(&format!("/users/{u}/groups")).await.json()["count"],
        0
    );

    // Ids may come as strings, as one client sends them.
    let sixteen: Vec<Value> = groups[..16].iter().map(|g| json!(g.to_string())).collect();
    let r = h
        .post(&format!("/users/{u}/groups"), json!({"addGroups": sixteen}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["count"], 16);

    let seventeenth = h
        .put(&format!("/groups/{}/users/{u}", groups[16]), None)
        .await;
    assert_eq!(seventeenth.status, 400);

    let swap = h
        .post(
            &format!("/users/{u}/groups"),
            json!({"addGroups": [groups[16]], "removeGroups": [groups[0]]}),
        )
        .await;
    assert_eq!(swap.status, 200);
    let held: Vec<u64> = swap.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_u64().unwrap())
        .collect();
    assert_eq!(held.len(), 16);
    assert!(held.contains(&groups[16]) && !held.contains(&groups[0]));

    let unknown = h
        .post(&format!("/users/{u}/groups"), json!({"addGroups": [1]}))
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn paging_defaults_to_20_and_clamps_at_100() {
    let h = Harness::start().await;
    for i in 0..105 {
        h.create_user(&format!("User{i}"), "Paged", None).await;
    }
    // 105 created plus the seeded cleaner.
    let first = h.get("/users").await.json();
    assert_eq!(first["pageSize"], 20);
    assert_eq!(first["offset"], 0);
    assert_eq!(first["count"], 106);
    assert_eq!(first["data"].as_array().unwrap().len(), 20);

    let clamped = h.get("/users?pageSize=500").await.json();
    assert_eq!(clamped["pageSize"], 100);
    assert_eq!(clamped["data"].as_array().unwrap().len(), 100);

    let rest = h.get("/users?offset=100&pageSize=100").await.json();
    assert_eq!(rest["offset"], 100);
    assert_eq!(rest["count"], 106);
    assert_eq!(rest["data"].as_array().unwrap().len(), 6);

    let mut seen = std::collections::HashSet::new();
    let mut offset = 0;
    loop {
        let page = h
            .get(&format!("/users?offset={offset}&pageSize=30"))
            .await
            .json();
        for u in page["data"].as_array().unwrap() {
            assert!(seen.insert(u["id"].as_u64().unwrap()));
        }
        offset += 30;
        if offset >= page["count"].as_u64().unwrap() {
            break;
        }
    }
    assert_eq!(seen.len(), 106);

    assert_eq!(h.get("/users?pageSize=zero").await.status, 400);
}

#[tokio::test]
async fn group_filters_match_names_and_reject_bad_syntax() {
    let h = Harness::start().await;
    let r = h.get("/groups?filter=name__eq:meeting").await.json();
    assert_eq!(r["count"], 4);
    let bad = h.get("/groups?filter=name__contains:x").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["message"], "Invalid filter format");
}

#[tokio::test]
async fn the_demo_seed_has_the_small_space_and_a_staff_group() {
    let h = Harness::start().await;
    let groups = h.get("/groups?pageSize=100").await.json();
    assert_eq!(groups["count"], 14);
    let names: Vec<&str> = groups["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for expected in [
        "Day Pass",
        "10-Day Pass",
        "Membership Pass",
        "Meeting Room 1",
        "Meeting Room 4",
        "Private Office 1",
        "Private Office 6",
        "Staff",
    ] {
        assert!(names.contains(&expected), "{expected} missing");
    }
    assert!(names.iter().all(|n| n.chars().count() <= 35));

    let staff = h
        .get(&format!("/groups/{STAFF_GROUP_ID}/users"))
        .await
        .json();
    assert_eq!(staff["data"][0]["id"], CLEANER_USER_ID);
    assert!(staff["data"][0].get("externalId").is_none());

    let doors = h.get("/access-points?pageSize=100").await.json();
    assert_eq!(doors["count"], 13);
    let front = &doors["data"][0];
    assert_eq!(front["name"], "Front Door");
    assert_eq!(front["type"], "Door");
    assert_eq!(front["activationEnabled"], true);
    assert!(front["controlPanelId"].is_u64());
    assert!(front["siteId"].is_u64());

    let sites = h.get("/sites").await.json();
    assert_eq!(sites["count"], 1);
    let site_id = sites["data"][0]["id"].as_u64().unwrap();
    let site = h.get(&format!("/sites/{site_id}")).await.json();
    assert_eq!(site["siteName"], "Flex Space HQ");
    assert_eq!(site["timeZone"], "Europe/London");
    assert_eq!(h.get("/sites/1").await.status, 404);

    // "Meeting Room 1" opens the front door, floor 1 and its own room.
    let room = groups["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Meeting Room 1")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let opens = h
        .get(&format!("/groups/{room}/access/access-points"))
        .await
        .json();
    let door_names: Vec<&str> = opens["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["accessPoint"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        door_names,
        ["Front Door", "Floor 1 Door", "Meeting Room 1 Door"]
    );
}

#[tokio::test]
async fn group_endpoints_are_for_config_tool_administrators_only() {
    let h = Harness::start().await;
    let group = h.create_group("Room").await;
    let user = h.create_user("Ada", "Lovelace", Some("a")).await;
    let r = h
        .admin(
            reqwest::Method::PUT,
            "/config",
            Some(serde_json::json!({"config_tool_admin": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (method, path) in [
        (reqwest::Method::GET, "/groups".to_owned()),
        (
            reqwest::Method::PUT,
            format!("/groups/{group}/users/{user}"),
        ),
        (reqwest::Method::GET, format!("/groups/{group}/users")),
    ] {
        let r = h.call(method.clone(), &path, None).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
    }
    // Users are not group endpoints.
    assert_eq!(h.get(&format!("/users/{user}")).await.status, 200);
    h.admin(
        reqwest::Method::PUT,
        "/config",
        Some(serde_json::json!({"config_tool_admin": true})),
    )
    .await;
    assert_eq!(
        h.put(&format!("/groups/{group}/users/{user}"), None)
            .await
            .status,
        204
    );
}

/// Group permissions have the documented shape: `{accessPoint: {id, name, type}, schedule: {id,
/// name}, privacyModeOverride}`; a PUT takes a schedule and answers 200 with the permission.
#[tokio::test]
async fn group_door_permissions_name_the_door_and_the_schedule() {
    use crate::seed::{
        ALWAYS_SCHEDULE_ID, FIRST_DOOR_ID, FIRST_GROUP_ID, OFFICE_HOURS_SCHEDULE_ID,
    };
    let h = Harness::start().await;
    let day_pass = FIRST_GROUP_ID;
    let front = FIRST_DOOR_ID;
    let office_1 = FIRST_DOOR_ID + 7;
    let list = h
        .get(&format!("/groups/{day_pass}/access/access-points"))
        .await;
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(list["count"], 3);
    assert_eq!(list["offset"], 0);
    assert_eq!(
        list["data"][0],
        json!({
            "accessPoint": {"id": front, "name": "Front Door", "type": "Door"},
            "schedule": {"id": ALWAYS_SCHEDULE_ID, "name": "24x7 - Always On"},
        })
    );

    let path = format!("/groups/{day_pass}/access/access-points/{office_1}");
    // The schedule is required, and must exist.
    for body in [
        None,
        Some(json!({})),
        Some(json!({"schedule": {}})),
        Some(json!({"schedule": {"id": 1}})),
        Some(json!({"schedule": 4218881})),
    ] {
        let r = h.put(&path, body.clone()).await;
        assert_eq!(r.status, 400, "{body:?}: {}", r.text);
    }
    // Privacy mode is for Salto, Allegion and ASSA Abloy locks, not plain doors.
    let r = h
        .put(
            &path,
            Some(
                json!({"schedule": {"id": OFFICE_HOURS_SCHEDULE_ID}, "privacyModeOverride": true}),
            ),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "privacy mode support for this device is not enabled"
    );
    let r = h
        .put(
            &path,
            Some(
                json!({"schedule": {"id": OFFICE_HOURS_SCHEDULE_ID}, "privacyModeOverride": false}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({
            "accessPoint": {"id": office_1, "name": "Office 1 Door", "type": "Door"},
            "schedule": {"id": OFFICE_HOURS_SCHEDULE_ID, "name": "Office Hours"},
        })
    );
    // A second PUT changes the schedule (ids may be sent as strings, as some clients do).
    let r = h
        .put(
            &path,
            Some(json!({"schedule": {"id": ALWAYS_SCHEDULE_ID.to_string()}})),
        )
        .await;
    assert_eq!(r.json()["schedule"]["name"], "24x7 - Always On");
    let list = h
        .get(&format!("/groups/{day_pass}/access/access-points"))
        .await
        .json();
    assert_eq!(list["count"], 4);

    // Filters of the listing.
    let named = h
        .get(&format!(
            "/groups/{day_pass}/access/access-points?filter=access_point_name__eq:office"
        ))
        .await
        .json();
    assert_eq!(named["count"], 1);
    let doors = h
        .get(&format!(
            "/groups/{day_pass}/access/access-points?filter=access_point_type__eq:DOOR;privacy_mode_override__eq:FALSE"
        ))
        .await
        .json();
    assert_eq!(doors["count"], 4);
    for bad in [
        "access_point_type__eq:GATE",
        "name__eq:x",
        "privacy_mode_override__eq:maybe",
    ] {
        let r = h
            .get(&format!(
                "/groups/{day_pass}/access/access-points?filter={bad}"
            ))
            .await;
        assert_eq!(r.status, 400, "{bad}");
    }

    // The groups of a door.
    let groups = h.get(&format!("/access-points/{office_1}/groups")).await;
    assert_eq!(groups.status, 200);
    let groups = groups.json();
    let names: Vec<&str> = groups["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Day Pass", "Private Office 1", "Staff"]);
    assert_eq!(groups["count"], 3);
    assert_eq!(
        groups["data"][0],
        json!({"id": day_pass, "name": "Day Pass"})
    );
    assert_eq!(h.get("/access-points/1/groups").await.status, 404);

    // Unknown group or door.
    let body = Some(json!({"schedule": {"id": ALWAYS_SCHEDULE_ID}}));
    assert_eq!(
        h.put(
            &format!("/groups/1/access/access-points/{office_1}"),
            body.clone()
        )
        .await
        .status,
        404
    );
    assert_eq!(
        h.put(&format!("/groups/{day_pass}/access/access-points/1"), body)
            .await
            .status,
        404
    );

    // Revoking answers 204 and the door no longer lists the group.
    assert_eq!(h.delete(&path).await.status, 204);
    let groups = h
        .get(&format!("/access-points/{office_1}/groups"))
        .await
        .json();
    assert_eq!(groups["count"], 2);

    // Schedules can be listed to find their ids.
    let schedules = h.get("/schedules?filter=name__eq:always").await.json();
    assert_eq!(schedules["count"], 1);
    assert_eq!(schedules["data"][0]["id"], ALWAYS_SCHEDULE_ID);
    assert_eq!(h.get("/schedules/1").await.status, 404);
}

//! Users (reference §8), checked against the recorded vectors where they exist.

use reqwest::Method;
use serde_json::json;

use super::Harness;
use crate::{MembershipOp, UserChangeOp};

#[tokio::test]
async fn create_user_echoes_a_numeric_external_id_as_a_string() {
    let h = Harness::start().await;
    // The body of create_user.yml.
    let r = h
        .post(
            "/users",
            json!({"firstName": "first", "lastName": "last", "externalId": 1, "suspended": false}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json;charset=UTF-8");
    let user = r.json();
    assert!(user["id"].is_u64());
    assert_eq!(user["externalId"], "1");
    assert_eq!(user["firstName"], "first");
    assert_eq!(user["lastName"], "last");
    assert_eq!(user["suspended"], false);
    for absent in [
        "middleName",
        "emails",
        "phoneNumbers",
        "pin",
        "customFields",
        "effectiveFrom",
    ] {
        assert!(user.get(absent).is_none(), "{absent} should be omitted");
    }
}

#[tokio::test]
async fn a_null_external_id_is_omitted() {
    let h = Harness::start().await;
    // The body of group_users.yml.
    let r = h
        .post(
            "/users",
            json!({"firstName": "first", "lastName": "last", "externalId": null, "suspended": false}),
        )
        .await;
    assert_eq!(r.status, 200);
    let user = r.json();
    assert!(user.get("externalId").is_none());
    assert!(!user.to_string().contains("null"), "no nulls: {user}");
}

#[tokio::test]
async fn get_and_external_lookup_show_custom_fields_while_listing_does_not() {
    let h = Harness::start().await;
    let id = h.create_user("first", "last", Some("1")).await;
    let one = h.get(&format!("/users/{id}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["customFields"], json!([]));

    let by_ext = h.get("/users/1/external").await;
    assert_eq!(by_ext.status, 200);
    assert_eq!(by_ext.json()["id"], id);
    assert_eq!(by_ext.json()["customFields"], json!([]));

    let list = h.get("/users?pageSize=100").await.json();
    let listed = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id)
        .unwrap()
        .clone();
    assert!(listed.get("customFields").is_none());
    assert_eq!(listed["externalId"], "1");
}

#[tokio::test]
async fn unknown_users_are_404_with_the_recorded_body() {
    let h = Harness::start().await;
    for path in ["/users/1/external", "/users/99999999", "/users/abc"] {
        let r = h.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.content_type, "application/json");
        assert_eq!(
            r.text,
            r#"{"message":"Requested user not found","code":404}"#
        );
    }
}

#[tokio::test]
async fn put_replaces_and_patch_merges() {
    let h = Harness::start().await;
    let r = h
        .post(
            "/users",
            json!({
                "firstName": "Ada", "lastName": "Lovelace", "middleName": "King",
                "externalId": "cust-1",
                "emails": [{"address": "ada@example.com", "type": "work"}],
                "phoneNumbers": [{"number": "+44 20 7946 0000", "type": "work"}],
            }),
        )
        .await;
    let id = r.json()["id"].as_u64().unwrap();
    assert_eq!(
        r.json()["emails"],
        json!([{"address": "ada@example.com", "type": "work"}])
    );

    let patched = h
        .call(
            Method::PATCH,
            &format!("/users/{id}"),
            Some(json!({"lastName": "Byron", "middleName": null})),
        )
        .await;
    assert_eq!(patched.status, 200);
    let u = patched.json();
    assert_eq!(u["lastName"], "Byron");
    assert_eq!(u["firstName"], "Ada");
    assert!(u.get("middleName").is_none());
    assert_eq!(u["emails"][0]["address"], "ada@example.com");
    assert_eq!(u["externalId"], "cust-1");

    let replaced = h
        .put(
            &format!("/users/{id}"),
            Some(json!({"firstName": "Ada", "lastName": "King", "externalId": "cust-1"})),
        )
        .await;
    assert_eq!(replaced.status, 200);
    let u = replaced.json();
    assert!(u.get("emails").is_none(), "PUT drops omitted fields: {u}");
    assert!(u.get("phoneNumbers").is_none());

    let missing_name = h
        .put(&format!("/users/{id}"), Some(json!({"firstName": "Ada"})))
        .await;
    assert_eq!(missing_name.status, 400);
    assert_eq!(missing_name.json()["code"], 400);
}

#[tokio::test]
async fn duplicate_external_ids_are_refused() {
    let h = Harness::start().await;
    h.create_user("a", "a", Some("cust-7")).await;
    let r = h
        .post(
            "/users",
            json!({"firstName": "b", "lastName": "b", "externalId": "cust-7"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"message": "Duplicate externalId", "code": 400})
    );
    let other = h.create_user("c", "c", Some("cust-8")).await;
    let r = h
        .call(
            Method::PATCH,
            &format!("/users/{other}"),
            Some(json!({"externalId": "cust-7"})),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn delete_is_204_and_ends_memberships_in_the_history() {
    let h = Harness::start().await;
    let user = h.create_user("first", "last", Some("cust-9")).await;
    let g1 = h.create_group("G1").await;
    let g2 = h.create_group("G2").await;
    for g in [g1, g2] {
        assert_eq!(
            h.put(&format!("/groups/{g}/users/{user}"), None)
                .await
                .status,
            204
        );
    }
    let r = h.delete(&format!("/users/{user}")).await;
    assert_eq!(r.status, 204);
    assert!(r.text.is_empty());
    assert_eq!(h.get(&format!("/users/{user}")).await.status, 404);
    assert_eq!(h.get("/users/cust-9/external").await.status, 404);

    let history: Vec<_> = h
        .sim
        .membership_history()
        .into_iter()
        .filter(|c| c.user_id == user)
        .collect();
    assert_eq!(history.len(), 4);
    let removes: Vec<_> = history
        .iter()
        .filter(|c| c.op == MembershipOp::Remove)
        .map(|c| c.group_id)
        .collect();
    assert_eq!(removes.len(), 2);
    assert!(removes.contains(&g1) && removes.contains(&g2));
    assert!(
        history
            .iter()
            .all(|c| c.external_id.as_deref() == Some("cust-9"))
    );
    let users = h.sim.user_history();
    assert!(
        users
            .iter()
            .any(|c| c.user_id == user && c.op == UserChangeOp::Delete)
    );
}

#[tokio::test]
async fn suspension_is_read_and_set_and_recorded() {
    let h = Harness::start().await;
    let user = h.create_user("first", "last", None).await;
    let r = h.get(&format!("/users/{user}/suspended")).await;
    assert_eq!(r.json(), json!({"id": user, "suspended": false}));
    let r = h
        .put(
            &format!("/users/{user}/suspended"),
            Some(json!({"suspended": true})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"id": user, "suspended": true}));
    assert_eq!(
        h.get(&format!("/users/{user}")).await.json()["suspended"],
        true
    );
    h.put(
        &format!("/users/{user}/suspended"),
        Some(json!({"suspended": false})),
    )
    .await;

    let r = h
        .admin(Method::GET, &format!("/users/history?user_id={user}"), None)
        .await;
    let ops: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["op"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ops, ["create", "suspend", "reinstate"]);
}

#[tokio::test]
async fn user_filters_and_their_errors() {
    let h = Harness::start().await;
    let a = h.create_user("Alice", "Smith", None).await;
    let b = h.create_user("Bob", "Smithers", None).await;
    let c = h.create_user("Carol", "Jones", None).await;
    h.put(
        &format!("/users/{c}/suspended"),
        Some(json!({"suspended": true})),
    )
    .await;
    let ids = |r: super::Reply| -> Vec<u64> {
        r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(h.get("/users?filter=lastname__eq:smith").await), [a, b]);
    assert_eq!(
        ids(h.get(&format!("/users?filter=id__eq:{a},{c}")).await),
        [a, c]
    );
    assert_eq!(
        ids(h.get("/users?filter=user_status__eq:suspended").await),
        [c]
    );
    assert_eq!(
        ids(h.get("/users?filter=firstname__eq:o;lastname__eq:s").await),
        [b, c]
    );

    let bad = h.get("/users?filter=lastname:smith").await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json(),
        json!({"message": "Invalid filter format", "code": 400})
    );
    let unknown = h.get("/users?filter=shoe_size__eq:9").await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["message"], "Invalid criteria provided");
}

/// DOCS25R names the filter fields in lower case; Brivo does not match them in any case.
#[tokio::test]
async fn filter_field_names_are_case_sensitive() {
    let h = Harness::start().await;
    h.create_user("Ada", "Lovelace", None).await;
    let r = h.get("/users?filter=lastname__eq:Lovelace").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["count"], 1);
    for field in ["LastName", "LASTNAME", "User_Status"] {
        let r = h.get(&format!("/users?filter={field}__eq:active")).await;
        assert_eq!(r.status, 400, "{field}: {}", r.text);
    }
    let r = h.get("/groups?filter=Name__eq:x").await;
    assert_eq!(r.status, 400, "{}", r.text);
}

/// DOCS25R: an active user has an active credential and at least one group; not suspended alone.
#[tokio::test]
async fn user_status_active_needs_a_group_and_an_active_credential() {
    use crate::seed::FIRST_GROUP_ID;
    let h = Harness::start().await;
    let bare = h.create_user("Bare", "User", None).await;
    let member = h.create_user("Member", "Only", None).await;
    let full = h.create_user("Full", "Access", None).await;
    for u in [member, full] {
        let r = h
            .put(&format!("/groups/{FIRST_GROUP_ID}/users/{u}"), None)
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let inv = h
        .post(
            &format!("/users/{full}/credentials/digital-invitations"),
            json!({"referenceId": "full@example.com"}),
        )
        .await
        .json();
    let code = inv["accessCode"].as_str().unwrap();
    h.admin(Method::POST, &format!("/invitations/{code}/redeem"), None)
        .await;
    let r = h.get("/users?filter=user_status__eq:active").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids: Vec<u64> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_u64().unwrap())
        .collect();
    assert!(ids.contains(&full), "{ids:?}");
    assert!(!ids.contains(&member) && !ids.contains(&bare), "{ids:?}");
}

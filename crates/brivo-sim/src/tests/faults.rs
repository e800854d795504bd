//! Fault injection, the rate limit and request counts.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::{Harness, reply};

async fn add_fault(h: &Harness, fault: Value) -> u64 {
    let r = h.admin(Method::POST, "/faults", Some(fault)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_u64().unwrap()
}

#[tokio::test]
async fn status_faults_answer_then_expire_after_their_count() {
    let h = Harness::start().await;
    add_fault(
        &h,
        json!({"path": "/v1/api/groups*", "kind": "status", "status": 503, "count": 2}),
    )
    .await;
    for _ in 0..2 {
        let r = h.get("/groups").await;
        assert_eq!(r.status, 503);
        assert_eq!(
            r.json(),
            json!({"code": 503, "message": "Service Unavailable"})
        );
    }
    assert_eq!(h.get("/groups").await.status, 200);
    let faults = h.admin(Method::GET, "/faults", None).await.json();
    assert_eq!(faults, json!([]));
}

#[tokio::test]
async fn faults_match_globs_across_slashes_and_optionally_a_method() {
    let h = Harness::start().await;
    let id = add_fault(
        &h,
        json!({"path": "/v1/api/groups/*", "method": "put", "kind": "status", "status": 500}),
    )
    .await;
    let u = h.create_user("a", "b", None).await;
    let g = h.create_group("G").await;
    assert_eq!(h.get(&format!("/groups/{g}/users")).await.status, 200);
    assert_eq!(
        h.put(&format!("/groups/{g}/users/{u}"), None).await.status,
        500
    );
    let listed = h.admin(Method::GET, "/faults", None).await.json();
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["method"], "PUT");
    assert_eq!(listed[0]["hits"], 1);
    let r = h
        .admin(Method::DELETE, &format!("/faults/{id}"), None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        h.put(&format!("/groups/{g}/users/{u}"), None).await.status,
        204
    );
    let r = h
        .admin(
            Method::POST,
            "/faults",
            Some(json!({"path": "/x", "kind": "explode"})),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn latency_faults_delay_then_answer_normally() {
    let h = Harness::start().await;
    add_fault(
        &h,
        json!({"path": "/v1/api/sites", "kind": "latency", "latency_ms": 300, "count": 1}),
    )
    .await;
    let started = Instant::now();
    let r = h.get("/sites").await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn over_qps_is_mashery_html_with_retry_after() {
    let h = Harness::start().await;
    add_fault(
        &h,
        json!({"path": "/v1/api/*", "kind": "over_qps", "retry_after_secs": 2, "count": 1}),
    )
    .await;
    let r = h.get("/users").await;
    assert_eq!(r.status, 403);
    assert!(r.content_type.starts_with("text/html"));
    assert_eq!(r.text, "<h1>Developer Over Qps</h1>");
    assert_eq!(r.header("retry-after").as_deref(), Some("2"));
    assert_eq!(
        r.header("x-mashery-error-code").as_deref(),
        Some("ERR_403_DEVELOPER_OVER_QPS")
    );
}

#[tokio::test]
async fn too_many_requests_is_429_with_retry_after() {
    let h = Harness::start().await;
    add_fault(
        &h,
        json!({"path": "/v1/api/*", "kind": "too_many_requests", "count": 1}),
    )
    .await;
    let r = h.get("/users").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
}

#[tokio::test]
async fn drop_faults_close_the_connection_without_an_answer() {
    let h = Harness::start().await;
    add_fault(
        &h,
        json!({"path": "/v1/api/users", "kind": "drop", "count": 1}),
    )
    .await;
    let result = h
        .http
        .get(format!("{}/users", h.sim.api_url()))
        .header("api-key", "sim-api-key")
        .header("Authorization", format!("bearer {}", h.token))
        .send()
        .await;
    let err = result.expect_err("a dropped connection is an error, not a response");
    assert!(err.status().is_none());
    assert_eq!(h.get("/users").await.status, 200, "the next call works");
    let counts = h.admin(Method::GET, "/requests", None).await.json();
    assert!(
        counts
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "/v1/api/users" && c["status"] == 0)
    );
}

#[tokio::test]
async fn an_ignore_fault_answers_204_and_changes_nothing() {
    let h = Harness::start().await;
    let u = h.create_user("a", "b", None).await;
    let g = h.create_group("G").await;
    assert_eq!(
        h.put(&format!("/groups/{g}/users/{u}"), None).await.status,
        204
    );
    add_fault(
        &h,
        json!({"path": "/v1/api/groups/*/users/*", "method": "DELETE", "kind": "ignore"}),
    )
    .await;
    let r = h.delete(&format!("/groups/{g}/users/{u}")).await;
    assert_eq!(r.status, 204);
    let members = h.get(&format!("/groups/{g}/users")).await.json();
    assert_eq!(members["count"], 1, "{members}");
}

#[tokio::test]
async fn invalid_token_faults_and_faults_on_the_token_endpoint() {
    let h = Harness::start().await;
    add_fault(
        &h,
        json!({"path": "/v1/api/*", "kind": "invalid_token", "count": 1}),
    )
    .await;
    let r = h.get("/users").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_token");

    add_fault(
        &h,
        json!({"path": "/oauth/token", "kind": "status", "status": 503, "count": 1}),
    )
    .await;
    let resp = h
        .http
        .post(h.token_url())
        .basic_auth("sim-client", Some("sim-secret"))
        .header("api-key", "sim-api-key")
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reply(resp).await.status, 503);
    h.password_token().await;
}

#[tokio::test]
async fn the_rate_limit_answers_over_qps_per_api_key() {
    let h = Harness::start().await;
    let r = h
        .admin(Method::PUT, "/rate-limit", Some(json!({"per_second": 3})))
        .await;
    assert_eq!(r.json(), json!({"per_second": 3}));
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = h.get("/sites").await;
        if r.status == 403 {
            assert_eq!(r.text, "<h1>Developer Over Qps</h1>");
            assert_eq!(r.header("retry-after").as_deref(), Some("1"));
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&403), "{statuses:?}");
    assert!(statuses.iter().filter(|s| **s == 200).count() <= 6);

    h.admin(
        Method::PUT,
        "/rate-limit",
        Some(json!({"per_second": null})),
    )
    .await;
    for _ in 0..10 {
        assert_eq!(h.get("/sites").await.status, 200);
    }
}

#[tokio::test]
async fn request_counts_group_by_templated_path_and_status() {
    let h = Harness::start().await;
    h.admin(Method::DELETE, "/requests", None).await;
    let g = h.create_group("G").await;
    let u = h.create_user("a", "b", Some("ext-1")).await;
    h.put(&format!("/groups/{g}/users/{u}"), None).await;
    h.put(&format!("/groups/{g}/users/{u}"), None).await;
    h.get("/users/ext-1/external").await;
    h.get("/groups/1").await;
    let counts = h.admin(Method::GET, "/requests", None).await.json();
    let count = |method: &str, path: &str, status: u16| -> u64 {
        counts
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["method"] == method && c["path"] == path && c["status"] == status)
            .map(|c| c["count"].as_u64().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(count("PUT", "/v1/api/groups/{id}/users/{id}", 204), 2);
    assert_eq!(count("GET", "/v1/api/users/{externalId}/external", 200), 1);
    assert_eq!(count("GET", "/v1/api/groups/{id}", 404), 1);
    assert_eq!(count("POST", "/v1/api/groups", 200), 1);
    assert!(
        counts
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !c["path"].as_str().unwrap().starts_with("/__sim")),
        "the admin surface is not counted"
    );
}

//! One test per injected fault kind: what is retried, what is not, and what it costs.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{calls, start};
use crate::{ErrorKind, NewUser};

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let env = start().await;
    let client = env.client();
    env.fault(json!({"path": "/v1/api/groups", "method": "GET", "kind": "status", "status": 503, "count": 2}))
        .await;
    let groups = client.list_groups(None).await.unwrap();
    assert_eq!(groups.len(), 14);
    assert_eq!(calls(&client, "GET /groups", "unavailable"), 2);
    assert_eq!(calls(&client, "GET /groups", "ok"), 1);
    assert_eq!(env.requests("GET", "/v1/api/groups", None).await, 3);
}

#[tokio::test]
async fn server_errors_give_up_after_max_retries() {
    let env = start().await;
    let mut config = env.config();
    config.max_retries = 2;
    let client = crate::BrivoClient::new(config).unwrap();
    env.fault(json!({"path": "/v1/api/groups", "kind": "status", "status": 502}))
        .await;
    let err = client.list_groups(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(err.status(), Some(502));
    assert!(err.retryable());
    assert_eq!(calls(&client, "GET /groups", "unavailable"), 3);
}

#[tokio::test]
async fn over_qps_waits_for_retry_after() {
    let env = start().await;
    let client = env.client();
    let group = client.list_groups(None).await.unwrap()[0].clone();
    env.fault(
        json!({"path": "/v1/api/groups/*", "kind": "over_qps", "retry_after_secs": 1, "count": 1}),
    )
    .await;
    let started = Instant::now();
    let fetched = client.get_group(group.id).await.unwrap();
    assert_eq!(fetched.id, group.id);
    // Retry-After is a floor, whatever the (10 ms) backoff would have been.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(calls(&client, "GET /groups/{id}", "over_qps"), 1);
    assert_eq!(calls(&client, "GET /groups/{id}", "ok"), 1);
}

#[tokio::test]
async fn too_many_requests_honours_short_retry_after_and_returns_long_ones() {
    let env = start().await;
    let client = env.client();
    // Longer than max_backoff (2 s): not waited for; the caller gets the wait to reschedule.
    env.fault(json!({"path": "/v1/api/sites", "kind": "too_many_requests", "retry_after_secs": 30, "count": 1}))
        .await;
    let started = Instant::now();
    let err = client.list_sites(None).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));

    env.fault(json!({"path": "/v1/api/sites", "kind": "too_many_requests", "retry_after_secs": 1, "count": 1}))
        .await;
    let started = Instant::now();
    let sites = client.list_sites(None).await.unwrap();
    assert!(!sites.is_empty());
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(calls(&client, "GET /sites", "rate_limited"), 2);
}

#[tokio::test]
async fn dropped_connections_are_retried_for_idempotent_calls() {
    let env = start().await;
    let client = env.client();
    let group = client.list_groups(None).await.unwrap()[0].clone();
    let user = client
        .create_user(&NewUser {
            first_name: "Drop".into(),
            last_name: "Test".into(),
            external_id: Some("drop-1".into()),
            ..NewUser::default()
        })
        .await
        .unwrap();
    env.fault(
        json!({"path": "/v1/api/groups/*/users/*", "method": "PUT", "kind": "drop", "count": 1}),
    )
    .await;
    client.add_user_to_group(group.id, user.id).await.unwrap();
    assert_eq!(
        calls(&client, "PUT /groups/{id}/users/{id}", "connection"),
        1
    );
    assert_eq!(calls(&client, "PUT /groups/{id}/users/{id}", "ok"), 1);
    let members = client.group_members(group.id).await.unwrap();
    assert!(members.iter().any(|m| m.id == user.id));
}

#[tokio::test]
async fn create_user_after_a_lost_answer_looks_up_before_creating_again() {
    let env = start().await;
    let client = env.client();
    client.sign_in().await.unwrap();
    env.clear_requests().await;
    env.fault(json!({"path": "/v1/api/users", "method": "POST", "kind": "drop", "count": 1}))
        .await;
    let user = client
        .create_user(&NewUser {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            external_id: Some("cust-42".into()),
            ..NewUser::default()
        })
        .await
        .unwrap();
    assert_eq!(user.external_id.as_deref(), Some("cust-42"));
    // The lost POST was followed by a look-up before anything else was sent.
    assert_eq!(calls(&client, "POST /users", "connection"), 1);
    assert_eq!(
        calls(&client, "GET /users/{externalId}/external", "ok")
            + calls(&client, "GET /users/{externalId}/external", "not_found"),
        1
    );
    assert_eq!(
        env.requests("GET", "/v1/api/users/{externalId}/external", None)
            .await,
        1
    );
    // Exactly one user exists with that externalId, whether or not the dropped POST was applied.
    let posts_applied = env.requests("POST", "/v1/api/users", Some(200)).await;
    assert_eq!(posts_applied, 1);
    let same = client
        .find_user_by_external_id("cust-42")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.id, user.id);
}

#[tokio::test]
async fn create_user_without_external_id_is_not_repeated() {
    let env = start().await;
    let client = env.client();
    env.fault(json!({"path": "/v1/api/users", "method": "POST", "kind": "status", "status": 503, "count": 1}))
        .await;
    let err = client
        .create_user(&NewUser {
            first_name: "No".into(),
            last_name: "Key".into(),
            ..NewUser::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(calls(&client, "POST /users", "unavailable"), 1);
    assert_eq!(env.requests("POST", "/v1/api/users", None).await, 1);
}

#[tokio::test]
async fn create_user_retries_the_post_when_the_lookup_finds_nothing() {
    let env = start().await;
    let client = env.client();
    // A 503 from the front door: Brivo never saw the create.
    env.fault(json!({"path": "/v1/api/users", "method": "POST", "kind": "status", "status": 503, "count": 1}))
        .await;
    let user = client
        .create_user(&NewUser {
            first_name: "Grace".into(),
            last_name: "Hopper".into(),
            external_id: Some("cust-43".into()),
            ..NewUser::default()
        })
        .await
        .unwrap();
    assert_eq!(
        calls(&client, "GET /users/{externalId}/external", "not_found"),
        1
    );
    assert_eq!(calls(&client, "POST /users", "unavailable"), 1);
    assert_eq!(calls(&client, "POST /users", "ok"), 1);
    assert_eq!(user.external_id.as_deref(), Some("cust-43"));
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retried() {
    let env = start().await;
    let mut config = env.config();
    config.timeout = Duration::from_millis(300);
    let client = crate::BrivoClient::new(config).unwrap();
    client.sign_in().await.unwrap();
    env.fault(
        json!({"path": "/v1/api/access-points", "kind": "latency", "latency_ms": 2000, "count": 1}),
    )
    .await;
    let started = Instant::now();
    let doors = client.list_access_points(None).await.unwrap();
    assert!(!doors.is_empty());
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(calls(&client, "GET /access-points", "timeout"), 1);
    assert_eq!(calls(&client, "GET /access-points", "ok"), 1);
}

#[tokio::test]
async fn door_activation_is_not_repeated_after_an_unknown_outcome() {
    let env = start().await;
    let client = env.client();
    let door = client
        .list_access_points(None)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.activation_enabled)
        .expect("a door with remote unlock");
    env.fault(json!({"path": "/v1/api/access-points/*/activate", "kind": "drop", "count": 1}))
        .await;
    let err = client.activate_access_point(door.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert_eq!(
        calls(&client, "POST /access-points/{id}/activate", "connection"),
        1
    );
    // Once the fault is gone the 200-with-no-JSON answer is a success.
    client.activate_access_point(door.id).await.unwrap();
}

#[tokio::test]
async fn create_invitation_looks_for_a_pending_one_before_creating_again() {
    let env = start().await;
    let client = env.client();
    let user = client
        .create_user(&NewUser {
            first_name: "Mobile".into(),
            last_name: "Pass".into(),
            external_id: Some("mp-1".into()),
            ..NewUser::default()
        })
        .await
        .unwrap();
    env.fault(json!({"path": "/v1/api/users/*/credentials/digital-invitations", "method": "POST", "kind": "drop", "count": 1}))
        .await;
    let invitation = client
        .create_invitation(
            user.id,
            &crate::NewInvitation {
                reference_id: "mp@example.com".into(),
                send_email: false,
                language: crate::Language::Fr,
            },
        )
        .await
        .unwrap();
    assert_eq!(invitation.status, crate::InvitationStatus::Pending);
    assert_eq!(
        calls(
            &client,
            "GET /users/{id}/credentials/digital-invitations",
            "ok"
        ),
        1
    );
    assert_eq!(
        calls(
            &client,
            "POST /users/{id}/credentials/digital-invitations",
            "connection"
        ),
        1
    );
    assert_eq!(
        calls(
            &client,
            "POST /users/{id}/credentials/digital-invitations",
            "ok"
        ),
        1
    );
}

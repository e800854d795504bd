//! Every error body shape the servers produce, over real HTTP, and call accounting.

use serde_json::json;

use super::{calls, start};
use crate::{BrivoClient, ErrorKind};

#[tokio::test]
async fn brivo_shape_not_found() {
    let env = start().await;
    let client = env.client();
    let err = client.get_user(987_654_321).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.code(), Some("404"));
    assert!(!err.message().is_empty());
    assert!(!err.retryable());
    assert_eq!(err.endpoint(), "GET /users/{id}");
    // Not found is not retried.
    assert_eq!(calls(&client, "GET /users/{id}", "not_found"), 1);
    assert!(
        client
            .find_user_by_external_id("nobody")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn oauth_shape_for_a_rejected_token_never_leaks_it() {
    let env = start().await;
    let client = env.client();
    client.sign_in().await.unwrap();
    // Rejected again right after renewal: the one retry is spent, the error comes back.
    env.fault(json!({"path": "/v1/api/sites", "kind": "invalid_token", "count": 2}))
        .await;
    let err = client.list_sites(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidToken);
    assert_eq!(err.code(), Some("invalid_token"));
    assert_eq!(calls(&client, "GET /sites", "invalid_token"), 2);
    assert_eq!(calls(&client, "POST /oauth/token", "ok"), 2);
}

#[tokio::test]
async fn spring_shape_for_a_wrong_client_secret() {
    let env = start().await;
    let mut config = env.config();
    config.client_secret = "wrong".into();
    let client = BrivoClient::new(config).unwrap();
    let err = client.sign_in().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert_eq!(err.message(), "Bad credentials");
    assert_eq!(err.code(), Some("Unauthorized"));
}

#[tokio::test]
async fn gateway_html_for_a_wrong_api_key() {
    let env = start().await;
    let mut config = env.config();
    config.api_key = "not-a-key".into();
    let client = BrivoClient::new(config).unwrap();
    let err = client.list_groups(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeveloperInactive);
    assert_eq!(err.status(), Some(403));
    assert_eq!(err.message(), "Developer Inactive");
    assert!(!err.retryable());
}

#[tokio::test]
async fn gateway_html_for_a_wrong_path_is_final() {
    let env = start().await;
    let client = env.client();
    env.fault(json!({"path": "/v1/api/groups", "kind": "status", "status": 596}))
        .await;
    let err = client.list_groups(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ServiceNotFound);
    assert_eq!(calls(&client, "GET /groups", "service_not_found"), 1);
}

#[tokio::test]
async fn an_api_base_without_the_v1_api_prefix_is_a_final_error() {
    let env = start().await;
    let mut config = env.config();
    // A common mistake: the host alone, so every data call misses `/v1/api`.
    config.api_url = env.sim.base_url();
    let client = BrivoClient::new(config).unwrap();
    let err = client.list_groups(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ServiceNotFound, "{err}");
    assert!(!err.retryable());
}

#[tokio::test]
async fn every_attempt_is_counted_by_endpoint_and_outcome() {
    let env = start().await;
    let client = env.client();
    env.fault(json!({"path": "/v1/api/groups/*/users/*", "method": "PUT", "kind": "status", "status": 500, "count": 1}))
        .await;
    let group = client.list_groups(None).await.unwrap()[0].clone();
    let user = client
        .create_user(&crate::NewUser {
            first_name: "Count".into(),
            last_name: "Me".into(),
            external_id: Some("count-1".into()),
            ..crate::NewUser::default()
        })
        .await
        .unwrap();
    client.add_user_to_group(group.id, user.id).await.unwrap();
    client
        .remove_user_from_group(group.id, user.id)
        .await
        .unwrap();
    let stats = client.calls();
    let as_tuples: Vec<_> = stats
        .iter()
        .map(|c| (c.endpoint, c.outcome, c.count))
        .collect();
    assert_eq!(
        as_tuples,
        [
            ("DELETE /groups/{id}/users/{id}", "ok", 1),
            ("GET /groups", "ok", 1),
            ("POST /oauth/token", "ok", 1),
            ("POST /users", "ok", 1),
            ("PUT /groups/{id}/users/{id}", "ok", 1),
            ("PUT /groups/{id}/users/{id}", "unavailable", 1),
        ]
    );
    assert_eq!(client.total_calls(), 6);
    // Clones share the counts.
    assert_eq!(client.clone().total_calls(), 6);
}

//! Token handling over HTTP: renewal on expiry, sign-in again when the refresh token dies, and
//! one shared renewal for many concurrent callers.

use std::time::Duration;

use brivo_sim::SimOptions;

use super::{calls, start, start_with};
use crate::{BrivoClient, ErrorKind, Grant};

const TOKEN: &str = "POST /oauth/token";

#[tokio::test]
async fn expired_token_is_renewed_once_and_the_call_retried() {
    let env = start().await;
    let client = env.client();
    client.list_sites(None).await.unwrap();
    env.expire_access_tokens().await;
    env.clear_requests().await;
    let sites = client.list_sites(None).await.unwrap();
    assert!(!sites.is_empty());
    assert_eq!(env.requests("POST", "/oauth/token", None).await, 1);
    assert_eq!(calls(&client, TOKEN, "ok"), 2);
    assert_eq!(calls(&client, "GET /sites", "invalid_token"), 1);
    assert_eq!(calls(&client, "GET /sites", "ok"), 2);
}

#[tokio::test]
async fn revoked_refresh_token_leads_to_a_new_sign_in() {
    let env = start().await;
    let client = env.client();
    client.sign_in().await.unwrap();
    let first_refresh = client.refresh_token().unwrap();
    env.revoke_refresh_tokens().await;
    env.expire_access_tokens().await;
    env.clear_requests().await;
    client.list_groups(None).await.unwrap();
    // Rejected call, refused refresh, password sign-in, successful call.
    assert_eq!(env.requests("POST", "/oauth/token", Some(401)).await, 1);
    assert_eq!(env.requests("POST", "/oauth/token", Some(200)).await, 1);
    assert_eq!(calls(&client, TOKEN, "unauthorized"), 1);
    assert_eq!(calls(&client, TOKEN, "ok"), 2);
    assert_ne!(client.refresh_token().unwrap(), first_refresh);
}

#[tokio::test]
async fn refresh_token_grant_works_and_cannot_sign_in_again() {
    let env = start().await;
    // Stands in for a refresh token from the authorization-code flow.
    let seed = env.client();
    seed.sign_in().await.unwrap();
    let mut config = env.config();
    config.grant = Grant::RefreshToken(seed.refresh_token().unwrap().into());
    let client = BrivoClient::new(config).unwrap();
    assert_eq!(client.list_groups(None).await.unwrap().len(), 14);

    env.revoke_refresh_tokens().await;
    env.expire_access_tokens().await;
    let err = client.list_groups(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    // The refused token was not kept, and its value is not in the error.
    assert!(client.refresh_token().is_none());
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&seed.refresh_token().unwrap()), "{shown}");
}

#[tokio::test]
async fn concurrent_callers_share_one_renewal_after_server_side_expiry() {
    let env = start().await;
    let client = env.client();
    client.sign_in().await.unwrap();
    env.expire_access_tokens().await;
    env.clear_requests().await;
    let calls_in_flight: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.list_sites(None).await })
        })
        .collect();
    for call in calls_in_flight {
        call.await.unwrap().unwrap();
    }
    assert_eq!(env.requests("POST", "/oauth/token", None).await, 1);
    assert_eq!(calls(&client, TOKEN, "ok"), 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_renewal_before_expiry() {
    let env = start().await;
    let client = env.client();
    client.sign_in().await.unwrap();
    // The client's own clock says the token is due: renewal happens before any call.
    client.tokens().age_for_test();
    env.clear_requests().await;
    let calls_in_flight: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.list_groups(None).await })
        })
        .collect();
    for call in calls_in_flight {
        call.await.unwrap().unwrap();
    }
    assert_eq!(env.requests("POST", "/oauth/token", None).await, 1);
    assert_eq!(calls(&client, "GET /groups", "invalid_token"), 0);
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_ahead_of_expiry() {
    let env = start_with(SimOptions {
        access_token_ttl: Duration::from_secs(2),
        ..SimOptions::default()
    })
    .await;
    let client = env.client();
    client.sign_in().await.unwrap();
    // A 2 s token is renewed after half its life; jump the client's clock instead of waiting.
    client.tokens().age_for_test();
    client.list_groups(None).await.unwrap();
    assert_eq!(calls(&client, TOKEN, "ok"), 2);
    assert_eq!(calls(&client, "GET /groups", "invalid_token"), 0);
}

#[tokio::test]
async fn wrong_password_is_an_oauth_error_without_retries() {
    let env = start().await;
    let mut config = env.config();
    config.grant = Grant::Password {
        username: env.sim.account().admin_id,
        password: "not-the-password".into(),
    };
    let client = BrivoClient::new(config).unwrap();
    let err = client.list_groups(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert_eq!(err.code(), Some("invalid_grant"));
    assert!(!format!("{err:?}").contains("not-the-password"));
    assert_eq!(calls(&client, TOKEN, "unauthorized"), 1);
    assert_eq!(client.total_calls(), 1);
}

/// A refresh token from a 3-legged application's authorization-code flow, as a browser and the
/// application's callback would obtain it from the emulator.
async fn three_legged_refresh_token(env: &super::Env) -> String {
    let account = env.sim.account();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = http
        .post(format!("{}/oauth/authorize", env.sim.auth_url()))
        .form(&[
            ("username", account.admin_id.as_str()),
            ("password", account.password.as_str()),
            ("response_type", "code"),
            ("client_id", account.code_client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 302);
    let location = reqwest::Url::parse(signed_in.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let token: serde_json::Value = http
        .post(format!("{}/oauth/token", env.sim.auth_url()))
        .basic_auth(&account.code_client_id, Some(&account.code_client_secret))
        .header("api-key", &account.api_key)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["refresh_token"].as_str().unwrap().to_string()
}

/// A 3-legged application works with the refresh token of its authorization-code flow; the
/// password grant with its credentials is a configuration fault, reported at once and not
/// retried.
#[tokio::test]
async fn a_three_legged_application_signs_in_by_refresh_token_only() {
    let env = start().await;
    let account = env.sim.account();
    let mut config = env.config();
    config.client_id = account.code_client_id.clone();
    config.client_secret = account.code_client_secret.clone().into();
    config.grant = Grant::RefreshToken(three_legged_refresh_token(&env).await.into());
    let client = BrivoClient::new(config.clone()).unwrap();
    assert_eq!(client.list_groups(None).await.unwrap().len(), 14);
    env.expire_access_tokens().await;
    assert_eq!(client.list_groups(None).await.unwrap().len(), 14);
    assert_eq!(calls(&client, TOKEN, "ok"), 2);

    config.grant = Grant::Password {
        username: account.admin_id.clone(),
        password: account.password.clone().into(),
    };
    let wrong_type = BrivoClient::new(config).unwrap();
    let err = wrong_type.sign_in().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert_eq!(err.code(), Some("unauthorized_client"));
    assert!(!err.retryable());
    assert_eq!(calls(&wrong_type, TOKEN, "unauthorized"), 1);
}

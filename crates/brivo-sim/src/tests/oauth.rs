//! Token grants, their errors, the api-key gate and token expiry (reference §2).

use reqwest::Method;
use serde_json::{Value, json};

use super::{Harness, reply};

#[tokio::test]
async fn password_grant_by_form_returns_the_documented_token_shape() {
    let h = Harness::start().await;
    let resp = h
        .http
        .post(h.token_url())
        .basic_auth("sim-client", Some("sim-secret"))
        .header("api-key", "sim-api-key")
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "password"),
            ("scope", "brivo.api"),
        ])
        .send()
        .await
        .unwrap();
    let r = reply(resp).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json;charset=UTF-8");
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(r.header("pragma").as_deref(), Some("no-cache"));
    let token = r.json();
    assert_eq!(token["token_type"], "bearer");
    assert_eq!(token["scope"], "brivo.api");
    assert_eq!(token["expires_in"], 300);
    assert_eq!(token["jti"].as_str().unwrap().len(), 36);
    assert!(
        token["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3, "JWT-shaped");
    let groups = h
        .call_with_token(Method::GET, "/groups", None, access)
        .await;
    assert_eq!(groups.status, 200);
}

#[tokio::test]
async fn password_grant_in_the_query_string_as_2017_clients_sent_it() {
    let h = Harness::start().await;
    // As recorded: parameters in the query, an empty body typed application/json.
    let resp = h
        .http
        .post(format!(
            "{}?grant_type=password&password=password&username=admin",
            h.token_url()
        ))
        .basic_auth("sim-client", Some("sim-secret"))
        .header("api-key", "sim-api-key")
        .header("Content-Type", "application/json")
        .body("")
        .send()
        .await
        .unwrap();
    let r = reply(resp).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["token_type"], "bearer");
}

/// DOCS25R documents the token request as `multipart/form-data` too.
#[tokio::test]
async fn password_grant_by_multipart_form_data() {
    let h = Harness::start().await;
    let boundary = "----sim-boundary-7MA4YWxk";
    let fields = [
        ("grant_type", "password"),
        ("username", "admin"),
        ("password", "password"),
    ];
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let resp = h
        .http
        .post(h.token_url())
        .basic_auth("sim-client", Some("sim-secret"))
        .header("api-key", "sim-api-key")
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary=\"{boundary}\""),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let r = reply(resp).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    let groups = h
        .call_with_token(Method::GET, "/groups", None, &access)
        .await;
    assert_eq!(groups.status, 200);
}

async fn token_call(h: &Harness, form: &[(&str, &str)]) -> super::Reply {
    let resp = h
        .http
        .post(h.token_url())
        .basic_auth("sim-client", Some("sim-secret"))
        .header("api-key", "sim-api-key")
        .form(form)
        .send()
        .await
        .unwrap();
    reply(resp).await
}

#[tokio::test]
async fn refresh_grant_issues_a_new_access_token_and_keeps_the_refresh_token() {
    let h = Harness::start().await;
    let first = h.password_token().await;
    let refresh = first["refresh_token"].as_str().unwrap();
    let r = token_call(
        &h,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let second = r.json();
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(second["refresh_token"], first["refresh_token"]);
    let api = h
        .call_with_token(
            Method::GET,
            "/sites",
            None,
            second["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(api.status, 200);

    let r = token_call(
        &h,
        &[("grant_type", "refresh_token"), ("refresh_token", "nope")],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_grant");
}

async fn token_call_as(h: &Harness, client: (&str, &str), form: &[(&str, &str)]) -> super::Reply {
    let resp = h
        .http
        .post(h.token_url())
        .basic_auth(client.0, Some(client.1))
        .header("api-key", "sim-api-key")
        .form(form)
        .send()
        .await
        .unwrap();
    reply(resp).await
}

/// Signs in on the authorization page with `form` and returns the answer (302 on success).
async fn sign_in(h: &Harness, form: &[(&str, &str)]) -> reqwest::Response {
    h.http
        .post(format!("{}/oauth/authorize", h.sim.auth_url()))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The `code` of a sign-in's redirect, after checking where it points.
fn code_of(signed_in: &reqwest::Response, redirect: &str) -> String {
    assert_eq!(signed_in.status(), 302);
    let location = signed_in.headers()["location"].to_str().unwrap();
    let url = reqwest::Url::parse(location).unwrap();
    assert!(location.starts_with(redirect), "{location}");
    let params: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    params["code"].clone()
}

#[tokio::test]
async fn authorization_code_grant_through_the_sign_in_page() {
    let h = Harness::start().await;
    let account = h.sim.account();
    let client = account.code_client_id.as_str();
    let code_client = (client, account.code_client_secret.as_str());
    let redirect = account.redirect_uri.as_str();
    assert_eq!(redirect, "http://localhost:8080/callback");
    let page = h
        .http
        .get(format!("{}/oauth/authorize", h.sim.auth_url()))
        .query(&[
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", redirect),
            ("state", "xyz 1"),
        ])
        .send()
        .await
        .unwrap();
    let page = reply(page).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    for needle in [
        "name=\"username\"".to_string(),
        "name=\"password\"".to_string(),
        format!("name=\"client_id\" value=\"{client}\""),
        "name=\"state\" value=\"xyz 1\"".to_string(),
        format!("name=\"redirect_uri\" value=\"{redirect}\""),
    ] {
        assert!(page.text.contains(&needle), "missing {needle}");
    }

    let form = [
        ("username", "admin"),
        ("password", "wrong"),
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect),
        ("state", "xyz 1"),
    ];
    let bad = sign_in(&h, &form).await;
    assert_eq!(bad.status(), 401);

    let mut good_form = form;
    good_form[1] = ("password", "password");
    let signed_in = sign_in(&h, &good_form).await;
    let location = signed_in.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let url = reqwest::Url::parse(&location).unwrap();
    assert_eq!(url.path(), "/callback");
    let params: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(params["state"], "xyz 1");
    let code = code_of(&signed_in, redirect);

    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
    ];
    let r = token_call_as(&h, code_client, &exchange).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json();
    assert_eq!(token["token_type"], "bearer");
    // A code works once.
    let again = token_call_as(&h, code_client, &exchange).await;
    assert_eq!(again.status, 401);
    assert_eq!(again.json()["error"], "invalid_grant");

    // The 3-legged application refreshes its own tokens, and its tokens call the API.
    let refresh = token["refresh_token"].as_str().unwrap();
    let refreshed = token_call_as(
        &h,
        code_client,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let access = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        h.call_with_token(Method::GET, "/groups", None, &access)
            .await
            .status,
        200
    );
    // ...but the Password application cannot use them.
    let foreign = token_call(
        &h,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(foreign.status, 401);
    assert_eq!(foreign.json()["error"], "invalid_grant");
}

/// A Brivo application is a Password one or a 3-Legged one; each is refused the other's grant.
#[tokio::test]
async fn each_application_is_limited_to_its_grant_type() {
    let h = Harness::start().await;
    let account = h.sim.account();
    let code_client = (
        account.code_client_id.as_str(),
        account.code_client_secret.as_str(),
    );
    let password_form = [
        ("grant_type", "password"),
        ("username", "admin"),
        ("password", "password"),
    ];
    let r = token_call_as(&h, code_client, &password_form).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let body = r.json();
    assert_eq!(body["error"], "unauthorized_client");
    assert_eq!(
        body["error_description"],
        "Unauthorized grant type: password"
    );
    // The other application's secret does not authenticate this one.
    let r = token_call_as(
        &h,
        (account.code_client_id.as_str(), "sim-secret"),
        &password_form,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Bad credentials");

    // The Password application cannot start or finish the authorization-code flow.
    let page = h
        .http
        .get(format!("{}/oauth/authorize", h.sim.auth_url()))
        .query(&[("response_type", "code"), ("client_id", "sim-client")])
        .send()
        .await
        .unwrap();
    let page = reply(page).await;
    assert_eq!(page.status, 400);
    assert!(
        page.text
            .contains("Unauthorized grant type: authorization_code")
    );
    let code = code_of(
        &sign_in(
            &h,
            &[
                ("username", "admin"),
                ("password", "password"),
                ("response_type", "code"),
                ("client_id", code_client.0),
            ],
        )
        .await,
        &account.redirect_uri,
    );
    let r = token_call(
        &h,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "unauthorized_client");
}

/// The 3-legged application sends the browser only to its registered redirect URI.
#[tokio::test]
async fn the_redirect_uri_must_be_the_registered_one() {
    let h = Harness::start().await;
    let account = h.sim.account();
    let client = account.code_client_id.as_str();
    let code_client = (client, account.code_client_secret.as_str());
    let registered = account.redirect_uri.as_str();
    let signed_in = |redirect: Option<&'static str>| {
        let mut form = vec![
            ("username", "admin"),
            ("password", "password"),
            ("response_type", "code"),
            ("client_id", client),
        ];
        if let Some(r) = redirect {
            form.push(("redirect_uri", r));
        }
        let h = &h;
        async move { sign_in(h, &form).await }
    };

    // Another URI is refused on the page itself, with no redirect to it.
    for other in [
        "http://127.0.0.1:9/callback",
        "http://localhost:8080/callback/x",
    ] {
        let page = h
            .http
            .get(format!("{}/oauth/authorize", h.sim.auth_url()))
            .query(&[
                ("response_type", "code"),
                ("client_id", client),
                ("redirect_uri", other),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 400);
        assert!(page.headers().get("location").is_none());
    }
    let r = signed_in(Some("http://127.0.0.1:9/callback")).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());

    // Without one, the registered URI is used, and the exchange may leave it out or repeat it.
    let code = code_of(&signed_in(None).await, registered);
    let r = token_call_as(
        &h,
        code_client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let code = code_of(&signed_in(None).await, registered);
    let r = token_call_as(
        &h,
        code_client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://localhost:8080/callback"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Named in the request, it must be repeated at the exchange, exactly.
    let code = code_of(
        &signed_in(Some("http://localhost:8080/callback")).await,
        registered,
    );
    let r = token_call_as(
        &h,
        code_client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "Redirect URI mismatch.");
    let code = code_of(
        &signed_in(Some("http://localhost:8080/callback")).await,
        registered,
    );
    let r = token_call_as(
        &h,
        code_client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://localhost:8080/other"),
        ],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_description"], "Redirect URI mismatch.");
}

/// The registered redirect URI comes from the options.
#[tokio::test]
async fn the_registered_redirect_uri_is_an_option() {
    let h = Harness::start_with(crate::SimOptions {
        redirect_uri: "https://doorsync.example/brivo/callback".into(),
        ..crate::SimOptions::default()
    })
    .await;
    let account = h.sim.account();
    assert_eq!(
        account.redirect_uri,
        "https://doorsync.example/brivo/callback"
    );
    let listed = h.admin(Method::GET, "/account", None).await.json();
    assert_eq!(
        listed["redirect_uri"],
        "https://doorsync.example/brivo/callback"
    );
    assert_eq!(listed["code_client_id"], "sim-3legged-client");
    assert_eq!(listed["code_client_secret"], "sim-3legged-secret");
    let signed_in = sign_in(
        &h,
        &[
            ("username", "admin"),
            ("password", "password"),
            ("response_type", "code"),
            ("client_id", account.code_client_id.as_str()),
        ],
    )
    .await;
    code_of(&signed_in, "https://doorsync.example/brivo/callback?code=");
}

#[tokio::test]
async fn client_and_password_errors_use_the_three_documented_bodies() {
    let h = Harness::start().await;
    let wrong_password = token_call(
        &h,
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "nope"),
        ],
    )
    .await;
    assert_eq!(wrong_password.status, 401);
    assert_eq!(
        wrong_password.json(),
        json!({"error": "invalid_grant", "error_description": "Bad credentials"})
    );

    let bad_client = h
        .http
        .post(h.token_url())
        .basic_auth("sim-client", Some("wrong"))
        .header("api-key", "sim-api-key")
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let bad_client = reply(bad_client).await;
    assert_eq!(bad_client.status, 401);
    let body = bad_client.json();
    assert_eq!(body["status"], 401);
    assert_eq!(body["error"], "Unauthorized");
    assert_eq!(body["message"], "Bad credentials");
    assert_eq!(body["path"], "/oauth/token");

    let no_basic = h
        .http
        .post(h.token_url())
        .header("api-key", "sim-api-key")
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "password"),
        ])
        .send()
        .await
        .unwrap();
    let no_basic = reply(no_basic).await;
    assert_eq!(no_basic.status, 401);
    assert_eq!(
        no_basic.json(),
        json!({"error": "unauthorized", "error_description": "Full authentication is required to access this resource"})
    );

    let unsupported = token_call(&h, &[("grant_type", "client_credentials")]).await;
    assert_eq!(unsupported.status, 400);
    assert_eq!(unsupported.json()["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn a_missing_or_wrong_api_key_is_developer_inactive_html() {
    let h = Harness::start().await;
    let token = h
        .http
        .post(h.token_url())
        .basic_auth("sim-client", Some("sim-secret"))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "password"),
        ])
        .send()
        .await
        .unwrap();
    let token = reply(token).await;
    assert_eq!(token.status, 403);
    assert!(token.content_type.starts_with("text/html"));
    assert_eq!(token.text, "<h1>Developer Inactive</h1>");

    let api = h
        .http
        .get(format!("{}/users", h.sim.api_url()))
        .header("api-key", "wrong")
        .header("Authorization", format!("Bearer {}", h.token))
        .send()
        .await
        .unwrap();
    let api = reply(api).await;
    assert_eq!(api.status, 403);
    assert_eq!(api.text, "<h1>Developer Inactive</h1>");
}

#[tokio::test]
async fn bearer_tokens_are_checked_on_every_api_call() {
    let h = Harness::start().await;
    // `Bearer` works as well as the documented `bearer`.
    let upper = h
        .http
        .get(format!("{}/users", h.sim.api_url()))
        .header("api-key", "sim-api-key")
        .header("Authorization", format!("Bearer {}", h.token))
        .send()
        .await
        .unwrap();
    assert_eq!(upper.status(), 200);

    let missing = h
        .http
        .get(format!("{}/users", h.sim.api_url()))
        .header("api-key", "sim-api-key")
        .send()
        .await
        .unwrap();
    let missing = reply(missing).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["error"], "invalid_token");

    let unknown = h
        .call_with_token(Method::GET, "/users", None, "not-a-token")
        .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.json()["error"], "invalid_token");
}

#[tokio::test]
async fn expired_tokens_get_invalid_token_and_revoked_refresh_forces_sign_in() {
    let h = Harness::start().await;
    let r = h
        .admin(
            Method::PUT,
            "/config",
            Some(json!({"access_token_ttl_secs": 1, "refresh_token_ttl_secs": 3600})),
        )
        .await;
    assert_eq!(r.json()["access_token_ttl_secs"], 1);
    let token = h.password_token().await;
    assert_eq!(token["expires_in"], 1);
    let access = token["access_token"].as_str().unwrap();

    let expired = h.admin(Method::POST, "/tokens/expire", None).await;
    assert!(expired.json()["expired"].as_u64().unwrap() >= 1);
    let r = h.call_with_token(Method::GET, "/users", None, access).await;
    assert_eq!(r.status, 401);
    let body: Value = r.json();
    assert_eq!(body["error"], "invalid_token");

    // The refresh token still works after an access-token expiry.
    let refresh = token["refresh_token"].as_str().unwrap();
    let r = token_call(
        &h,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(r.status, 200);
    let refreshed = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        h.call_with_token(Method::GET, "/users", None, &refreshed)
            .await
            .status,
        200
    );

    h.admin(Method::POST, "/tokens/revoke-refresh", None).await;
    assert_eq!(
        h.call_with_token(Method::GET, "/users", None, &refreshed)
            .await
            .status,
        401
    );
    let r = token_call(
        &h,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_grant");
    // Signing in again works.
    h.password_token().await;
}

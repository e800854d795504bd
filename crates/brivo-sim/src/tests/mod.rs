//! The emulator's tests, all through real HTTP on 127.0.0.1:0. Expected shapes come from the
//! reference and the recorded Brivo traffic (status codes, envelopes, omitted fields, ids as
//! numbers, externalId as a string).

mod doors;
mod faults;
mod groups;
mod invitations;
mod oauth;
mod persistence;
mod smtp_delivery;
mod users;

use std::future::Future;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::{Account, SimHandle, SimOptions, spawn};

pub struct Harness {
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub account: Account,
    pub token: String,
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.expect("response body");
    Reply {
        status,
        content_type,
        headers,
        text,
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(SimOptions::default()).await
    }

    pub async fn start_with(options: SimOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = spawn(listener, options).await.unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let account = sim.account();
        let mut harness = Self {
            sim,
            http,
            account,
            token: String::new(),
        };
        harness.token = harness.password_token().await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        harness
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.sim.auth_url())
    }

    /// A password grant the documented way: Basic client auth, api-key, form body.
    pub async fn password_token(&self) -> Value {
        let resp = self
            .http
            .post(self.token_url())
            .basic_auth(&self.account.client_id, Some(&self.account.client_secret))
            .header("api-key", &self.account.api_key)
            .form(&[
                ("grant_type", "password"),
                ("username", self.account.admin_id.as_str()),
                ("password", self.account.password.as_str()),
            ])
            .send()
            .await
            .unwrap();
        let r = reply(resp).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    }

    /// An API call with the api-key and the harness's bearer token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_with_token(method, path, body, &self.token).await
    }

    pub async fn call_with_token(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> Reply {
        let write = method != Method::GET;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.sim.api_url()))
            .header("api-key", &self.account.api_key)
            .header("Authorization", format!("bearer {token}"));
        if write {
            // As real clients do: "safe to include even when there is no body".
            req = req.header("Content-Type", "application/json");
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        reply(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Option<Value>) -> Reply {
        self.call(Method::PUT, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// A call to the admin surface (no credentials).
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self
            .http
            .request(method, format!("{}/__sim{path}", self.sim.base_url()));
        if let Some(body) = body {
            req = req.json(&body);
        }
        reply(req.send().await.unwrap()).await
    }

    /// Creates a user and returns its id.
    pub async fn create_user(&self, first: &str, last: &str, external_id: Option<&str>) -> u64 {
        let mut body = serde_json::json!({"firstName": first, "lastName": last});
        if let Some(e) = external_id {
            body["externalId"] = e.into();
        }
        let r = self.post("/users", body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["id"].as_u64().unwrap()
    }

    pub async fn create_group(&self, name: &str) -> u64 {
        let r = self
            .post("/groups", serde_json::json!({"name": name}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["id"].as_u64().unwrap()
    }
}

/// Polls `check` every 20 ms until it yields a value or `deadline` passes; for results that
/// arrive in the background (webhooks, SMTP).
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reset_restores_the_seed_and_account_endpoint_reports_urls() {
    let h = Harness::start().await;
    h.create_group("Extra").await;
    let r = h.admin(Method::GET, "/account", None).await;
    assert_eq!(r.status, 200);
    let account = r.json();
    assert_eq!(account["api_key"], "sim-api-key");
    assert_eq!(account["client_id"], "sim-client");
    assert_eq!(account["client_secret"], "sim-secret");
    assert_eq!(account["admin_id"], "admin");
    assert_eq!(account["password"], "password");
    assert_eq!(account["api_url"], h.sim.api_url());
    assert_eq!(account["auth_url"], h.sim.base_url());

    let r = h
        .admin(
            Method::POST,
            "/reset",
            Some(serde_json::json!({"seed": "empty"})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["api_key"], "sim-api-key");
    // A reset forgets tokens too.
    let token = h.password_token().await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = h
        .call_with_token(Method::GET, "/groups", None, &token)
        .await;
    assert_eq!(r.json()["count"], 0);
    let r = h
        .call_with_token(Method::GET, "/access-points", None, &token)
        .await;
    assert_eq!(r.json()["count"], 13, "the empty seed keeps the building");

    h.admin(Method::POST, "/reset", None).await;
    let token = h.password_token().await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = h
        .call_with_token(Method::GET, "/groups", None, &token)
        .await;
    assert_eq!(r.json()["count"], 14);
}

/// Sends an API request with exactly the given Content-Type (none when `None`) and body.
async fn raw_write(
    h: &Harness,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Reply {
    let mut req = h
        .http
        .request(method, format!("{}{path}", h.sim.api_url()))
        .header("api-key", &h.account.api_key)
        .header("Authorization", format!("bearer {}", h.token));
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    reply(req.body(body.to_string()).send().await.unwrap()).await
}

#[tokio::test]
async fn only_writes_with_a_body_need_a_json_content_type() {
    use crate::seed::{FIRST_DOOR_ID, FIRST_GROUP_ID};
    let h = Harness::start().await;
    let user = h.create_user("Ada", "Lovelace", Some("c-415")).await;
    let member = format!("/groups/{FIRST_GROUP_ID}/users/{user}");
    let activate = format!("/access-points/{FIRST_DOOR_ID}/activate");
    // Bodiless writes go through whatever their type: Home Assistant's unlock is sent as
    // `application/octet-stream` and Brivo answers it.
    let bodiless = [
        (Method::POST, activate.clone()),
        (Method::PUT, member.clone()),
        (Method::DELETE, member.clone()),
    ];
    let types = [
        None,
        Some("application/octet-stream"),
        Some("text/plain"),
        Some("application/json"),
    ];
    for ct in types {
        for (method, path) in &bodiless {
            let r = raw_write(&h, method.clone(), path, ct, "").await;
            assert!(
                r.status == 204 || r.status == 200,
                "{method} {path} with {ct:?}: {} {}",
                r.status,
                r.text
            );
        }
    }
    let events = h.get("/events/access").await.json()["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(events, types.len());

    // A write with a body typed as something else (or untyped) is refused, and does nothing.
    let groups_before = h.get("/groups").await.json()["count"].clone();
    for ct in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("application/jsonfoo"),
        None,
    ] {
        let r = raw_write(&h, Method::POST, "/groups", ct, r#"{"name":"x"}"#).await;
        assert_eq!(r.status, 415, "{ct:?}: {}", r.text);
        assert_eq!(r.content_type, "application/json");
        let body = r.json();
        assert_eq!(body["code"], 415);
        assert!(body["message"].as_str().unwrap().contains("not supported"));
    }
    assert_eq!(h.get("/groups").await.json()["count"], groups_before);
    // JSON in any case, with parameters, goes through.
    let r = raw_write(
        &h,
        Method::POST,
        "/groups",
        Some("Application/JSON;charset=UTF-8"),
        r#"{"name":"typed"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = raw_write(
        &h,
        Method::DELETE,
        &format!("/users/{user}"),
        Some("text/plain"),
        "",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // Reads need no Content-Type; the gates answer before the type check.
    assert_eq!(h.get("/groups").await.status, 200);
    let r = h
        .http
        .delete(format!("{}/groups/{FIRST_GROUP_ID}", h.sim.api_url()))
        .header("api-key", &h.account.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // An unknown path is still Mashery's 596, whatever the type.
    let r = raw_write(&h, Method::DELETE, "/nowhere", None, "").await;
    assert_eq!(r.status, 596);
    // The admin surface takes bodiless writes without a type.
    let r = h
        .http
        .post(format!("{}/__sim/tokens/expire", h.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

//! HTTP tests against brivo-sim: each test starts its own emulator on 127.0.0.1:0 and drives
//! faults, token expiry and rate limits through the emulator's `/__sim/` admin surface. Nothing
//! here sleeps to let time pass; the few real waits are the `Retry-After: 1` the server asks for.

mod errors;
mod faults;
mod paging_and_filters;
mod rate_limit;
mod resources;
mod tokens;

use std::time::Duration;

use brivo_sim::{SimHandle, SimOptions};
use serde_json::{Value, json};

use crate::{BrivoClient, CallStat, ClientConfig, Grant};

/// A running emulator and a plain HTTP client for its admin surface.
pub(crate) struct Env {
    pub sim: SimHandle,
    admin: reqwest::Client,
}

pub(crate) async fn start() -> Env {
    start_with(SimOptions::default()).await
}

pub(crate) async fn start_with(options: SimOptions) -> Env {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = brivo_sim::spawn(listener, options).await.unwrap();
    Env {
        sim,
        admin: reqwest::Client::new(),
    }
}

impl Env {
    /// A configuration for the emulated account with test-friendly policy: no client-side rate
    /// limit, short timeouts and backoff, so that retries cost milliseconds.
    pub fn config(&self) -> ClientConfig {
        let account = self.sim.account();
        let mut config = ClientConfig::new(
            self.sim.api_url(),
            self.sim.auth_url(),
            account.api_key,
            account.client_id,
            account.client_secret,
            Grant::Password {
                username: account.admin_id,
                password: account.password.into(),
            },
        );
        config.requests_per_second = 0.0;
        config.timeout = Duration::from_secs(5);
        config.base_backoff = Duration::from_millis(10);
        config.max_backoff = Duration::from_secs(2);
        config
    }

    pub fn client(&self) -> BrivoClient {
        BrivoClient::new(self.config()).unwrap()
    }

    fn admin_url(&self, path: &str) -> String {
        format!("{}/__sim/{path}", self.sim.base_url())
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.admin.request(method.clone(), self.admin_url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            status.is_success(),
            "{method} /__sim/{path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Injects a fault, e.g. `json!({"path": "/v1/api/groups", "kind": "drop", "count": 1})`.
    pub async fn fault(&self, spec: Value) {
        self.admin(reqwest::Method::POST, "faults", Some(spec))
            .await;
    }

    pub async fn expire_access_tokens(&self) {
        self.admin(reqwest::Method::POST, "tokens/expire", None)
            .await;
    }

    pub async fn revoke_refresh_tokens(&self) {
        self.admin(reqwest::Method::POST, "tokens/revoke-refresh", None)
            .await;
    }

    pub async fn server_rate_limit(&self, per_second: Option<u32>) {
        self.admin(
            reqwest::Method::PUT,
            "rate-limit",
            Some(json!({ "per_second": per_second })),
        )
        .await;
    }

    /// A credential presented at a door, at `occurred` (now when `None`); answers the event.
    pub async fn swipe(
        &self,
        user_id: u64,
        door_id: u64,
        occurred: Option<jiff::Timestamp>,
    ) -> Value {
        let mut body = json!({"user_id": user_id, "access_point_id": door_id});
        if let Some(at) = occurred {
            body["occurred"] = at.to_string().into();
        }
        self.admin(reqwest::Method::POST, "swipe", Some(body)).await
    }

    pub async fn clear_requests(&self) {
        self.admin(reqwest::Method::DELETE, "requests", None).await;
    }

    /// Requests the emulator saw with this method and path (and status, when given).
    pub async fn requests(&self, method: &str, path: &str, status: Option<u16>) -> u64 {
        let seen = self.admin(reqwest::Method::GET, "requests", None).await;
        seen.as_array()
            .expect("an array of request counts")
            .iter()
            .filter(|r| r["method"] == method && r["path"] == path)
            .filter(|r| status.is_none_or(|s| r["status"] == s))
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum()
    }
}

/// The count the client recorded for one endpoint and outcome.
pub(crate) fn calls(client: &BrivoClient, endpoint: &str, outcome: &str) -> u64 {
    client
        .calls()
        .iter()
        .filter(|c: &&CallStat| c.endpoint == endpoint && c.outcome == outcome)
        .map(|c| c.count)
        .sum()
}

/// The engine runs calls on spawned tasks: the handles and every call's future must be Send.
#[test]
fn handles_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let client = BrivoClient::new(ClientConfig::us(
        "k",
        "c",
        "s",
        Grant::RefreshToken("r".into()),
    ))
    .unwrap();
    send_sync(&client);
    send_sync(&client.users(None));
    let query =
        crate::EventQuery::between(jiff::Timestamp::UNIX_EPOCH, jiff::Timestamp::UNIX_EPOCH);
    send_sync(&client.access_event_pages(query.clone()));
    send_sync(&client.access_event_poller(jiff::Timestamp::UNIX_EPOCH));
    let mut poller = client.access_event_poller(jiff::Timestamp::UNIX_EPOCH);
    send(&poller.poll());
    let user = crate::NewUser::default();
    send(&client.create_user(&user));
    send(&client.update_user_groups(1, &[2], &[3]));
    send(&client.access_events(&query));
    send(&client.group_members(1));
    send(&client.sign_in());
}

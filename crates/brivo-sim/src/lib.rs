//! brivo-sim: a local emulator of the Brivo Access public API.
//!
//! It serves the OAuth token endpoint and the `/v1/api` REST surface that doorsync uses, with the
//! status codes, envelopes and error bodies that real Brivo traffic shows, plus an admin surface
//! under `/__sim/` for tests: swipe a credential at a door, inject faults, read the membership
//! history, read the outbox of invitation e-mails. It runs on real time.
//!
//! Start it with [`spawn`] on an already-bound listener (port 0 in tests), or run the
//! `brivo-sim` binary.

mod admin;
mod api;
mod auth;
mod events;
mod faults;
mod filter;
mod groups;
mod invitations;
mod model;
mod oauth;
mod paging;
mod seed;
mod server;
mod sim;
mod sites;
mod smtp;
mod state;
mod subscriptions;
mod users;
mod util;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use model::{MembershipChange, MembershipOp, UserChange, UserChangeOp};

/// How a fresh account is populated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seed {
    /// One site "Flex Space HQ" with its doors, the 13 groups of a small flexible workspace plus a
    /// non-managed "Staff" group holding one cleaner.
    #[default]
    Demo,
    /// The same building (site, control panel, doors) but no groups and no users.
    Empty,
}

/// What the emulator starts with.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Lifetime of access tokens (`expires_in`); Brivo's current value is 300 s.
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens; Brivo's documented example is 14 days.
    pub refresh_token_ttl: Duration,
    /// Where state is kept as JSON across restarts; loaded at start when present.
    pub state_file: Option<PathBuf>,
    /// `host:port` of an SMTP server that receives invitation e-mails (plain SMTP, no TLS).
    pub smtp: Option<String>,
    /// How a new account is populated (ignored when a state file is loaded).
    pub seed: Seed,
    /// The redirect URI registered for the 3-legged application (ignored when a state file is
    /// loaded).
    pub redirect_uri: String,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(14 * 24 * 3600),
            state_file: None,
            smtp: None,
            seed: Seed::Demo,
            redirect_uri: DEFAULT_REDIRECT_URI.into(),
        }
    }
}

/// Where the 3-legged application sends the browser back unless the options say otherwise.
pub const DEFAULT_REDIRECT_URI: &str = "http://localhost:8080/callback";

/// The credentials a client needs to talk to the emulated account.
///
/// Like a real Brivo account it has two applications, each limited to its grant type:
/// `client_id`/`client_secret` is a "Password" application (password and refresh-token grants),
/// `code_client_id`/`code_client_secret` a "3-Legged" one (authorization-code and refresh-token
/// grants, redirecting only to `redirect_uri`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub api_key: String,
    pub client_id: String,
    pub client_secret: String,
    pub admin_id: String,
    pub password: String,
    #[serde(default = "defaults::code_client_id")]
    pub code_client_id: String,
    #[serde(default = "defaults::code_client_secret")]
    pub code_client_secret: String,
    #[serde(default = "defaults::redirect_uri")]
    pub redirect_uri: String,
}

/// Defaults for fields that state files written by older versions lack.
mod defaults {
    pub fn code_client_id() -> String {
        "sim-3legged-client".into()
    }

    pub fn code_client_secret() -> String {
        "sim-3legged-secret".into()
    }

    pub fn redirect_uri() -> String {
        super::DEFAULT_REDIRECT_URI.into()
    }
}

impl Default for Account {
    /// Fixed, documented defaults so that a curl session in the README works as written.
    fn default() -> Self {
        Self {
            api_key: "sim-api-key".into(),
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            admin_id: "admin".into(),
            password: "password".into(),
            code_client_id: defaults::code_client_id(),
            code_client_secret: defaults::code_client_secret(),
            redirect_uri: defaults::redirect_uri(),
        }
    }
}

/// A running emulator. Dropping it leaves the server running until the runtime ends; call
/// [`SimHandle::shutdown`] to stop it gracefully.
pub struct SimHandle {
    sim: Arc<sim::Sim>,
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// `http://IP:PORT`, where IP is 127.0.0.1 when the listener is bound to an unspecified address.
    pub fn base_url(&self) -> String {
        self.sim.base_url.clone()
    }

    /// Base of the REST API: `base_url() + "/v1/api"`.
    pub fn api_url(&self) -> String {
        format!("{}/v1/api", self.sim.base_url)
    }

    /// Base of the OAuth endpoints (`/oauth/token`, `/oauth/authorize`); the same host as the API.
    pub fn auth_url(&self) -> String {
        self.sim.base_url.clone()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn account(&self) -> Account {
        self.sim.read(|s| s.account.credentials.clone())
    }

    /// Every membership add and remove so far, oldest first.
    pub fn membership_history(&self) -> Vec<MembershipChange> {
        self.sim.read(|s| s.membership_history.clone())
    }

    /// Every user create, delete, suspend and reinstate so far, oldest first.
    pub fn user_history(&self) -> Vec<UserChange> {
        self.sim.read(|s| s.user_history.clone())
    }

    /// A user presents their credential at an access point now, as `POST /__sim/swipe` does:
    /// the event is recorded (granted or denied by the user's groups) and sent to the event
    /// subscriptions. `false` when there is no such access point.
    pub fn swipe(&self, user_id: u64, access_point_id: u64) -> bool {
        let now = jiff::Timestamp::now();
        let event = self.sim.write(|s| {
            let ap = s.access_points.get(&access_point_id).cloned()?;
            Some(events::record_swipe(s, user_id, &ap, now))
        });
        match event {
            Some(e) => {
                events::dispatch(&self.sim, &e);
                true
            }
            None => false,
        }
    }

    /// Stops accepting connections, lets in-flight requests finish (up to a few seconds), and
    /// waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Serves the emulator on `listener` in a background task.
pub async fn spawn(
    listener: tokio::net::TcpListener,
    options: SimOptions,
) -> anyhow::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let base_url = format!("http://{host}:{}", addr.port());
    let sim = Arc::new(sim::Sim::new(base_url, options)?);
    let router = api::router(sim.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server::serve(listener, sim.clone(), router, stopped));
    Ok(SimHandle {
        sim,
        addr,
        stop,
        task,
    })
}

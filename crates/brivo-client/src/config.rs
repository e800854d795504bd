//! What a client needs to reach one Brivo Access account, and the knobs of its call policy.

use secrecy::SecretString;
use std::fmt;
use std::time::Duration;

/// Brivo's US ("PROD") API base, with the `/v1/api` prefix every data call needs.
pub const US_API_URL: &str = "https://api.brivo.com/v1/api";
/// Brivo's US authorization server (serves `/oauth/token`).
pub const US_AUTH_URL: &str = "https://auth.brivo.com";
/// Brivo's EU API base. Accounts on access.eu.brivo.com live here; their keys do not work in the US.
pub const EU_API_URL: &str = "https://api.eu.brivo.com/v1/api";
/// Brivo's EU authorization server.
pub const EU_AUTH_URL: &str = "https://auth.eu.brivo.com";

/// How the client obtains its first access token. Secrets are held in `secrecy`'s types: they
/// print as `[REDACTED]` and are zeroed when dropped.
#[derive(Clone, Debug)]
pub enum Grant {
    /// The OAuth password grant of a "Password" application. `username` is the administrator's
    /// Admin ID, not their e-mail address (a frequent setup mistake). A "3-Legged" application's
    /// client is refused this grant (`Unauthorized`, code `unauthorized_client`).
    Password {
        username: String,
        password: SecretString,
    },
    /// A refresh token obtained elsewhere, typically from the authorization-code flow of a
    /// "3-Legged" application, with that application's client id and secret (a refresh token
    /// works only for the application it was issued to). The client cannot sign in again once
    /// it stops working.
    RefreshToken(SecretString),
}

/// Everything a [`crate::BrivoClient`] needs. Build it with [`ClientConfig::us`],
/// [`ClientConfig::eu`] or [`ClientConfig::new`] (any base URL, e.g. a brivo-sim), then adjust
/// the public policy fields if the defaults do not suit.
#[derive(Clone)]
pub struct ClientConfig {
    /// API base including `/v1/api`, without a trailing slash, e.g. `https://api.brivo.com/v1/api`.
    pub api_url: String,
    /// Authorization server base, e.g. `https://auth.brivo.com`; `/oauth/token` is appended.
    pub auth_url: String,
    /// The developer's API key, sent as `api-key` on every call to both servers.
    pub api_key: SecretString,
    pub client_id: String,
    pub client_secret: SecretString,
    pub grant: Grant,
    /// Client-side limit on calls per second, shared by every client in this process that uses
    /// the same API key against the same API. `0` or a non-finite value turns the limit off.
    pub requests_per_second: f64,
    /// Limit on each HTTP attempt, from sending the request to reading the whole body.
    pub timeout: Duration,
    /// How many times a failed call is tried again (so at most `max_retries + 1` attempts).
    pub max_retries: u32,
    /// First backoff step; attempt `n` waits a random time in `[0, base_backoff * 2^n]`.
    pub base_backoff: Duration,
    /// Cap of one backoff wait. A `Retry-After` longer than this is not waited for: the error is
    /// returned so that the caller can reschedule instead of holding a worker.
    pub max_backoff: Duration,
    /// Paces calls across processes instead of the in-process limit (see [`crate::Pacer`]).
    pub pacer: Option<std::sync::Arc<dyn crate::Pacer>>,
}

impl ClientConfig {
    /// A configuration for any pair of base URLs (a brivo-sim, a proxy) with default policy.
    pub fn new(
        api_url: impl Into<String>,
        auth_url: impl Into<String>,
        api_key: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        grant: Grant,
    ) -> Self {
        ClientConfig {
            api_url: trim_slash(api_url.into()),
            auth_url: trim_slash(auth_url.into()),
            api_key: SecretString::from(api_key.into()),
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
            grant,
            requests_per_second: 10.0,
            timeout: Duration::from_secs(10),
            max_retries: 4,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            pacer: None,
        }
    }

    /// An account in Brivo's US region (access.brivo.com).
    pub fn us(
        api_key: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        grant: Grant,
    ) -> Self {
        Self::new(
            US_API_URL,
            US_AUTH_URL,
            api_key,
            client_id,
            client_secret,
            grant,
        )
    }

    /// An account in Brivo's EU region (access.eu.brivo.com).
    pub fn eu(
        api_key: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        grant: Grant,
    ) -> Self {
        Self::new(
            EU_API_URL,
            EU_AUTH_URL,
            api_key,
            client_id,
            client_secret,
            grant,
        )
    }
}

fn trim_slash(mut url: String) -> String {
    while url.ends_with('/') {
        url.pop();
    }
    url
}

// Hand-written for the pacer, which has no `Debug`; the secrets print as `[REDACTED]`.
impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("api_url", &self.api_url)
            .field("auth_url", &self.auth_url)
            .field("api_key", &self.api_key)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("grant", &self.grant)
            .field("requests_per_second", &self.requests_per_second)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("base_backoff", &self.base_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("pacer", &self.pacer.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let config = ClientConfig::us(
            "key-123",
            "client",
            "secret-456",
            Grant::Password {
                username: "admin".into(),
                password: "pw-789".into(),
            },
        );
        let shown = format!("{config:?}");
        for secret in ["key-123", "secret-456", "pw-789"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("admin"));
        let refresh = format!("{:?}", Grant::RefreshToken("rt-000".into()));
        assert!(!refresh.contains("rt-000"));
    }

    #[test]
    fn region_urls_and_trailing_slashes() {
        let grant = Grant::RefreshToken("x".into());
        let eu = ClientConfig::eu("k", "c", "s", grant.clone());
        assert_eq!(eu.api_url, "https://api.eu.brivo.com/v1/api");
        assert_eq!(eu.auth_url, "https://auth.eu.brivo.com");
        let any = ClientConfig::new(
            "http://127.0.0.1:1/v1/api/",
            "http://127.0.0.1:1/",
            "k",
            "c",
            "s",
            grant,
        );
        assert_eq!(any.api_url, "http://127.0.0.1:1/v1/api");
        assert_eq!(any.auth_url, "http://127.0.0.1:1");
        assert_eq!(any.requests_per_second, 10.0);
        assert_eq!(any.max_retries, 4);
    }
}

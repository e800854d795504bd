//! OAuth tokens: obtained with the configured grant, kept, and renewed before they run out.
//!
//! Brivo's access tokens live 300 s today (59 s in 2017), so renewal is routine, not an
//! exception. The rules, from Brivo's own guidance:
//! - renew ahead of expiry: when less than 30 s or a tenth of the lifetime is left (at most half
//!   the lifetime, so that very short tokens are still used);
//! - a call answered `401` renews once and is tried again once;
//! - renew with the refresh token; sign in again with the password only when the server refuses
//!   the refresh token (a refresh that merely timed out is retried, not replaced by a sign-in);
//! - many callers needing a new token at once share one token request: renewal is
//!   single-flight behind an async mutex, and a caller whose token was rejected only renews if
//!   nobody has replaced that token in the meantime.

use secrecy::ExposeSecret;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};
use serde::Deserialize;
use tokio::time::Instant;

use crate::client::BrivoClient;
use crate::config::Grant;
use crate::error::{BrivoError, ErrorKind};

pub(crate) const TOKEN_ENDPOINT: &str = "POST /oauth/token";

/// Assumed lifetime when the server leaves out `expires_in`: the shortest ever seen, to be safe.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(59);

/// An access token as handed to one call. `generation` tells tokens apart without comparing
/// secrets, so that a rejected token can be matched against the current one.
#[derive(Clone)]
pub(crate) struct AccessToken {
    pub value: Arc<str>,
    pub generation: u64,
    renew_at: Instant,
    expires_at: Instant,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"<redacted>")
            .field("generation", &self.generation)
            .field("renew_at", &self.renew_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Default)]
struct TokenState {
    access: Option<AccessToken>,
    refresh: Option<String>,
    generation: u64,
}

pub(crate) struct Tokens {
    state: Mutex<TokenState>,
    /// Held while a token request is in flight; the single-flight gate.
    renewing: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Tokens")
            .field("has_access_token", &state.access.is_some())
            .field("has_refresh_token", &state.refresh.is_some())
            .field("generation", &state.generation)
            .finish()
    }
}

/// The body of a successful token answer.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Clone, Copy)]
enum TokenGrant<'a> {
    Password {
        username: &'a str,
        password: &'a str,
    },
    Refresh(&'a str),
    Code {
        code: &'a str,
        redirect_uri: Option<&'a str>,
    },
}

impl Tokens {
    pub(crate) fn new(grant: &Grant) -> Self {
        let refresh = match grant {
            Grant::RefreshToken(token) => Some(token.expose_secret().to_owned()),
            Grant::Password { .. } => None,
        };
        Tokens {
            state: Mutex::new(TokenState {
                refresh,
                ..TokenState::default()
            }),
            renewing: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current refresh token, for callers that persist it across restarts.
    pub(crate) fn refresh_token(&self) -> Option<String> {
        self.lock().refresh.clone()
    }

    /// A token good for a call now, renewing first when it is due.
    pub(crate) async fn current(&self, client: &BrivoClient) -> Result<AccessToken, BrivoError> {
        let now = Instant::now();
        let held = self.lock().access.clone();
        match held {
            Some(token) if now < token.renew_at => Ok(token),
            Some(token) if now < token.expires_at => {
                // Due for renewal but still valid: a failed renewal need not fail the call.
                match self.renew(client, None).await {
                    Ok(fresh) => Ok(fresh),
                    Err(err) if err.retryable() && Instant::now() < token.expires_at => {
                        tracing::warn!(error = %err, "token renewal failed; using the current token until it expires");
                        Ok(token)
                    }
                    Err(err) => Err(err),
                }
            }
            _ => self.renew(client, None).await,
        }
    }

    /// Renews after the server rejected the token of `generation`, unless another caller already
    /// replaced it.
    pub(crate) async fn renew_after_rejection(
        &self,
        client: &BrivoClient,
        generation: u64,
    ) -> Result<AccessToken, BrivoError> {
        self.renew(client, Some(generation)).await
    }

    async fn renew(
        &self,
        client: &BrivoClient,
        rejected: Option<u64>,
    ) -> Result<AccessToken, BrivoError> {
        let _gate = self.renewing.lock().await;
        // Whoever held the gate before us may have done the work already.
        if let Some(token) = self.lock().access.clone() {
            let replaced = rejected.is_some_and(|g| g != token.generation);
            let fresh = rejected.is_none() && Instant::now() < token.renew_at;
            if replaced || fresh {
                return Ok(token);
            }
        }
        let (answer, started) = self.obtain(client).await?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME);
        let mut state = self.lock();
        state.generation += 1;
        if let Some(refresh) = answer.refresh_token {
            state.refresh = Some(refresh);
        }
        let token = AccessToken {
            value: answer.access_token.into(),
            generation: state.generation,
            renew_at: started + lifetime.saturating_sub(renewal_margin(lifetime)),
            expires_at: started + lifetime,
        };
        state.access = Some(token.clone());
        Ok(token)
    }

    /// Runs the refresh grant, falling back to the password grant when the refresh is refused.
    /// Returns the answer and when the request started (lifetimes count from there).
    async fn obtain(&self, client: &BrivoClient) -> Result<(TokenResponse, Instant), BrivoError> {
        let refresh = self.lock().refresh.clone();
        let refused = match refresh {
            Some(refresh) => {
                let started = Instant::now();
                match token_call(client, TokenGrant::Refresh(&refresh)).await {
                    Ok(answer) => return Ok((answer, started)),
                    // Down or slow: the refresh token may be fine; do not sign in over it.
                    Err(err) if err.retryable() => return Err(err),
                    Err(err) => {
                        tracing::info!(error = %err, "refresh token refused");
                        // Never send a refused refresh token again.
                        self.lock().refresh = None;
                        Some(err)
                    }
                }
            }
            None => None,
        };
        match &client.config().grant {
            Grant::Password { username, password } => {
                let started = Instant::now();
                let answer = token_call(
                    client,
                    TokenGrant::Password {
                        username,
                        password: password.expose_secret(),
                    },
                )
                .await?;
                Ok((answer, started))
            }
            Grant::RefreshToken(_) => Err(refused.unwrap_or_else(|| {
                BrivoError::new(
                    ErrorKind::Unauthorized,
                    TOKEN_ENDPOINT,
                    "the refresh token was refused and no password is configured; authorize again",
                )
            })),
        }
    }

    /// Makes the held token due for renewal now, as if its time had run out.
    #[cfg(test)]
    pub(crate) fn age_for_test(&self) {
        if let Some(token) = self.lock().access.as_mut() {
            token.renew_at = Instant::now();
            token.expires_at = Instant::now();
        }
    }
}

/// Exchanges the code Brivo's sign-in page handed back (the authorization-code grant of a
/// 3-legged application) for tokens, and returns the refresh token to keep: the connection signs
/// in with it from then on.
pub(crate) async fn exchange_code(
    client: &BrivoClient,
    code: &str,
    redirect_uri: Option<&str>,
) -> Result<String, BrivoError> {
    let answer = token_call(client, TokenGrant::Code { code, redirect_uri }).await?;
    answer.refresh_token.ok_or_else(|| {
        BrivoError::new(
            ErrorKind::Decode,
            TOKEN_ENDPOINT,
            "the token answer carried no refresh token",
        )
    })
}

/// How long before expiry to renew: 30 s or a tenth of the lifetime, whichever is longer, but
/// never more than half the lifetime.
pub(crate) fn renewal_margin(lifetime: Duration) -> Duration {
    Duration::from_secs(30).max(lifetime / 10).min(lifetime / 2)
}

/// One token request with retries on transient failures. Asking twice for a token is harmless,
/// so this is retried like an idempotent call.
async fn token_call(
    client: &BrivoClient,
    grant: TokenGrant<'_>,
) -> Result<TokenResponse, BrivoError> {
    let config = client.config();
    let url = format!("{}/oauth/token", config.auth_url);
    let form: Vec<(&str, &str)> = match grant {
        TokenGrant::Password { username, password } => vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ],
        TokenGrant::Refresh(token) => {
            vec![("grant_type", "refresh_token"), ("refresh_token", token)]
        }
        TokenGrant::Code { code, redirect_uri } => {
            let mut form = vec![("grant_type", "authorization_code"), ("code", code)];
            form.extend(redirect_uri.map(|u| ("redirect_uri", u)));
            form
        }
    };
    let secret = match grant {
        TokenGrant::Password { password, .. } => password,
        TokenGrant::Refresh(token) => token,
        TokenGrant::Code { code, .. } => code,
    };
    let mut retries = 0;
    loop {
        client.acquire_rate_slot(TOKEN_ENDPOINT).await;
        let mut api_key = HeaderValue::from_str(config.api_key.expose_secret()).map_err(|e| {
            BrivoError::new(
                ErrorKind::InvalidInput,
                TOKEN_ENDPOINT,
                "the API key is not a valid header value",
            )
            .with_source(e)
        })?;
        api_key.set_sensitive(true);
        let request = client
            .http()
            .post(&url)
            .basic_auth(
                &config.client_id,
                Some(config.client_secret.expose_secret()),
            )
            .header("api-key", api_key)
            .header(ACCEPT, "application/json")
            .form(&form)
            .timeout(config.timeout);
        let result = client
            .finish_attempt(TOKEN_ENDPOINT, request)
            .await
            .map_err(|err| err.redact(secret));
        client.record(TOKEN_ENDPOINT, &result);
        let err = match result {
            Ok(body) => return client.decode(TOKEN_ENDPOINT, &body),
            Err(err) => err,
        };
        if retries >= config.max_retries || !err.retryable() {
            return Err(err);
        }
        let Some(wait) = client.backoff_for(retries, &err) else {
            return Err(err);
        };
        tracing::warn!(error = %err, retry = retries + 1, ?wait, "token request failed; retrying");
        tokio::time::sleep(wait).await;
        retries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins() {
        assert_eq!(
            renewal_margin(Duration::from_secs(300)),
            Duration::from_secs(30)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(3600)),
            Duration::from_secs(360)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(59)),
            Duration::from_millis(29_500)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(renewal_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn token_answer_tolerates_missing_fields() {
        let answer: TokenResponse = serde_json::from_str(
            r#"{"access_token":"a","token_type":"bearer","refresh_token":"r","expires_in":59,"scope":"brivo.api","jti":"x"}"#,
        )
        .unwrap();
        assert_eq!(answer.expires_in, Some(59));
        let answer: TokenResponse = serde_json::from_str(r#"{"access_token":"a"}"#).unwrap();
        assert!(answer.refresh_token.is_none() && answer.expires_in.is_none());
    }
}

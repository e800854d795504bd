//! The client handle and the one path every API call takes: rate limit, bearer token, one HTTP
//! attempt with a timeout, accounting, then either a renewed token, a retry or the error.

use secrecy::ExposeSecret;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::Tokens;
use crate::config::ClientConfig;
use crate::error::{BrivoError, ErrorKind};
use crate::ratelimit::{self, RateLimiter};
use crate::retry::{Backoff, RetryMode};
use crate::stats::{CallStat, CallStats};

/// A Brivo Access API client for one account. Cheap to clone: clones share the tokens, the rate
/// limit and the call counts.
#[derive(Clone)]
pub struct BrivoClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    tokens: Tokens,
    limiter: Arc<RateLimiter>,
    stats: CallStats,
    backoff: Backoff,
}

impl fmt::Debug for BrivoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrivoClient")
            .field("config", &self.inner.config)
            .field("tokens", &self.inner.tokens)
            .field("total_calls", &self.inner.stats.total())
            .finish()
    }
}

/// One API request, described before it is sent so that it can be sent again.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    method: Method,
    endpoint: &'static str,
    /// The path below the API base, starting with `/`, ids and segments already encoded.
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    retry: RetryMode,
}

impl Call {
    fn new(method: Method, endpoint: &'static str, path: String, retry: RetryMode) -> Self {
        Call {
            method,
            endpoint,
            path,
            query: Vec::new(),
            body: None,
            retry,
        }
    }

    pub(crate) fn get(endpoint: &'static str, path: String) -> Self {
        Call::new(Method::GET, endpoint, path, RetryMode::Idempotent)
    }

    pub(crate) fn put(endpoint: &'static str, path: String) -> Self {
        Call::new(Method::PUT, endpoint, path, RetryMode::Idempotent)
    }

    pub(crate) fn delete(endpoint: &'static str, path: String) -> Self {
        Call::new(Method::DELETE, endpoint, path, RetryMode::Idempotent)
    }

    /// A POST is not idempotent unless the caller says so with [`Call::idempotent`].
    pub(crate) fn post(endpoint: &'static str, path: String) -> Self {
        Call::new(Method::POST, endpoint, path, RetryMode::OnlyUnprocessed)
    }

    pub(crate) fn patch(endpoint: &'static str, path: String) -> Self {
        Call::new(Method::PATCH, endpoint, path, RetryMode::OnlyUnprocessed)
    }

    /// Marks a call whose repetition leaves the same state as one success.
    pub(crate) fn idempotent(mut self) -> Self {
        self.retry = RetryMode::Idempotent;
        self
    }

    pub(crate) fn query(mut self, pairs: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        self.query.extend(pairs);
        self
    }

    pub(crate) fn json(mut self, body: &impl Serialize) -> Result<Self, BrivoError> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            BrivoError::new(
                ErrorKind::InvalidInput,
                self.endpoint,
                "the request body could not be encoded",
            )
            .with_source(e)
        })?;
        self.body = Some(bytes);
        Ok(self)
    }
}

impl BrivoClient {
    /// Builds a client. Nothing is sent until the first call (see [`BrivoClient::sign_in`] to
    /// check the credentials eagerly).
    pub fn new(config: ClientConfig) -> Result<Self, BrivoError> {
        for (what, url) in [("api_url", &config.api_url), ("auth_url", &config.auth_url)] {
            reqwest::Url::parse(url).map_err(|e| {
                BrivoError::new(
                    ErrorKind::InvalidInput,
                    "config",
                    format!("{what} is not a URL"),
                )
                .with_source(e)
            })?;
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("doorsync-brivo-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            // The API does not redirect; following one could carry credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                BrivoError::new(
                    ErrorKind::InvalidInput,
                    "config",
                    "could not build the HTTP client",
                )
                .with_source(e)
            })?;
        let limiter = ratelimit::shared(
            &config.api_url,
            config.api_key.expose_secret(),
            config.requests_per_second,
        );
        let backoff = Backoff {
            base: config.base_backoff,
            cap: config.max_backoff,
        };
        Ok(BrivoClient {
            inner: Arc::new(Inner {
                http,
                tokens: Tokens::new(&config.grant),
                config,
                limiter,
                stats: CallStats::default(),
                backoff,
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Every HTTP attempt so far (retries and token requests included), by endpoint and outcome.
    pub fn calls(&self) -> Vec<CallStat> {
        self.inner.stats.snapshot()
    }

    /// The number of HTTP attempts so far.
    pub fn total_calls(&self) -> u64 {
        self.inner.stats.total()
    }

    /// Obtains an access token now (if none is held), so that bad credentials show up at once.
    pub async fn sign_in(&self) -> Result<(), BrivoError> {
        self.inner.tokens.current(self).await.map(|_| ())
    }

    /// Exchanges the code that Brivo's sign-in page sent back to `redirect_uri` (a 3-legged
    /// application's authorization-code grant) and returns the refresh token to keep; the
    /// `redirect_uri` must repeat the one the sign-in was started with, if it named one.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: Option<&str>,
    ) -> Result<String, BrivoError> {
        crate::auth::exchange_code(self, code, redirect_uri).await
    }

    /// The refresh token currently held, to persist for a later process (the authorization-code
    /// flow cannot be repeated unattended). Handle it as a secret.
    pub fn refresh_token(&self) -> Option<String> {
        self.inner.tokens.refresh_token()
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    #[cfg(test)]
    pub(crate) fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    /// Waits for a call slot of the key, behind the more urgent calls waiting for one.
    pub(crate) async fn acquire_rate_slot(&self, endpoint: &str) {
        let _turn = self
            .inner
            .limiter
            .queue
            .turn(crate::queue::Urgency::of(endpoint))
            .await;
        match &self.inner.config.pacer {
            Some(p) => p.turn().await,
            None => self.inner.limiter.acquire().await,
        }
    }

    pub(crate) fn backoff_for(&self, retries: u32, err: &BrivoError) -> Option<Duration> {
        self.inner.backoff.delay_for(retries, err)
    }

    pub(crate) fn record<T>(&self, endpoint: &'static str, result: &Result<T, BrivoError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(err) => err.kind().as_str(),
        };
        self.inner.stats.record(endpoint, outcome);
    }

    /// Sends one prepared request and reads the whole answer; a non-2xx becomes an error.
    pub(crate) async fn finish_attempt(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<Vec<u8>, BrivoError> {
        let started = tokio::time::Instant::now();
        let response = request
            .send()
            .await
            .map_err(|e| BrivoError::from_transport(endpoint, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| BrivoError::from_transport(endpoint, e))?;
        tracing::debug!(endpoint, status = status.as_u16(), elapsed = ?started.elapsed(), "brivo call");
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(BrivoError::from_response(endpoint, status, &headers, &body))
        }
    }

    /// One attempt of an API call with the given bearer token.
    async fn attempt(&self, call: &Call, token: &str) -> Result<Vec<u8>, BrivoError> {
        let config = &self.inner.config;
        let invalid = |what: &str| {
            BrivoError::new(
                ErrorKind::InvalidInput,
                call.endpoint,
                format!("the {what} is not a valid header value"),
            )
        };
        let mut api_key = HeaderValue::from_str(config.api_key.expose_secret())
            .map_err(|_| invalid("API key"))?;
        api_key.set_sensitive(true);
        // Brivo's documentation writes `bearer` in lower case; both are accepted.
        let mut bearer = HeaderValue::from_str(&format!("bearer {token}"))
            .map_err(|_| invalid("access token"))?;
        bearer.set_sensitive(true);
        let mut request = self
            .inner
            .http
            .request(
                call.method.clone(),
                format!("{}{}", config.api_url, call.path),
            )
            .header("api-key", api_key)
            .header(AUTHORIZATION, bearer)
            .header(ACCEPT, "application/json")
            .timeout(config.timeout);
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if call.method != Method::GET && call.method != Method::HEAD {
            // Every write is typed JSON, body or not: Brivo answers 415 to a write without a
            // JSON Content-Type, and the recorded traffic sends it on the bodiless membership
            // PUT and DELETE, user DELETE and door activation too.
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(body) = &call.body {
            request = request.body(body.clone());
        }
        self.finish_attempt(call.endpoint, request).await
    }

    /// Sends `call` under the client's policy and returns the raw body of the success.
    pub(crate) async fn send(&self, call: &Call) -> Result<Vec<u8>, BrivoError> {
        let inner = &*self.inner;
        let mut retries = 0;
        let mut renewed_token = false;
        loop {
            let token = inner.tokens.current(self).await?;
            self.acquire_rate_slot(call.endpoint).await;
            // Spring's resource server repeats a rejected token in its message: strip it.
            let result = self
                .attempt(call, &token.value)
                .await
                .map_err(|err| err.redact(&token.value));
            self.record(call.endpoint, &result);
            let err = match result {
                Ok(body) => return Ok(body),
                Err(err) => err,
            };
            if err.is_token_rejection() && !renewed_token {
                // Expired or revoked early: renew (once, shared with concurrent callers) and go
                // again. This does not count against max_retries.
                renewed_token = true;
                tracing::debug!(endpoint = call.endpoint, "token rejected; renewing");
                inner
                    .tokens
                    .renew_after_rejection(self, token.generation)
                    .await?;
                continue;
            }
            if retries >= inner.config.max_retries || !call.retry.allows(&err) {
                return Err(err);
            }
            let Some(wait) = inner.backoff.delay_for(retries, &err) else {
                return Err(err);
            };
            if err.kind() == ErrorKind::OverQps {
                // The whole key is over its budget, not just this call: pause every caller.
                match &inner.config.pacer {
                    Some(p) => p.hold(wait).await,
                    None => inner.limiter.hold_for(wait),
                }
            }
            tracing::warn!(endpoint = call.endpoint, error = %err, retry = retries + 1, ?wait, "retrying brivo call");
            tokio::time::sleep(wait).await;
            retries += 1;
        }
    }

    /// Sends `call` and decodes its JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(&self, call: &Call) -> Result<T, BrivoError> {
        let body = self.send(call).await?;
        self.decode(call.endpoint, &body)
    }

    /// Sends `call` and ignores whatever body comes back (204, or activate's empty 200).
    pub(crate) async fn no_content(&self, call: &Call) -> Result<(), BrivoError> {
        self.send(call).await.map(|_| ())
    }

    /// Sends `call`; its answer may be JSON or may be empty or not JSON at all.
    pub(crate) async fn maybe_json<T: DeserializeOwned>(
        &self,
        call: &Call,
    ) -> Result<Option<T>, BrivoError> {
        let body = self.send(call).await?;
        Ok(serde_json::from_slice(&body).ok())
    }

    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        body: &[u8],
    ) -> Result<T, BrivoError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(BrivoError::new(
                ErrorKind::Decode,
                endpoint,
                "expected JSON, got an empty body",
            ));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let message = format!("unexpected answer at `{}`: {}", e.path(), e.inner());
            BrivoError::new(ErrorKind::Decode, endpoint, message).with_source(e.into_inner())
        })
    }
}

//! A typed client for the Brivo Access (formerly Brivo OnAir) REST API, built to survive the
//! real service: OAuth tokens renewed ahead of expiry and shared by concurrent callers, paged
//! lists, filters that cannot be broken by their values, one error type for every error shape
//! Brivo and its API gateway produce, a client-side rate limit per API key, retries with
//! backoff and jitter that honour `Retry-After`, creates that are never blindly repeated, and a
//! count of every call for metrics and the monthly call budget.
//!
//! # Retries, limits and accounting
//!
//! - Every call waits for a slot of the client-side rate limit (`requests_per_second`, a token
//!   bucket holding one second's worth), shared by all clients in the process with the same API
//!   base and key. A server over-QPS answer pauses that shared bucket for its `Retry-After`.
//! - A `401` from the API renews the token (once, shared by concurrent callers) and repeats the
//!   call once. Tokens are also renewed ahead of expiry.
//! - Idempotent calls (GET, PUT, DELETE, membership changes, PATCH of fixed values, the
//!   add/remove-groups POST) are retried up to `max_retries` times on over-QPS, 429, 5xx (not
//!   596), timeouts and broken connections, waiting a full-jitter exponential backoff (`base_backoff`
//!   doubling up to `max_backoff`) or the server's `Retry-After`, whichever is longer. A
//!   `Retry-After` beyond `max_backoff` is not waited for: the error carries it to the caller.
//! - Creates and actions (user, group, invitation and subscription creates, door activation) are
//!   retried only when the request certainly never reached Brivo (over-QPS, 429, no connection).
//!   After an unknown outcome, [`BrivoClient::create_user`] and
//!   [`BrivoClient::create_invitation`] look first and create again only if nothing is there;
//!   the others return the error.
//! - [`BrivoClient::calls`] counts every HTTP attempt (retries and token requests included) by
//!   templated endpoint and outcome.
//!
//! ```no_run
//! # async fn demo() -> Result<(), brivo_client::BrivoError> {
//! use brivo_client::{BrivoClient, ClientConfig, Filter, Grant};
//! let client = BrivoClient::new(ClientConfig::us(
//!     "api-key",
//!     "client-id",
//!     "client-secret",
//!     Grant::Password { username: "admin-id".into(), password: "password".into() },
//! ))?;
//! let day_passes = client.list_groups(Some(&Filter::new().eq("name", ["Day Pass"]))).await?;
//! if let Some(user) = client.find_user_by_external_id("customer-42").await? {
//!     client.add_user_to_group(day_passes[0].id, user.id).await?;
//! }
//! # Ok(()) }
//! ```

mod allotment;
mod auth;
mod client;
mod config;
mod error;
mod events;
mod filter;
mod groups;
mod invitations;
mod model;
mod paging;
mod queue;
mod ratelimit;
mod retry;
mod sites;
mod stats;
mod users;

#[cfg(test)]
mod tests;

pub use allotment::Allotment;
pub use client::BrivoClient;
pub use config::{ClientConfig, EU_API_URL, EU_AUTH_URL, Grant, US_API_URL, US_AUTH_URL};
pub use error::{BrivoError, ErrorKind};
pub use events::{EventPager, EventPoller, EventQuery};
pub use filter::{Filter, FilterValue, Op};
pub use model::*;
pub use paging::{MAX_PAGE_SIZE, Page, Pager};
pub use ratelimit::Pacer;
pub use stats::CallStat;

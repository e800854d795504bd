//! The member app under `/app`: members sign in with a one-time link e-mailed to them, see their
//! own passes, bookings, contract access and visitors, open the doors they hold now, and find
//! their Mobile Pass. Its JSON API for a white-label app is under `/app/api/v1`.
//!
//! Member sessions are their own: a cookie scoped to `/app` for the pages, a bearer token for
//! the JSON API, both kept as hashes in `member_sessions`, apart from the dashboard's sessions
//! and the API's tokens.

mod api;
mod pages;
pub mod view;

use crate::AppState;
use crate::admin::{Form, random_token, same};
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use doorsync_core::Id;
use doorsync_store::{OutgoingMail, Record};
use jiff::{SignedDuration, Timestamp};

const SESSION_COOKIE: &str = "doorsync_member";
/// Before sign-in, forms carry a token that matches this cookie (a double-submit token).
const CSRF_COOKIE: &str = "doorsync_member_csrf";
/// A sign-in link works once, for this long.
pub const LINK_VALID: SignedDuration = SignedDuration::from_mins(15);
/// A member stays signed in this long.
pub const SESSION_VALID: SignedDuration = SignedDuration::from_hours(24 * 30);
/// Links asked for one address, and from one client address, within [`LINK_VALID`].
pub const LINKS_PER_ADDRESS: i64 = 5;
pub const LINKS_PER_CLIENT: i64 = 20;
/// Member session tokens say what they are, so one is never mistaken for an API token.
const TOKEN_PREFIX: &str = "dsm_";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/app", get(pages::home))
        .route(
            "/app/",
            get(|| async { axum::response::Redirect::permanent("/app") }),
        )
        .route("/app/signin", post(pages::request_link))
        .route(
            "/app/signin/{token}",
            get(pages::confirm_page).post(pages::confirm),
        )
        .route("/app/signout", post(pages::sign_out))
        .route("/app/outbox", get(pages::outbox))
        .route("/app/doors/{id}/unlock", post(pages::unlock))
}

/// The member app's JSON API, with its description: its bearer token is a member session's,
/// not an API token.
pub fn api_routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(api::request_link))
        .routes(routes!(api::open_session, api::end_session))
        .routes(routes!(api::me))
        .routes(routes!(api::doors))
        .routes(routes!(api::unlock))
        .routes(routes!(api::mobile_pass))
}

/// Why a sign-in link was not sent.
pub(crate) enum LinkRefused {
    /// Too many links were asked for this address or from this client.
    TooMany,
    /// The service cannot send sign-in mail (no public address or no SMTP server).
    NotSetUp,
}

/// Asks for a sign-in link for `email`: when a customer has that address, a link is kept and
/// its mail queued. The answer is the same whether or not anyone has the address, so the form
/// tells nobody who is a member.
pub(crate) async fn request_link(
    st: &AppState,
    email: &str,
    peer: Option<std::net::IpAddr>,
) -> Result<(), LinkRefused> {
    let Some((base, _)) = mail_setup(st) else {
        return Err(LinkRefused::NotSetUp);
    };
    let now = st.clock.now();
    let email = email.trim().to_lowercase();
    let since = now.saturating_sub(LINK_VALID).unwrap_or(now);
    let by_address = format!("member-link:address:{email}");
    let by_client = format!(
        "member-link:client:{}",
        peer.map_or_else(String::new, |p| p.to_string())
    );
    let store = &st.store;
    let count =
        |key: String| async move { store.signin_failures(&key, since).await.unwrap_or(i64::MAX) };
    if count(by_address.clone()).await >= LINKS_PER_ADDRESS
        || count(by_client.clone()).await >= LINKS_PER_CLIENT
    {
        return Err(LinkRefused::TooMany);
    }
    if let Err(e) = store
        .record_signin_failure(&[&by_address, &by_client], now, since)
        .await
    {
        tracing::warn!(error = %e, "counting a sign-in link failed");
        return Err(LinkRefused::TooMany);
    }
    if email.is_empty() || email.len() > 254 {
        return Ok(());
    }
    let customer = match store.customers_by_email(&email).await {
        Ok(found) => found.into_iter().find_map(|r| match r {
            Record::Customer(c) => Some(c),
            _ => None,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "looking up a member's e-mail failed");
            None
        }
    };
    let Some(customer) = customer else {
        return Ok(());
    };
    if customer.status != doorsync_core::CustomerStatus::Active {
        return Ok(());
    }
    let token = random_token();
    let link = format!("{base}/app/signin/{token}");
    let mail = OutgoingMail {
        id: format!("signin-{}", &random_token()[..24]),
        to: customer.email.as_str().to_owned(),
        subject: "Your sign-in link".into(),
        body: format!(
            "Hello {},\n\nOpen this link to sign in to your member app:\n\n{link}\n\n\
             It works once, within 15 minutes. If you did not ask for it, ignore this mail.\n",
            customer.name
        ),
        attempts: 0,
    };
    let expires = now.saturating_add(LINK_VALID).unwrap_or(now);
    match store
        .create_member_link(
            &crate::auth::hash(&token),
            customer.id.as_str(),
            &mail,
            now,
            expires,
        )
        .await
    {
        Ok(()) => st.wake(),
        Err(e) => tracing::warn!(error = %e, "keeping a sign-in link failed"),
    }
    Ok(())
}

/// The public address links point at and the mail settings, when both are set.
fn mail_setup(st: &AppState) -> Option<(String, doorsync_engine::mail::MailConfig)> {
    let engine = st.engine.as_ref()?;
    let base = engine.config.public_url.clone()?;
    let mail = engine.config.mail.clone()?;
    Some((base.trim_end_matches('/').to_owned(), mail))
}

/// Uses a sign-in link: a new session's token and CSRF token, or `None` for a link unknown,
/// used or expired.
pub(crate) async fn use_link(st: &AppState, token: &str) -> Option<(String, String, Timestamp)> {
    let now = st.clock.now();
    let session = format!("{TOKEN_PREFIX}{}", random_token());
    let csrf = random_token();
    let expires = now.saturating_add(SESSION_VALID).unwrap_or(now);
    match st
        .store
        .use_member_link(
            &crate::auth::hash(token),
            &crate::auth::hash(&session),
            &csrf,
            now,
            expires,
        )
        .await
    {
        Ok(Some(_)) => Some((session, csrf, expires)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "using a sign-in link failed");
            None
        }
    }
}

/// The signed-in member of a session token, with the session's CSRF token.
pub(crate) async fn member_of(st: &AppState, token: &str) -> Option<(Id, String)> {
    if !token.starts_with(TOKEN_PREFIX) {
        return None;
    }
    let s = st
        .store
        .member_session(&crate::auth::hash(token), st.clock.now())
        .await
        .ok()??;
    Some((Id::parse(&s.customer_id).ok()?, s.csrf))
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    crate::admin::cookie(headers, SESSION_COOKIE)
}

/// A cookie for the member app's paths only, out of scripts' reach.
fn set_cookie(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/app; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// Whether a posted form carries the token expected of it.
fn form_ok(form: &Form, expected: &str) -> bool {
    form.get("csrf")
        .is_some_and(|s| !expected.is_empty() && same(s, expected))
}

fn html_headers() -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
        // A sign-in link's token is in the page's address: keep it from other sites.
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

//! The operator's dashboard under `/admin`: server-rendered pages (askama), htmx only for live
//! updates. One guard stands in front of every route: it finds the session, sends whoever has
//! none to the sign-in page, and refuses any form that does not carry the page's CSRF token.

mod connection;
mod fmt;
mod location;
mod ops;
mod page;
mod signin;

use crate::AppState;
use askama::Template;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use doorsync_store::{AdminSession, StoreError};
use page::{ErrorPage, Layout};
use std::sync::{Arc, Mutex};

pub use signin::{
    SETUP_CODE_TTL, announce_setup_codes, hash_password, new_password, new_setup_code,
};

const SESSION_COOKIE: &str = "doorsync_admin";
/// Before sign-in, forms carry a token that matches this cookie (a double-submit token).
const CSRF_COOKIE: &str = "doorsync_csrf";
/// Forms are small: settings, a location's links.
const MAX_FORM: usize = 256 * 1024;

/// What the dashboard keeps in the process beside the store.
#[derive(Default)]
pub struct Shared {
    /// The last "Sync now" started here, for its progress.
    sync_now: Mutex<Option<ops::SyncNow>>,
}

pub type SharedState = Arc<Shared>;

/// What the guard found for a request, for the handlers.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub session: Option<AdminSession>,
    /// The token this page's forms carry.
    pub csrf: String,
    /// Whether cookies should say `Secure` (the request came over TLS through a proxy).
    pub secure: bool,
    /// The client's address, for rate limits.
    pub peer: Option<std::net::IpAddr>,
}

impl Ctx {
    pub fn layout(&self, title: impl Into<String>, nav: &'static str) -> Layout {
        Layout {
            title: title.into(),
            nav,
            email: self.session.as_ref().map(|s| s.admin.email.clone()),
            csrf: self.csrf.clone(),
        }
    }

    /// The signed-in administrator; the guard has sent everyone else away.
    pub fn session(&self) -> Result<&AdminSession, PageError> {
        self.session.as_ref().ok_or(PageError::SignIn)
    }
}

/// How a dashboard handler fails: a page in words, or back to the sign-in.
#[derive(Debug)]
pub(crate) enum PageError {
    SignIn,
    Page(StatusCode, String),
}

impl PageError {
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        PageError::Page(StatusCode::NOT_FOUND, format!("There is no {what}."))
    }

    pub fn bad(message: impl Into<String>) -> Self {
        PageError::Page(StatusCode::BAD_REQUEST, message.into())
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(_) | StoreError::Migration { .. } | StoreError::Corrupt { .. } => {
                tracing::error!(error = %e, "dashboard: store failed");
                PageError::Page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The database did not answer as it should; the details are in doorsync's log."
                        .into(),
                )
            }
            e => PageError::Page(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        tracing::error!(error = %e, "dashboard: a page failed to render");
        PageError::Page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "This page failed to render; the details are in doorsync's log.".into(),
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => Redirect::to("/admin/signin").into_response(),
            PageError::Page(status, message) => error_page(status, &message),
        }
    }
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        l: Layout {
            title: status.canonical_reason().unwrap_or("Error").into(),
            nav: "",
            email: None,
            csrf: String::new(),
        },
        status: status.as_u16(),
        message,
    };
    match page.render() {
        Ok(html) => (status, html_headers(), html).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

pub(crate) type PageResult = Result<Response, PageError>;

/// Why a form's write was refused, in words for its page: the API's own message, naming the
/// field as the API does. A failing database is an error page instead.
pub(crate) fn refusal(e: crate::error::ApiError) -> Result<String, PageError> {
    if e.status.is_server_error() {
        return Err(PageError::Page(
            e.status,
            "The database did not answer as it should; the details are in doorsync's log.".into(),
        ));
    }
    if e.code == "credentials_unreadable" {
        // The API's words name a request; the operator's choices are these.
        return Ok("Not saved: doorsync cannot read this connection's stored credentials with its secret key (DOORSYNC_SECRET_KEY is missing or another key), and changes them only when all of them come again. Start doorsync with the key they were sealed with, or send every credential again through the API (PUT /api/v1/connections/ID with api_key, client_id, client_secret, admin_id and password). They were left untouched.".into());
    }
    let message = e.message.trim_end_matches('.');
    Ok(match e.field {
        Some(field) => format!("Not saved: {field}: {message}."),
        None => format!("Not saved: {message}."),
    })
}

fn html_headers() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
    ]
}

/// A rendered page as a response.
pub(crate) fn html(t: impl Template) -> PageResult {
    Ok((html_headers(), t.render()?).into_response())
}

/// A page that shows a form's error answers 422, so that scripts and tests see the refusal.
pub(crate) fn html_or_refused(t: impl Template, refused: bool) -> PageResult {
    let status = if refused {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, html(t)?).into_response())
}

/// After a form: back to a page with GET (303), so a reload does not post again. An address
/// that cannot be a header is refused in words (axum's `Redirect` would panic on it).
pub(crate) fn see_other(to: &str) -> PageResult {
    let location = HeaderValue::from_str(to)
        .map_err(|_| PageError::bad("That address cannot be followed."))?;
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
}

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin", get(ops::overview))
        .route("/admin/", get(|| async { Redirect::permanent("/admin") }))
        .route("/admin/static/{file}", get(static_file))
        .route("/admin/setup", get(signin::setup_page).post(signin::setup))
        .route("/admin/signin", get(signin::page).post(signin::sign_in))
        .route("/admin/signout", post(signin::sign_out))
        .route("/admin/admins", get(signin::admins).post(signin::add_admin))
        .route("/admin/admins/{id}/delete", post(signin::delete_admin))
        .route(
            "/admin/connections",
            get(connection::list).post(connection::create),
        )
        .route("/admin/connections/{id}", get(connection::page))
        .route(
            "/admin/connections/{id}/settings",
            post(connection::save_settings),
        )
        .route(
            "/admin/connections/{id}/password",
            post(connection::connect_with_password),
        )
        .route(
            "/admin/connections/{id}/authorize",
            post(connection::authorize),
        )
        .route("/admin/oauth/callback", get(connection::callback))
        .route(
            "/admin/connections/{id}/sites",
            post(connection::save_sites),
        )
        .route(
            "/admin/locations",
            get(location::list).post(location::create),
        )
        .route("/admin/locations/{id}", get(location::page))
        .route("/admin/locations/{id}/review", post(location::review))
        .route("/admin/locations/{id}/apply", post(location::apply))
        .route("/admin/locations/{id}/items", post(location::add_item))
        .route("/admin/locations/{id}/edit", post(location::edit))
        .route("/admin/sync", get(ops::sync_page))
        .route("/admin/sync/live", get(ops::sync_live))
        .route("/admin/sync/now", post(ops::sync_now))
        .route("/admin/audit", get(ops::audit))
        .route("/admin/drift", get(ops::drift))
        .route("/admin/customers", get(ops::customers))
        .route("/admin/presence", get(ops::presence))
        .route("/admin/customers/{id}", get(ops::customer))
        .route(
            "/admin/customers/{id}/resend-invitation",
            post(ops::resend_invitation),
        )
        .route_layer(axum::middleware::from_fn_with_state(state, guard))
}

const HTMX: &str = include_str!("../../static/htmx-2.0.11.min.js");
const CSS: &str = include_str!("../../static/admin.css");

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "admin.css" => (CSS, "text/css; charset=utf-8"),
        _ => return error_page(StatusCode::NOT_FOUND, "There is no such file."),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub(crate) fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookies(headers)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A cookie for the dashboard's paths only, out of scripts' reach.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    max_age: Option<i64>,
    secure: bool,
) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal strings, compared in time that does not depend on where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn public(path: &str) -> bool {
    matches!(path, "/admin/signin" | "/admin/setup") || path.starts_with("/admin/static/")
}

async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    match guarded(st, req, next).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn guarded(st: AppState, req: Request, next: Next) -> PageResult {
    let now = st.clock.now();
    let headers = req.headers();
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let session = match cookie(headers, SESSION_COOKIE) {
        Some(token) => {
            st.store
                .admin_session(&crate::auth::hash(token), now)
                .await?
        }
        None => None,
    };
    let path = req.uri().path().to_owned();
    if session.is_none() && !public(&path) {
        // Nobody can sign in before the first administrator exists.
        let to = if st.store.admin_count().await? == 0 {
            "/admin/setup".to_owned()
        } else if req.method() == Method::GET && path != "/admin" {
            format!("/admin/signin?next={}", encode(&path_and_query(&req)))
        } else {
            "/admin/signin".to_owned()
        };
        if req.headers().contains_key("hx-request") {
            // htmx follows a redirect inside the fragment; ask for a whole page instead.
            return Ok((
                StatusCode::UNAUTHORIZED,
                [("hx-redirect", to.as_str())],
                "signed out",
            )
                .into_response());
        }
        return see_other(&to);
    }
    let (csrf, new_cookie) = match (&session, cookie(req.headers(), CSRF_COOKIE)) {
        (Some(s), _) => (s.csrf.clone(), false),
        (None, Some(c)) => (c.to_owned(), false),
        (None, None) => (random_token(), true),
    };
    let mut req = req;
    if req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
            PageError::Page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "This form is too large.".into(),
            )
        })?;
        let sent = Form::parse(&bytes).get("csrf").map(str::to_owned);
        if !sent.is_some_and(|s| !new_cookie && same(&s, &csrf)) {
            return Err(PageError::Page(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this dashboard. Go back, reload the page and send it again.".into(),
            ));
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    req.extensions_mut().insert(Ctx {
        session,
        csrf: csrf.clone(),
        secure,
        peer,
    });
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if new_cookie {
        h.append(
            header::SET_COOKIE,
            set_cookie(CSRF_COOKIE, &csrf, None, secure),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; form-action 'self' http: https:; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    Ok(res)
}

fn path_and_query(req: &Request) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| "/admin".to_owned(), |p| p.as_str().to_owned())
}

/// Percent-encodes a query value.
pub(crate) fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A posted form: `application/x-www-form-urlencoded` pairs, repeated keys kept.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &Bytes) -> Form {
        Form(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value, trimmed; `None` when absent or blank.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.get(key).map(str::trim).filter(|v| !v.is_empty())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn checked(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The record id in `key`, or the words that say what one looks like.
    pub fn id(&self, key: &str) -> Result<doorsync_core::Id, &'static str> {
        doorsync_core::Id::parse(self.text(key).unwrap_or(""))
            .map_err(|_| "An id is 1 to 128 letters, digits, dots, colons or dashes.")
    }
}

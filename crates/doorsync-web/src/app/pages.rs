//! The member app's pages: server-rendered, mobile first, no script.

use super::view::{MemberView, member_view};
use super::*;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use doorsync_engine::member::{MemberDoor, MemberUnlock};
use doorsync_engine::provider::{InvitationState, MobilePass};

const MAX_FORM: usize = 16 * 1024;

#[derive(Template)]
#[template(path = "app/signin.html")]
struct SignInPage<'a> {
    csrf: &'a str,
    message: Option<&'a str>,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "app/confirm.html")]
struct ConfirmPage<'a> {
    csrf: &'a str,
    token: &'a str,
}

#[derive(Template)]
#[template(path = "app/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "app/home.html")]
struct HomePage<'a> {
    csrf: &'a str,
    me: &'a MemberView,
    doors: &'a [MemberDoor],
    list_doors: bool,
    pass: Option<&'a MobilePass>,
    pass_error: Option<&'a str>,
    notice: Option<&'a str>,
    alert: Option<&'a str>,
}

impl HomePage<'_> {
    fn pass_state(&self) -> &'static str {
        match self.pass.map(|p| p.state) {
            Some(InvitationState::Pending) => "waiting to be redeemed",
            Some(InvitationState::Redeemed) => "redeemed: it is in your Brivo app",
            _ => "",
        }
    }
}

fn page(status: StatusCode, t: impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, html_headers(), html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "member app: a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "This page failed to render.",
            )
                .into_response()
        }
    }
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    page(
        status,
        MessagePage {
            title,
            message: text,
        },
    )
}

/// The pre-sign-in CSRF token: the cookie's, or a new one to set.
fn pre_csrf(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match crate::admin::cookie(headers, CSRF_COOKIE) {
        Some(c) => (c.to_owned(), None),
        None => {
            let t = random_token();
            let cookie = set_cookie(CSRF_COOKIE, &t, None, secure(headers));
            (t, Some(cookie))
        }
    }
}

fn with_cookie(mut res: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

fn sign_in_page(
    headers: &HeaderMap,
    status: StatusCode,
    message: Option<&str>,
    error: Option<&str>,
) -> Response {
    let (csrf, cookie) = pre_csrf(headers);
    with_cookie(
        page(
            status,
            SignInPage {
                csrf: &csrf,
                message,
                error,
            },
        ),
        cookie,
    )
}

async fn signed_in(st: &AppState, headers: &HeaderMap) -> Option<(Id, String)> {
    member_of(st, session_cookie(headers)?).await
}

pub(super) async fn home(State(st): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&st, &headers).await {
        Some((id, csrf)) => render_home(&st, &id, &csrf, StatusCode::OK, None, None).await,
        None => sign_in_page(&headers, StatusCode::OK, None, None),
    }
}

async fn render_home(
    st: &AppState,
    id: &Id,
    csrf: &str,
    status: StatusCode,
    notice: Option<&str>,
    alert: Option<&str>,
) -> Response {
    let now = st.clock.now();
    let me = match member_view(st.store.as_ref(), id, now).await {
        Ok(Some(me)) => me,
        Ok(None) => {
            return message(
                StatusCode::NOT_FOUND,
                "Signed out",
                "This member no longer exists.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "member app: store failed");
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not now",
                "Your details could not be read just now. Try again in a moment.",
            );
        }
    };
    let (mut doors, mut list_doors, mut pass, mut pass_error) = (vec![], false, None, None);
    if let Some(engine) = &st.engine {
        list_doors = lists_doors(st).await;
        if list_doors {
            doors = engine.member_doors(id).await.unwrap_or_default();
        }
        match engine.mobile_pass(id).await {
            Ok(p) => pass = p,
            Err(e) => {
                tracing::warn!(customer = %id, error = %e, "reading a Mobile Pass failed");
                pass_error = Some("Your Mobile Pass could not be read from Brivo just now.");
            }
        }
    }
    page(
        status,
        HomePage {
            csrf,
            me: &me,
            doors: &doors,
            list_doors,
            pass: pass.as_ref(),
            pass_error,
            notice,
            alert,
        },
    )
}

/// Whether any enabled connection lists doors in the app.
async fn lists_doors(st: &AppState) -> bool {
    st.store
        .list_all(doorsync_store::Kind::Connection)
        .await
        .unwrap_or_default()
        .iter()
        .any(|r| matches!(r, Record::Connection(c) if c.enabled && c.list_doors_in_app))
}

/// A posted form with its headers and the client's address; a body over [`MAX_FORM`] is
/// answered with its page.
async fn form_of(req: Request) -> Result<(HeaderMap, Option<std::net::IpAddr>, Form), Response> {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, body) = req.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too large",
            "This form is too large.",
        )
    })?;
    Ok((parts.headers, peer, Form::parse(&bytes)))
}

/// A form posted before sign-in, carrying the token of the double-submit cookie.
async fn pre_signin_form(
    req: Request,
) -> Result<(HeaderMap, Option<std::net::IpAddr>, Form), Response> {
    let (headers, peer, form) = form_of(req).await?;
    let expected = crate::admin::cookie(&headers, CSRF_COOKIE).unwrap_or("");
    if !form_ok(&form, expected) {
        return Err(expired_form());
    }
    Ok((headers, peer, form))
}

fn expired_form() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form has expired or did not come from this app. Go back, reload the page and try again.",
    )
}

pub(super) async fn request_link(State(st): State<AppState>, req: Request) -> Response {
    let (headers, peer, form) = match pre_signin_form(req).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let email = form.text("email").unwrap_or("");
    match super::request_link(&st, email, peer).await {
        Ok(()) => sign_in_page(
            &headers,
            StatusCode::OK,
            Some(
                "If this address belongs to a member, a sign-in link is on its way. It works once, within 15 minutes.",
            ),
            None,
        ),
        Err(LinkRefused::TooMany) => sign_in_page(
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            None,
            Some("Too many sign-in links were asked for. Wait 15 minutes, then try again."),
        ),
        Err(LinkRefused::NotSetUp) => sign_in_page(
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            Some("Signing in by e-mail is not set up here yet. Ask the space's team."),
        ),
    }
}

/// The link from the mail shows a button rather than signing in at once: mail scanners that
/// open links would otherwise use up the one sign-in.
pub(super) async fn confirm_page(Path(token): Path<String>, headers: HeaderMap) -> Response {
    let (csrf, cookie) = pre_csrf(&headers);
    with_cookie(
        page(
            StatusCode::OK,
            ConfirmPage {
                csrf: &csrf,
                token: &token,
            },
        ),
        cookie,
    )
}

pub(super) async fn confirm(
    State(st): State<AppState>,
    Path(token): Path<String>,
    req: Request,
) -> Response {
    let (headers, _, _) = match pre_signin_form(req).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let Some((session, _, _)) = use_link(&st, &token).await else {
        return sign_in_page(
            &headers,
            StatusCode::GONE,
            None,
            Some("This sign-in link has expired or was used already. Ask for a new one."),
        );
    };
    let mut res = Redirect::to("/app").into_response();
    let age = SESSION_VALID.as_secs();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &session, Some(age), secure(&headers)),
    );
    res
}

pub(super) async fn sign_out(State(st): State<AppState>, req: Request) -> Response {
    let (headers, _, form) = match form_of(req).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    if let Some(token) = session_cookie(&headers)
        && let Some((_, csrf)) = member_of(&st, token).await
    {
        if !form_ok(&form, &csrf) {
            return expired_form();
        }
        if let Err(e) = st.store.end_member_session(&crate::auth::hash(token)).await {
            tracing::warn!(error = %e, "ending a member session failed");
        }
    }
    let mut res = Redirect::to("/app").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", Some(0), secure(&headers)),
    );
    res
}

pub(super) async fn unlock(
    State(st): State<AppState>,
    Path(door): Path<String>,
    req: Request,
) -> Response {
    let (headers, _, form) = match form_of(req).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let Some((id, csrf)) = signed_in(&st, &headers).await else {
        return sign_in_page(
            &headers,
            StatusCode::UNAUTHORIZED,
            None,
            Some("Sign in first."),
        );
    };
    if !form_ok(&form, &csrf) {
        return expired_form();
    }
    let Some(engine) = &st.engine else {
        return render_home(
            &st,
            &id,
            &csrf,
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            Some("Doors cannot be opened from here just now."),
        )
        .await;
    };
    // Which door opened, by its name, when there are several to choose from.
    let opened = match st.store.get(doorsync_store::Kind::Door, &door).await {
        Ok(Some(Record::Door(d))) => format!("{} is open.", d.name),
        _ => "The door is open.".to_owned(),
    };
    let (status, notice, alert) = match engine.unlock_for_member(&id, &door).await {
        Ok(MemberUnlock::Opened) => (StatusCode::OK, Some(opened.as_str()), None),
        Ok(MemberUnlock::Offline) => (
            StatusCode::PRECONDITION_FAILED,
            None,
            Some("This door is offline: it cannot be opened remotely now."),
        ),
        Ok(MemberUnlock::NotAllowed) => (
            StatusCode::FORBIDDEN,
            None,
            Some("Remote unlock is off for this door."),
        ),
        Ok(MemberUnlock::NotTheirs) => (
            StatusCode::NOT_FOUND,
            None,
            Some("This is not a door you can open now."),
        ),
        Ok(MemberUnlock::Failed(e)) => {
            tracing::warn!(customer = %id, door, error = %e, "a member's unlock failed");
            (
                StatusCode::BAD_GATEWAY,
                None,
                Some("Brivo did not answer; the door was not opened. Try again in a moment."),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "member app: store failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                Some("The door could not be opened just now."),
            )
        }
    };
    render_home(&st, &id, &csrf, status, notice, alert).await
}

#[derive(Template)]
#[template(path = "app/outbox.html")]
struct OutboxPage {
    mails: Vec<doorsync_engine::mail::sink::ReceivedMail>,
}

impl OutboxPage {
    /// The body's lines, each with the address it is, when it is one (to show as a link).
    fn lines(body: &str) -> Vec<(&str, bool)> {
        body.lines()
            .map(|l| (l, l.starts_with("http://") || l.starts_with("https://")))
            .collect()
    }
}

/// The demo's SMTP sink: the mail doorsync sent, newest first. Only a process that runs the
/// sink (`doorsync demo`) has this page.
pub(super) async fn outbox(State(st): State<AppState>) -> Response {
    let Some(inbox) = &st.outbox else {
        return message(
            StatusCode::NOT_FOUND,
            "No outbox",
            "Only doorsync demo keeps the mail it sends; this doorsync sends it over SMTP.",
        );
    };
    let mut mails = inbox.all();
    mails.reverse();
    page(StatusCode::OK, OutboxPage { mails })
}

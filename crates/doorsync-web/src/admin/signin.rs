//! Administrators: the first-run account (claimed with a one-time code from the server's log),
//! sign-in (argon2 hashes, rate-limited per account and per address), sign-out, and adding or
//! removing administrators.

use super::fmt::Zoned;
use super::page::Layout;
use super::*;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Extension;
use axum::extract::{Path, Query};
use doorsync_store::{AdminRemoval, FirstAdmin, Store};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::sync::OnceLock;

/// How long a session lasts from sign-in.
pub(crate) const SESSION_TTL: SignedDuration = SignedDuration::from_hours(12);
/// Failed sign-ins are counted over this window.
const FAILURE_WINDOW: SignedDuration = SignedDuration::from_mins(15);
const FAILURES_PER_ACCOUNT: i64 = 5;
const FAILURES_PER_ADDRESS: i64 = 20;
const MIN_PASSWORD: usize = 12;
/// Wrong setup codes from one address within [`FAILURE_WINDOW`] before it must wait.
const SETUP_FAILURES_PER_ADDRESS: i64 = 20;
/// How long a first-run setup code is good for from when the server prints it.
pub const SETUP_CODE_TTL: SignedDuration = SignedDuration::from_hours(1);
/// The longest `next` followed after sign-in; a real dashboard address is far shorter.
const MAX_NEXT: usize = 2048;

pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the system's random source");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with its default parameters")
        .to_string()
}

fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the e-mail is unknown, so that the answer takes as long as for
/// a known one and does not tell which e-mails have accounts.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("not anyone's password"))
}

/// A password for an account made on someone's behalf: 20 letters and digits (about 116 bits).
pub fn new_password() -> String {
    random_chars(
        b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789",
        20,
    )
}

/// `n` characters drawn uniformly from `alphabet` by the system's random source.
fn random_chars(alphabet: &[u8], n: usize) -> String {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the system's random source");
        // Rejection sampling keeps every character equally likely.
        for x in b {
            let limit = 256 - 256 % alphabet.len();
            if (x as usize) < limit && out.len() < n {
                out.push(alphabet[x as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// Upper-case letters and digits without the look-alikes (0/O, 1/I/L): a code read from a log
/// and typed by hand, in either case.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A new first-run setup code: 25 characters of [`CODE_ALPHABET`] (about 124 bits), in groups of
/// five for reading. Only its hash is stored, until [`SETUP_CODE_TTL`] from `now`; the caller
/// prints the code and when it ends.
pub async fn new_setup_code(
    store: &dyn Store,
    now: Timestamp,
) -> Result<(String, Timestamp), StoreError> {
    let raw = random_chars(CODE_ALPHABET, 25);
    let code = raw
        .as_bytes()
        .chunks(5)
        .map(|c| std::str::from_utf8(c).expect("ASCII"))
        .collect::<Vec<_>>()
        .join("-");
    let until = now.saturating_add(SETUP_CODE_TTL).unwrap_or(Timestamp::MAX);
    store
        .add_setup_code(&setup_code_hash(&code), now, until)
        .await?;
    Ok((code, until))
}

/// While no administrator exists: a fresh setup code handed to `announce` (which `serve` logs),
/// then `wait` until it expires, and again; returns once an administrator exists. A store that
/// fails is retried a minute later.
pub async fn announce_setup_codes<W: std::future::Future<Output = ()>>(
    store: &dyn Store,
    clock: &dyn doorsync_core::Clock,
    mut announce: impl FnMut(&str, Timestamp),
    mut wait: impl FnMut(SignedDuration) -> W,
) {
    const RETRY: SignedDuration = SignedDuration::from_mins(1);
    loop {
        let pause = match store.admin_count().await {
            Ok(0) => match new_setup_code(store, clock.now()).await {
                Ok((code, until)) => {
                    announce(&code, until);
                    until.duration_since(clock.now()).max(SignedDuration::ZERO)
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not store a setup code; trying again in a minute");
                    RETRY
                }
            },
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %e, "could not count administrators; trying again in a minute");
                RETRY
            }
        };
        wait(pause).await;
    }
}

/// The hash a setup code is kept and looked up by; spaces, dashes and case as typed do not
/// matter.
fn setup_code_hash(typed: &str) -> String {
    let plain: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    crate::auth::hash(&plain)
}

fn valid_email(email: &str) -> bool {
    email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.') && !b.starts_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Where to go after signing in: a plain dashboard path only (printable ASCII, so that it is a
/// valid `Location` header as it stands), never another site; anything else goes to the
/// overview.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if plain_dashboard_path(n) => n.into(),
        _ => "/admin".into(),
    }
}

fn plain_dashboard_path(n: &str) -> bool {
    let in_dashboard = n == "/admin" || n.starts_with("/admin/") || n.starts_with("/admin?");
    in_dashboard
        && n.len() <= MAX_NEXT
        && n.bytes().all(|b| b.is_ascii_graphic())
        // `//host` and `/\host` are other sites to a browser, wherever they appear.
        && !n.contains("//")
        && !n.contains('\\')
}

#[derive(Template)]
#[template(path = "admin/signin.html")]
struct SigninPage<'a> {
    l: Layout,
    next: String,
    email: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/setup.html")]
struct SetupPage<'a> {
    l: Layout,
    email: &'a str,
    error: Option<&'a str>,
    code_ttl_minutes: i64,
}

pub(super) async fn page(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    if st.store.admin_count().await? == 0 {
        return see_other("/admin/setup");
    }
    let next = safe_next(q.get("next").map(String::as_str));
    if ctx.session.is_some() {
        return see_other(&next);
    }
    html(SigninPage {
        l: ctx.layout("Sign in", ""),
        next,
        email: "",
        error: None,
    })
}

fn session_cookie(token: &str, secure: bool) -> HeaderValue {
    set_cookie(SESSION_COOKIE, token, Some(SESSION_TTL.as_secs()), secure)
}

/// Starts a session for `admin_id` and goes to `to`.
async fn start_session(st: &AppState, ctx: &Ctx, admin_id: &str, to: &str) -> PageResult {
    // The answer first: a session is stored only once the answer that carries its cookie is sure.
    let mut res = see_other(to)?;
    let now = st.clock.now();
    let token = random_token();
    st.store
        .create_admin_session(
            &crate::auth::hash(&token),
            admin_id,
            &random_token(),
            now,
            now.saturating_add(SESSION_TTL).unwrap_or(Timestamp::MAX),
        )
        .await?;
    let h = res.headers_mut();
    h.append(header::SET_COOKIE, session_cookie(&token, ctx.secure));
    // The pre-sign-in token has done its work; the session carries its own.
    h.append(
        header::SET_COOKIE,
        set_cookie(CSRF_COOKIE, "", Some(0), ctx.secure),
    );
    Ok(res)
}

pub(super) async fn sign_in(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    body: Bytes,
) -> PageResult {
    let f = Form::parse(&body);
    let email = f.text("email").unwrap_or("").to_lowercase();
    let password = f.get("password").unwrap_or("");
    let next = safe_next(f.get("next"));
    let now = st.clock.now();
    let since = now.saturating_sub(FAILURE_WINDOW).unwrap_or(now);
    let account_key = format!("account:{email}");
    let address_key = address_key("address", &ctx);
    let refuse = |status: StatusCode, error: String| -> PageResult {
        let page = SigninPage {
            l: ctx.layout("Sign in", ""),
            next: next.clone(),
            email: &email,
            error: Some(error),
        };
        Ok((status, html(page)?).into_response())
    };
    if st.store.signin_failures(&account_key, since).await? >= FAILURES_PER_ACCOUNT
        || st.store.signin_failures(&address_key, since).await? >= FAILURES_PER_ADDRESS
    {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed sign-ins. Wait {} minutes and try again.",
                FAILURE_WINDOW.as_mins()
            ),
        );
    }
    let found = st.store.admin_credentials(&email).await?;
    let hash = found
        .as_ref()
        .map_or(decoy(), |(_, h)| h.as_str())
        .to_owned();
    let pw = password.to_owned();
    // Hashing takes tens of milliseconds of CPU: off the async workers.
    let ok = tokio::task::spawn_blocking(move || verify(&pw, &hash))
        .await
        .unwrap_or(false);
    match found {
        Some((admin, _)) if ok => {
            st.store.clear_signin_failures(&account_key).await?;
            start_session(&st, &ctx, &admin.id, &next).await
        }
        _ => {
            record_failure(&st, &[&account_key, &address_key]).await?;
            refuse(
                StatusCode::UNAUTHORIZED,
                "That e-mail and password do not match an administrator.".into(),
            )
        }
    }
}

pub(super) async fn sign_out(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    headers: HeaderMap,
) -> PageResult {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        st.store
            .end_admin_session(&crate::auth::hash(token))
            .await?;
    }
    let mut res = see_other("/admin/signin")?;
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", Some(0), ctx.secure),
    );
    Ok(res)
}

/// The key failures are counted under for the client's address, per form.
fn address_key(form: &str, ctx: &Ctx) -> String {
    let peer = ctx
        .peer
        .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    format!("{form}:{peer}")
}

async fn record_failure(st: &AppState, keys: &[&str]) -> Result<(), PageError> {
    let now = st.clock.now();
    let forget = now
        .saturating_sub(SignedDuration::from_hours(24))
        .unwrap_or(now);
    st.store.record_signin_failure(keys, now, forget).await?;
    Ok(())
}

pub(super) async fn setup_page(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
) -> PageResult {
    if st.store.admin_count().await? > 0 {
        return see_other("/admin/signin");
    }
    html(SetupPage {
        l: ctx.layout("Set up doorsync", ""),
        email: "",
        error: None,
        code_ttl_minutes: SETUP_CODE_TTL.as_mins(),
    })
}

/// What is wrong with a new account's e-mail and password, in words.
fn account_problem(email: &str, password: &str, confirm: Option<&str>) -> Option<&'static str> {
    if !valid_email(email) {
        Some("Enter an e-mail address such as ops@example.com.")
    } else if password.chars().count() < MIN_PASSWORD {
        Some("The password needs at least 12 characters.")
    } else if confirm.is_some_and(|c| c != password) {
        Some("The two passwords differ; type the same one twice.")
    } else {
        None
    }
}

const NO_CODE: &str = "Enter the setup code: doorsync writes it to its log when it starts (the line that says \"setup code\"), and a new one every hour while no administrator exists. Or make the first administrator on the server with `doorsync admin create --email E`.";
const WRONG_CODE: &str = "That is not this server's setup code. Copy it from doorsync's log (the line that says \"setup code\"), or run `doorsync admin create --email E` on the server.";
const EXPIRED_CODE: &str = "That setup code has expired. doorsync writes a new one to its log every hour while no administrator exists; or run `doorsync admin create --email E` on the server.";

/// The first administrator: only with the setup code `serve` printed to its log, which only
/// whoever runs the server can read.
pub(super) async fn setup(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    body: Bytes,
) -> PageResult {
    let f = Form::parse(&body);
    let email = f.text("email").unwrap_or("").to_lowercase();
    let refuse = |status: StatusCode, problem: &str| -> PageResult {
        let page = SetupPage {
            l: ctx.layout("Set up doorsync", ""),
            email: &email,
            error: Some(problem),
            code_ttl_minutes: SETUP_CODE_TTL.as_mins(),
        };
        Ok((status, html(page)?).into_response())
    };
    if st.store.admin_count().await? > 0 {
        return refuse(StatusCode::FORBIDDEN, ADMIN_EXISTS);
    }
    let since = st
        .clock
        .now()
        .saturating_sub(FAILURE_WINDOW)
        .unwrap_or(st.clock.now());
    let address_key = address_key("setup", &ctx);
    if st.store.signin_failures(&address_key, since).await? >= SETUP_FAILURES_PER_ADDRESS {
        let wait = format!(
            "Too many wrong setup codes. Wait {} minutes and try again.",
            FAILURE_WINDOW.as_mins()
        );
        return refuse(StatusCode::TOO_MANY_REQUESTS, &wait);
    }
    let Some(code) = f.text("code") else {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, NO_CODE);
    };
    let password = f.get("password").unwrap_or("");
    if let Some(problem) = account_problem(&email, password, Some(f.get("confirm").unwrap_or(""))) {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, problem);
    }
    let hash = hash_on_pool(password).await;
    let id = format!("adm_{}", &random_token()[..16]);
    let claim = st
        .store
        .create_first_admin(&setup_code_hash(code), (&id, &email, &hash), st.clock.now())
        .await?;
    match claim {
        FirstAdmin::Created(admin) => start_session(&st, &ctx, &admin.id, "/admin").await,
        FirstAdmin::AdminExists => refuse(StatusCode::FORBIDDEN, ADMIN_EXISTS),
        FirstAdmin::WrongCode => {
            record_failure(&st, &[&address_key]).await?;
            refuse(StatusCode::UNPROCESSABLE_ENTITY, WRONG_CODE)
        }
        FirstAdmin::ExpiredCode => refuse(StatusCode::UNPROCESSABLE_ENTITY, EXPIRED_CODE),
    }
}

const ADMIN_EXISTS: &str =
    "An administrator exists already, so the setup code is used up: sign in with that account.";

async fn hash_on_pool(password: &str) -> String {
    let pw = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .expect("hashing a password")
}

struct AdminRow {
    id: String,
    email: String,
    since: String,
}

#[derive(Template)]
#[template(path = "admin/admins.html")]
struct AdminsPage {
    l: Layout,
    admins: Vec<AdminRow>,
    created: Option<(String, String)>,
    error: Option<String>,
}

async fn admins_page(
    st: &AppState,
    ctx: &Ctx,
    created: Option<(String, String)>,
    error: Option<String>,
) -> PageResult {
    let zone = Zoned::of_space(st.store.as_ref()).await?;
    let admins = st
        .store
        .admins()
        .await?
        .into_iter()
        .map(|a| AdminRow {
            since: zone.date(a.created_at),
            id: a.id,
            email: a.email,
        })
        .collect();
    html(AdminsPage {
        l: ctx.layout("Administrators", "admins"),
        admins,
        created,
        error,
    })
}

pub(super) async fn admins(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
) -> PageResult {
    ctx.session()?;
    admins_page(&st, &ctx, None, None).await
}

pub(super) async fn add_admin(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    body: Bytes,
) -> PageResult {
    ctx.session()?;
    let f = Form::parse(&body);
    let email = f.text("email").unwrap_or("").to_lowercase();
    if !valid_email(&email) {
        let e = "Enter an e-mail address such as ops@example.com.".to_owned();
        return admins_page(&st, &ctx, None, Some(e)).await;
    }
    let password = new_password();
    let hash = hash_on_pool(&password).await;
    let id = format!("adm_{}", &random_token()[..16]);
    match st
        .store
        .create_admin(&id, &email, &hash, st.clock.now())
        .await?
    {
        Some(_) => admins_page(&st, &ctx, Some((email, password)), None).await,
        None => {
            let e = format!("{email} is an administrator already.");
            admins_page(&st, &ctx, None, Some(e)).await
        }
    }
}

pub(super) async fn delete_admin(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> PageResult {
    let me = ctx.session()?.admin.id.clone();
    match st.store.delete_admin(&id).await? {
        AdminRemoval::Removed => {}
        AdminRemoval::NotFound => return Err(PageError::not_found("such administrator")),
        AdminRemoval::LastAdmin => {
            let e = "The last administrator cannot be removed: add another first.".to_owned();
            return admins_page(&st, &ctx, None, Some(e)).await;
        }
    }
    if id == me {
        return see_other("/admin/signin");
    }
    see_other("/admin/admins")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let h = hash_password("correct horse battery");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("anything", "not a hash"));
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let (a, b) = (new_password(), new_password());
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn next_stays_in_the_dashboard() {
        assert_eq!(safe_next(Some("/admin/sync")), "/admin/sync");
        assert_eq!(safe_next(Some("https://evil.example/")), "/admin");
        assert_eq!(safe_next(Some("/admin//evil.example")), "/admin");
        assert_eq!(safe_next(Some("/administrator")), "/admin");
        assert_eq!(safe_next(Some("/admin?x=%0A")), "/admin?x=%0A");
        assert_eq!(safe_next(Some("/admin\u{7f}")), "/admin");
        assert_eq!(safe_next(None), "/admin");
    }

    #[test]
    fn setup_codes_are_long_and_read_as_typed() {
        let code = random_chars(CODE_ALPHABET, 25);
        assert_eq!(code.len(), 25);
        assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert_ne!(code, random_chars(CODE_ALPHABET, 25));
        assert_eq!(
            setup_code_hash("ABCDE-FGHJK-MNPQR-STUVW-XYZ23"),
            setup_code_hash(" abcde fghjk-mnpqr-stuvw-xyz23\n")
        );
        assert_ne!(
            setup_code_hash("ABCDE-FGHJK-MNPQR-STUVW-XYZ23"),
            setup_code_hash("ABCDE-FGHJK-MNPQR-STUVW-XYZ24")
        );
    }
}

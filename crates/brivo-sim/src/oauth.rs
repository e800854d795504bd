//! The OAuth server (reference §2.2, §2.3): `POST /oauth/token` with the password,
//! refresh-token and authorization-code grants, and `/oauth/authorize`, a sign-in page that
//! redirects back with `code` and `state`.
//!
//! A Brivo application is either a "Password" one or a "3-Legged" one, and the two grants cannot
//! be combined on one application (reference §2.1). The account has one of each (see
//! [`crate::Account`]): the password grant with the 3-legged client, or the authorization-code
//! grant (and `/oauth/authorize`) with the Password client, is refused with 401
//! `{"error":"unauthorized_client","error_description":"Unauthorized grant type: …"}`. Both may
//! refresh, each with its own refresh tokens only. The 3-legged application has one registered
//! redirect URI: `/oauth/authorize` uses it when none is given and refuses any other (400, no
//! redirect); the exchange must repeat it when the authorization request named it (Spring's
//! rule), else "Redirect URI mismatch.".
//!
//! Choices where the reference is silent: a refresh answers the same refresh token again (no
//! rotation) and it stays valid until its own lifetime ends; every `invalid_grant` is a 401 like
//! the documented bad-password case.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use crate::Account;
use crate::api::{AppState, html, json_status, query_params};
use crate::auth::{api_key_ok, developer_inactive};
use crate::model::{AccessToken, AuthCode, RefreshToken};
use crate::util::{base64_decode, base64_encode, html_escape, random_alnum, random_hex, uuid_v4};

/// How long an authorization code from the sign-in page can be exchanged.
const CODE_TTL: Duration = Duration::from_secs(300);

/// Expired access tokens are kept this long so a late call hears "expired" rather than
/// "invalid", then forgotten.
const EXPIRED_TOKEN_MEMORY: Duration = Duration::from_secs(3600);

pub fn routes() -> Router<AppState> {
    Router::new().route("/oauth/token", post(token)).route(
        "/oauth/authorize",
        get(authorize_page).post(authorize_submit),
    )
}

pub fn add(ts: Timestamp, d: Duration) -> Timestamp {
    ts.checked_add(d).unwrap_or(Timestamp::MAX)
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    refresh_token: String,
    expires_in: u64,
    scope: &'static str,
    jti: String,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_status(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// No Basic header at all.
fn full_auth_required() -> Response {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Full authentication is required to access this resource",
    )
}

/// A Basic header with the wrong client id or secret: Spring's own error shape.
fn bad_client() -> Response {
    json_status(
        StatusCode::UNAUTHORIZED,
        &json!({
            "timestamp": Timestamp::now().as_millisecond(),
            "status": 401,
            "error": "Unauthorized",
            "message": "Bad credentials",
            "path": "/oauth/token",
        }),
    )
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::UNAUTHORIZED, "invalid_grant", description)
}

/// A grant the client's application type does not allow.
fn unauthorized_client(grant: &str) -> Response {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized_client",
        &format!("Unauthorized grant type: {grant}"),
    )
}

/// The two kinds of Brivo application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppKind {
    /// Password and refresh-token grants.
    Password,
    /// Authorization-code and refresh-token grants, with a registered redirect URI.
    ThreeLegged,
}

/// The application a client id names, if any.
fn application_kind(account: &Account, client_id: &str) -> Option<AppKind> {
    if client_id == account.client_id {
        Some(AppKind::Password)
    } else if client_id == account.code_client_id {
        Some(AppKind::ThreeLegged)
    } else {
        None
    }
}

/// The application a client id and secret authenticate, if any.
fn authenticate(account: &Account, client_id: &str, client_secret: &str) -> Option<AppKind> {
    let kind = application_kind(account, client_id)?;
    let secret = match kind {
        AppKind::Password => &account.client_secret,
        AppKind::ThreeLegged => &account.code_client_secret,
    };
    (client_secret == secret).then_some(kind)
}

enum Basic {
    Missing,
    Malformed,
    Present(String, String),
}

fn basic_credentials(headers: &HeaderMap) -> Basic {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Basic::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Basic::Malformed;
    };
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Basic::Malformed;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Basic::Missing;
    }
    let decoded = base64_decode(encoded)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        });
    match decoded {
        Some((id, secret)) => Basic::Present(id, secret),
        None => Basic::Malformed,
    }
}

/// Parameters from the query string (as 2017 clients sent them) and from a form body, either
/// `application/x-www-form-urlencoded` or `multipart/form-data` (both documented in DOCS25R); the
/// body wins when both name a parameter. JSON bodies are not read, as on the real server.
fn token_params(query: Option<&str>, headers: &HeaderMap, body: &Bytes) -> HashMap<String, String> {
    let mut params = query_params(query);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Ok(text) = std::str::from_utf8(body) else {
        return params;
    };
    if essence == "application/x-www-form-urlencoded" {
        if let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(text) {
            params.extend(pairs);
        }
    } else if essence == "multipart/form-data"
        && let Some(boundary) = multipart_boundary(content_type)
    {
        params.extend(multipart_fields(text, &boundary));
    }
    params
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type, unquoted.
fn multipart_boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// The named text fields of a `multipart/form-data` body. The token request carries only short
/// text fields, so files and transfer encodings are not handled.
fn multipart_fields(text: &str, boundary: &str) -> Vec<(String, String)> {
    let delimiter = format!("--{boundary}");
    text.split(delimiter.as_str())
        .skip(1)
        .take_while(|part| !part.starts_with("--"))
        .filter_map(|part| {
            let part = part.strip_prefix("\r\n").unwrap_or(part);
            let (head, value) = part.split_once("\r\n\r\n")?;
            let name = head.lines().find_map(disposition_name)?;
            let value = value.strip_suffix("\r\n").unwrap_or(value);
            Some((name, value.to_string()))
        })
        .collect()
}

/// The `name` of a `Content-Disposition: form-data; name="…"` part header.
fn disposition_name(line: &str) -> Option<String> {
    let (key, value) = line.split_once(':')?;
    if !key.trim().eq_ignore_ascii_case("content-disposition") {
        return None;
    }
    value.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
    })
}

async fn token(
    State(sim): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !api_key_ok(&sim, &headers) {
        return developer_inactive();
    }
    let params = token_params(query.as_deref(), &headers, &body);
    let (client_id, client_secret) = match basic_credentials(&headers) {
        Basic::Present(id, secret) => (id, secret),
        Basic::Malformed => return bad_client(),
        // The authorization-code grant may carry the client in the parameters instead.
        Basic::Missing => match (params.get("client_id"), params.get("client_secret")) {
            (Some(id), Some(secret)) => (id.clone(), secret.clone()),
            _ => return full_auth_required(),
        },
    };
    let account = sim.read(|s| s.account.credentials.clone());
    let Some(kind) = authenticate(&account, &client_id, &client_secret) else {
        return bad_client();
    };
    let now = Timestamp::now();
    let refresh = match params.get("grant_type").map(String::as_str) {
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing grant type",
            );
        }
        Some(grant @ "password") if kind != AppKind::Password => {
            return unauthorized_client(grant);
        }
        Some(grant @ "authorization_code") if kind != AppKind::ThreeLegged => {
            return unauthorized_client(grant);
        }
        Some("password") => {
            let user_ok = params.get("username") == Some(&account.admin_id);
            let pass_ok = params.get("password") == Some(&account.password);
            if !(user_ok && pass_ok) {
                return invalid_grant("Bad credentials");
            }
            None
        }
        Some("refresh_token") => {
            let Some(refresh) = params.get("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing refresh token",
                );
            };
            let stored = sim.read(|s| s.tokens.refresh.get(refresh).cloned());
            match stored {
                None => return invalid_grant(&format!("Invalid refresh token: {refresh}")),
                // Another application's refresh token is as good as unknown to this client.
                Some(r) if !r.client_id.is_empty() && r.client_id != client_id => {
                    return invalid_grant(&format!("Invalid refresh token: {refresh}"));
                }
                Some(r) if r.expires_at <= now => {
                    return invalid_grant(&format!("Invalid refresh token (expired): {refresh}"));
                }
                Some(_) => Some(refresh.clone()),
            }
        }
        Some("authorization_code") => {
            let code = params.get("code").cloned().unwrap_or_default();
            let redirect_uri = params.get("redirect_uri").filter(|u| !u.is_empty());
            // A code is single-use: it is consumed even when the exchange fails.
            let stored = sim.write(|s| s.tokens.codes.remove(&code));
            match stored {
                None => return invalid_grant(&format!("Invalid authorization code: {code}")),
                Some(c) if c.expires_at <= now || c.client_id != client_id => {
                    return invalid_grant(&format!("Invalid authorization code: {code}"));
                }
                // Named in the authorization request (or now): it must be the same URI.
                Some(c)
                    if (c.redirect_uri_given || redirect_uri.is_some())
                        && redirect_uri != Some(&c.redirect_uri) =>
                {
                    return invalid_grant("Redirect URI mismatch.");
                }
                Some(_) => None,
            }
        }
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Unsupported grant type: {other}"),
            );
        }
    };
    issue_tokens(&sim, &client_id, &account.admin_id, refresh, now)
}

fn issue_tokens(
    sim: &AppState,
    client_id: &str,
    admin_id: &str,
    existing_refresh: Option<String>,
    now: Timestamp,
) -> Response {
    let access_ttl = sim.access_ttl();
    let refresh_ttl = sim.refresh_ttl();
    let jti = uuid_v4();
    let expires_at = add(now, access_ttl);
    let access_token = jwt_look_alike(client_id, admin_id, &jti, expires_at);
    let refresh_token = existing_refresh.unwrap_or_else(|| random_hex(24));
    sim.write(|s| {
        let forget_before = now
            .checked_sub(EXPIRED_TOKEN_MEMORY)
            .unwrap_or(Timestamp::MIN);
        s.tokens.access.retain(|_, t| t.expires_at > forget_before);
        s.tokens.refresh.retain(|_, t| t.expires_at > now);
        s.tokens.codes.retain(|_, c| c.expires_at > now);
        s.tokens
            .access
            .insert(access_token.clone(), AccessToken { expires_at });
        s.tokens
            .refresh
            .entry(refresh_token.clone())
            .or_insert(RefreshToken {
                expires_at: add(now, refresh_ttl),
                client_id: client_id.to_string(),
            });
    });
    let mut resp = json_status(
        StatusCode::OK,
        &TokenResponse {
            access_token,
            token_type: "bearer",
            refresh_token,
            expires_in: access_ttl.as_secs(),
            scope: "brivo.api",
            jti,
        },
    );
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Real access tokens are JWTs; this one has the same three-part shape and readable claims,
/// with a random signature, so clients that peek at `exp` keep working. Only the emulator's
/// token table decides validity.
fn jwt_look_alike(client_id: &str, admin_id: &str, jti: &str, expires_at: Timestamp) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let claims = json!({
        "exp": expires_at.as_second(),
        "user_name": admin_id,
        "authorities": ["ROLE_ADMIN"],
        "jti": jti,
        "client_id": client_id,
        "scope": ["brivo.api"],
    });
    let part = |v: &serde_json::Value| base64_encode(v.to_string().as_bytes(), true);
    let signature = base64_encode(&crate::util::random_bytes::<32>(), true);
    format!("{}.{}.{}", part(&header), part(&claims), signature)
}

fn sign_in_page(params: &HashMap<String, String>, error: Option<&str>) -> String {
    let field = |name: &str| html_escape(params.get(name).map(String::as_str).unwrap_or(""));
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", html_escape(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Brivo sign in (brivo-sim)</title></head>\n\
         <body><h1>Sign in to Brivo Access</h1>{error}\n\
         <form method=\"post\" action=\"/oauth/authorize\">\n\
         <label>Admin ID <input name=\"username\" autocomplete=\"username\" value=\"{user}\"></label><br>\n\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label><br>\n\
         <input type=\"hidden\" name=\"response_type\" value=\"code\">\n\
         <input type=\"hidden\" name=\"client_id\" value=\"{client}\">\n\
         <input type=\"hidden\" name=\"redirect_uri\" value=\"{redirect}\">\n\
         <input type=\"hidden\" name=\"state\" value=\"{state}\">\n\
         <button type=\"submit\">Sign in</button>\n</form></body></html>\n",
        user = field("username"),
        client = field("client_id"),
        redirect = field("redirect_uri"),
        state = field("state"),
    )
}

/// The redirect URI an authorization request names, if it names one.
fn requested_redirect(params: &HashMap<String, String>) -> Option<&String> {
    params.get("redirect_uri").filter(|u| !u.is_empty())
}

/// Checks the parts of an authorization request that do not depend on the admin's password.
/// Errors are shown as a page rather than sent to a redirect URI that may not be registered.
fn check_authorize_request(sim: &AppState, params: &HashMap<String, String>) -> Option<Response> {
    let account = sim.read(|s| s.account.credentials.clone());
    let client = params
        .get("client_id")
        .and_then(|id| application_kind(&account, id));
    let problem = if params.get("response_type").map(String::as_str) != Some("code") {
        Some("Unsupported response type: only response_type=code is supported".to_string())
    } else if client.is_none() {
        Some("Unknown client_id".to_string())
    } else if client == Some(AppKind::Password) {
        Some("Unauthorized grant type: authorization_code".to_string())
    } else {
        requested_redirect(params)
            .filter(|u| **u != account.redirect_uri)
            .map(|uri| {
                format!("Invalid redirect: {uri} does not match the registered redirect URI")
            })
    };
    problem.map(|p| {
        html(
            StatusCode::BAD_REQUEST,
            format!("<h1>OAuth error</h1><p>{}</p>", html_escape(&p)),
        )
    })
}

async fn authorize_page(State(sim): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let params = query_params(query.as_deref());
    if let Some(resp) = check_authorize_request(&sim, &params) {
        return resp;
    }
    html(StatusCode::OK, sign_in_page(&params, None))
}

async fn authorize_submit(
    State(sim): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut params = query_params(query.as_deref());
    if let Ok(text) = std::str::from_utf8(&body)
        && let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(text)
    {
        params.extend(pairs);
    }
    if let Some(resp) = check_authorize_request(&sim, &params) {
        return resp;
    }
    let account = sim.read(|s| s.account.credentials.clone());
    if params.get("username") != Some(&account.admin_id)
        || params.get("password") != Some(&account.password)
    {
        return html(
            StatusCode::UNAUTHORIZED,
            sign_in_page(&params, Some("Incorrect Admin ID or password")),
        );
    }
    let redirect_uri_given = requested_redirect(&params).is_some();
    let redirect_uri = account.redirect_uri.clone();
    let client_id = params.get("client_id").cloned().unwrap_or_default();
    let code = random_alnum(10);
    let now = Timestamp::now();
    sim.write(|s| {
        s.tokens.codes.insert(
            code.clone(),
            AuthCode {
                redirect_uri: redirect_uri.clone(),
                redirect_uri_given,
                client_id,
                expires_at: add(now, CODE_TTL),
            },
        )
    });
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = params.get("state") {
        pairs.push(("state", state.as_str()));
    }
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{query}");
    match HeaderValue::from_str(&location) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => html(
            StatusCode::BAD_REQUEST,
            "<h1>OAuth error</h1><p>redirect_uri is not a valid URL</p>",
        ),
    }
}

//! The member app's JSON API for a white-label app: sign in with the e-mailed link's token,
//! then `Authorization: Bearer` with the member session token it gives.

use super::view::{MemberView, member_view};
use super::*;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use doorsync_engine::member::{MemberDoor, MemberUnlock};
use doorsync_engine::provider::InvitationState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MemberSignIn)]
pub(super) struct SignInBody {
    /// The member's e-mail address.
    email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MemberSessionRequest)]
pub(super) struct SessionBody {
    /// The token of the e-mailed link (the last part of its path).
    token: String,
}

/// A member session.
#[derive(Serialize, ToSchema)]
#[schema(as = MemberSession)]
pub(super) struct SessionOut {
    /// Send as `Authorization: Bearer TOKEN` to the member app's API.
    token: String,
    expires_at: Timestamp,
}

/// The doors the member may open now.
#[derive(Serialize, ToSchema)]
#[schema(as = MemberDoors)]
pub(super) struct Doors {
    items: Vec<MemberDoor>,
}

/// A sign-in link was asked for.
#[derive(Serialize, ToSchema)]
#[schema(as = MemberSignInSent)]
pub(super) struct LinkSent {
    message: &'static str,
}

/// The member's Mobile Pass: where it stands, and its code only for a space that redeems
/// passes automatically (the app redeems it with Brivo's SDK).
#[derive(Serialize, ToSchema)]
#[schema(as = MobilePass)]
pub(super) struct MobilePassOut {
    #[schema(value_type = String, pattern = "^(pending|redeemed|none)$")]
    status: &'static str,
    expires_at: Option<Timestamp>,
    redeem_automatically: bool,
    code: Option<String>,
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send a member session token as `Authorization: Bearer TOKEN` (POST /app/api/v1/session gives one for a sign-in link's token)",
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn member(st: &AppState, headers: &HeaderMap) -> Result<Id, ApiError> {
    let token = bearer(headers).ok_or_else(unauthorized)?;
    member_of(st, token)
        .await
        .map(|(id, _)| id)
        .ok_or_else(unauthorized)
}

fn engine(st: &AppState) -> Result<&std::sync::Arc<doorsync_engine::Engine>, ApiError> {
    st.engine.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this doorsync runs no sync engine",
        )
    })
}

/// E-mails a one-time sign-in link (the same answer for any address)
#[utoipa::path(post, path = "/app/api/v1/signin", tag = "member app",
    operation_id = "member_signin", security(()), request_body = SignInBody,
    responses(
        (status = 202, description = "A link is on its way if the address is a member's", body = LinkSent),
        (status = 429, description = "Too many links for this address or client in 15 minutes", body = ErrorBody),
        (status = 503, description = "Sign-in mail is not set up", body = ErrorBody),
    ))]
pub(super) async fn request_link(
    State(st): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let headers = req.headers().clone();
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), 16 * 1024)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body is too large",
            )
        })?;
    let body: SignInBody = crate::input::json(&headers, Ok(bytes))?;
    match super::request_link(&st, &body.email, peer).await {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(LinkSent {
                message: "if this address belongs to a member, a sign-in link is on its way; it works once, within 15 minutes",
            }),
        )
            .into_response()),
        Err(LinkRefused::TooMany) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many sign-in links were asked for this address or from this client; wait 15 minutes",
        )),
        Err(LinkRefused::NotSetUp) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "signing in by e-mail is not set up (doorsync needs public_url and smtp_url)",
        )),
    }
}

/// Exchanges a sign-in link's token (once, within 15 minutes) for a member session token
#[utoipa::path(post, path = "/app/api/v1/session", tag = "member app",
    operation_id = "member_session", security(()), request_body = SessionBody,
    responses(
        (status = 201, description = "The session", body = SessionOut),
        (status = 401, description = "The link expired or was used", body = ErrorBody),
    ))]
pub(super) async fn open_session(
    State(st): State<AppState>,
    headers: HeaderMap,
    bytes: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body: SessionBody = crate::input::json(&headers, bytes)?;
    let (token, _, expires_at) = use_link(&st, body.token.trim()).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "link_invalid",
            "this sign-in link has expired or was used already; ask for a new one",
        )
    })?;
    Ok((StatusCode::CREATED, Json(SessionOut { token, expires_at })).into_response())
}

/// Ends the member session
#[utoipa::path(delete, path = "/app/api/v1/session", tag = "member app",
    operation_id = "member_signout", security(("member" = [])),
    responses((status = 204, description = "Signed out")))]
pub(super) async fn end_session(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    member(&st, &headers).await?;
    if let Some(token) = bearer(&headers) {
        st.store
            .end_member_session(&crate::auth::hash(token))
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The member's passes, bookings, contracts and visitors
#[utoipa::path(get, path = "/app/api/v1/me", tag = "member app", operation_id = "member_me",
    security(("member" = [])),
    responses((status = 200, description = "The member's view", body = MemberView)))]
pub(super) async fn me(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<MemberView>, ApiError> {
    let id = member(&st, &headers).await?;
    member_view(st.store.as_ref(), &id, st.clock.now())
        .await?
        .map(Json)
        .ok_or_else(unauthorized)
}

/// The doors the member may open now
#[utoipa::path(get, path = "/app/api/v1/doors", tag = "member app",
    operation_id = "member_doors", security(("member" = [])),
    responses(
        (status = 200, description = "The doors", body = Doors),
    ))]
pub(super) async fn doors(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Doors>, ApiError> {
    let id = member(&st, &headers).await?;
    let items = engine(&st)?.member_doors(&id).await?;
    Ok(Json(Doors { items }))
}

/// Opens a door the member holds at this instant (checked on the server)
#[utoipa::path(post, path = "/app/api/v1/doors/{id}/unlock", tag = "member app",
    operation_id = "member_unlock", security(("member" = [])),
    params(("id" = String, Path, description = "The door's id")),
    responses(
        (status = 204, description = "The door opened"),
        (status = 403, description = "remote_unlock_off: the door does not allow remote unlock", body = ErrorBody),
        (status = 404, description = "Not a door the member can open now", body = ErrorBody),
        (status = 412, description = "door_offline: the door's panel is offline", body = ErrorBody),
        (status = 502, description = "Brivo did not answer", body = ErrorBody),
    ))]
pub(super) async fn unlock(
    State(st): State<AppState>,
    Path(door): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = member(&st, &headers).await?;
    match engine(&st)?.unlock_for_member(&id, &door).await? {
        MemberUnlock::Opened => Ok(StatusCode::NO_CONTENT),
        MemberUnlock::Offline => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "door_offline",
            "this door is offline: it cannot be opened remotely now",
        )),
        MemberUnlock::NotAllowed => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "remote_unlock_off",
            "remote unlock is off for this door",
        )),
        MemberUnlock::NotTheirs => Err(ApiError::not_found(format!(
            "door {door:?} you can open now"
        ))),
        MemberUnlock::Failed(e) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "provider_failed",
            format!("Brivo did not open the door: {e}"),
        )),
    }
}

/// The member's Mobile Pass; its code only when the space redeems passes automatically
#[utoipa::path(get, path = "/app/api/v1/mobile-pass", tag = "member app",
    operation_id = "member_mobile_pass", security(("member" = [])),
    responses(
        (status = 200, description = "The pass", body = MobilePassOut),
        (status = 502, description = "Brivo did not answer", body = ErrorBody),
    ))]
pub(super) async fn mobile_pass(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<MobilePassOut>, ApiError> {
    let id = member(&st, &headers).await?;
    let engine = engine(&st)?;
    let pass = engine
        .mobile_pass(&id)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "provider_failed", e.to_string()))?;
    let automatic = engine.redeems_automatically(&id).await?;
    let out = match pass {
        None => MobilePassOut {
            status: "none",
            expires_at: None,
            redeem_automatically: automatic,
            code: None,
        },
        Some(p) => MobilePassOut {
            status: match p.state {
                InvitationState::Redeemed => "redeemed",
                _ => "pending",
            },
            expires_at: p.expires_at,
            redeem_automatically: automatic,
            code: (automatic && p.state == InvitationState::Pending).then_some(p.code),
        },
    };
    Ok(Json(out))
}

//! Brivo Mobile Pass digital invitations (reference §12) and the credentials they turn into.
//!
//! One invitation may be pending per user (a second is a 409). Listing without a status filter
//! shows the pending ones only, as documented; `status__eq:all` shows every one. With `sendInvitationEmail=true`
//! the invitation e-mail goes to the outbox (and over SMTP when configured) with the access code
//! and a redeem link into the admin surface; redeeming it there stands in for the member opening
//! the Brivo app, and gives the user an active Mobile Pass credential.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, AppState, json_object, ok_json, query_params};
use crate::filter::{self, Op};
use crate::model::{Credential, Invitation, InvitationStatus, MOBILE_PASS_FORMAT_ID};
use crate::oauth::add;
use crate::paging::{DataCount, Paging};
use crate::sim::Sim;
use crate::smtp;
use crate::users::existing_user;
use crate::util::{fmt_millis, random_alnum, to_millis};

const LANGUAGES: [&str; 6] = ["en", "fr", "es", "nl", "de", "sv"];
const VALIDITY: std::time::Duration = std::time::Duration::from_secs(3 * 24 * 3600);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users/{id}/credentials", get(user_credentials))
        .route("/credentials/digital/allotment", get(allotment))
        .route(
            "/users/{id}/credentials/digital-invitations",
            get(list_invitations)
                .post(create_invitation)
                .delete(cancel_invitation),
        )
}

fn invitation_not_found() -> ApiError {
    ApiError::not_found("Digital invitation not found")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView<'a> {
    id: u64,
    reference_id: &'a str,
    credential_id: u64,
    access_code: &'a str,
    created: String,
    expiration: String,
    status: &'static str,
    nfc_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_date: Option<String>,
}

pub fn invitation_view(i: &Invitation) -> InvitationView<'_> {
    InvitationView {
        id: i.id,
        reference_id: &i.reference_id,
        credential_id: i.credential_id,
        access_code: &i.access_code,
        created: fmt_millis(i.created),
        expiration: fmt_millis(i.expiration),
        status: i.status.as_str(),
        nfc_enabled: i.nfc_enabled,
        cancel_date: i.cancel_date.map(fmt_millis),
    }
}

fn bool_param(
    params: &std::collections::HashMap<String, String>,
    name: &str,
) -> Result<bool, ApiError> {
    match params.get(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(_) => Err(ApiError::bad_request(format!("Invalid value for {name}"))),
    }
}

/// Invitations are addressed to an e-mail; refuse anything that could not be one (and could
/// smuggle header lines into the message).
fn valid_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
}

async fn create_invitation(
    State(sim): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let params = query_params(query.as_deref());
    let send_email = bool_param(&params, "sendInvitationEmail")?;
    let nfc_enabled = bool_param(&params, "nfcEnabled")?;
    let language = params
        .get("language")
        .cloned()
        .unwrap_or_else(|| "en".into());
    if !LANGUAGES.contains(&language.as_str()) {
        return Err(ApiError::bad_request("Invalid language"));
    }
    let body = json_object(&body)?;
    let reference_id = match body.get("referenceId") {
        Some(Value::String(r)) if valid_email(r) => r.clone(),
        Some(_) => return Err(ApiError::bad_request("Invalid referenceId")),
        None => return Err(ApiError::bad_request("referenceId is required")),
    };
    let now = to_millis(Timestamp::now());
    let wallet_passes = sim.runtime().wallet_passes;
    let (view, first_name, invitation) = sim.write(|s| {
        let user_id = existing_user(s, &id)?;
        s.expire_invitations(now);
        let pending = s
            .invitations
            .values()
            .any(|i| i.user_id == user_id && i.status == InvitationStatus::Pending);
        if pending {
            return Err(ApiError::new(
                409,
                "There is already a pending invitation for the cardHolder. No new invitation will be generated",
            ));
        }
        if assigned_passes(s) >= wallet_passes {
            return Err(ApiError::new(
                412,
                "You don't have any Brivo Wallet Passes available.",
            ));
        }
        let credential_id = s.alloc_id();
        s.credentials.insert(
            credential_id,
            Credential {
                id: credential_id,
                user_id,
                reference_id: reference_id.clone(),
                created: now,
                redeemed: false,
            },
        );
        let invitation = Invitation {
            id: s.alloc_id(),
            user_id,
            reference_id: reference_id.clone(),
            credential_id,
            access_code: random_alnum(8),
            created: now,
            expiration: add(now, VALIDITY),
            status: InvitationStatus::Pending,
            nfc_enabled,
            cancel_date: None,
            language: language.clone(),
        };
        s.invitations.insert(invitation.id, invitation.clone());
        let view = serde_json::to_value(invitation_view(&invitation)).unwrap_or(Value::Null);
        Ok((view, s.users[&user_id].first_name.clone(), invitation))
    })?;
    if send_email {
        send_invitation_mail(&sim, &invitation, &first_name);
    }
    Ok(ok_json(&view))
}

/// Passes in use: invitations pending or redeemed (an expired or cancelled one gives its pass
/// back).
fn assigned_passes(s: &crate::state::State) -> u64 {
    s.invitations
        .values()
        .filter(|i| {
            matches!(
                i.status,
                InvitationStatus::Pending | InvitationStatus::Redeemed
            )
        })
        .count() as u64
}

async fn allotment(State(sim): State<AppState>) -> ApiResult {
    let allotted = sim.runtime().wallet_passes;
    let now = to_millis(Timestamp::now());
    let assigned = sim.write(|s| {
        s.expire_invitations(now);
        assigned_passes(s)
    });
    Ok(ok_json(
        &json!({ "allotted": allotted, "assigned": assigned }),
    ))
}

fn send_invitation_mail(sim: &Arc<Sim>, invitation: &Invitation, first_name: &str) {
    let link = format!("{}/__sim/redeem/{}", sim.base_url, invitation.access_code);
    let body = format!(
        "Hello {first_name},\n\n\
         You have been invited to use Brivo Mobile Pass.\n\n\
         Access code: {code}\n\
         Redeem your pass: {link}\n\n\
         This invitation expires at {expiration}.\n",
        code = invitation.access_code,
        expiration = fmt_millis(invitation.expiration),
    );
    smtp::send_mail(
        sim,
        invitation.reference_id.clone(),
        "Your Brivo Mobile Pass invitation".into(),
        body,
        Some(invitation.access_code.clone()),
    );
}

async fn list_invitations(
    State(sim): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let params = query_params(query.as_deref());
    let clauses = filter::from_query(&params, &[("status", &[Op::Eq])])?;
    // Without a status filter Brivo lists the pending invitations only; `all` lists every one.
    let mut wanted: Option<Vec<InvitationStatus>> = Some(vec![InvitationStatus::Pending]);
    for c in &clauses {
        let mut statuses = Vec::new();
        for v in &c.values {
            match v.to_ascii_lowercase().as_str() {
                "pending" => statuses.push(InvitationStatus::Pending),
                "redeemed" => statuses.push(InvitationStatus::Redeemed),
                "expired" => statuses.push(InvitationStatus::Expired),
                "cancelled" => statuses.push(InvitationStatus::Cancelled),
                "all" => {}
                _ => return Err(ApiError::invalid_criteria()),
            }
        }
        wanted = if c.values.iter().any(|v| v.eq_ignore_ascii_case("all")) {
            None
        } else {
            Some(statuses)
        };
    }
    let paging = Paging::from_query(&params)?;
    let now = Timestamp::now();
    sim.write(|s| {
        let user_id = existing_user(s, &id)?;
        s.expire_invitations(now);
        let items: Vec<_> = s
            .invitations
            .values()
            .filter(|i| i.user_id == user_id)
            .filter(|i| wanted.as_ref().is_none_or(|w| w.contains(&i.status)))
            .map(invitation_view)
            .collect();
        Ok(ok_json(&paging.page(items)))
    })
}

async fn cancel_invitation(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let now = to_millis(Timestamp::now());
    sim.write(|s| {
        let user_id = existing_user(s, &id)?;
        s.expire_invitations(now);
        let invitation = s
            .invitations
            .values_mut()
            .find(|i| i.user_id == user_id && i.status == InvitationStatus::Pending)
            .ok_or_else(invitation_not_found)?;
        invitation.status = InvitationStatus::Cancelled;
        invitation.cancel_date = Some(now);
        Ok(ok_json(&invitation_view(invitation)))
    })
}

async fn user_credentials(State(sim): State<AppState>, Path(id): Path<String>) -> ApiResult {
    sim.read(|s| {
        let user_id = existing_user(s, &id)?;
        let account_id = s.account.account_id;
        let items: Vec<Value> = s
            .credentials
            .values()
            .filter(|c| c.user_id == user_id && c.redeemed)
            .map(|c| {
                json!({
                    "id": c.id,
                    "credentialFormat": {"id": MOBILE_PASS_FORMAT_ID, "name": "Brivo Mobile Pass"},
                    "referenceId": c.reference_id,
                    "accountId": account_id,
                    "effectiveFrom": crate::util::fmt_seconds(c.created),
                })
            })
            .collect();
        Ok(ok_json(&DataCount::new(items)))
    })
}

/// Redeems an invitation by its access code, as the member's app would. Redeeming twice is
/// harmless; a cancelled or expired invitation is 410 Gone.
pub fn redeem(sim: &Sim, access_code: &str) -> Result<Value, ApiError> {
    let now = Timestamp::now();
    sim.write(|s| {
        s.expire_invitations(now);
        let invitation = s
            .invitations
            .values_mut()
            .find(|i| i.access_code == access_code)
            .ok_or_else(invitation_not_found)?;
        match invitation.status {
            InvitationStatus::Pending => invitation.status = InvitationStatus::Redeemed,
            InvitationStatus::Redeemed => {}
            InvitationStatus::Cancelled => {
                return Err(ApiError::new(410, "Invitation has been cancelled"));
            }
            InvitationStatus::Expired => {
                return Err(ApiError::new(410, "Invitation has expired"));
            }
        }
        let view = serde_json::to_value(invitation_view(invitation)).unwrap_or(Value::Null);
        let credential_id = invitation.credential_id;
        if let Some(c) = s.credentials.get_mut(&credential_id) {
            c.redeemed = true;
        }
        Ok(view)
    })
}

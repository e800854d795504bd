//! Step 1 of the setup guide: a connection's integration settings, signing in to Brivo (its
//! sign-in page, or an Admin ID and password), and which Brivo site each location is.

use super::page::Layout;
use super::*;
use crate::collections::Connections;
use crate::write;
use axum::Extension;
use axum::extract::{Path, Query};
use doorsync_core::{Connection, Id, NoAccessPolicy};
use doorsync_store::{DirectoryEntry, Kind, Record, Written};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

/// How long Brivo's sign-in page may take before its answer is refused.
const OAUTH_TTL: jiff::SignedDuration = jiff::SignedDuration::from_mins(15);

struct Choice {
    id: String,
    name: String,
    chosen: bool,
}

struct Policy {
    value: &'static str,
    label: &'static str,
    explanation: &'static str,
    chosen: bool,
}

const POLICIES: [(NoAccessPolicy, &str, &str, &str); 3] = [
    (
        NoAccessPolicy::RemoveFromGroups,
        "remove_from_groups",
        "Remove from groups",
        "they stay a Brivo user, with their Mobile Pass, but doorsync takes them out of every group it controls, so no door it controls opens for them.",
    ),
    (
        NoAccessPolicy::Suspend,
        "suspend",
        "Suspend",
        "doorsync also suspends their Brivo user, so no credential of theirs opens any door, and reinstates them when they buy access again.",
    ),
    (
        NoAccessPolicy::Delete,
        "delete",
        "Delete",
        "doorsync deletes their Brivo user, which frees their Mobile Pass; a new user and a new invitation follow if they buy access again.",
    ),
];

struct ConnView {
    id: String,
    enabled: bool,
    redeem: bool,
    list_doors: bool,
    api_key_set: bool,
    api_key_masked: String,
    client_id: String,
    client_secret_set: bool,
    admin_id: String,
    exempt: String,
    api_url: String,
    auth_url: String,
}

struct LocationSites {
    id: String,
    name: String,
    sites: Vec<Choice>,
    /// The other connection this location is in now.
    elsewhere: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/connection.html")]
struct ConnectionPage {
    l: Layout,
    c: ConnView,
    state: String,
    notice: Option<String>,
    error: Option<String>,
    policies: Vec<Policy>,
    groups: Vec<Choice>,
    locations: Vec<LocationSites>,
    sites_empty: bool,
}

struct ConnRow {
    id: String,
    enabled: bool,
    signed_in: String,
    locations: usize,
}

#[derive(Template)]
#[template(path = "admin/connections.html")]
struct ConnectionsPage {
    l: Layout,
    connections: Vec<ConnRow>,
    error: Option<String>,
}

pub(crate) async fn all<T>(
    store: &dyn doorsync_store::Store,
    kind: Kind,
    pick: impl Fn(Record) -> Option<T>,
) -> Result<Vec<T>, StoreError> {
    Ok(store
        .list_all(kind)
        .await?
        .into_iter()
        .filter_map(pick)
        .collect())
}

pub(crate) async fn locations(
    store: &dyn doorsync_store::Store,
) -> Result<Vec<doorsync_core::Location>, StoreError> {
    all(store, Kind::Location, |r| match r {
        Record::Location(l) => Some(l),
        _ => None,
    })
    .await
}

pub(crate) async fn load(st: &AppState, id: &str) -> Result<Connection, PageError> {
    match st.store.get(Kind::Connection, id).await? {
        Some(Record::Connection(c)) => Ok(c),
        _ => Err(PageError::not_found(format_args!("connection {id:?}"))),
    }
}

fn signed_in_with(c: &Connection) -> &'static str {
    let cr = &c.credentials;
    if cr.admin_id.is_some() && cr.password.is_some() {
        "Admin ID and password"
    } else if cr.refresh_token.is_some() {
        "Brivo sign-in"
    } else {
        "not yet"
    }
}

pub(super) async fn list(Extension(ctx): Extension<Ctx>, State(st): State<AppState>) -> PageResult {
    list_page(&st, &ctx, None).await
}

async fn list_page(st: &AppState, ctx: &Ctx, error: Option<String>) -> PageResult {
    let locs = locations(st.store.as_ref()).await?;
    let connections = all(st.store.as_ref(), Kind::Connection, |r| match r {
        Record::Connection(c) => Some(c),
        _ => None,
    })
    .await?
    .into_iter()
    .map(|c| ConnRow {
        locations: locs
            .iter()
            .filter(|l| l.connection_id.as_ref() == Some(&c.id))
            .count(),
        signed_in: signed_in_with(&c).to_owned(),
        enabled: c.enabled,
        id: c.id.to_string(),
    })
    .collect();
    let refused = error.is_some();
    html_or_refused(
        ConnectionsPage {
            l: ctx.layout("Brivo connections", "connections"),
            connections,
            error,
        },
        refused,
    )
}

pub(super) async fn create(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    body: Bytes,
) -> PageResult {
    let f = Form::parse(&body);
    let Ok(id) = Id::parse(f.text("id").unwrap_or("")) else {
        let e = "A name is 1 to 128 letters, digits, dots, colons or dashes.".to_owned();
        return list_page(&st, &ctx, Some(e)).await;
    };
    if st.store.get(Kind::Connection, id.as_str()).await?.is_some() {
        let e = format!("There is a connection named {id} already.");
        return list_page(&st, &ctx, Some(e)).await;
    }
    let (api_url, auth_url) = match f.get("region") {
        Some("eu") => (brivo_client::EU_API_URL, brivo_client::EU_AUTH_URL),
        _ => (brivo_client::US_API_URL, brivo_client::US_AUTH_URL),
    };
    // Nothing happens in Brivo until the operator has looked at the settings.
    let body = json!({
        "provider": "brivo",
        "api_url": api_url,
        "auth_url": auth_url,
        "list_doors_in_app": false,
        "enabled": false,
    });
    if let Err(e) = write::put::<Connections>(&st, id.clone(), body).await {
        return list_page(&st, &ctx, Some(refusal(e)?)).await;
    }
    see_other(&format!("/admin/connections/{id}"))
}

fn mask(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("••••{tail}")
}

/// Where the connection stands, in a sentence.
async fn state_line(st: &AppState, c: &Connection) -> Result<String, PageError> {
    let s = st.store.connection_state(c.id.as_str()).await?;
    let now = st.clock.now();
    let zone = super::fmt::Zoned::of_space(st.store.as_ref()).await?;
    let mut out = match signed_in_with(c) {
        "not yet" => "Not connected yet: sign in to Brivo below.".to_owned(),
        "Brivo sign-in" => "Signs in with the token Brivo's sign-in page gave.".to_owned(),
        _ => "Signs in with an Admin ID and password.".to_owned(),
    };
    if let Some(at) = s.last_directory_at {
        out.push_str(&format!(
            " Groups, sites and doors last read {}.",
            super::fmt::relative(now, at)
        ));
    }
    if let (Some(until), Some(why)) = (s.paused_until, s.pause_reason)
        && until > now
    {
        out.push_str(&format!(" Paused until {}: {why}", zone.when(until)));
    }
    if !c.enabled {
        out.push_str(" The integration is disabled: doorsync changes nothing in Brivo.");
    }
    Ok(out)
}

async fn connection_page(
    st: &AppState,
    ctx: &Ctx,
    c: &Connection,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let refused = error.is_some();
    let id = c.id.as_str();
    let groups = st.store.directory(id, "group").await?;
    let sites = st.store.directory(id, "site").await?;
    let chosen: BTreeSet<&String> = c.visitor_group_ids.iter().collect();
    let choice = |e: &DirectoryEntry, chosen: bool| Choice {
        id: e.provider_id.clone(),
        name: e.name.clone(),
        chosen,
    };
    let mut group_choices: Vec<Choice> = groups
        .iter()
        .map(|g| choice(g, chosen.contains(&g.provider_id)))
        .collect();
    // A chosen group the directory no longer lists stays visible, by its id.
    for g in &c.visitor_group_ids {
        if !groups.iter().any(|d| &d.provider_id == g) {
            group_choices.push(Choice {
                id: g.clone(),
                name: format!("group {g} (not in Brivo's list)"),
                chosen: true,
            });
        }
    }
    let locations = locations(st.store.as_ref())
        .await?
        .into_iter()
        .map(|l| {
            let here = l.connection_id.as_ref() == Some(&c.id);
            LocationSites {
                sites: sites
                    .iter()
                    .map(|s| choice(s, here && l.site_id.as_ref() == Some(&s.provider_id)))
                    .collect(),
                elsewhere: l
                    .connection_id
                    .as_ref()
                    .filter(|other| *other != &c.id)
                    .map(|o| o.to_string()),
                id: l.id.to_string(),
                name: l.name,
            }
        })
        .collect();
    let cr = &c.credentials;
    let (api_url, auth_url) = doorsync_engine::brivo::endpoints(c);
    let view = ConnView {
        id: id.to_owned(),
        enabled: c.enabled,
        redeem: c.redeem_passes_automatically,
        list_doors: c.list_doors_in_app,
        api_key_set: cr.api_key.is_some(),
        api_key_masked: cr.api_key.as_deref().map(mask).unwrap_or_default(),
        client_id: cr.client_id.clone().unwrap_or_default(),
        client_secret_set: cr.client_secret.is_some(),
        admin_id: cr.admin_id.clone().unwrap_or_default(),
        exempt: c.exempt_user_ids.join("\n"),
        api_url,
        auth_url,
    };
    let page = ConnectionPage {
        l: ctx.layout(format!("Brivo connection {id}"), "connections"),
        state: state_line(st, c).await?,
        notice,
        policies: POLICIES
            .iter()
            .map(|(p, value, label, explanation)| Policy {
                value,
                label,
                explanation,
                chosen: *p == c.no_access_policy,
            })
            .collect(),
        groups: group_choices,
        sites_empty: sites.is_empty(),
        locations,
        c: view,
        error,
    };
    html_or_refused(page, refused)
}

pub(super) async fn page(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let c = load(&st, &id).await?;
    let notice = q.get("done").map(|d| match d.as_str() {
        "settings" => "Settings saved.".to_owned(),
        "sites" => "Sites saved.".to_owned(),
        other => other.chars().take(200).collect(),
    });
    connection_page(&st, &ctx, &c, notice, None).await
}

/// The settings form as the merge patch that `PATCH /api/v1/connections/{id}` takes, so that
/// the API's checks and credential rules apply to it. Secrets are write-only: one left empty is
/// not sent, which keeps the stored one only while the connection points where it did (a new
/// `api_url` or `auth_url` takes only the credentials typed in this form).
fn settings_patch(f: &Form) -> Value {
    let exempt: Vec<&str> = f
        .get("exempt_user_ids")
        .unwrap_or("")
        .split([',', '\n', ' '])
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let mut patch = json!({
        "enabled": f.checked("enabled"),
        "redeem_passes_automatically": f.checked("redeem_passes_automatically"),
        "list_doors_in_app": f.checked("list_doors_in_app"),
        // The page shows the client id; emptied, it is cleared.
        "client_id": f.text("client_id").unwrap_or(""),
        "visitor_group_ids": f.all("visitor_group_ids"),
        "exempt_user_ids": exempt,
        // Left empty, the provider's default (null removes the stored one).
        "api_url": f.text("api_url"),
        "auth_url": f.text("auth_url"),
    });
    if let Some(policy) = f.get("no_access_policy") {
        patch["no_access_policy"] = json!(policy);
    }
    for secret in ["api_key", "client_secret"] {
        if let Some(value) = f.text(secret) {
            patch[secret] = json!(value);
        }
    }
    patch
}

pub(super) async fn save_settings(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    let c = load(&st, &id).await?;
    let patch = settings_patch(&Form::parse(&body));
    if let Err(e) = write::patch::<Connections>(&st, c.id.clone(), patch).await {
        let c = load(&st, &id).await?;
        return connection_page(&st, &ctx, &c, None, Some(refusal(e)?)).await;
    }
    see_other(&format!("/admin/connections/{id}?done=settings"))
}

/// Sets the refresh token Brivo's sign-in page gave (`Some("")` clears it) on a connection
/// record about to be written: the one credential no API body carries.
fn with_refresh_token(token: String) -> impl FnOnce(&mut Record) {
    move |r| {
        if let Record::Connection(c) = r {
            c.credentials.refresh_token = Some(token);
        }
    }
}

/// A failed sign-in or directory read, as an operator reads it.
fn in_words(error: &str, admin_id: Option<&str>) -> String {
    let e = error.to_lowercase();
    if e.contains("developer_inactive") || e.contains("developer inactive") {
        "Brivo refused the API key: check it under your application in Brivo's developer portal."
            .into()
    } else if e.contains("unauthorized grant type") {
        "This Brivo application cannot sign in that way: a Password application takes the Admin ID and password, a 3-legged one signs in through Brivo's page.".into()
    } else if e.contains("redirect uri") {
        "Brivo refused the return address: register this dashboard's /admin/oauth/callback address as the application's redirect URI.".into()
    } else if e.contains("lacks credentials") {
        "Set the API key, the application's client ID and its secret in step 1 first.".into()
    } else if e.contains("unauthorized")
        || e.contains("bad credentials")
        || e.contains("invalid_grant")
    {
        if admin_id.is_some_and(|a| a.contains('@')) {
            "Brivo refused the sign-in: use the Admin ID shown under your icon in Brivo Access, not your e-mail address.".into()
        } else {
            "Brivo refused the sign-in: check the Admin ID (shown under your icon in Brivo Access) and the password, and the application's client ID and secret.".into()
        }
    } else if e.contains("provider_permission") {
        "Brivo refused to list the account's groups: the administrator must be an Account Config Tool Administrator in Brivo Access.".into()
    } else if ["timeout", "connect", "unavailable", "connection"]
        .iter()
        .any(|w| e.contains(w))
    {
        format!("Brivo did not answer; try again in a minute. ({error})")
    } else {
        format!("Brivo answered with an error: {error}")
    }
}

/// Signs in with the connection's credentials and reads its directory, and says how it went.
async fn read_directory(st: &AppState, c: &Connection) -> Result<String, String> {
    let Some(engine) = &st.engine else {
        return Ok("Saved; the sync engine is not running in this process, so nothing was read from Brivo.".into());
    };
    match engine.read_directory(c).await {
        Ok((groups, sites, doors)) => {
            let n = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
            Ok(format!(
                "Connected: Brivo lists {}, {} and {}.",
                n(groups, "group"),
                n(sites, "site"),
                n(doors, "door")
            ))
        }
        Err(e) => Err(in_words(&e.to_string(), c.credentials.admin_id.as_deref())),
    }
}

pub(super) async fn connect_with_password(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    let mut c = load(&st, &id).await?;
    let f = Form::parse(&body);
    let (Some(admin_id), Some(password)) = (
        f.text("admin_id"),
        f.get("password").filter(|p| !p.is_empty()),
    ) else {
        return connection_page(
            &st,
            &ctx,
            &c,
            None,
            Some("Type the Admin ID and the password.".into()),
        )
        .await;
    };
    let mut trial = c.clone();
    trial.credentials.admin_id = Some(admin_id.to_owned());
    trial.credentials.password = Some(password.to_owned());
    // Try before keeping: credentials Brivo refuses would only pause the connection.
    match read_directory(&st, &trial).await {
        Ok(notice) => {
            // Kept as the API keeps a patch of the two: the other credentials stay only where
            // the connection still points. A typed password replaces an earlier sign-in
            // through Brivo's page.
            let patch = json!({"admin_id": admin_id, "password": password});
            let kept = write::patch_then::<Connections>(
                &st,
                c.id.clone(),
                patch,
                with_refresh_token(String::new()),
            )
            .await;
            if let Err(e) = kept {
                return connection_page(&st, &ctx, &c, None, Some(refusal(e)?)).await;
            }
            see_other(&format!("/admin/connections/{id}?done={}", encode(&notice)))
        }
        Err(e) => {
            c.credentials.admin_id = Some(admin_id.to_owned());
            connection_page(&st, &ctx, &c, None, Some(e)).await
        }
    }
}

fn callback_url(headers: &HeaderMap, secure: bool) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return None;
    }
    let scheme = if secure { "https" } else { "http" };
    Some(format!("{scheme}://{host}/admin/oauth/callback"))
}

pub(super) async fn authorize(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let c = load(&st, &id).await?;
    let cr = &c.credentials;
    let Some(client_id) = cr
        .client_id
        .as_deref()
        .filter(|_| cr.client_secret.is_some() && cr.api_key.is_some())
    else {
        let e = "Set the API key, the application's client ID and its secret in step 1 first.";
        return connection_page(&st, &ctx, &c, None, Some(e.into())).await;
    };
    let Some(redirect_uri) = callback_url(&headers, ctx.secure) else {
        return Err(PageError::bad("The request named no host to come back to."));
    };
    let state = random_token();
    let now = st.clock.now();
    st.store
        .put_oauth_state(
            &crate::auth::hash(&state),
            &doorsync_store::OAuthState {
                connection_id: id.clone(),
                redirect_uri: redirect_uri.clone(),
            },
            now.saturating_add(OAUTH_TTL).unwrap_or(now),
        )
        .await?;
    let (_, auth_url) = doorsync_engine::brivo::endpoints(&c);
    let to = format!(
        "{auth_url}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&state={state}",
        encode(client_id),
        encode(&redirect_uri)
    );
    see_other(&to)
}

pub(super) async fn callback(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let state = q.get("state").map(String::as_str).unwrap_or("");
    let Some(pending) = st
        .store
        .take_oauth_state(&crate::auth::hash(state), st.clock.now())
        .await?
    else {
        return Err(PageError::bad(
            "This sign-in to Brivo was not started here, was used already, or took longer than 15 minutes. Start it again from the connection's page.",
        ));
    };
    let c = load(&st, &pending.connection_id).await?;
    let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
        let why = q
            .get("error_description")
            .or(q.get("error"))
            .map_or("no code came back", String::as_str);
        let e = format!("Brivo did not sign in: {why}.");
        return connection_page(&st, &ctx, &c, None, Some(e)).await;
    };
    let cr = &c.credentials;
    let (api_url, auth_url) = doorsync_engine::brivo::endpoints(&c);
    let config = brivo_client::ClientConfig::new(
        api_url,
        auth_url,
        cr.api_key.clone().unwrap_or_default(),
        cr.client_id.clone().unwrap_or_default(),
        cr.client_secret.clone().unwrap_or_default(),
        brivo_client::Grant::RefreshToken(String::new().into()),
    );
    let exchanged = match brivo_client::BrivoClient::new(config) {
        Ok(client) => client
            .exchange_code(code, Some(&pending.redirect_uri))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let refresh = match exchanged {
        Ok(r) => r,
        Err(e) => {
            let e = in_words(&e, None);
            return connection_page(&st, &ctx, &c, None, Some(e)).await;
        }
    };
    // The page's sign-in replaces a typed password: the password would win otherwise.
    let kept = write::patch_then::<Connections>(
        &st,
        c.id.clone(),
        json!({"password": ""}),
        with_refresh_token(refresh),
    )
    .await;
    let c = match kept {
        Ok(Written {
            record: Record::Connection(c),
            ..
        }) => c,
        Ok(_) => return Err(PageError::bad("the connection could not be kept")),
        Err(e) => return connection_page(&st, &ctx, &c, None, Some(refusal(e)?)).await,
    };
    let notice = match read_directory(&st, &c).await {
        Ok(n) => n,
        Err(e) => return connection_page(&st, &ctx, &c, None, Some(e)).await,
    };
    see_other(&format!(
        "/admin/connections/{}?done={}",
        c.id,
        encode(&notice)
    ))
}

pub(super) async fn save_sites(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    let c = load(&st, &id).await?;
    let f = Form::parse(&body);
    let sites = st.store.directory(&id, "site").await?;
    let mut ops = vec![];
    for l in locations(st.store.as_ref()).await? {
        let Some(choice) = f.get(&format!("site:{}", l.id)) else {
            continue;
        };
        let here = l.connection_id.as_ref() == Some(&c.id);
        let (connection_id, site_id) = if choice.is_empty() {
            if !here {
                continue;
            }
            (None, None)
        } else {
            if !sites.iter().any(|s| s.provider_id == choice) {
                let e = format!("Brivo lists no site {choice:?}; reload the page.");
                return connection_page(&st, &ctx, &c, None, Some(e)).await;
            }
            (Some(c.id.clone()), Some(choice.to_owned()))
        };
        if l.connection_id == connection_id && l.site_id == site_id {
            continue;
        }
        // As `PATCH /api/v1/locations/{id}` takes it (null removes).
        ops.push(json!({
            "op": "patch",
            "collection": "locations",
            "id": l.id,
            "body": {"connection_id": connection_id, "site_id": site_id},
        }));
    }
    if let Err(e) = crate::batch::apply_form(&st, ops).await {
        return connection_page(&st, &ctx, &c, None, Some(refusal(e)?)).await;
    }
    see_other(&format!("/admin/connections/{id}?done=sites"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_for_an_admin_id_is_named_as_the_mistake() {
        let e = in_words(
            "token: unauthorized (401): Bad credentials",
            Some("ops@example.com"),
        );
        assert!(e.contains("Admin ID shown under your icon"), "{e}");
        assert!(e.contains("not your e-mail address"), "{e}");
        let e = in_words("token: unauthorized (401): Bad credentials", Some("12345"));
        assert!(!e.contains("not your e-mail"), "{e}");
        let e = in_words("groups: developer_inactive (403): Developer Inactive", None);
        assert!(e.contains("API key"), "{e}");
    }

    /// Only what the operator typed is sent: an empty secret is left out of the patch (kept
    /// where the connection still points), an empty URL goes back to the provider's default.
    #[test]
    fn the_settings_form_is_the_patch_the_api_takes() {
        let f = Form::parse(&Bytes::from_static(
            b"enabled=on&client_id=+cid+&api_key=&client_secret=s&api_url=https%3A%2F%2Fa.test&auth_url=&exempt_user_ids=1%0D%0A2,3&visitor_group_ids=7",
        ));
        assert_eq!(
            settings_patch(&f),
            json!({
                "enabled": true,
                "redeem_passes_automatically": false,
                "list_doors_in_app": false,
                "client_id": "cid",
                "client_secret": "s",
                "visitor_group_ids": ["7"],
                "exempt_user_ids": ["1", "2", "3"],
                "api_url": "https://a.test",
                "auth_url": null,
            })
        );
    }

    #[test]
    fn secrets_show_their_last_four_characters() {
        assert_eq!(mask("abcdef123456"), "••••3456");
    }
}

//! Step 2 of the setup guide, for one location: what each door means for presence, and which
//! access group each pass, room, desk and office opens. Saving shows the plan in words first and
//! applies it on confirmation. A space without a booking platform adds its inventory here.

use super::connection::{all, locations};
use super::page::Layout;
use super::*;
use crate::collections::{Desks, Locations, Passes, Resources};
use crate::error::ApiError;
use crate::write;
use axum::Extension;
use axum::extract::{Path, Query};
use doorsync_core::*;
use doorsync_engine::plan::{Change, Preview, preview};
use doorsync_store::{Kind, Record};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

struct DoorRow {
    id: String,
    name: String,
    value: &'static str,
}

struct ItemRow {
    id: String,
    name: String,
    value: String,
    /// Linked to a group the directory does not list.
    unknown: bool,
}

struct Section {
    key: &'static str,
    title: &'static str,
    item: &'static str,
    hint: &'static str,
    rows: Vec<ItemRow>,
}

#[derive(Template)]
#[template(path = "admin/location.html")]
struct LocationPage {
    l: Layout,
    id: String,
    name: String,
    zone: String,
    lead_minutes: i64,
    lag_minutes: i64,
    end_when_used: bool,
    where_line: String,
    connected: bool,
    notice: Option<String>,
    error: Option<String>,
    doors: Vec<DoorRow>,
    sections: Vec<Section>,
    groups: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "admin/review.html")]
struct ReviewPage {
    l: Layout,
    id: String,
    name: String,
    plan: String,
    details: Vec<String>,
    fields: Vec<(String, String)>,
}

struct LocationRow {
    id: String,
    name: String,
    zone: String,
    brivo: String,
    linked: String,
}

#[derive(Template)]
#[template(path = "admin/locations.html")]
struct LocationsPage {
    l: Layout,
    locations: Vec<LocationRow>,
    error: Option<String>,
    default_zone: String,
    zones: Vec<&'static str>,
}

const ZONES: [&str; 12] = [
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Toronto",
    "Asia/Singapore",
    "Australia/Sydney",
    "UTC",
];

/// Everything at one location that step 2 shows.
struct Inventory {
    location: Location,
    passes: Vec<Pass>,
    resources: Vec<Resource>,
    desks: Vec<Desk>,
    /// Links by (kind, item id).
    links: BTreeMap<(LinkKind, String), String>,
    doors: BTreeMap<String, Door>,
}

async fn inventory(st: &AppState, id: &str) -> Result<Inventory, PageError> {
    let store = st.store.as_ref();
    let Some(Record::Location(location)) = store.get(Kind::Location, id).await? else {
        return Err(PageError::not_found(format_args!("location {id:?}")));
    };
    let here = |l: &Id| l == &location.id;
    let passes = all(store, Kind::Pass, |r| match r {
        Record::Pass(p) if here(&p.location_id) => Some(p),
        _ => None,
    })
    .await?;
    let resources = all(store, Kind::Resource, |r| match r {
        Record::Resource(x) if here(&x.location_id) => Some(x),
        _ => None,
    })
    .await?;
    let desks = all(store, Kind::Desk, |r| match r {
        Record::Desk(x) if here(&x.location_id) => Some(x),
        _ => None,
    })
    .await?;
    let links = all(store, Kind::Link, |r| match r {
        Record::Link(l) => Some(((l.kind, l.item_id.to_string()), l.group_id)),
        _ => None,
    })
    .await?
    .into_iter()
    .collect();
    let doors = all(store, Kind::Door, |r| match r {
        Record::Door(d) if here(&d.location_id) => d.provider_door_id.clone().map(|p| (p, d)),
        _ => None,
    })
    .await?
    .into_iter()
    .collect();
    Ok(Inventory {
        location,
        passes,
        resources,
        desks,
        links,
        doors,
    })
}

fn role_value(r: PresenceRole) -> &'static str {
    match r {
        PresenceRole::CheckIn => "check_in",
        PresenceRole::CheckOut => "check_out",
        PresenceRole::None => "none",
    }
}

fn role_words(r: PresenceRole) -> &'static str {
    match r {
        PresenceRole::CheckIn => "Check in",
        PresenceRole::CheckOut => "Check out",
        PresenceRole::None => "Do nothing",
    }
}

fn parse_role(v: &str) -> Option<PresenceRole> {
    match v {
        "check_in" => Some(PresenceRole::CheckIn),
        "check_out" => Some(PresenceRole::CheckOut),
        "none" => Some(PresenceRole::None),
        _ => None,
    }
}

pub(super) async fn list(Extension(ctx): Extension<Ctx>, State(st): State<AppState>) -> PageResult {
    list_page(&st, &ctx, None).await
}

async fn list_page(st: &AppState, ctx: &Ctx, error: Option<String>) -> PageResult {
    let links = all(st.store.as_ref(), Kind::Link, |r| match r {
        Record::Link(l) => Some(l),
        _ => None,
    })
    .await?;
    let locs = locations(st.store.as_ref()).await?;
    let default_zone = locs.first().map_or("Europe/London".to_owned(), |l| {
        l.timezone.as_str().to_owned()
    });
    let mut rows = vec![];
    for l in locs {
        rows.push(LocationRow {
            brivo: match (&l.connection_id, &l.site_id) {
                (Some(c), Some(s)) => {
                    let sites = st.store.directory(c.as_str(), "site").await?;
                    let name = sites
                        .iter()
                        .find(|x| &x.provider_id == s)
                        .map_or(format!("site {s}"), |x| x.name.clone());
                    format!("{name} ({c})")
                }
                _ => "not connected".into(),
            },
            // Counting links needs the items' locations; the location page has the detail.
            linked: format!("{} links in the space", links.len()),
            zone: l.timezone.as_str().to_owned(),
            id: l.id.to_string(),
            name: l.name,
        });
    }
    let refused = error.is_some();
    html_or_refused(
        LocationsPage {
            l: ctx.layout("Locations", "locations"),
            locations: rows,
            error,
            default_zone,
            zones: ZONES.to_vec(),
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
    let id = match f.id("id") {
        Ok(id) => id,
        Err(e) => return list_page(&st, &ctx, Some(e.to_owned())).await,
    };
    if st.store.get(Kind::Location, id.as_str()).await?.is_some() {
        return list_page(
            &st,
            &ctx,
            Some(format!("There is a location {id} already.")),
        )
        .await;
    }
    let body = json!({
        "name": f.get("name").unwrap_or(""),
        "timezone": f.text("timezone").unwrap_or(""),
    });
    if let Err(e) = write::put::<Locations>(&st, id.clone(), body).await {
        return list_page(&st, &ctx, Some(refusal(e)?)).await;
    }
    see_other(&format!("/admin/locations/{id}"))
}

/// The location an inventory item is at.
fn location_of(r: &Record) -> Option<&Id> {
    match r {
        Record::Pass(p) => Some(&p.location_id),
        Record::Resource(x) => Some(&x.location_id),
        Record::Desk(x) => Some(&x.location_id),
        _ => None,
    }
}

/// Writes an inventory item as the API does: a new one whole (`PUT`), an existing one by the
/// fields the form names (`PATCH`), its other fields kept.
async fn write_item(
    st: &AppState,
    kind: Kind,
    id: Id,
    fields: Value,
    existing: bool,
) -> Result<(), ApiError> {
    match (kind, existing) {
        (Kind::Pass, false) => write::put::<Passes>(st, id, fields).await,
        (Kind::Pass, true) => write::patch::<Passes>(st, id, fields).await,
        (Kind::Resource, false) => write::put::<Resources>(st, id, fields).await,
        (Kind::Resource, true) => write::patch::<Resources>(st, id, fields).await,
        (_, false) => write::put::<Desks>(st, id, fields).await,
        (_, true) => write::patch::<Desks>(st, id, fields).await,
    }
    .map(|_| ())
}

pub(super) async fn add_item(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    let inv = inventory(&st, &id).await?;
    let f = Form::parse(&body);
    let fail = |e: String| location_page(&st, &ctx, &inv, None, Some(e));
    let item_id = match f.id("id") {
        Ok(id) => id,
        Err(e) => return fail(e.to_owned()).await,
    };
    let name = f.get("name").unwrap_or("");
    let (kind, mut fields) = match f.get("kind") {
        Some("pass") => (Kind::Pass, json!({ "name": name })),
        Some("resource") => (Kind::Resource, json!({ "name": name })),
        Some(k @ ("desk" | "office")) => (Kind::Desk, json!({"name": name, "kind": k})),
        _ => return fail("Pick a kind: pass, resource, desk or office.".into()).await,
    };
    // An existing item of the same kind here is renamed, its other fields kept.
    let existing = match st.store.get(kind, item_id.as_str()).await? {
        None => false,
        Some(r) if location_of(&r) == Some(&inv.location.id) => true,
        Some(_) => return fail(format!("The id {item_id} is taken elsewhere.")).await,
    };
    if !existing {
        fields["location_id"] = json!(inv.location.id);
    }
    if let Err(e) = write_item(&st, kind, item_id, fields, existing).await {
        return fail(refusal(e)?).await;
    }
    see_other(&format!("/admin/locations/{id}?done=added"))
}

pub(super) async fn edit(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    let inv = inventory(&st, &id).await?;
    let f = Form::parse(&body);
    let fail = |e: String| location_page(&st, &ctx, &inv, None, Some(e));
    let minutes = |k: &str| {
        f.text(k)
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|m| (0..=1440).contains(m))
    };
    let (Some(lead), Some(lag)) = (minutes("lead_minutes"), minutes("lag_minutes")) else {
        return fail("The minutes before and after are 0 to 1440.".into()).await;
    };
    let patch = json!({
        "name": f.get("name").unwrap_or(""),
        "timezone": f.text("timezone").unwrap_or(""),
        "lead": format!("PT{lead}M"),
        "lag": format!("PT{lag}M"),
        "end_access_when_days_used": f.checked("end_access_when_days_used"),
    });
    if let Err(e) = write::patch::<Locations>(&st, inv.location.id.clone(), patch).await {
        return fail(refusal(e)?).await;
    }
    see_other(&format!("/admin/locations/{id}?done=saved"))
}

async fn location_page(
    st: &AppState,
    ctx: &Ctx,
    inv: &Inventory,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let refused = error.is_some();
    let loc = &inv.location;
    let (groups, doors, where_line) = match (&loc.connection_id, &loc.site_id) {
        (Some(c), Some(site)) => {
            let groups = st.store.directory(c.as_str(), "group").await?;
            let sites = st.store.directory(c.as_str(), "site").await?;
            let doors = st.store.directory(c.as_str(), "door").await?;
            let site_name = sites
                .iter()
                .find(|s| &s.provider_id == site)
                .map_or(format!("site {site}"), |s| s.name.clone());
            let doors: Vec<DoorRow> = doors
                .into_iter()
                .filter(|d| d.parent_id.as_ref() == Some(site))
                .map(|d| DoorRow {
                    value: role_value(
                        inv.doors
                            .get(&d.provider_id)
                            .map_or(PresenceRole::None, |x| x.presence_role),
                    ),
                    id: d.provider_id,
                    name: d.name,
                })
                .collect();
            let line = format!(
                "Brivo site {site_name}, connection {c}; times in {}.",
                loc.timezone.as_str()
            );
            (
                groups
                    .into_iter()
                    .map(|g| (g.provider_id, g.name))
                    .collect::<Vec<_>>(),
                doors,
                line,
            )
        }
        _ => (
            vec![],
            vec![],
            format!(
                "Not connected to Brivo yet; times in {}.",
                loc.timezone.as_str()
            ),
        ),
    };
    let known: BTreeSet<&String> = groups.iter().map(|g| &g.0).collect();
    let row = |kind: LinkKind, id: &Id, name: &str| {
        let value = inv
            .links
            .get(&(kind, id.to_string()))
            .cloned()
            .unwrap_or_default();
        ItemRow {
            unknown: !value.is_empty() && !known.contains(&value),
            id: id.to_string(),
            name: name.to_owned(),
            value,
        }
    };
    let sections = vec![
        Section {
            key: "pass",
            title: "Passes",
            item: "Pass",
            hint: "Holders of a pass get its group for the whole of its validity.",
            rows: inv
                .passes
                .iter()
                .map(|p| row(LinkKind::Pass, &p.id, &p.name))
                .collect(),
        },
        Section {
            key: "resource",
            title: "Room locks",
            item: "Meeting room or resource",
            hint: "Whoever books it gets its group from 15 minutes before the booking to 15 minutes after (the location's buffers).",
            rows: inv
                .resources
                .iter()
                .map(|r| row(LinkKind::Resource, &r.id, &r.name))
                .collect(),
        },
        Section {
            key: "desk",
            title: "Desks and offices",
            item: "Desk or office",
            hint: "The holder of a contract for it, and the paying member's team, get its group from contract start to contract end.",
            rows: inv
                .desks
                .iter()
                .map(|d| {
                    let kind = match d.kind {
                        DeskKind::Desk => "desk",
                        DeskKind::Office => "office",
                    };
                    row(LinkKind::Desk, &d.id, &format!("{} ({kind})", d.name))
                })
                .collect(),
        },
    ];
    let page = LocationPage {
        l: ctx.layout(loc.name.clone(), "locations"),
        id: loc.id.to_string(),
        name: loc.name.clone(),
        zone: loc.timezone.as_str().to_owned(),
        lead_minutes: loc.lead.as_mins(),
        lag_minutes: loc.lag.as_mins(),
        end_when_used: loc.end_access_when_days_used,
        where_line,
        connected: loc.connection_id.is_some() && loc.site_id.is_some(),
        notice,
        error: error.clone(),
        doors,
        sections,
        groups,
    };
    html_or_refused(page, refused)
}

pub(super) async fn page(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let inv = inventory(&st, &id).await?;
    let notice = q.get("done").map(|d| match d.as_str() {
        "added" => "Saved.".to_owned(),
        "nothing" => "Nothing changed.".to_owned(),
        _ => "Saved: doorsync is applying the changes now; the Sync page shows its progress."
            .to_owned(),
    });
    location_page(&st, &ctx, &inv, notice, None).await
}

/// What the posted form changes, checked against the directory.
struct Edits {
    links: Vec<(LinkKind, Id, Option<String>)>,
    doors: Vec<(String, String, PresenceRole)>,
    /// The form's choices, to post again on confirmation.
    fields: Vec<(String, String)>,
}

async fn edits(st: &AppState, inv: &Inventory, f: &Form) -> Result<Edits, String> {
    let loc = &inv.location;
    let (Some(c), Some(site)) = (&loc.connection_id, &loc.site_id) else {
        return Err("This location is not connected to a Brivo site yet.".into());
    };
    let err = |e: StoreError| e.to_string();
    let groups: BTreeSet<String> = st
        .store
        .directory(c.as_str(), "group")
        .await
        .map_err(err)?
        .into_iter()
        .map(|g| g.provider_id)
        .collect();
    let doors: BTreeMap<String, String> = st
        .store
        .directory(c.as_str(), "door")
        .await
        .map_err(err)?
        .into_iter()
        .filter(|d| d.parent_id.as_ref() == Some(site))
        .map(|d| (d.provider_id, d.name))
        .collect();
    let mut out = Edits {
        links: vec![],
        doors: vec![],
        fields: vec![],
    };
    let items = inv
        .passes
        .iter()
        .map(|p| (LinkKind::Pass, &p.id))
        .chain(inv.resources.iter().map(|r| (LinkKind::Resource, &r.id)))
        .chain(inv.desks.iter().map(|d| (LinkKind::Desk, &d.id)));
    for (kind, id) in items {
        let key = format!("{}:{id}", kind.as_str());
        let Some(chosen) = f.get(&key) else { continue };
        out.fields.push((key, chosen.to_owned()));
        let now = inv.links.get(&(kind, id.to_string()));
        let chosen = (!chosen.is_empty()).then(|| chosen.to_owned());
        if now == chosen.as_ref() {
            continue;
        }
        if let Some(g) = &chosen
            && !groups.contains(g)
        {
            return Err(format!("Brivo lists no group {g:?}; reload the page."));
        }
        out.links.push((kind, id.clone(), chosen));
    }
    for (door, name) in &doors {
        let key = format!("door:{door}");
        let Some(v) = f.get(&key) else { continue };
        out.fields.push((key, v.to_owned()));
        let role = parse_role(v).ok_or_else(|| format!("{v:?} is not an activity."))?;
        let now = inv
            .doors
            .get(door)
            .map_or(PresenceRole::None, |d| d.presence_role);
        if now != role {
            out.doors.push((door.clone(), name.clone(), role));
        }
    }
    Ok(out)
}

fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// `person` or `3 people`, after "the".
fn the(n: usize) -> String {
    if n == 1 {
        "person".into()
    } else {
        format!("{n} people")
    }
}

fn join(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

/// The preview as one sentence: who is added where, who is removed, and what happens in the
/// groups that nothing will control any more.
pub(crate) fn plan_in_words(
    p: &Preview,
    names: &BTreeMap<String, String>,
    managed_after: &BTreeSet<String>,
) -> String {
    let mut per_group: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for c in &p.changes {
        let slot = match c.op {
            "add" => 0,
            "remove" => 1,
            _ => 2,
        };
        per_group.entry(c.group_id.as_str()).or_default()[slot] += 1;
    }
    let name = |g: &str| {
        names
            .get(g)
            .cloned()
            .unwrap_or_else(|| format!("group {g}"))
    };
    let mut adds = vec![];
    let mut removes = vec![];
    let mut untouched = vec![];
    for (g, [add, remove, release]) in &per_group {
        if *add > 0 {
            adds.push(format!(
                "adds {} to {} now",
                count(*add, "customer", "customers"),
                name(g)
            ));
        }
        if *remove > 0 {
            if managed_after.contains(*g) {
                removes.push(format!("removes {} from {}", remove, name(g)));
            } else {
                removes.push(format!(
                    "takes the {} doorsync put in {} out of it, since nothing controls it any more",
                    the(*remove),
                    name(g)
                ));
            }
        }
        if *release > 0 {
            untouched.push(format!(
                "leaves the {} in {} that doorsync did not add as they are",
                the(*release),
                name(g)
            ));
        }
    }
    let parts: Vec<String> = adds.into_iter().chain(removes).chain(untouched).collect();
    if parts.is_empty() {
        format!(
            "Saving changes nobody's access now ({} considered).",
            count(p.customers_considered, "customer", "customers")
        )
    } else {
        format!("Saving {}.", join(&parts))
    }
}

pub(super) async fn review(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    let inv = inventory(&st, &id).await?;
    let f = Form::parse(&body);
    let e = match edits(&st, &inv, &f).await {
        Ok(e) => e,
        Err(msg) => return location_page(&st, &ctx, &inv, None, Some(msg)).await,
    };
    if e.links.is_empty() && e.doors.is_empty() {
        return see_other(&format!("/admin/locations/{id}?done=nothing"));
    }
    // What applying would refuse is refused here, before the plan is shown.
    if let Err(err) = crate::batch::check_form(&st, operations(&inv, &e)).await {
        return location_page(&st, &ctx, &inv, None, Some(refusal(err)?)).await;
    }
    let changes: Vec<Change> = e
        .links
        .iter()
        .map(|(kind, item_id, group_id)| Change::Link {
            kind: *kind,
            item_id: item_id.clone(),
            group_id: group_id.clone(),
        })
        .collect();
    let plan = if changes.is_empty() {
        "No one's access changes.".to_owned()
    } else {
        let p = preview(st.store.as_ref(), st.clock.now(), &changes).await?;
        let shown: BTreeSet<String> = p.changes.iter().map(|c| c.group_id.clone()).collect();
        let names = st.store.group_names(&shown).await?;
        let mut after: BTreeMap<(LinkKind, String), String> = inv_links_all(&st).await?;
        for (kind, item, group) in &e.links {
            match group {
                Some(g) => after.insert((*kind, item.to_string()), g.clone()),
                None => after.remove(&(*kind, item.to_string())),
            };
        }
        let mut managed: BTreeSet<String> = after.into_values().collect();
        if let Some(c) = &inv.location.connection_id
            && let Ok(conn) = super::connection::load(&st, c.as_str()).await
        {
            managed.extend(conn.visitor_group_ids);
        }
        plan_in_words(&p, &names, &managed)
    };
    let names = match &inv.location.connection_id {
        Some(c) => st.store.directory(c.as_str(), "group").await?,
        None => vec![],
    };
    let group_name = |g: &Option<String>| match g {
        None => "not controlled".to_owned(),
        Some(g) => names
            .iter()
            .find(|d| &d.provider_id == g)
            .map_or(format!("group {g}"), |d| d.name.clone()),
    };
    let mut details = vec![];
    for (kind, item, group) in &e.links {
        let was = inv.links.get(&(*kind, item.to_string())).cloned();
        let item_name = match kind {
            LinkKind::Pass => inv.passes.iter().find(|p| &p.id == item).map(|p| &p.name),
            LinkKind::Resource => inv
                .resources
                .iter()
                .find(|r| &r.id == item)
                .map(|r| &r.name),
            LinkKind::Desk => inv.desks.iter().find(|d| &d.id == item).map(|d| &d.name),
        };
        details.push(format!(
            "{}: {} → {}",
            item_name.map_or_else(|| item.to_string(), Clone::clone),
            group_name(&was),
            group_name(group)
        ));
    }
    for (_, name, role) in &e.doors {
        details.push(format!("Door {name}: {}", role_words(*role)));
    }
    html(ReviewPage {
        l: ctx.layout(format!("Review: {}", inv.location.name), "locations"),
        id: id.clone(),
        name: inv.location.name.clone(),
        plan,
        details,
        fields: e.fields,
    })
}

async fn inv_links_all(st: &AppState) -> Result<BTreeMap<(LinkKind, String), String>, PageError> {
    Ok(all(st.store.as_ref(), Kind::Link, |r| match r {
        Record::Link(l) => Some(((l.kind, l.item_id.to_string()), l.group_id)),
        _ => None,
    })
    .await?
    .into_iter()
    .collect())
}

/// The operations `POST /api/v1/batch` would take for the same change, so that the API's
/// checks and rules apply to the form.
fn operations(inv: &Inventory, e: &Edits) -> Vec<Value> {
    let mut ops = vec![];
    for (kind, item_id, group) in &e.links {
        let link = format!("{}/{item_id}", kind.as_str());
        ops.push(match group {
            Some(group_id) => json!({
                "op": "put", "collection": "links", "id": link, "body": {"group_id": group_id},
            }),
            None => json!({"op": "delete", "collection": "links", "id": link}),
        });
    }
    let connection = inv.location.connection_id.as_ref();
    for (door, name, role) in &e.doors {
        let door_id = match inv.doors.get(door) {
            Some(d) => d.id.to_string(),
            None => {
                let c = connection.map_or("door", |c| c.as_str());
                format!("{c}:door:{door}")
            }
        };
        ops.push(json!({
            "op": "put",
            "collection": "doors",
            "id": door_id,
            "body": {
                "location_id": inv.location.id,
                "name": name,
                "presence_role": role_value(*role),
                "provider_door_id": door,
            },
        }));
    }
    ops
}

pub(super) async fn apply(
    Extension(ctx): Extension<Ctx>,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    let inv = inventory(&st, &id).await?;
    let f = Form::parse(&body);
    let e = match edits(&st, &inv, &f).await {
        Ok(e) => e,
        Err(msg) => return location_page(&st, &ctx, &inv, None, Some(msg)).await,
    };
    let ops = operations(&inv, &e);
    if ops.is_empty() {
        return see_other(&format!("/admin/locations/{id}?done=nothing"));
    }
    if let Err(err) = crate::batch::apply_form(&st, ops).await {
        return location_page(&st, &ctx, &inv, None, Some(refusal(err)?)).await;
    }
    see_other(&format!("/admin/locations/{id}?done=saved"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorsync_engine::plan::PlannedChange;

    fn change(customer: &str, group: &str, op: &'static str) -> PlannedChange {
        PlannedChange {
            customer_id: Id::parse(customer).unwrap(),
            group_id: group.into(),
            op,
        }
    }

    #[test]
    fn the_plan_reads_as_a_sentence() {
        let mut changes = vec![];
        for i in 0..14 {
            changes.push(change(&format!("c{i}"), "2", "add"));
        }
        for i in 0..3 {
            changes.push(change(&format!("d{i}"), "5", "remove"));
        }
        for i in 0..8 {
            changes.push(change(&format!("e{i}"), "6", "remove"));
        }
        let p = Preview {
            at: "2026-12-04T09:00:00Z".parse().unwrap(),
            customers_considered: 40,
            adds: 14,
            removes: 11,
            releases: 0,
            changes,
        };
        let names = [
            ("2", "Meeting Room 2"),
            ("5", "Office 5"),
            ("6", "Office 6"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let managed = ["2", "5"].into_iter().map(str::to_owned).collect();
        assert_eq!(
            plan_in_words(&p, &names, &managed),
            "Saving adds 14 customers to Meeting Room 2 now, removes 3 from Office 5, and takes the 8 people doorsync put in Office 6 out of it, since nothing controls it any more."
        );
        let none = Preview {
            changes: vec![],
            ..p
        };
        assert_eq!(
            plan_in_words(&none, &names, &managed),
            "Saving changes nobody's access now (40 customers considered)."
        );
    }
}

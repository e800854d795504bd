//! The drift audit: read every managed group's members from the provider and repair what the
//! mirror did not expect. Members who belong to no subject and are not exempt are removed at once.
//! A known subject is only flagged: its next reconcile, which holds the subject's lease and is
//! the only writer of its mirror, reads its user back from the provider and decides.

use crate::provider::{Provider, ProviderError, RemoteEntry};
use crate::reconcile::{ReconcileError, Reconciler, on};
use doorsync_core::{Connection, Id, Subject};
use doorsync_store::{DirectoryEntry, Kind, Record};
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditReport {
    pub connection_id: String,
    pub groups: usize,
    pub members_seen: usize,
    /// Provider users in a managed group who serve no subject: removed.
    pub strangers_removed: usize,
    /// Subjects found in a group the mirror did not have them in.
    pub unexpected_members: usize,
    /// Subjects missing from a group the mirror had them in.
    pub missing_members: usize,
    /// Provider calls the audit made.
    pub calls: u64,
    /// Groups the audit could not read or repair, and why.
    pub errors: Vec<String>,
}

/// The subject a provider user's `externalId` names, if it names one that exists.
async fn subject_of_external_id(
    r: &Reconciler,
    external_id: &str,
) -> Result<Option<Subject>, ReconcileError> {
    let Some(subject) = Subject::from_external_id(external_id) else {
        return Ok(None);
    };
    let (kind, id): (Kind, &Id) = match &subject {
        Subject::Customer(id) => (Kind::Customer, id),
        Subject::Visitor(id) => (Kind::Visitor, id),
    };
    if r.store.get(kind, id.as_str()).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(subject))
}

pub async fn audit_connection(
    r: &Reconciler,
    connection: &Connection,
) -> Result<AuditReport, ReconcileError> {
    let c = connection.id.as_str();
    let provider = r.providers.provider(connection).map_err(on(c))?;
    let before = provider.calls();
    let managed = r.store.managed_groups(c).await?;
    let mut report = AuditReport {
        connection_id: c.to_owned(),
        groups: managed.len(),
        ..Default::default()
    };
    let mut due = BTreeSet::new();
    for g in &managed {
        match audit_group(r, connection, provider.as_ref(), g, &mut report, &mut due).await {
            Ok(()) => {}
            // A provider that is down: the rest of the audit would fail the same way.
            Err(ReconcileError::Provider { error, .. }) if error.kind.pauses_connection() => {
                return Err(on(c)(error));
            }
            Err(ReconcileError::Store(e)) => return Err(e.into()),
            // One group failing (deleted in Brivo, say) must not stop the audit of the others.
            Err(e) => report.errors.push(format!("group {g}: {e}")),
        }
    }
    let now = r.clock.now();
    for s in &due {
        r.store.mark_drift(s, now).await?;
    }
    r.metrics
        .count_drift("stranger_removed", report.strangers_removed as u64);
    r.metrics
        .count_drift("unexpected_member", report.unexpected_members as u64);
    r.metrics
        .count_drift("missing_member", report.missing_members as u64);
    report.calls = provider.calls().saturating_sub(before);
    Ok(report)
}

async fn audit_group(
    r: &Reconciler,
    connection: &Connection,
    provider: &dyn Provider,
    g: &str,
    report: &mut AuditReport,
    due: &mut BTreeSet<Subject>,
) -> Result<(), ReconcileError> {
    let c = connection.id.as_str();
    let exempt: BTreeSet<&String> = connection.exempt_user_ids.iter().collect();
    let remote = provider.group_members(g).await.map_err(on(c))?;
    report.members_seen += remote.len();
    let mirror = r.store.mirror_group_members(c, g).await?;
    let remote_ids: BTreeSet<&String> = remote.iter().map(|u| &u.id).collect();
    for u in &remote {
        if mirror.contains_key(&u.id) || exempt.contains(&u.id) {
            continue;
        }
        let known = match r.store.mirror_subject_of_user(c, &u.id).await? {
            Some(s) => Some(s),
            None => match &u.external_id {
                Some(e) => subject_of_external_id(r, e).await?,
                None => None,
            },
        };
        let serving = match &known {
            Some(s) => r.store.mirror_user(c, s).await?,
            None => None,
        };
        let flag = match (known, serving) {
            // The subject's own user, in a group the mirror did not have: the reconciler (which
            // knows the entitlements) reads it back and keeps or removes it.
            (Some(subject), Some(m)) if m.user_id == u.id => {
                Some((subject, format!("user {} is in the group", u.id)))
            }
            // A user carrying a subject's id whom the mirror has never linked (made by an earlier
            // integration, say): the subject's reconcile adopts it.
            (Some(subject), None) => Some((subject, format!("user {} to adopt", u.id))),
            _ => None,
        };
        match flag {
            Some((subject, detail)) => {
                report.unexpected_members += 1;
                r.audit(r.entry(
                    &subject.key(),
                    Some(g),
                    "drift_found",
                    Some("drift".into()),
                    "ok",
                    0,
                    Some(detail),
                ))
                .await;
                due.insert(subject);
            }
            // Nobody's user, or a second user of a subject that already has one: remove.
            None => {
                let t = std::time::Instant::now();
                let res = provider.remove_from_group(g, &u.id).await;
                let outcome = match &res {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("error: {e}"),
                };
                let detail = Some(format!(
                    "provider user {} (externalId {:?}) serves no subject",
                    u.id, u.external_id
                ));
                let ms = t.elapsed().as_millis() as i64;
                let who = format!("provider_user:{}", u.id);
                r.audit(r.entry(
                    &who,
                    Some(g),
                    "remove_from_group",
                    Some("drift: not entitled".into()),
                    &outcome,
                    ms,
                    detail,
                ))
                .await;
                res.map_err(on(c))?;
                r.metrics.count_change("remove_from_group");
                report.strangers_removed += 1;
            }
        }
    }
    for (user_id, key) in &mirror {
        if remote_ids.contains(user_id) {
            continue;
        }
        let Some(subject) = Subject::parse_key(key) else {
            continue;
        };
        report.missing_members += 1;
        let detail = Some(format!("user {user_id} is missing from the group"));
        r.audit(r.entry(
            &subject.key(),
            Some(g),
            "drift_found",
            Some("drift".into()),
            "ok",
            0,
            detail,
        ))
        .await;
        due.insert(subject);
    }
    Ok(())
}

fn entries(list: Vec<RemoteEntry>) -> Vec<DirectoryEntry> {
    list.into_iter()
        .map(|e| DirectoryEntry {
            provider_id: e.id,
            name: e.name,
            parent_id: e.parent_id,
        })
        .collect()
}

/// Reads the connection's groups, sites and doors into the store.
pub async fn sync_directory(
    r: &Reconciler,
    connection: &Connection,
) -> Result<(usize, usize, usize), ReconcileError> {
    let c = connection.id.as_str();
    let provider = r.providers.provider(connection).map_err(on(c))?;
    let read = async {
        let groups = provider.groups().await?;
        let sites = provider.sites().await?;
        let doors = provider.doors().await?;
        Ok::<_, ProviderError>((groups, sites, doors))
    };
    let (groups, sites, doors) = read.await.map_err(on(c))?;
    let counts = (groups.len(), sites.len(), doors.len());
    let (groups, sites, doors) = (entries(groups), entries(sites), entries(doors));
    r.store
        .replace_directories(c, &[("group", &groups), ("site", &sites), ("door", &doors)])
        .await?;
    sync_doors(r, connection, &doors).await?;
    // The doors of the groups doorsync manages: the member app lists and opens these.
    let listed: BTreeSet<&str> = groups.iter().map(|g| g.provider_id.as_str()).collect();
    let mut managed = BTreeSet::new();
    for rec in r.store.list_all(Kind::Link).await? {
        if let Record::Link(l) = rec
            && listed.contains(l.group_id.as_str())
        {
            managed.insert(l.group_id);
        }
    }
    let mut group_doors = std::collections::BTreeMap::new();
    for g in managed {
        let doors = provider.group_doors(&g).await.map_err(on(c))?;
        group_doors.insert(g, doors);
    }
    r.store.replace_group_doors(c, &group_doors).await?;
    Ok(counts)
}

/// Keeps a `doors` record for every door of a site that one of the connection's locations is:
/// a new door comes with no presence role, a renamed one takes its new name, and one the
/// provider no longer lists is marked gone (never deleted: its events stay explained).
pub(crate) async fn sync_doors(
    r: &Reconciler,
    connection: &Connection,
    doors: &[DirectoryEntry],
) -> Result<(), ReconcileError> {
    let now = r.clock.now();
    let mut locations = std::collections::BTreeMap::new();
    let mut existing = std::collections::BTreeMap::new();
    for kind in [Kind::Location, Kind::Door] {
        for rec in r.store.list_all(kind).await? {
            match rec {
                Record::Location(l) if l.connection_id.as_ref() == Some(&connection.id) => {
                    if let Some(site) = l.site_id.clone() {
                        locations.insert(site, l.id.clone());
                    }
                }
                Record::Door(d) => {
                    if let Some(p) = d.provider_door_id.clone() {
                        existing.insert(p, d);
                    }
                }
                _ => {}
            }
        }
    }
    let ours: BTreeSet<Id> = locations.values().cloned().collect();
    let mut ops = vec![];
    let listed: BTreeSet<&str> = doors.iter().map(|d| d.provider_id.as_str()).collect();
    for d in doors {
        let Some(location) = d.parent_id.as_ref().and_then(|s| locations.get(s)) else {
            continue;
        };
        let door = match existing.get(&d.provider_id) {
            Some(old) => {
                if old.name == d.name && old.gone_at.is_none() && &old.location_id == location {
                    continue;
                }
                doorsync_core::Door {
                    name: d.name.clone(),
                    location_id: location.clone(),
                    gone_at: None,
                    ..old.clone()
                }
            }
            None => {
                let Ok(id) = Id::parse(&format!("{}:door:{}", connection.id, d.provider_id)) else {
                    continue;
                };
                doorsync_core::Door {
                    id,
                    location_id: location.clone(),
                    name: d.name.clone(),
                    presence_role: doorsync_core::PresenceRole::None,
                    provider_door_id: Some(d.provider_id.clone()),
                    gone_at: None,
                }
            }
        };
        ops.push(doorsync_store::BatchOp::Put(Box::new(Record::Door(door))));
    }
    for (p, d) in &existing {
        if ours.contains(&d.location_id) && d.gone_at.is_none() && !listed.contains(p.as_str()) {
            let gone = doorsync_core::Door {
                gone_at: Some(now),
                ..d.clone()
            };
            ops.push(doorsync_store::BatchOp::Put(Box::new(Record::Door(gone))));
        }
    }
    if !ops.is_empty() {
        for result in r.store.apply_batch(ops, now, false).await? {
            if let Err(e) = result {
                tracing::warn!(connection = %connection.id, error = %e, "keeping a door failed");
            }
        }
    }
    Ok(())
}

/// Whether the record is a connection the engine should work for.
pub fn enabled(record: &Record) -> Option<&Connection> {
    match record {
        Record::Connection(c) if c.enabled => Some(c),
        _ => None,
    }
}

//! `POST /api/v1/plan`: what a change of links or buffers would add and remove right now,
//! computed from the same rules the reconciler uses and applying nothing.

use doorsync_core::*;
use doorsync_store::{Record, Store, StoreError};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::collections::BTreeSet;

/// One proposed change.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Link an item to a group, or unlink it (`None`).
    Link {
        kind: LinkKind,
        item_id: Id,
        group_id: Option<ProviderId>,
    },
    /// New lead and lag for a location (`None` keeps the current value).
    Location {
        id: Id,
        lead: Option<SignedDuration>,
        lag: Option<SignedDuration>,
    },
    /// New lead and lag for a resource.
    Resource {
        id: Id,
        lead: Option<SignedDuration>,
        lag: Option<SignedDuration>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlannedChange {
    #[schema(value_type = String)]
    pub customer_id: Id,
    #[schema(value_type = String)]
    pub group_id: ProviderId,
    /// `add`, `remove`, or `release`: the group would no longer be managed at all and doorsync
    /// did not add this member, so it would leave the membership as it is. A member doorsync
    /// itself added to a group nothing manages any more is a `remove`.
    pub op: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub at: Timestamp,
    pub customers_considered: usize,
    pub adds: usize,
    pub removes: usize,
    pub releases: usize,
    pub changes: Vec<PlannedChange>,
}

/// Groups that would still be managed after the changes: linked to some item, or visitor groups.
async fn managed_after(
    store: &dyn Store,
    changes: &[Change],
) -> Result<BTreeSet<ProviderId>, StoreError> {
    let mut links = std::collections::BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list(doorsync_store::Kind::Link, after.as_deref(), 500)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.key());
        for r in page {
            if let Record::Link(l) = r {
                links.insert((l.kind, l.item_id), l.group_id);
            }
        }
    }
    for change in changes {
        if let Change::Link {
            kind,
            item_id,
            group_id,
        } = change
        {
            match group_id {
                Some(g) => links.insert((*kind, item_id.clone()), g.clone()),
                None => links.remove(&(*kind, item_id.clone())),
            };
        }
    }
    let mut managed: BTreeSet<ProviderId> = links.into_values().collect();
    for r in store
        .list(doorsync_store::Kind::Connection, None, 500)
        .await?
    {
        if let Record::Connection(c) = r {
            managed.extend(c.visitor_group_ids);
        }
    }
    Ok(managed)
}

fn apply(catalog: &mut Catalog, change: &Change) {
    match change {
        Change::Link {
            kind,
            item_id,
            group_id,
        } => match group_id {
            Some(g) => {
                let present = match kind {
                    LinkKind::Pass => catalog.passes.contains_key(item_id),
                    LinkKind::Resource => catalog.resources.contains_key(item_id),
                    LinkKind::Desk => catalog.desks.contains_key(item_id),
                };
                if present {
                    catalog.links.insert((*kind, item_id.clone()), g.clone());
                }
            }
            None => {
                catalog.links.remove(&(*kind, item_id.clone()));
            }
        },
        Change::Location { id, lead, lag } => {
            if let Some(l) = catalog.locations.get_mut(id) {
                l.lead = lead.unwrap_or(l.lead);
                l.lag = lag.unwrap_or(l.lag);
            }
        }
        Change::Resource { id, lead, lag } => {
            if let Some(r) = catalog.resources.get_mut(id) {
                r.lead = lead.or(r.lead);
                r.lag = lag.or(r.lag);
            }
        }
    }
}

/// The record whose reach finds the customers a change can touch.
fn probe(change: &Change) -> Record {
    match change {
        Change::Link { kind, item_id, .. } => Record::Link(Link {
            kind: *kind,
            item_id: item_id.clone(),
            group_id: String::new(),
        }),
        Change::Location { id, .. } => Record::Location(Location {
            end_access_when_days_used: false,
            id: id.clone(),
            name: String::new(),
            timezone: Zone::parse("UTC").expect("UTC exists"),
            connection_id: None,
            site_id: None,
            lead: DEFAULT_LEAD,
            lag: DEFAULT_LAG,
        }),
        Change::Resource { id, .. } => Record::Resource(Resource {
            id: id.clone(),
            location_id: id.clone(),
            name: String::new(),
            lead: None,
            lag: None,
        }),
    }
}

pub async fn preview(
    store: &dyn Store,
    now: Timestamp,
    changes: &[Change],
) -> Result<Preview, StoreError> {
    let mut customers = BTreeSet::new();
    for change in changes {
        for s in store.subjects_reached(&probe(change), now).await? {
            if let Subject::Customer(id) = s {
                customers.insert(id);
            }
        }
    }
    let managed = managed_after(store, changes).await?;
    let mut out = Preview {
        at: now,
        customers_considered: customers.len(),
        adds: 0,
        removes: 0,
        releases: 0,
        changes: vec![],
    };
    let customers: Vec<Id> = customers.into_iter().collect();
    for page in customers.chunks(500) {
        for inputs in store.customers_inputs(page, now).await? {
            preview_one(store, &mut out, &managed, inputs, changes, now).await?;
        }
    }
    Ok(out)
}

async fn preview_one(
    store: &dyn Store,
    out: &mut Preview,
    managed: &BTreeSet<ProviderId>,
    inputs: CustomerInputs,
    changes: &[Change],
    now: Timestamp,
) -> Result<(), StoreError> {
    let before = desired(&customer_entitlements(&inputs), now);
    let id = inputs.customer.id.clone();
    let mut changed = inputs;
    for change in changes {
        apply(&mut changed.catalog, change);
    }
    let after = desired(&customer_entitlements(&changed), now);
    for g in after.difference(&before) {
        out.adds += 1;
        out.changes.push(PlannedChange {
            customer_id: id.clone(),
            group_id: g.clone(),
            op: "add",
        });
    }
    // What doorsync itself added matters only for a group nothing would manage any more, so
    // the mirror is read only then.
    let mut added: Option<BTreeSet<ProviderId>> = None;
    for g in before.difference(&after) {
        // A group nothing manages any more is released, not emptied: doorsync stops touching
        // it, except to take out the members it put there itself.
        let op = if managed.contains(g) {
            "remove"
        } else {
            if added.is_none() {
                let subject = Subject::Customer(id.clone());
                let mut groups = BTreeSet::new();
                for c in store.mirror_connections_of(&subject).await? {
                    if let Some(m) = store.mirror_user(&c, &subject).await? {
                        groups.extend(m.added);
                    }
                }
                added = Some(groups);
            }
            if added.as_ref().is_some_and(|a| a.contains(g)) {
                "remove"
            } else {
                "release"
            }
        };
        if op == "remove" {
            out.removes += 1;
        } else {
            out.releases += 1;
        }
        out.changes.push(PlannedChange {
            customer_id: id.clone(),
            group_id: g.clone(),
            op,
        });
    }
    Ok(())
}

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    pub customer_id: Id,
    pub group_id: ProviderId,
    /// `add` or `remove`.
    pub op: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub at: Timestamp,
    pub customers_considered: usize,
    pub adds: usize,
    pub removes: usize,
    pub changes: Vec<PlannedChange>,
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
        for s in store.subjects_reached(&probe(change)).await? {
            if let Subject::Customer(id) = s {
                customers.insert(id);
            }
        }
    }
    let mut out = Preview {
        at: now,
        customers_considered: customers.len(),
        adds: 0,
        removes: 0,
        changes: vec![],
    };
    for id in customers {
        let Some(inputs) = store.customer_inputs(&id).await? else {
            continue;
        };
        let before = desired(&customer_entitlements(&inputs), now);
        let mut changed = inputs.clone();
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
        for g in before.difference(&after) {
            out.removes += 1;
            out.changes.push(PlannedChange {
                customer_id: id.clone(),
                group_id: g.clone(),
                op: "remove",
            });
        }
    }
    Ok(out)
}

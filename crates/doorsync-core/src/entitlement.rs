//! Entitlements: who may hold which group, from when, until when, and why (DESIGN.md §1).

use crate::ids::Id;
use crate::model::*;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Why a subject holds a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    Booking {
        booking_id: Id,
        resource_id: Id,
    },
    PassGrant {
        pass_grant_id: Id,
        pass_id: Id,
    },
    Contract {
        contract_id: Id,
        desk_id: Id,
    },
    TeamContract {
        contract_id: Id,
        desk_id: Id,
        team_id: Id,
        paying_member_id: Id,
    },
    Visitor {
        visitor_id: Id,
    },
}

/// The right to be in `group_id` over `[from, until)`; `until = None` is open-ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entitlement {
    pub group_id: ProviderId,
    pub from: Timestamp,
    pub until: Option<Timestamp>,
    pub cause: Cause,
}

/// The inventory a subject's inputs refer to, and how each item is linked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub locations: BTreeMap<Id, Location>,
    pub resources: BTreeMap<Id, Resource>,
    pub desks: BTreeMap<Id, Desk>,
    pub passes: BTreeMap<Id, Pass>,
    pub links: BTreeMap<(LinkKind, Id), ProviderId>,
}

/// A contract held by a team's paying member, reaching a member over one stay in the team.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamContract {
    pub membership: TeamMembership,
    pub paying_member_id: Id,
    pub contract: Contract,
}

/// Everything that decides one customer's access.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerInputs {
    pub customer: Customer,
    pub bookings: Vec<Booking>,
    pub pass_grants: Vec<PassGrant>,
    pub contracts: Vec<Contract>,
    pub team_contracts: Vec<TeamContract>,
    pub catalog: Catalog,
}

/// Everything that decides one visitor's access.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitorInputs {
    pub visitor: Visitor,
    pub location: Location,
    /// The visitor groups of the location's connection.
    pub visitor_group_ids: Vec<ProviderId>,
}

impl Entitlement {
    /// Half-open on purpose: an entitlement ending at `t` and another starting at `t` hand over
    /// without a gap or an overlap, so adjacent bookings never flap a group.
    pub fn holds_at(&self, t: Timestamp) -> bool {
        self.from <= t && self.until.is_none_or(|u| t < u)
    }

    /// An interval that holds at no instant says nothing; callers drop it rather than store it.
    pub fn is_empty(&self) -> bool {
        self.until.is_some_and(|u| u <= self.from)
    }
}

/// Every entitlement one customer's inputs give, in input order (bookings, pass grants,
/// contracts, team contracts).
///
/// Inputs that point at something the catalog does not hold (an unlinked item, a deleted
/// resource, a desk whose location is gone) give nothing: access is only ever granted on
/// positive evidence, and a half-written catalog must not crash reconciliation.
pub fn customer_entitlements(inputs: &CustomerInputs) -> Vec<Entitlement> {
    let catalog = &inputs.catalog;
    let mut out = Vec::new();

    for booking in &inputs.bookings {
        let Some((resource, location)) = catalog.resource(&booking.resource_id) else {
            continue;
        };
        let Some(group) = catalog.link(LinkKind::Resource, &resource.id) else {
            continue;
        };
        let Some(stopped) = stopped_at(
            booking.status == BookingStatus::Confirmed,
            booking.cancelled_at,
        ) else {
            continue;
        };
        let lead = resource.lead.unwrap_or(location.lead);
        let lag = resource.lag.unwrap_or(location.lag);
        // Lead and lag are real durations taken from the instant, not civil arithmetic: a
        // meeting at 02:05 just after a spring-forward jump opens its door 15 real minutes
        // earlier, not at a 01:50 that never happened.
        let from = shift(booking.start, -lead);
        let until = cut(Some(shift(booking.end, lag)), stopped);
        push(
            &mut out,
            group.clone(),
            from,
            until,
            Cause::Booking {
                booking_id: booking.id.clone(),
                resource_id: resource.id.clone(),
            },
        );
    }

    for grant in &inputs.pass_grants {
        let Some(pass) = catalog.passes.get(&grant.pass_id) else {
            continue;
        };
        if !catalog.locations.contains_key(&pass.location_id) {
            continue;
        }
        let Some(group) = catalog.link(LinkKind::Pass, &pass.id) else {
            continue;
        };
        push(
            &mut out,
            group.clone(),
            grant.valid_from,
            Some(grant.valid_until),
            Cause::PassGrant {
                pass_grant_id: grant.id.clone(),
                pass_id: pass.id.clone(),
            },
        );
    }

    for contract in &inputs.contracts {
        for (desk_id, group, from, until) in contract_intervals(contract, catalog) {
            push(
                &mut out,
                group,
                from,
                until,
                Cause::Contract {
                    contract_id: contract.id.clone(),
                    desk_id,
                },
            );
        }
    }

    for tc in &inputs.team_contracts {
        let m = &tc.membership;
        for (desk_id, group, from, until) in contract_intervals(&tc.contract, catalog) {
            // A member shares the paying member's desk only while in the team; leaving ends
            // it at once, and rejoining starts a new stay (a separate membership).
            let from = from.max(m.joined_at);
            let until = match m.left_at {
                Some(left) => cut(until, left),
                None => until,
            };
            push(
                &mut out,
                group,
                from,
                until,
                Cause::TeamContract {
                    contract_id: tc.contract.id.clone(),
                    desk_id,
                    team_id: m.team_id.clone(),
                    paying_member_id: tc.paying_member_id.clone(),
                },
            );
        }
    }

    let customer = &inputs.customer;
    if customer.status != CustomerStatus::Active {
        // Suspension and archival revoke everything from that instant, whatever was bought;
        // history before it stays so `explain` can still say what the customer had.
        let since = customer.status_since;
        out = out
            .into_iter()
            .filter_map(|mut e| {
                e.until = cut(e.until, since);
                (!e.is_empty()).then_some(e)
            })
            .collect();
    }
    out
}

/// The entitlements of one visit: each of the connection's visitor groups, from the arrival
/// (less the location's lead) until the departure (plus lag).
///
/// Without a departure the visit ends with the arrival's local day, so a forgotten check-out
/// never leaves a visitor with an open door overnight.
pub fn visitor_entitlements(inputs: &VisitorInputs) -> Vec<Entitlement> {
    let visitor = &inputs.visitor;
    let location = &inputs.location;
    let from = shift(visitor.arrival, -location.lead);
    let until = match visitor.departure {
        Some(departure) => Some(shift(departure, location.lag)),
        None => {
            let tz = location.timezone.tz();
            let day = visitor.arrival.to_zoned_datetime(tz.clone()).date();
            Some(day_after_midnight(day, &tz).unwrap_or(Timestamp::MAX))
        }
    };
    let groups: BTreeSet<&ProviderId> = inputs.visitor_group_ids.iter().collect();
    let mut out = Vec::new();
    for group in groups {
        push(
            &mut out,
            group.clone(),
            from,
            until,
            Cause::Visitor {
                visitor_id: visitor.id.clone(),
            },
        );
    }
    out
}

impl Catalog {
    fn link(&self, kind: LinkKind, item: &Id) -> Option<&ProviderId> {
        // The map is keyed by an owned pair, so a lookup needs one; ids are short.
        self.links.get(&(kind, item.clone()))
    }

    fn resource(&self, id: &Id) -> Option<(&Resource, &Location)> {
        let resource = self.resources.get(id)?;
        let location = self.locations.get(&resource.location_id)?;
        Some((resource, location))
    }
}

/// The contract's interval on each of its linked desks: local midnight of the start date to
/// local midnight after the end date, in the zone of the desk's own location (one contract may
/// span sites in different zones).
fn contract_intervals(
    contract: &Contract,
    catalog: &Catalog,
) -> Vec<(Id, ProviderId, Timestamp, Option<Timestamp>)> {
    let Some(stopped) = stopped_at(
        contract.status == ContractStatus::Active,
        contract.cancelled_at,
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for desk_id in &contract.desk_ids {
        let Some(desk) = catalog.desks.get(desk_id) else {
            continue;
        };
        let Some(location) = catalog.locations.get(&desk.location_id) else {
            continue;
        };
        let Some(group) = catalog.link(LinkKind::Desk, desk_id) else {
            continue;
        };
        let tz = location.timezone.tz();
        let Some(from) = local_midnight(contract.start_date, &tz) else {
            continue;
        };
        let until = match contract.end_date {
            // A last date with no tomorrow (9999-12-31) is as good as open-ended.
            Some(end) => day_after_midnight(end, &tz),
            None => None,
        };
        out.push((desk_id.clone(), group.clone(), from, cut(until, stopped)));
    }
    out
}

/// `None` when the item gives nothing at all; `Some(None)` when it runs its course;
/// `Some(Some(at))` when a cancellation ends it at `at`.
///
/// A cancelled item without a cancellation time is treated as never having given access: the
/// store always stamps one, so its absence means data we cannot trust to grant anything.
fn stopped_at(live: bool, cancelled_at: Option<Timestamp>) -> Option<Option<Timestamp>> {
    match (live, cancelled_at) {
        (true, _) => Some(None),
        (false, Some(at)) => Some(Some(at)),
        (false, None) => None,
    }
}

/// Civil midnight as an instant. jiff's compatible disambiguation is exactly the product rule: a
/// midnight skipped by a spring-forward resolves to the later instant (the first moment of the
/// day that exists), a repeated one to the earlier (the day starts at its first midnight).
fn local_midnight(date: Date, tz: &TimeZone) -> Option<Timestamp> {
    tz.to_timestamp(date.to_datetime(Time::midnight())).ok()
}

fn day_after_midnight(date: Date, tz: &TimeZone) -> Option<Timestamp> {
    local_midnight(date.tomorrow().ok()?, tz)
}

/// Saturates instead of failing: a lead of years on a date near the end of time is nonsense,
/// but it must not take reconciliation down.
fn shift(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.saturating_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// The earlier of an optional end and an optional cut-off; `None` on both sides is open-ended.
fn cut(until: Option<Timestamp>, at: impl Into<Option<Timestamp>>) -> Option<Timestamp> {
    match (until, at.into()) {
        (Some(u), Some(a)) => Some(u.min(a)),
        (u, a) => u.or(a),
    }
}

fn push(
    out: &mut Vec<Entitlement>,
    group_id: ProviderId,
    from: Timestamp,
    until: Option<Timestamp>,
    cause: Cause,
) {
    let e = Entitlement {
        group_id,
        from,
        until,
        cause,
    };
    if !e.is_empty() {
        out.push(e);
    }
}

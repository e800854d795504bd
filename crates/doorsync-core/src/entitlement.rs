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
    /// The local days used so far of each pass grant with a day count, in order.
    pub pass_days: BTreeMap<Id, Vec<Date>>,
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

/// When a grant with a day count whose last day is used stops opening: at the end of that local
/// day, where the location says so.
fn days_used_up(
    grant: &PassGrant,
    inputs: &CustomerInputs,
    location: &Location,
) -> Option<Timestamp> {
    let uses = grant.uses? as usize;
    if !location.end_access_when_days_used {
        return None;
    }
    let days = inputs.pass_days.get(&grant.id)?;
    let last = days.get(uses.checked_sub(1)?)?;
    let tz = location.timezone.tz();
    last.tomorrow()
        .ok()?
        .to_zoned_datetime(tz)
        .ok()
        .map(|z| z.timestamp())
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
        let until = match days_used_up(grant, inputs, &catalog.locations[&pass.location_id]) {
            Some(end) => end.min(grant.valid_until),
            None => grant.valid_until,
        };
        push(
            &mut out,
            group.clone(),
            grant.valid_from,
            Some(until),
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
/// never leaves a visitor with an open door overnight. One entitlement per distinct group, in
/// group id order, so a group listed twice in the settings is not planned twice.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Email, Zone};

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn mins(m: i64) -> SignedDuration {
        SignedDuration::from_mins(m)
    }

    fn hours(e: &Entitlement) -> f64 {
        e.until.unwrap().duration_since(e.from).as_secs_f64() / 3600.0
    }

    fn location(id_: &str, tz: &str, lead: i64, lag: i64) -> Location {
        Location {
            end_access_when_days_used: false,
            id: id(id_),
            name: id_.into(),
            timezone: Zone::parse(tz).unwrap(),
            connection_id: None,
            site_id: None,
            lead: mins(lead),
            lag: mins(lag),
        }
    }

    /// Locations `lon` (Europe/London, 15/15), `nyc` (America/New_York, 10/5), `scl`
    /// (America/Santiago), `hav` (America/Havana). Linked: resources `room`, `booth` (lead
    /// override 5), `nyroom`; desks `d-lon`, `d-nyc`, `d-scl`, `d-hav`; pass `day`. Present but
    /// unlinked: `free-room`, `free-desk`, `free-pass`. Linked but missing from the catalog:
    /// `ghost-room`, `ghost-desk`, `ghost-pass`. Present and linked, but whose location is
    /// missing: `orphan-room`, `orphan-desk`, `orphan-pass`.
    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        for l in [
            location("lon", "Europe/London", 15, 15),
            location("nyc", "America/New_York", 10, 5),
            location("scl", "America/Santiago", 15, 15),
            location("hav", "America/Havana", 15, 15),
        ] {
            c.locations.insert(l.id.clone(), l);
        }
        for (rid, loc, lead) in [
            ("room", "lon", None),
            ("booth", "lon", Some(mins(5))),
            ("nyroom", "nyc", None),
            ("free-room", "lon", None),
            ("orphan-room", "gone", None),
        ] {
            c.resources.insert(
                id(rid),
                Resource {
                    id: id(rid),
                    location_id: id(loc),
                    name: rid.into(),
                    lead,
                    lag: None,
                },
            );
        }
        for (did, loc) in [
            ("d-lon", "lon"),
            ("d-nyc", "nyc"),
            ("d-scl", "scl"),
            ("d-hav", "hav"),
            ("free-desk", "lon"),
            ("orphan-desk", "gone"),
        ] {
            c.desks.insert(
                id(did),
                Desk {
                    id: id(did),
                    location_id: id(loc),
                    name: did.into(),
                    kind: DeskKind::Desk,
                },
            );
        }
        for (pid, loc) in [
            ("day", "lon"),
            ("free-pass", "lon"),
            ("orphan-pass", "gone"),
        ] {
            c.passes.insert(
                id(pid),
                Pass {
                    id: id(pid),
                    location_id: id(loc),
                    name: pid.into(),
                },
            );
        }
        for (kind, item) in [
            (LinkKind::Resource, "room"),
            (LinkKind::Resource, "booth"),
            (LinkKind::Resource, "nyroom"),
            (LinkKind::Resource, "ghost-room"),
            (LinkKind::Resource, "orphan-room"),
            (LinkKind::Desk, "d-lon"),
            (LinkKind::Desk, "d-nyc"),
            (LinkKind::Desk, "d-scl"),
            (LinkKind::Desk, "d-hav"),
            (LinkKind::Desk, "ghost-desk"),
            (LinkKind::Desk, "orphan-desk"),
            (LinkKind::Pass, "day"),
            (LinkKind::Pass, "ghost-pass"),
            (LinkKind::Pass, "orphan-pass"),
        ] {
            c.links.insert((kind, id(item)), format!("g-{item}"));
        }
        c
    }

    fn inputs() -> CustomerInputs {
        CustomerInputs {
            pass_days: Default::default(),
            customer: Customer {
                id: id("c1"),
                name: "Ana".into(),
                email: Email::parse("ana@example.com").unwrap(),
                phone: None,
                status: CustomerStatus::Active,
                status_since: ts("2020-01-01T00:00:00Z"),
            },
            bookings: vec![],
            pass_grants: vec![],
            contracts: vec![],
            team_contracts: vec![],
            catalog: catalog(),
        }
    }

    fn booking(bid: &str, resource: &str, start: &str, end: &str) -> Booking {
        Booking {
            id: id(bid),
            customer_id: id("c1"),
            resource_id: id(resource),
            start: ts(start),
            end: ts(end),
            status: BookingStatus::Confirmed,
            cancelled_at: None,
        }
    }

    fn cancelled(mut b: Booking, at: &str) -> Booking {
        b.status = BookingStatus::Cancelled;
        b.cancelled_at = Some(ts(at));
        b
    }

    fn contract(cid: &str, desks: &[&str], start: &str, end: Option<&str>) -> Contract {
        Contract {
            id: id(cid),
            customer_id: id("c1"),
            desk_ids: desks.iter().map(|d| id(d)).collect(),
            start_date: date(start),
            end_date: end.map(date),
            status: ContractStatus::Active,
            cancelled_at: None,
        }
    }

    fn grant(gid: &str, pass: &str, from: &str, until: &str) -> PassGrant {
        PassGrant {
            id: id(gid),
            customer_id: id("c1"),
            pass_id: id(pass),
            valid_from: ts(from),
            valid_until: ts(until),
            uses: None,
        }
    }

    fn team_contract(c: Contract, joined: &str, left: Option<&str>) -> TeamContract {
        TeamContract {
            membership: TeamMembership {
                team_id: id("t1"),
                customer_id: id("c1"),
                joined_at: ts(joined),
                left_at: left.map(ts),
            },
            paying_member_id: id("payer"),
            contract: c,
        }
    }

    /// (group, from, until) of each entitlement, for compact assertions.
    fn spans(ents: &[Entitlement]) -> Vec<(&str, Timestamp, Option<Timestamp>)> {
        ents.iter()
            .map(|e| (e.group_id.as_str(), e.from, e.until))
            .collect()
    }

    fn one(ents: Vec<Entitlement>) -> Entitlement {
        assert_eq!(ents.len(), 1, "{ents:#?}");
        ents.into_iter().next().unwrap()
    }

    // --- bookings ---

    #[test]
    fn booking_opens_lead_before_and_closes_lag_after_with_location_defaults() {
        let mut i = inputs();
        i.bookings.push(booking(
            "b1",
            "room",
            "2026-01-10T10:00:00Z",
            "2026-01-10T11:00:00Z",
        ));
        let e = one(customer_entitlements(&i));
        assert_eq!(e.group_id, "g-room");
        assert_eq!(e.from, ts("2026-01-10T09:45:00Z"));
        assert_eq!(e.until, Some(ts("2026-01-10T11:15:00Z")));
        assert_eq!(
            e.cause,
            Cause::Booking {
                booking_id: id("b1"),
                resource_id: id("room")
            }
        );
    }

    #[test]
    fn resource_overrides_win_and_missing_ones_fall_back_to_the_location() {
        let mut i = inputs();
        // booth: lead overridden to 5 min, lag left to the location's 15.
        i.bookings.push(booking(
            "b1",
            "booth",
            "2026-01-10T10:00:00Z",
            "2026-01-10T11:00:00Z",
        ));
        // nyroom: New York's own defaults, 10 and 5.
        i.bookings.push(booking(
            "b2",
            "nyroom",
            "2026-01-10T15:00:00Z",
            "2026-01-10T16:00:00Z",
        ));
        assert_eq!(
            spans(&customer_entitlements(&i)),
            [
                (
                    "g-booth",
                    ts("2026-01-10T09:55:00Z"),
                    Some(ts("2026-01-10T11:15:00Z"))
                ),
                (
                    "g-nyroom",
                    ts("2026-01-10T14:50:00Z"),
                    Some(ts("2026-01-10T16:05:00Z"))
                ),
            ]
        );
    }

    #[test]
    fn booking_cancelled_before_it_opens_gives_nothing() {
        let mut i = inputs();
        let b = booking("b1", "room", "2026-01-10T10:00:00Z", "2026-01-10T11:00:00Z");
        i.bookings
            .push(cancelled(b.clone(), "2026-01-09T12:00:00Z"));
        // Cancelled exactly as the lead opens the door: an empty interval, also nothing.
        i.bookings.push(cancelled(b, "2026-01-10T09:45:00Z"));
        assert!(customer_entitlements(&i).is_empty());
    }

    #[test]
    fn booking_cancelled_during_ends_at_the_cancellation() {
        let mut i = inputs();
        let b = booking("b1", "room", "2026-01-10T10:00:00Z", "2026-01-10T11:00:00Z");
        i.bookings
            .push(cancelled(b.clone(), "2026-01-10T10:20:00Z"));
        // Cancelled after its end (a correction of records): the lag still runs its course.
        i.bookings.push(cancelled(b, "2026-01-11T00:00:00Z"));
        assert_eq!(
            spans(&customer_entitlements(&i)),
            [
                (
                    "g-room",
                    ts("2026-01-10T09:45:00Z"),
                    Some(ts("2026-01-10T10:20:00Z"))
                ),
                (
                    "g-room",
                    ts("2026-01-10T09:45:00Z"),
                    Some(ts("2026-01-10T11:15:00Z"))
                ),
            ]
        );
    }

    #[test]
    fn cancelled_booking_without_a_cancellation_time_gives_nothing() {
        let mut i = inputs();
        let mut b = booking("b1", "room", "2026-01-10T10:00:00Z", "2026-01-10T11:00:00Z");
        b.status = BookingStatus::Cancelled;
        i.bookings.push(b);
        assert!(customer_entitlements(&i).is_empty());
    }

    #[test]
    fn inverted_booking_gives_nothing() {
        let mut i = inputs();
        // Ends an hour before it starts: lead and lag cannot rescue it.
        i.bookings.push(booking(
            "b1",
            "room",
            "2026-01-10T11:00:00Z",
            "2026-01-10T10:00:00Z",
        ));
        assert!(customer_entitlements(&i).is_empty());
    }

    // --- pass grants ---

    #[test]
    fn pass_grant_runs_from_valid_from_to_valid_until() {
        let mut i = inputs();
        i.pass_grants.push(grant(
            "pg1",
            "day",
            "2026-03-01T00:00:00Z",
            "2026-04-01T00:00:00Z",
        ));
        i.pass_grants.push(grant(
            "pg2",
            "day",
            "2026-05-01T00:00:00Z",
            "2026-05-01T00:00:00Z",
        ));
        let e = one(customer_entitlements(&i));
        assert_eq!(
            spans(std::slice::from_ref(&e)),
            [(
                "g-day",
                ts("2026-03-01T00:00:00Z"),
                Some(ts("2026-04-01T00:00:00Z"))
            )]
        );
        assert_eq!(
            e.cause,
            Cause::PassGrant {
                pass_grant_id: id("pg1"),
                pass_id: id("day")
            }
        );
    }

    #[test]
    fn a_used_up_grant_ends_at_the_local_midnight_of_its_last_day_where_the_location_says_so() {
        let mut i = inputs();
        let mut g = grant("pg1", "day", "2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z");
        g.uses = Some(2);
        i.pass_grants.push(g);
        i.pass_days
            .insert(id("pg1"), vec![date("2026-07-02"), date("2026-07-09")]);
        let until = |i: &CustomerInputs| one(customer_entitlements(i)).until;
        assert_eq!(
            until(&i),
            Some(ts("2026-08-01T00:00:00Z")),
            "the location keeps it open"
        );
        i.catalog
            .locations
            .get_mut(&id("lon"))
            .unwrap()
            .end_access_when_days_used = true;
        // 10 July begins at 23:00 UTC on the 9th in London (summer time).
        assert_eq!(until(&i), Some(ts("2026-07-09T23:00:00Z")));
        i.pass_days.get_mut(&id("pg1")).unwrap().pop();
        assert_eq!(until(&i), Some(ts("2026-08-01T00:00:00Z")), "a day is left");
    }

    // --- contracts ---

    #[test]
    fn contract_runs_from_local_midnight_to_midnight_after_the_end_date() {
        let mut i = inputs();
        // July in London is BST (UTC+1): midnight is 23:00 UTC the day before.
        i.contracts
            .push(contract("k1", &["d-lon"], "2026-07-01", Some("2026-07-31")));
        let e = one(customer_entitlements(&i));
        assert_eq!(e.group_id, "g-d-lon");
        assert_eq!(e.from, ts("2026-06-30T23:00:00Z"));
        assert_eq!(e.until, Some(ts("2026-07-31T23:00:00Z")));
        assert_eq!(
            e.cause,
            Cause::Contract {
                contract_id: id("k1"),
                desk_id: id("d-lon")
            }
        );
    }

    #[test]
    fn open_ended_contract_never_ends() {
        let mut i = inputs();
        i.contracts
            .push(contract("k1", &["d-lon"], "2026-01-05", None));
        let e = one(customer_entitlements(&i));
        assert_eq!(e.from, ts("2026-01-05T00:00:00Z"));
        assert_eq!(e.until, None);
    }

    #[test]
    fn each_desk_uses_its_own_location_zone_and_unlinked_desks_give_nothing() {
        let mut i = inputs();
        i.contracts.push(contract(
            "k1",
            &["d-lon", "free-desk", "d-nyc", "ghost-desk", "orphan-desk"],
            "2026-01-05",
            Some("2026-01-05"),
        ));
        assert_eq!(
            spans(&customer_entitlements(&i)),
            [
                (
                    "g-d-lon",
                    ts("2026-01-05T00:00:00Z"),
                    Some(ts("2026-01-06T00:00:00Z"))
                ),
                (
                    "g-d-nyc",
                    ts("2026-01-05T05:00:00Z"),
                    Some(ts("2026-01-06T05:00:00Z"))
                ),
            ]
        );
    }

    #[test]
    fn cancelled_contract_ends_at_the_cancellation() {
        let mut i = inputs();
        let mut k = contract("k1", &["d-lon"], "2026-01-05", None);
        k.status = ContractStatus::Cancelled;
        k.cancelled_at = Some(ts("2026-02-10T14:30:00Z"));
        i.contracts.push(k.clone());
        // Cancelled before it started: nothing.
        k.cancelled_at = Some(ts("2026-01-01T00:00:00Z"));
        i.contracts.push(k.clone());
        // Cancelled without a time: nothing.
        k.cancelled_at = None;
        i.contracts.push(k);
        let e = one(customer_entitlements(&i));
        assert_eq!(e.from, ts("2026-01-05T00:00:00Z"));
        assert_eq!(e.until, Some(ts("2026-02-10T14:30:00Z")));
    }

    #[test]
    fn contract_ending_before_it_starts_gives_nothing() {
        let mut i = inputs();
        i.contracts
            .push(contract("k1", &["d-lon"], "2026-01-05", Some("2026-01-04")));
        assert!(customer_entitlements(&i).is_empty());
    }

    // --- teams ---

    #[test]
    fn team_contract_holds_only_while_in_the_team() {
        let mut i = inputs();
        let k = contract("k1", &["d-lon"], "2026-01-05", Some("2026-01-31"));
        // Joined mid-contract, left mid-contract.
        i.team_contracts.push(team_contract(
            k.clone(),
            "2026-01-10T09:00:00Z",
            Some("2026-01-20T17:00:00Z"),
        ));
        // A second stay: joined before the contract started, still there.
        i.team_contracts
            .push(team_contract(k.clone(), "2026-01-25T08:00:00Z", None));
        // A stay entirely before the contract: nothing.
        i.team_contracts.push(team_contract(
            k,
            "2025-12-01T00:00:00Z",
            Some("2026-01-02T00:00:00Z"),
        ));
        let ents = customer_entitlements(&i);
        assert_eq!(
            spans(&ents),
            [
                (
                    "g-d-lon",
                    ts("2026-01-10T09:00:00Z"),
                    Some(ts("2026-01-20T17:00:00Z"))
                ),
                (
                    "g-d-lon",
                    ts("2026-01-25T08:00:00Z"),
                    Some(ts("2026-02-01T00:00:00Z"))
                ),
            ]
        );
        assert_eq!(
            ents[0].cause,
            Cause::TeamContract {
                contract_id: id("k1"),
                desk_id: id("d-lon"),
                team_id: id("t1"),
                paying_member_id: id("payer"),
            }
        );
    }

    #[test]
    fn team_member_joining_before_the_contract_starts_with_it() {
        let mut i = inputs();
        let k = contract("k1", &["d-lon"], "2026-01-05", None);
        i.team_contracts
            .push(team_contract(k, "2025-06-01T00:00:00Z", None));
        let e = one(customer_entitlements(&i));
        assert_eq!(e.from, ts("2026-01-05T00:00:00Z"));
        assert_eq!(e.until, None);
    }

    #[test]
    fn cancelled_team_contract_ends_for_members_too() {
        let mut i = inputs();
        let mut k = contract("k1", &["d-lon"], "2026-01-05", None);
        k.status = ContractStatus::Cancelled;
        k.cancelled_at = Some(ts("2026-01-15T12:00:00Z"));
        i.team_contracts
            .push(team_contract(k, "2026-01-10T00:00:00Z", None));
        let e = one(customer_entitlements(&i));
        assert_eq!(e.from, ts("2026-01-10T00:00:00Z"));
        assert_eq!(e.until, Some(ts("2026-01-15T12:00:00Z")));
    }

    // --- customer status ---

    fn everything() -> CustomerInputs {
        let mut i = inputs();
        i.bookings.push(booking(
            "b1",
            "room",
            "2026-01-10T10:00:00Z",
            "2026-01-10T11:00:00Z",
        ));
        i.bookings.push(booking(
            "b2",
            "room",
            "2026-03-10T10:00:00Z",
            "2026-03-10T11:00:00Z",
        ));
        i.pass_grants.push(grant(
            "pg1",
            "day",
            "2026-01-01T00:00:00Z",
            "2026-12-31T00:00:00Z",
        ));
        i.contracts
            .push(contract("k1", &["d-lon"], "2026-01-05", None));
        i.team_contracts.push(team_contract(
            contract("k2", &["d-nyc"], "2026-01-05", None),
            "2026-01-01T00:00:00Z",
            None,
        ));
        i
    }

    #[test]
    fn suspension_and_archival_end_everything_at_the_status_change() {
        for status in [CustomerStatus::Suspended, CustomerStatus::Archived] {
            let mut i = everything();
            i.customer.status = status;
            i.customer.status_since = ts("2026-02-01T12:00:00Z");
            let ents = customer_entitlements(&i);
            // b1 ended before; b2 would start after and is gone; the rest are cut.
            assert_eq!(
                spans(&ents),
                [
                    (
                        "g-room",
                        ts("2026-01-10T09:45:00Z"),
                        Some(ts("2026-01-10T11:15:00Z"))
                    ),
                    (
                        "g-day",
                        ts("2026-01-01T00:00:00Z"),
                        Some(ts("2026-02-01T12:00:00Z"))
                    ),
                    (
                        "g-d-lon",
                        ts("2026-01-05T00:00:00Z"),
                        Some(ts("2026-02-01T12:00:00Z"))
                    ),
                    (
                        "g-d-nyc",
                        ts("2026-01-05T05:00:00Z"),
                        Some(ts("2026-02-01T12:00:00Z"))
                    ),
                ],
                "{status:?}"
            );
        }
    }

    #[test]
    fn an_active_customer_is_not_cut_at_status_since() {
        let mut i = everything();
        i.customer.status_since = ts("2026-02-01T12:00:00Z");
        let ents = customer_entitlements(&i);
        assert_eq!(ents.len(), 5);
        assert!(ents.iter().any(|e| e.until.is_none()));
    }

    // --- missing and unlinked ---

    #[test]
    fn unlinked_items_give_nothing() {
        let mut i = inputs();
        i.bookings.push(booking(
            "b1",
            "free-room",
            "2026-01-10T10:00:00Z",
            "2026-01-10T11:00:00Z",
        ));
        i.pass_grants.push(grant(
            "pg1",
            "free-pass",
            "2026-01-01T00:00:00Z",
            "2026-02-01T00:00:00Z",
        ));
        i.contracts
            .push(contract("k1", &["free-desk"], "2026-01-05", None));
        i.team_contracts.push(team_contract(
            contract("k2", &["free-desk"], "2026-01-05", None),
            "2026-01-01T00:00:00Z",
            None,
        ));
        assert!(customer_entitlements(&i).is_empty());
    }

    #[test]
    fn items_missing_from_the_catalog_give_nothing() {
        let mut i = inputs();
        for r in ["ghost-room", "orphan-room"] {
            i.bookings.push(booking(
                "b1",
                r,
                "2026-01-10T10:00:00Z",
                "2026-01-10T11:00:00Z",
            ));
        }
        for p in ["ghost-pass", "orphan-pass"] {
            i.pass_grants.push(grant(
                "pg1",
                p,
                "2026-01-01T00:00:00Z",
                "2026-02-01T00:00:00Z",
            ));
        }
        i.contracts.push(contract(
            "k1",
            &["ghost-desk", "orphan-desk"],
            "2026-01-05",
            None,
        ));
        i.team_contracts.push(team_contract(
            contract("k2", &["ghost-desk", "orphan-desk"], "2026-01-05", None),
            "2026-01-01T00:00:00Z",
            None,
        ));
        assert!(customer_entitlements(&i).is_empty());
    }

    // --- visitors ---

    fn visitor(arrival: &str, departure: Option<&str>, groups: &[&str]) -> VisitorInputs {
        VisitorInputs {
            visitor: Visitor {
                id: id("v1"),
                name: "Bo".into(),
                email: Email::parse("bo@example.com").unwrap(),
                host_customer_id: id("c1"),
                location_id: id("lon"),
                arrival: ts(arrival),
                departure: departure.map(ts),
            },
            location: location("lon", "Europe/London", 15, 20),
            visitor_group_ids: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn visitor_with_a_departure_gets_lead_and_lag() {
        let v = visitor(
            "2026-01-10T10:00:00Z",
            Some("2026-01-10T12:00:00Z"),
            &["vis-2", "vis-1", "vis-2"],
        );
        let ents = visitor_entitlements(&v);
        assert_eq!(
            spans(&ents),
            [
                (
                    "vis-1",
                    ts("2026-01-10T09:45:00Z"),
                    Some(ts("2026-01-10T12:20:00Z"))
                ),
                (
                    "vis-2",
                    ts("2026-01-10T09:45:00Z"),
                    Some(ts("2026-01-10T12:20:00Z"))
                ),
            ]
        );
        assert_eq!(
            ents[0].cause,
            Cause::Visitor {
                visitor_id: id("v1")
            }
        );
    }

    #[test]
    fn visitor_without_a_departure_leaves_at_the_end_of_the_local_day() {
        // 23:30 BST on 1 July is 22:30 UTC: the local day ends at 23:00 UTC, not at 00:00 UTC.
        let v = visitor("2026-07-01T22:30:00Z", None, &["vis-1"]);
        let e = one(visitor_entitlements(&v));
        assert_eq!(e.from, ts("2026-07-01T22:15:00Z"));
        assert_eq!(e.until, Some(ts("2026-07-01T23:00:00Z")));
    }

    #[test]
    fn visitor_without_groups_or_with_an_inverted_visit_gets_nothing() {
        assert!(visitor_entitlements(&visitor("2026-01-10T10:00:00Z", None, &[])).is_empty());
        let v = visitor(
            "2026-01-10T10:00:00Z",
            Some("2026-01-10T09:00:00Z"),
            &["vis-1"],
        );
        assert!(visitor_entitlements(&v).is_empty());
    }

    // --- time zones ---

    fn one_day_contract(desk: &str, day: &str) -> Entitlement {
        let mut i = inputs();
        i.contracts.push(contract("k1", &[desk], day, Some(day)));
        one(customer_entitlements(&i))
    }

    #[test]
    fn london_spring_forward_day_lasts_23_hours() {
        let e = one_day_contract("d-lon", "2026-03-29");
        assert_eq!(e.from, ts("2026-03-29T00:00:00Z"));
        assert_eq!(e.until, Some(ts("2026-03-29T23:00:00Z")));
        assert_eq!(hours(&e), 23.0);
    }

    #[test]
    fn london_fall_back_day_lasts_25_hours() {
        let e = one_day_contract("d-lon", "2026-10-25");
        assert_eq!(e.from, ts("2026-10-24T23:00:00Z"));
        assert_eq!(e.until, Some(ts("2026-10-26T00:00:00Z")));
        assert_eq!(hours(&e), 25.0);
    }

    #[test]
    fn new_york_dst_days_last_23_and_25_hours() {
        let spring = one_day_contract("d-nyc", "2026-03-08");
        assert_eq!(spring.from, ts("2026-03-08T05:00:00Z"));
        assert_eq!(hours(&spring), 23.0);
        let autumn = one_day_contract("d-nyc", "2026-11-01");
        assert_eq!(autumn.from, ts("2026-11-01T04:00:00Z"));
        assert_eq!(hours(&autumn), 25.0);
    }

    #[test]
    fn contract_starting_on_a_23_hour_day() {
        let mut i = inputs();
        i.contracts
            .push(contract("k1", &["d-lon"], "2026-03-29", Some("2026-03-30")));
        let e = one(customer_entitlements(&i));
        // Starts at 00:00 GMT, ends at 00:00 BST two days on: 23 + 24 hours.
        assert_eq!(e.from, ts("2026-03-29T00:00:00Z"));
        assert_eq!(e.until, Some(ts("2026-03-30T23:00:00Z")));
        assert_eq!(hours(&e), 47.0);
    }

    #[test]
    fn booking_just_after_the_spring_forward_jump_opens_15_real_minutes_early() {
        // London jumps from 01:00 GMT to 02:00 BST; 02:05 BST is 01:05 UTC.
        let tz = TimeZone::get("Europe/London").unwrap();
        let start = tz.to_timestamp(date("2026-03-29").at(2, 5, 0, 0)).unwrap();
        assert_eq!(start, ts("2026-03-29T01:05:00Z"));
        let mut i = inputs();
        i.bookings.push(Booking {
            start,
            end: start + SignedDuration::from_hours(1),
            ..booking("b1", "room", "2000-01-01T00:00:00Z", "2000-01-01T00:00:00Z")
        });
        let e = one(customer_entitlements(&i));
        assert_eq!(e.from, ts("2026-03-29T00:50:00Z"));
        // Locally that is 00:50 GMT, 75 minutes earlier on the wall clock.
        let local = e.from.to_zoned_datetime(tz).datetime();
        assert_eq!(local, date("2026-03-29").at(0, 50, 0, 0));
    }

    #[test]
    fn bookings_in_the_fold_each_get_their_own_lead() {
        // 01:30 happens twice in London on 25 October 2026: once in BST, once in GMT.
        let tz = TimeZone::get("Europe/London").unwrap();
        let local = date("2026-10-25").at(1, 30, 0, 0);
        let amb = tz.to_ambiguous_timestamp(local);
        let first = amb.earlier().unwrap();
        let second = amb.later().unwrap();
        assert_eq!(first, ts("2026-10-25T00:30:00Z"));
        assert_eq!(second, ts("2026-10-25T01:30:00Z"));
        // Civil 01:30 with no offset means the first one.
        assert_eq!(tz.to_timestamp(local).unwrap(), first);

        let mut i = inputs();
        for (bid, start) in [("b1", first), ("b2", second)] {
            i.bookings.push(Booking {
                start,
                end: start + SignedDuration::from_mins(30),
                ..booking(bid, "room", "2000-01-01T00:00:00Z", "2000-01-01T00:00:00Z")
            });
        }
        assert_eq!(
            spans(&customer_entitlements(&i)),
            [
                (
                    "g-room",
                    ts("2026-10-25T00:15:00Z"),
                    Some(ts("2026-10-25T01:15:00Z"))
                ),
                (
                    "g-room",
                    ts("2026-10-25T01:15:00Z"),
                    Some(ts("2026-10-25T02:15:00Z"))
                ),
            ]
        );
    }

    #[test]
    fn a_midnight_in_a_gap_resolves_to_the_later_instant() {
        // Chile springs forward at 24:00 on Saturday 5 September 2026: 00:00 on the 6th never
        // happens (clocks go from 23:59:59 -04 to 01:00 -03). The day starts at 01:00 -03.
        let tz = TimeZone::get("America/Santiago").unwrap();
        let midnight = date("2026-09-06").at(0, 0, 0, 0);
        let amb = tz.to_ambiguous_timestamp(midnight);
        assert!(amb.is_ambiguous(), "00:00 on 2026-09-06 should be in a gap");
        let later = amb.later().unwrap();
        let earlier = amb.earlier().unwrap();
        assert_eq!(later, ts("2026-09-06T04:00:00Z"));
        assert_eq!(earlier, ts("2026-09-06T03:00:00Z"));

        let e = one_day_contract("d-scl", "2026-09-06");
        assert_eq!(e.from, later);
        assert_eq!(
            e.from.to_zoned_datetime(tz.clone()).datetime(),
            date("2026-09-06").at(1, 0, 0, 0)
        );
        // The day before ends where the 6th begins: 24 hours from 00:00 -04, no gap between.
        let before = one_day_contract("d-scl", "2026-09-05");
        assert_eq!(before.until, Some(later));
        assert_eq!(hours(&before), 24.0);
        assert_eq!(hours(&e), 23.0);
    }

    #[test]
    fn a_midnight_in_a_fold_resolves_to_the_earlier_instant() {
        // Cuba falls back at 01:00 on Sunday 1 November 2026 to 00:00: midnight happens twice.
        let tz = TimeZone::get("America/Havana").unwrap();
        let amb = tz.to_ambiguous_timestamp(date("2026-11-01").at(0, 0, 0, 0));
        assert!(
            amb.is_ambiguous(),
            "00:00 on 2026-11-01 should be in a fold"
        );
        let e = one_day_contract("d-hav", "2026-11-01");
        assert_eq!(e.from, ts("2026-11-01T04:00:00Z"));
        assert_eq!(hours(&e), 25.0);
    }
}

//! Presence (DESIGN.md §1): what a member's entry at a check-in door means. The door has already
//! opened; this decides whether the check-in is covered (a booking or a contract there, or a
//! day of a pass), or is a failed check-in, and why.

use crate::entitlement::CustomerInputs;
use crate::ids::Id;
use crate::model::*;
use jiff::Timestamp;
use jiff::civil::Date;
use serde::Serialize;
use std::collections::BTreeMap;

/// What made a check-in good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Covered {
    Booking {
        booking_id: Id,
    },
    Contract {
        contract_id: Id,
    },
    /// A pass without a day count, valid now.
    Pass {
        pass_grant_id: Id,
    },
    /// A day of a pass with a day count: this check-in used it.
    PassDay {
        pass_grant_id: Id,
    },
    /// An earlier check-in today at this location used or had cover for the day.
    SameDay,
}

/// Why a check-in failed, though the door opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// Their pass here is valid but every day of it is used.
    NoDaysLeft,
    /// Their pass here ended.
    PassExpired,
    /// Their booking here starts later.
    BookingNotStarted,
    /// Their booking here has ended.
    BookingEnded,
    /// Their contract here has ended.
    ContractEnded,
    /// The door's user is nobody doorsync knows.
    NotACustomer,
    /// Nothing of theirs is at this location.
    NothingHere,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::NoDaysLeft => "no_days_left",
            FailReason::PassExpired => "pass_expired",
            FailReason::BookingNotStarted => "booking_not_started",
            FailReason::BookingEnded => "booking_ended",
            FailReason::ContractEnded => "contract_ended",
            FailReason::NotACustomer => "not_a_customer",
            FailReason::NothingHere => "nothing_here",
        }
    }
}

/// The customer's state at the location the door is at, as the store knows it.
pub struct CheckInContext<'a> {
    pub location: &'a Location,
    /// `None`: the user is no customer of doorsync's.
    pub inputs: Option<&'a CustomerInputs>,
    /// Days already used of each pass grant with a day count.
    pub days_used: &'a BTreeMap<Id, u32>,
    /// A covered check-in of theirs at this location earlier the same local day.
    pub covered_today: bool,
}

fn local_date(at: Timestamp, location: &Location) -> Date {
    at.to_zoned_datetime(location.timezone.tz()).date()
}

/// Decides a check-in at `at` at the context's location.
pub fn check_in(at: Timestamp, cx: &CheckInContext<'_>) -> Result<Covered, FailReason> {
    let Some(inputs) = cx.inputs else {
        return Err(FailReason::NotACustomer);
    };
    if cx.covered_today {
        return Ok(Covered::SameDay);
    }
    let here = &cx.location.id;
    let catalog = &inputs.catalog;
    let today = local_date(at, cx.location);
    let bookings: Vec<(&Booking, Timestamp, Timestamp)> = inputs
        .bookings
        .iter()
        .filter(|b| b.status == BookingStatus::Confirmed && b.cancelled_at.is_none())
        .filter_map(|b| {
            let r = catalog.resources.get(&b.resource_id)?;
            (&r.location_id == here).then(|| {
                let lead = r.lead.unwrap_or(cx.location.lead);
                let lag = r.lag.unwrap_or(cx.location.lag);
                (
                    b,
                    b.start.checked_sub(lead).unwrap_or(b.start),
                    b.end.checked_add(lag).unwrap_or(b.end),
                )
            })
        })
        .collect();
    if let Some((b, _, _)) = bookings
        .iter()
        .find(|(_, from, until)| *from <= at && at < *until)
    {
        return Ok(Covered::Booking {
            booking_id: b.id.clone(),
        });
    }
    let contracts: Vec<&Contract> = inputs
        .contracts
        .iter()
        .chain(inputs.team_contracts.iter().filter_map(|t| {
            let joined = t.membership.joined_at <= at;
            let still = t.membership.left_at.is_none_or(|l| at < l);
            (joined && still).then_some(&t.contract)
        }))
        .filter(|c| c.status == ContractStatus::Active && c.cancelled_at.is_none())
        .filter(|c| {
            c.desk_ids
                .iter()
                .any(|d| catalog.desks.get(d).is_some_and(|d| &d.location_id == here))
        })
        .collect();
    if let Some(c) = contracts
        .iter()
        .find(|c| c.start_date <= today && c.end_date.is_none_or(|e| today <= e))
    {
        return Ok(Covered::Contract {
            contract_id: c.id.clone(),
        });
    }
    let mut grants: Vec<&PassGrant> = inputs
        .pass_grants
        .iter()
        .filter(|g| {
            catalog
                .passes
                .get(&g.pass_id)
                .is_some_and(|p| &p.location_id == here)
        })
        .collect();
    // The grant that expires first is used first.
    grants.sort_by_key(|g| (g.valid_until, g.id.clone()));
    let valid: Vec<&&PassGrant> = grants
        .iter()
        .filter(|g| g.valid_from <= at && at < g.valid_until)
        .collect();
    if let Some(g) = valid.iter().find(|g| g.uses.is_none()) {
        return Ok(Covered::Pass {
            pass_grant_id: g.id.clone(),
        });
    }
    if let Some(g) = valid.iter().find(|g| {
        g.uses
            .is_some_and(|n| cx.days_used.get(&g.id).copied().unwrap_or(0) < n)
    }) {
        return Ok(Covered::PassDay {
            pass_grant_id: g.id.clone(),
        });
    }
    // Nothing covers them: the nearest reason, most specific first.
    if !valid.is_empty() {
        return Err(FailReason::NoDaysLeft);
    }
    let todays = |t: Timestamp| local_date(t, cx.location) == today;
    if bookings
        .iter()
        .any(|(_, from, _)| at < *from && todays(*from))
    {
        return Err(FailReason::BookingNotStarted);
    }
    if bookings
        .iter()
        .any(|(_, _, until)| *until <= at && todays(*until))
    {
        return Err(FailReason::BookingEnded);
    }
    if contracts
        .iter()
        .any(|c| c.end_date.is_some_and(|e| e < today))
    {
        return Err(FailReason::ContractEnded);
    }
    if grants.iter().any(|g| g.valid_until <= at) {
        return Err(FailReason::PassExpired);
    }
    if bookings.iter().any(|(_, from, _)| at < *from) {
        return Err(FailReason::BookingNotStarted);
    }
    if !bookings.is_empty() {
        return Err(FailReason::BookingEnded);
    }
    Err(FailReason::NothingHere)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::Catalog;
    use crate::ids::{Email, Zone};

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn location() -> Location {
        Location {
            end_access_when_days_used: false,
            id: id("hq"),
            name: "HQ".into(),
            timezone: Zone::parse("Europe/London").unwrap(),
            connection_id: None,
            site_id: None,
            lead: DEFAULT_LEAD,
            lag: DEFAULT_LAG,
        }
    }

    fn inputs() -> CustomerInputs {
        let mut catalog = Catalog::default();
        catalog.locations.insert(id("hq"), location());
        catalog.resources.insert(
            id("room"),
            Resource {
                id: id("room"),
                location_id: id("hq"),
                name: "Room".into(),
                lead: None,
                lag: None,
            },
        );
        catalog.passes.insert(
            id("ten"),
            Pass {
                id: id("ten"),
                location_id: id("hq"),
                name: "10-Day Pass".into(),
            },
        );
        catalog.desks.insert(
            id("desk"),
            Desk {
                id: id("desk"),
                location_id: id("hq"),
                name: "Desk".into(),
                kind: DeskKind::Desk,
            },
        );
        CustomerInputs {
            pass_days: Default::default(),
            customer: Customer {
                id: id("ana"),
                name: "Ana".into(),
                email: Email::parse("ana@example.com").unwrap(),
                phone: None,
                status: CustomerStatus::default(),
                status_since: t("2026-01-01T00:00:00Z"),
            },
            bookings: vec![],
            pass_grants: vec![],
            contracts: vec![],
            team_contracts: vec![],
            catalog,
        }
    }

    fn decide(
        at: &str,
        inputs: &CustomerInputs,
        used: u32,
        today: bool,
    ) -> Result<Covered, FailReason> {
        let loc = location();
        let days: BTreeMap<Id, u32> = [(id("g"), used)].into_iter().collect();
        check_in(
            t(at),
            &CheckInContext {
                location: &loc,
                inputs: Some(inputs),
                days_used: &days,
                covered_today: today,
            },
        )
    }

    #[test]
    fn a_booking_covers_its_window_with_the_buffers() {
        let mut i = inputs();
        i.bookings.push(Booking {
            id: id("b"),
            customer_id: id("ana"),
            resource_id: id("room"),
            start: t("2026-06-01T10:00:00Z"),
            end: t("2026-06-01T11:00:00Z"),
            status: BookingStatus::Confirmed,
            cancelled_at: None,
        });
        let covered = Ok(Covered::Booking {
            booking_id: id("b"),
        });
        assert_eq!(decide("2026-06-01T09:50:00Z", &i, 0, false), covered);
        assert_eq!(decide("2026-06-01T11:10:00Z", &i, 0, false), covered);
        assert_eq!(
            decide("2026-06-01T09:00:00Z", &i, 0, false),
            Err(FailReason::BookingNotStarted)
        );
        assert_eq!(
            decide("2026-06-01T12:00:00Z", &i, 0, false),
            Err(FailReason::BookingEnded)
        );
    }

    #[test]
    fn a_pass_with_days_uses_one_until_none_are_left() {
        let mut i = inputs();
        i.pass_grants.push(PassGrant {
            id: id("g"),
            customer_id: id("ana"),
            pass_id: id("ten"),
            valid_from: t("2026-06-01T00:00:00Z"),
            valid_until: t("2026-07-01T00:00:00Z"),
            uses: Some(10),
        });
        let at = "2026-06-05T09:00:00Z";
        assert_eq!(
            decide(at, &i, 9, false),
            Ok(Covered::PassDay {
                pass_grant_id: id("g")
            })
        );
        assert_eq!(decide(at, &i, 10, false), Err(FailReason::NoDaysLeft));
        // A second entry the same day costs nothing.
        assert_eq!(decide(at, &i, 10, true), Ok(Covered::SameDay));
        assert_eq!(
            decide("2026-07-02T09:00:00Z", &i, 3, false),
            Err(FailReason::PassExpired)
        );
    }

    #[test]
    fn contracts_cover_their_local_days_and_strangers_fail() {
        let mut i = inputs();
        i.contracts.push(Contract {
            id: id("c"),
            customer_id: id("ana"),
            desk_ids: vec![id("desk")],
            start_date: "2026-06-01".parse().unwrap(),
            end_date: Some("2026-06-30".parse().unwrap()),
            status: ContractStatus::Active,
            cancelled_at: None,
        });
        // 23:30 UTC on 30 June is 00:30 on 1 July in London: the contract has ended there.
        assert_eq!(
            decide("2026-06-30T22:30:00Z", &i, 0, false),
            Ok(Covered::Contract {
                contract_id: id("c")
            })
        );
        assert_eq!(
            decide("2026-06-30T23:30:00Z", &i, 0, false),
            Err(FailReason::ContractEnded)
        );
        assert_eq!(
            decide("2026-06-01T09:00:00Z", &inputs(), 0, false),
            Err(FailReason::NothingHere)
        );
        let loc = location();
        let none = BTreeMap::new();
        let stranger = CheckInContext {
            location: &loc,
            inputs: None,
            days_used: &none,
            covered_today: false,
        };
        assert_eq!(
            check_in(t("2026-06-01T09:00:00Z"), &stranger),
            Err(FailReason::NotACustomer)
        );
    }
}

//! A seeded, reproducible operator: locations with rooms, desks and offices and passes linked to
//! groups, customers in teams, a year of bookings, contracts, pass grants and visitors, written
//! as the batch operations `doorsync import` and `POST /api/v1/batch` take.

use serde_json::{Value, json};

/// How big an operator to make.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub locations: u64,
    pub customers: u64,
    pub bookings: u64,
    pub contracts: u64,
    pub grants: u64,
    pub visitors: u64,
}

impl Size {
    pub fn named(name: &str) -> Option<Size> {
        Some(match name {
            "small" => Size {
                locations: 1,
                customers: 200,
                bookings: 2_000,
                contracts: 20,
                grants: 400,
                visitors: 100,
            },
            "medium" => Size {
                locations: 20,
                customers: 20_000,
                bookings: 200_000,
                contracts: 8_000,
                grants: 40_000,
                visitors: 5_000,
            },
            "large" => Size {
                locations: 500,
                customers: 500_000,
                bookings: 5_000_000,
                contracts: 200_000,
                grants: 1_000_000,
                visitors: 100_000,
            },
            _ => return None,
        })
    }

    pub fn operations(&self) -> u64 {
        let per_location = ROOMS + DESKS + PASSES;
        self.locations * (1 + 2 * per_location)
            + self.customers
            + self.customers / TEAM
            + self.bookings
            + self.contracts
            + self.grants
            + self.visitors
    }
}

const ROOMS: u64 = 10;
const DESKS: u64 = 10;
const PASSES: u64 = 3;
/// Customers per team.
const TEAM: u64 = 8;

/// SplitMix64: small, fast and the same on every machine, which is all a workload needs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn op(collection: &str, id: String, body: Value) -> Value {
    json!({"op": "put", "collection": collection, "id": id, "body": body})
}

/// The year the bookings fall in, from `start` (an instant, seconds since the epoch).
pub struct Workload {
    pub size: Size,
    pub seed: u64,
    /// Day 0 of the year of bookings, as epoch seconds at midnight UTC.
    pub start: i64,
}

impl Workload {
    /// Every operation, in an order the references allow, to `emit`.
    pub fn emit(&self, mut emit: impl FnMut(Value)) {
        let s = self.size;
        let mut rng = Rng::new(self.seed);
        let zones = [
            "Europe/London",
            "America/New_York",
            "Europe/Paris",
            "Asia/Tokyo",
        ];
        let mut group = 10_000u64;
        let mut next_group = || {
            group += 1;
            group.to_string()
        };
        for l in 0..s.locations {
            emit(op(
                "locations",
                format!("loc-{l}"),
                json!({"name": format!("Location {l}"), "timezone": zones[(l % 4) as usize]}),
            ));
            for r in 0..ROOMS {
                emit(op(
                    "resources",
                    format!("room-{l}-{r}"),
                    json!({"location_id": format!("loc-{l}"), "name": format!("Room {r}")}),
                ));
                emit(op(
                    "links",
                    format!("resource/room-{l}-{r}"),
                    json!({"group_id": next_group()}),
                ));
            }
            for d in 0..DESKS {
                let kind = if d % 2 == 0 { "office" } else { "desk" };
                emit(op(
                    "desks",
                    format!("desk-{l}-{d}"),
                    json!({"location_id": format!("loc-{l}"), "name": format!("Desk {d}"), "kind": kind}),
                ));
                emit(op(
                    "links",
                    format!("desk/desk-{l}-{d}"),
                    json!({"group_id": next_group()}),
                ));
            }
            for p in 0..PASSES {
                emit(op(
                    "passes",
                    format!("pass-{l}-{p}"),
                    json!({"location_id": format!("loc-{l}"), "name": format!("Pass {p}")}),
                ));
                emit(op(
                    "links",
                    format!("pass/pass-{l}-{p}"),
                    json!({"group_id": next_group()}),
                ));
            }
        }
        for c in 0..s.customers {
            emit(op(
                "customers",
                format!("c{c}"),
                json!({"name": format!("Member {c}"), "email": format!("c{c}@example.com")}),
            ));
        }
        for t in 0..s.customers / TEAM {
            let first = t * TEAM;
            let members: Vec<String> = (first + 1..first + TEAM).map(|c| format!("c{c}")).collect();
            emit(op(
                "teams",
                format!("team-{t}"),
                json!({"name": format!("Team {t}"), "paying_member_id": format!("c{first}"), "member_ids": members}),
            ));
        }
        let at = |secs: i64| {
            jiff::Timestamp::from_second(secs)
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        let day = 86_400i64;
        for b in 0..s.bookings {
            let (c, l, r) = (
                rng.below(s.customers),
                rng.below(s.locations),
                rng.below(ROOMS),
            );
            let start =
                self.start + rng.below(365) as i64 * day + (8 + rng.below(10)) as i64 * 3600;
            emit(op(
                "bookings",
                format!("b{b}"),
                json!({"customer_id": format!("c{c}"), "resource_id": format!("room-{l}-{r}"),
                       "start": at(start), "end": at(start + (1 + rng.below(3)) as i64 * 3600)}),
            ));
        }
        for k in 0..s.contracts {
            // Paying members hold the contracts, so their teams share them.
            let c = rng.below(s.customers / TEAM) * TEAM;
            let (l, d) = (rng.below(s.locations), rng.below(DESKS));
            let from = self.start + rng.below(365) as i64 * day;
            let until = from + (30 + rng.below(300)) as i64 * day;
            let date = |secs: i64| at(secs)[..10].to_owned();
            emit(op(
                "contracts",
                format!("k{k}"),
                json!({"customer_id": format!("c{c}"), "desk_ids": [format!("desk-{l}-{d}")],
                       "start_date": date(from), "end_date": date(until)}),
            ));
        }
        for g in 0..s.grants {
            let (c, l, p) = (
                rng.below(s.customers),
                rng.below(s.locations),
                rng.below(PASSES),
            );
            let from = self.start + rng.below(365) as i64 * day;
            emit(op(
                "pass-grants",
                format!("g{g}"),
                json!({"customer_id": format!("c{c}"), "pass_id": format!("pass-{l}-{p}"),
                       "valid_from": at(from), "valid_until": at(from + (1 + rng.below(30)) as i64 * day),
                       "uses": 1 + rng.below(10)}),
            ));
        }
        for v in 0..s.visitors {
            let (host, l) = (rng.below(s.customers), rng.below(s.locations));
            let arrival = self.start + rng.below(365) as i64 * day + 10 * 3600;
            emit(op(
                "visitors",
                format!("v{v}"),
                json!({"name": format!("Visitor {v}"), "email": format!("v{v}@example.com"),
                       "host_customer_id": format!("c{host}"), "location_id": format!("loc-{l}"),
                       "arrival": at(arrival), "departure": at(arrival + 2 * 3600)}),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_operator_and_counts_add_up() {
        let w = |seed| Workload {
            size: Size::named("small").unwrap(),
            seed,
            start: 1_800_000_000,
        };
        let mut a = vec![];
        w(7).emit(|v| a.push(v));
        let mut b = vec![];
        w(7).emit(|v| b.push(v));
        let mut c = vec![];
        w(8).emit(|v| c.push(v));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len() as u64, Size::named("small").unwrap().operations());
    }
}

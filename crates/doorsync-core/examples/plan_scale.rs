//! How long the pure rules take at the scale DESIGN.md §4 names: hundreds of thousands of
//! customers and millions of bookings. For each customer: entitlements, the groups desired now,
//! the next transition, and the plan against a provider user holding last week's groups.
//!
//! `cargo run --release -p doorsync-core --example plan_scale -- [CUSTOMERS] [BOOKINGS_EACH]`

use doorsync_core::*;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

fn id(s: &str) -> Id {
    Id::parse(s).expect("valid id")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let customers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let per: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let now: Timestamp = "2026-06-01T12:00:00Z".parse().expect("instant");
    let zone = Zone::parse("Europe/London").expect("zone");
    let mut catalog = Catalog::default();
    catalog.locations.insert(
        id("hq"),
        Location {
            end_access_when_days_used: false,
            id: id("hq"),
            name: "HQ".into(),
            timezone: zone,
            connection_id: Some(id("brivo")),
            site_id: None,
            lead: DEFAULT_LEAD,
            lag: DEFAULT_LAG,
        },
    );
    for r in 0..20 {
        let rid = id(&format!("room-{r}"));
        catalog.resources.insert(
            rid.clone(),
            Resource {
                id: rid.clone(),
                location_id: id("hq"),
                name: format!("Room {r}"),
                lead: None,
                lag: None,
            },
        );
        catalog
            .links
            .insert((LinkKind::Resource, rid), format!("{}", 1000 + r));
    }
    let policy = Policy {
        no_access: NoAccessPolicy::RemoveFromGroups,
        exempt_user_ids: BTreeSet::new(),
        managed_groups: (1000..1020).map(|g| g.to_string()).collect(),
    };
    let started = Instant::now();
    let inputs: Vec<CustomerInputs> = (0..customers)
        .map(|c| {
            let cid = id(&format!("c{c}"));
            let bookings = (0..per)
                .map(|b| {
                    // Spread over a week around now, an hour each.
                    let offset = ((c * 7919 + b * 104_729) % (7 * 24 * 60)) as i64 - 3 * 24 * 60;
                    let start = now
                        .checked_add(SignedDuration::from_mins(offset))
                        .expect("in range");
                    Booking {
                        id: id(&format!("b{c}-{b}")),
                        customer_id: cid.clone(),
                        resource_id: id(&format!("room-{}", (c + b) % 20)),
                        start,
                        end: start
                            .checked_add(SignedDuration::from_hours(1))
                            .expect("in range"),
                        status: BookingStatus::Confirmed,
                        cancelled_at: None,
                    }
                })
                .collect();
            CustomerInputs {
                pass_days: Default::default(),
                customer: Customer {
                    id: cid,
                    name: "N".into(),
                    email: Email::parse("n@example.com").expect("email"),
                    phone: None,
                    status: CustomerStatus::Active,
                    status_since: now,
                },
                bookings,
                pass_grants: vec![],
                contracts: vec![],
                team_contracts: vec![],
                catalog: catalog.clone(),
            }
        })
        .collect();
    let built = started.elapsed();
    let started = Instant::now();
    let (mut ops, mut holding, mut transitions) = (0usize, 0usize, 0usize);
    let mut by_group: BTreeMap<String, usize> = BTreeMap::new();
    for (i, input) in inputs.iter().enumerate() {
        let ents = customer_entitlements(input);
        let want = desired(&ents, now);
        transitions += usize::from(next_transition(&ents, now).is_some());
        let actual = ProviderUser {
            id: format!("u{i}"),
            external_id: Some(input.customer.id.to_string()),
            suspended: false,
            groups: BTreeSet::from([format!("{}", 1000 + i % 20)]),
        };
        ops += diff(&want, Some(&actual), &policy).ops.len();
        holding += usize::from(!want.is_empty());
        for g in want {
            *by_group.entry(g).or_default() += 1;
        }
    }
    let planned = started.elapsed();
    println!(
        "{customers} customers, {} bookings: planned in {:.3} s on one core ({:.2} µs a customer); \
         {holding} hold a group now, {transitions} have a next transition, {ops} provider operations planned \
         (inputs built in {:.3} s)",
        customers * per,
        planned.as_secs_f64(),
        planned.as_secs_f64() * 1e6 / customers.max(1) as f64,
        built.as_secs_f64(),
    );
}

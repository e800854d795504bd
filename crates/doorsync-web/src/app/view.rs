//! What a member sees of their own access: passes with days left, bookings, contract access and
//! the visitors they host, each with its times in its location's zone. One view serves the app's
//! pages and its JSON API.

use doorsync_core::{BookingStatus, ContractStatus, CustomerInputs, Id, Location};
use doorsync_store::{Kind, Record, Store, StoreError};
use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

/// A time as the member reads it: the instant, and the same in the location's zone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LocalTime {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// `Fri 4 Dec 2026 14:05` in `zone`.
    pub local: String,
    pub zone: String,
}

impl LocalTime {
    fn new(at: Timestamp, location: Option<&Location>) -> LocalTime {
        let zone = location.map_or_else(|| "UTC".to_owned(), |l| l.timezone.as_str().to_owned());
        let tz = location.map_or(jiff::tz::TimeZone::UTC, |l| l.timezone.tz());
        LocalTime {
            at,
            local: at
                .to_zoned_datetime(tz)
                .strftime("%a %-d %b %Y %H:%M")
                .to_string(),
            zone,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberPass {
    pub id: String,
    pub name: String,
    pub location: String,
    pub valid_from: LocalTime,
    pub valid_until: LocalTime,
    /// Check-in days the pass holds; `None` is unlimited.
    pub days: Option<u32>,
    pub days_used: u32,
    pub days_left: Option<u32>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberBooking {
    pub id: String,
    pub resource: String,
    pub location: String,
    pub start: LocalTime,
    pub end: LocalTime,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberContract {
    pub id: String,
    /// The desks and offices it gives, by name.
    pub desks: Vec<String>,
    pub location: String,
    #[schema(value_type = String, format = Date)]
    pub start_date: jiff::civil::Date,
    #[schema(value_type = Option<String>, format = Date)]
    pub end_date: Option<jiff::civil::Date>,
    /// The team whose paying member holds the contract, when it is not the member's own.
    pub via_team: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberVisitor {
    pub id: String,
    pub name: String,
    pub location: String,
    pub arrival: LocalTime,
    pub departure: Option<LocalTime>,
}

/// Everything the member app shows a member about their own access.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberView {
    pub id: String,
    pub name: String,
    pub email: String,
    pub passes: Vec<MemberPass>,
    pub bookings: Vec<MemberBooking>,
    pub contracts: Vec<MemberContract>,
    pub visitors: Vec<MemberVisitor>,
}

fn location_name(l: Option<&Location>) -> String {
    l.map_or_else(String::new, |l| l.name.clone())
}

/// The member's view at `now`: what has not ended yet, soonest first.
pub async fn member_view(
    store: &dyn Store,
    id: &Id,
    now: Timestamp,
) -> Result<Option<MemberView>, StoreError> {
    let Some(inputs) = store.customer_inputs(id, now).await? else {
        return Ok(None);
    };
    let mut view = from_inputs(&inputs, now);
    for r in store.hosted_visitors(id.as_str(), now).await? {
        let Record::Visitor(v) = r else { continue };
        if v.departure.is_some_and(|d| d <= now) {
            continue;
        }
        let l = match store.get(Kind::Location, v.location_id.as_str()).await? {
            Some(Record::Location(l)) => Some(l),
            _ => None,
        };
        view.visitors.push(MemberVisitor {
            id: v.id.to_string(),
            name: v.name,
            location: location_name(l.as_ref()),
            arrival: LocalTime::new(v.arrival, l.as_ref()),
            departure: v.departure.map(|d| LocalTime::new(d, l.as_ref())),
        });
    }
    view.visitors.sort_by_key(|v| v.arrival.at);
    Ok(Some(view))
}

fn from_inputs(inputs: &CustomerInputs, now: Timestamp) -> MemberView {
    let catalog = &inputs.catalog;
    let c = &inputs.customer;
    let mut passes: Vec<MemberPass> = inputs
        .pass_grants
        .iter()
        .filter(|g| g.valid_until > now)
        .map(|g| {
            let pass = catalog.passes.get(&g.pass_id);
            let l = pass.and_then(|p| catalog.locations.get(&p.location_id));
            let used = inputs.pass_days.get(&g.id).map_or(0, |d| d.len() as u32);
            MemberPass {
                id: g.id.to_string(),
                name: pass.map_or_else(|| g.pass_id.to_string(), |p| p.name.clone()),
                location: location_name(l),
                valid_from: LocalTime::new(g.valid_from, l),
                valid_until: LocalTime::new(g.valid_until, l),
                days: g.uses,
                days_used: used,
                days_left: g.uses.map(|n| n.saturating_sub(used)),
            }
        })
        .collect();
    passes.sort_by_key(|p| p.valid_from.at);
    let mut bookings: Vec<MemberBooking> = inputs
        .bookings
        .iter()
        .filter(|b| b.status == BookingStatus::Confirmed && b.end > now)
        .map(|b| {
            let r = catalog.resources.get(&b.resource_id);
            let l = r.and_then(|r| catalog.locations.get(&r.location_id));
            MemberBooking {
                id: b.id.to_string(),
                resource: r.map_or_else(|| b.resource_id.to_string(), |r| r.name.clone()),
                location: location_name(l),
                start: LocalTime::new(b.start, l),
                end: LocalTime::new(b.end, l),
            }
        })
        .collect();
    bookings.sort_by_key(|b| b.start.at);
    let own = inputs.contracts.iter().map(|c| (c, None));
    let team = inputs
        .team_contracts
        .iter()
        .filter(|t| t.membership.left_at.is_none_or(|l| l > now))
        .map(|t| (&t.contract, Some(t.membership.team_id.to_string())));
    let mut contracts: Vec<MemberContract> = own
        .chain(team)
        .filter(|(k, _)| k.status == ContractStatus::Active)
        .filter_map(|(k, via_team)| {
            let desks: Vec<_> = k
                .desk_ids
                .iter()
                .filter_map(|d| catalog.desks.get(d))
                .collect();
            let l = desks
                .first()
                .and_then(|d| catalog.locations.get(&d.location_id));
            let tz = l.map_or(jiff::tz::TimeZone::UTC, |l| l.timezone.tz());
            let today = now.to_zoned_datetime(tz).date();
            if k.end_date.is_some_and(|e| e < today) {
                return None;
            }
            Some(MemberContract {
                id: k.id.to_string(),
                desks: desks.iter().map(|d| d.name.clone()).collect(),
                location: location_name(l),
                start_date: k.start_date,
                end_date: k.end_date,
                via_team,
            })
        })
        .collect();
    contracts.sort_by_key(|k| k.start_date);
    MemberView {
        id: c.id.to_string(),
        name: c.name.clone(),
        email: c.email.as_str().to_owned(),
        passes,
        bookings,
        contracts,
        visitors: vec![],
    }
}

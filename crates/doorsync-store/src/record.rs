//! Records as the store keeps them: one enum over every kind, with the references each makes.

use doorsync_core::*;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Connection,
    Location,
    Pass,
    Resource,
    Desk,
    Customer,
    Team,
    Booking,
    Contract,
    PassGrant,
    Visitor,
    Link,
    Door,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Connection,
        Kind::Location,
        Kind::Pass,
        Kind::Resource,
        Kind::Desk,
        Kind::Customer,
        Kind::Team,
        Kind::Booking,
        Kind::Contract,
        Kind::PassGrant,
        Kind::Visitor,
        Kind::Link,
        Kind::Door,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Connection => "connection",
            Kind::Location => "location",
            Kind::Pass => "pass",
            Kind::Resource => "resource",
            Kind::Desk => "desk",
            Kind::Customer => "customer",
            Kind::Team => "team",
            Kind::Booking => "booking",
            Kind::Contract => "contract",
            Kind::PassGrant => "pass_grant",
            Kind::Visitor => "visitor",
            Kind::Link => "link",
            Kind::Door => "door",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn of_link(kind: LinkKind) -> Kind {
        match kind {
            LinkKind::Pass => Kind::Pass,
            LinkKind::Resource => Kind::Resource,
            LinkKind::Desk => Kind::Desk,
        }
    }
}

/// The most members one team may list. Written set-based, a team this size takes a few
/// statements; the bound keeps one write's work (and the reconciles it marks due) finite.
pub const MAX_TEAM_MEMBERS: usize = 10_000;

/// The most desks and offices one contract may name (all in one location).
pub const MAX_CONTRACT_DESKS: usize = 1_000;

/// The store key of the link of an inventory item.
pub fn link_key(kind: LinkKind, item_id: &str) -> String {
    format!("{}/{item_id}", kind.as_str())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Connection(Connection),
    Location(Location),
    Pass(Pass),
    Resource(Resource),
    Desk(Desk),
    Customer(Customer),
    Team(Team),
    Booking(Booking),
    Contract(Contract),
    PassGrant(PassGrant),
    Visitor(Visitor),
    Link(Link),
    Door(Door),
}

/// A reference from one record's field to another record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub field: &'static str,
    pub kind: Kind,
    pub id: String,
}

fn r(field: &'static str, kind: Kind, id: &Id) -> Ref {
    Ref {
        field,
        kind,
        id: id.to_string(),
    }
}

impl Record {
    pub fn kind(&self) -> Kind {
        match self {
            Record::Connection(_) => Kind::Connection,
            Record::Location(_) => Kind::Location,
            Record::Pass(_) => Kind::Pass,
            Record::Resource(_) => Kind::Resource,
            Record::Desk(_) => Kind::Desk,
            Record::Customer(_) => Kind::Customer,
            Record::Team(_) => Kind::Team,
            Record::Booking(_) => Kind::Booking,
            Record::Contract(_) => Kind::Contract,
            Record::PassGrant(_) => Kind::PassGrant,
            Record::Visitor(_) => Kind::Visitor,
            Record::Link(_) => Kind::Link,
            Record::Door(_) => Kind::Door,
        }
    }

    pub fn key(&self) -> String {
        match self {
            Record::Connection(x) => x.id.to_string(),
            Record::Location(x) => x.id.to_string(),
            Record::Pass(x) => x.id.to_string(),
            Record::Resource(x) => x.id.to_string(),
            Record::Desk(x) => x.id.to_string(),
            Record::Customer(x) => x.id.to_string(),
            Record::Team(x) => x.id.to_string(),
            Record::Booking(x) => x.id.to_string(),
            Record::Contract(x) => x.id.to_string(),
            Record::PassGrant(x) => x.id.to_string(),
            Record::Visitor(x) => x.id.to_string(),
            Record::Link(x) => link_key(x.kind, x.item_id.as_str()),
            Record::Door(x) => x.id.to_string(),
        }
    }

    /// Refuses a record whose lists are longer than the store takes, naming the list.
    pub fn check_limits(&self) -> Result<(), crate::StoreError> {
        let (field, len, max, what) = match self {
            Record::Team(t) => (
                "member_ids",
                t.member_ids.len(),
                MAX_TEAM_MEMBERS,
                "members",
            ),
            Record::Contract(c) => ("desk_ids", c.desk_ids.len(), MAX_CONTRACT_DESKS, "desks"),
            _ => return Ok(()),
        };
        if len > max {
            return Err(crate::StoreError::Invalid {
                field,
                message: format!("at most {max} {what} are allowed; this one lists {len}"),
            });
        }
        Ok(())
    }

    /// The records this one points at; each must exist when it is written.
    pub fn refs(&self) -> Vec<Ref> {
        match self {
            Record::Connection(_) | Record::Customer(_) => vec![],
            Record::Location(x) => x
                .connection_id
                .iter()
                .map(|c| r("connection_id", Kind::Connection, c))
                .collect(),
            Record::Pass(x) => vec![r("location_id", Kind::Location, &x.location_id)],
            Record::Resource(x) => vec![r("location_id", Kind::Location, &x.location_id)],
            Record::Desk(x) => vec![r("location_id", Kind::Location, &x.location_id)],
            Record::Door(x) => vec![r("location_id", Kind::Location, &x.location_id)],
            Record::Team(x) => {
                std::iter::once(r("paying_member_id", Kind::Customer, &x.paying_member_id))
                    .chain(
                        x.member_ids
                            .iter()
                            .map(|m| r("member_ids", Kind::Customer, m)),
                    )
                    .collect()
            }
            Record::Booking(x) => vec![
                r("customer_id", Kind::Customer, &x.customer_id),
                r("resource_id", Kind::Resource, &x.resource_id),
            ],
            Record::Contract(x) => {
                std::iter::once(r("customer_id", Kind::Customer, &x.customer_id))
                    .chain(x.desk_ids.iter().map(|d| r("desk_ids", Kind::Desk, d)))
                    .collect()
            }
            Record::PassGrant(x) => vec![
                r("customer_id", Kind::Customer, &x.customer_id),
                r("pass_id", Kind::Pass, &x.pass_id),
            ],
            Record::Visitor(x) => vec![
                r("host_customer_id", Kind::Customer, &x.host_customer_id),
                r("location_id", Kind::Location, &x.location_id),
            ],
            Record::Link(x) => vec![r("item_id", Kind::of_link(x.kind), &x.item_id)],
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("records serialize")
    }

    pub fn from_json(kind: Kind, body: &str) -> Result<Record, serde_json::Error> {
        use serde_json::from_str as p;
        Ok(match kind {
            Kind::Connection => Record::Connection(p(body)?),
            Kind::Location => Record::Location(p(body)?),
            Kind::Pass => Record::Pass(p(body)?),
            Kind::Resource => Record::Resource(p(body)?),
            Kind::Desk => Record::Desk(p(body)?),
            Kind::Customer => Record::Customer(p(body)?),
            Kind::Team => Record::Team(p(body)?),
            Kind::Booking => Record::Booking(p(body)?),
            Kind::Contract => Record::Contract(p(body)?),
            Kind::PassGrant => Record::PassGrant(p(body)?),
            Kind::Visitor => Record::Visitor(p(body)?),
            Kind::Link => Record::Link(p(body)?),
            Kind::Door => Record::Door(p(body)?),
        })
    }

    /// Fills the fields the store owns from the record being replaced: when a status changed,
    /// and secrets a caller did not resend (they are write-only, so a read-modify-write cannot
    /// carry them).
    pub fn carry_over(&mut self, old: Option<&Record>, now: jiff::Timestamp) {
        match (&mut *self, old) {
            (Record::Customer(new), old) => {
                new.status_since = match old {
                    Some(Record::Customer(o)) if o.status == new.status => o.status_since,
                    _ => now,
                }
            }
            (Record::Booking(new), old) => {
                new.cancelled_at = match (new.status, old) {
                    (BookingStatus::Confirmed, _) => None,
                    (BookingStatus::Cancelled, Some(Record::Booking(o)))
                        if o.status == BookingStatus::Cancelled =>
                    {
                        o.cancelled_at.or(Some(now))
                    }
                    (BookingStatus::Cancelled, _) => Some(now),
                }
            }
            (Record::Contract(new), old) => {
                new.cancelled_at = match (new.status, old) {
                    (ContractStatus::Active, _) => None,
                    (ContractStatus::Cancelled, Some(Record::Contract(o)))
                        if o.status == ContractStatus::Cancelled =>
                    {
                        o.cancelled_at.or(Some(now))
                    }
                    (ContractStatus::Cancelled, _) => Some(now),
                }
            }
            // Credentials left out are kept, unless the connection now points elsewhere: then
            // only what the request brought goes to the new host.
            (Record::Connection(new), Some(Record::Connection(o)))
                if new.api_url == o.api_url && new.auth_url == o.auth_url =>
            {
                let (n, o) = (&mut new.credentials, &o.credentials);
                for (field, old) in [
                    (&mut n.api_key, &o.api_key),
                    (&mut n.client_id, &o.client_id),
                    (&mut n.client_secret, &o.client_secret),
                    (&mut n.admin_id, &o.admin_id),
                    (&mut n.password, &o.password),
                    (&mut n.refresh_token, &o.refresh_token),
                ] {
                    if field.is_none() {
                        field.clone_from(old);
                    }
                }
            }
            _ => {}
        }
        // An empty credential clears it (left out, it would be kept).
        if let Record::Connection(c) = self {
            let cr = &mut c.credentials;
            for field in [
                &mut cr.api_key,
                &mut cr.client_id,
                &mut cr.client_secret,
                &mut cr.admin_id,
                &mut cr.password,
                &mut cr.refresh_token,
            ] {
                if field.as_deref() == Some("") {
                    *field = None;
                }
            }
        }
    }
}

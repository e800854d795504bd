//! Entitlements: who may hold which group, from when, until when, and why (DESIGN.md §1).

use crate::ids::Id;
use crate::model::*;
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

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

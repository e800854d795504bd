//! doorsync's domain: the things a workspace sells, the entitlements they give, and the plan that
//! brings a provider in line. Pure logic: no IO, no async, no database.

pub mod clock;
pub mod desired;
pub mod entitlement;
pub mod explain;
pub mod ids;
pub mod model;
pub mod plan;
pub mod presence;
pub mod subject;

pub use clock::{Clock, ManualClock};
pub use desired::{desired, next_transition, revokes_at};
pub use entitlement::{
    Catalog, Cause, CustomerInputs, Entitlement, TeamContract, VisitorInputs,
    customer_entitlements, visitor_entitlements,
};
pub use explain::{AccessState, GroupAccess, Reason, explain};
pub use ids::{Email, Id, ParseError, Zone, is_bidi_override};
pub use model::*;
pub use plan::{Op, Plan, Policy, ProviderUser, diff};
pub use subject::Subject;

//! doorsync's domain: the things a workspace sells, the entitlements they give, and the plan that
//! brings a provider in line. Pure logic: no IO, no async, no database.

pub mod clock;
pub mod entitlement;
pub mod ids;
pub mod model;
pub mod subject;

pub use clock::{Clock, ManualClock};
pub use entitlement::{Catalog, Cause, CustomerInputs, Entitlement, TeamContract, VisitorInputs};
pub use ids::{Email, Id, ParseError, Zone};
pub use model::*;
pub use subject::Subject;

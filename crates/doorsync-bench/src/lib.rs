//! The parts of doorsync's benchmark harness that doorsync's tests also run: the seeded
//! workload's random numbers and the access-integrity soak.

pub mod soak;
pub mod workload;

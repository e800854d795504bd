//! The one integration-test binary: the store suite and the API suite run on SQLite and on
//! PostgreSQL; the CLI tests drive the real `doorsync` binary.

mod alerts;
mod api;
mod browser;
mod cli;
mod contract;
mod dashboard;
mod member;
mod presence;
mod slow_clients;
mod soak;
mod store;
mod sync;
mod write_path;
mod writes;

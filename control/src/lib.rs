//! sluice's canary controller: every interval it measures the canary against the stable
//! backend, and moves the route's weights a step forward or back to 0%.
//!
//! The decision is a pure function ([`rollout::decide`]) of the rollout, its state and an
//! event (a [`analysis::Check`] or an operator command). Around it: metric sources that turn
//! proxy metrics into an interval's numbers ([`source`]), the controller loop that writes the
//! weights file and persists state ([`controller`]), an admin API ([`admin`]) for the CLI, and
//! a one-command demonstration ([`demo`]).

pub mod admin;
pub mod analysis;
pub mod cli_table;
pub mod controller;
pub mod demo;
pub mod exposition;
pub mod http;
pub mod metrics;
pub mod quantile;
pub mod rollout;
pub mod source;
pub mod store;
pub mod weights_file;
pub mod window;

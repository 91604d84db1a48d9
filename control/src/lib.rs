//! sluice's canary controller: every interval it measures the canary against the stable
//! backend, and moves the route's weights a step forward or back to 0%.
//!
//! The decision is a pure function ([`rollout::decide`]) of the rollout, its state and an
//! event (a [`analysis::Check`] or an operator command), returning the complete next state.
//! Around it: metric sources that turn proxy metrics into an interval's numbers ([`source`]),
//! each run on its own task ([`measure`]); the storage of weights and state behind one trait
//! ([`store`], files by default); the controller actor that carries decisions out
//! ([`controller`]); one typed [`status::Status`] for the admin API ([`admin`]), the CLI and
//! the one-command demonstration ([`demo`]).

pub mod admin;
pub mod admin_client;
pub mod analysis;
pub mod auth;
pub mod cli_table;
pub mod controller;
pub mod demo;
pub mod etcd_store;
pub mod exposition;
#[cfg(test)]
mod fixtures;
pub mod fleet;
pub mod http;
pub mod leader;
pub mod measure;
pub mod metrics;
pub mod quantile;
pub mod rollout;
pub mod source;
pub mod status;
pub mod store;
pub mod webhook;
pub mod weights_file;
pub mod window;

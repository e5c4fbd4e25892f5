//! eviction-router: cloud Spot interruption and maintenance signals from AWS, Azure and GCP,
//! normalised into one CloudEvents schema and forwarded to the Kubernetes cluster.
//!
//! Start with [`event`] (the public contract) and [`providers`] (the pure normalisers);
//! `docs/ARCHITECTURE.md` shows how the pieces fit.

pub mod ack;
pub mod analytics;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dedupe;
pub mod event;
pub mod health;
pub mod metrics;
pub mod providers;
pub mod router;
pub mod server;
pub mod service;
pub mod sinks;
pub mod sources;
pub mod telemetry;

//! eviction-router: cloud Spot interruption and maintenance signals from AWS, Azure and GCP,
//! normalised into one CloudEvents schema and forwarded to the Kubernetes cluster.
//!
//! Start with [`event`] (the public contract) and [`providers`] (the pure normalisers);
//! `docs/ARCHITECTURE.md` shows how the pieces fit.

pub mod cli;
pub mod dedupe;
pub mod event;
pub mod providers;

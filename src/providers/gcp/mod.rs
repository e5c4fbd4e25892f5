//! Google Cloud: Cloud Audit Log entries routed by a logging sink to Pub/Sub.

pub mod config;
#[cfg(feature = "gcp")]
pub mod drill;
pub mod payload;
#[cfg(feature = "gcp")]
pub mod pubsub;

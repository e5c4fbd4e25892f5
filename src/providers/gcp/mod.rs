//! Google Cloud: Cloud Audit Log entries routed by a logging sink to Pub/Sub.

pub mod payload;

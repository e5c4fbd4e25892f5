//! End-to-end tests of the real binary against real local peers: moto (SQS and EventBridge)
//! started on 127.0.0.1 by each test, local webhook receivers, and the HTTP ingest endpoint.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod cluster;
mod ingest;
mod sqs;
mod support;

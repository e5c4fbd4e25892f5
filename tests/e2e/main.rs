//! End-to-end tests of the real binary against real local peers started on 127.0.0.1 by each
//! test: moto (SQS and EventBridge), the Pub/Sub emulator, and the in-repo fakes of the
//! Kubernetes API server and of Service Bus; plus webhook receivers and the HTTP endpoints.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod cluster;
mod eventgrid;
mod fanout;
mod http;
mod ingest;
mod lifecycle;
mod nats;
mod outage;
mod pools;
mod pubsub;
mod recovery;
mod servicebus;
mod simulation;
mod sqs;
mod sse;
mod support;

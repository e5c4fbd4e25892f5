//! Amazon Web Services: EventBridge events delivered to an SQS queue.

pub mod payload;

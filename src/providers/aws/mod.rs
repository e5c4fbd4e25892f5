//! Amazon Web Services: EventBridge events delivered to an SQS queue.

pub mod config;
#[cfg(feature = "aws")]
pub mod drill;
#[cfg(feature = "aws")]
pub mod lifecycle;
pub mod payload;
#[cfg(feature = "aws")]
pub mod sqs;

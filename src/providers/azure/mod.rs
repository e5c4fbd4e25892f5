//! Microsoft Azure: Event Grid events delivered to a Service Bus queue or pushed to a webhook.

pub mod config;
#[cfg(feature = "azure")]
pub mod drill;
pub mod eventgrid;
pub mod payload;
#[cfg(feature = "azure")]
pub mod servicebus;

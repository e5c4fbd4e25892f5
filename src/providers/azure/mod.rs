//! Microsoft Azure: Event Grid events delivered to a Service Bus queue or pushed to a webhook.

pub mod payload;

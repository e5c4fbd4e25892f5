output "topic" {
  description = "Topic the logging sink publishes to (Helm value gcp.topic)."
  value       = module.eviction_router.topic
}

output "subscription" {
  description = "Router subscription (Helm value gcp.subscription)."
  value       = module.eviction_router.subscription
}

output "dead_letter_topic" {
  description = "Dead-letter topic."
  value       = module.eviction_router.dead_letter_topic
}

output "sink_writer_identity" {
  description = "Writer identity of the logging sink."
  value       = module.eviction_router.sink_writer_identity
}

output "gsa_email" {
  description = "Google service account of the router (gsa mode only)."
  value       = module.eviction_router.gsa_email
}

output "helm_values" {
  description = "Ready-made values for the eviction-router Helm chart."
  value       = module.eviction_router.helm_values
}

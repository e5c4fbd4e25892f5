output "topic" {
  description = "Full path of the topic the logging sink publishes to (projects/<p>/topics/<t>); `eviction-router inject --provider gcp` publishes here (Helm value gcp.topic)."
  value       = google_pubsub_topic.events.id
}

output "subscription" {
  description = "Full path of the router's subscription, projects/<p>/subscriptions/<s> (Helm value gcp.subscription)."
  value       = google_pubsub_subscription.events.id
}

output "dead_letter_topic" {
  description = "Full path of the dead-letter topic."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Full path of the subscription that keeps dead-lettered messages for inspection."
  value       = google_pubsub_subscription.dead_letter.id
}

output "sink_name" {
  description = "Name of the project logging sink."
  value       = google_logging_project_sink.compute_events.name
}

output "sink_filter" {
  description = "Logging filter of the sink."
  value       = google_logging_project_sink.compute_events.filter
}

output "sink_writer_identity" {
  description = "Identity the logging sink writes as (serviceAccount:...); it holds roles/pubsub.publisher on the topic."
  value       = google_logging_project_sink.compute_events.writer_identity
}

output "workload_identity_member" {
  description = "IAM member that holds the router's Pub/Sub roles: the KSA principal (\"direct\" mode) or the Google service account (\"gsa\" mode)."
  value       = local.router_member
}

output "gsa_email" {
  description = "Email of the router's Google service account in \"gsa\" mode; null in \"direct\" mode."
  value       = local.gsa_email
}

output "helm_values" {
  description = "Values for the eviction-router Helm chart (gcp provider)."
  value = {
    provider = "gcp"
    gcp = {
      subscription = google_pubsub_subscription.events.id
      topic        = google_pubsub_topic.events.id
    }
    serviceAccount = {
      annotations = var.workload_identity_mode == "gsa" ? { "iam.gke.io/gcp-service-account" = local.gsa_email } : {}
    }
  }
}

provider "google" {
  project = var.project_id
}

module "eviction_router" {
  source = "../.."

  project_id = var.project_id
  name       = var.name

  # GKE cluster (Workload Identity enabled) in the same project.
  cluster_project_id     = var.project_id
  namespace              = var.namespace
  service_account        = var.service_account
  workload_identity_mode = var.workload_identity_mode

  ack_deadline_seconds       = 60
  message_retention_duration = "600s"
  max_delivery_attempts      = 5
  retry_minimum_backoff      = "10s"
  retry_maximum_backoff      = "600s"

  enable_drill = true

  labels = var.labels
}

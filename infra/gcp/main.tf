data "google_project" "this" {
  project_id = var.project_id
}

# The cluster project's number names its workload identity pool principals.
data "google_project" "cluster" {
  count = var.workload_identity_mode == "direct" ? 1 : 0

  project_id = local.cluster_project_id
}

locals {
  cluster_project_id = coalesce(var.cluster_project_id, var.project_id)

  # Google-managed service agent that moves messages to the dead-letter topic.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  sink_filter = join(" AND ", [
    "logName=\"projects/${local.cluster_project_id}/logs/cloudaudit.googleapis.com%2Fsystem_event\"",
    "resource.type=\"gce_instance\"",
    "protoPayload.methodName=(${join(" OR ", [for m in var.sink_method_names : "\"${m}\""])})",
  ])

  workload_identity_pool = "${local.cluster_project_id}.svc.id.goog"

  # Workload Identity Federation for GKE: the KSA itself as an IAM principal.
  direct_principal = var.workload_identity_mode == "direct" ? (
    "principal://iam.googleapis.com/projects/${one(data.google_project.cluster[*].number)}/locations/global/workloadIdentityPools/${local.workload_identity_pool}/subject/ns/${var.namespace}/sa/${var.service_account}"
  ) : null

  gsa_email = one(google_service_account.router[*].email)

  router_member = var.workload_identity_mode == "gsa" ? "serviceAccount:${local.gsa_email}" : local.direct_principal
}

################################################################################
# Topics and subscriptions
################################################################################

resource "google_pubsub_topic" "events" {
  #checkov:skip=CKV_GCP_83:A customer-managed key is optional (var.kms_key_name); by default the topic holds short-lived audit-log notifications under Google-managed encryption.
  project      = var.project_id
  name         = "${var.name}-events"
  kms_key_name = var.kms_key_name
  labels       = var.labels
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:A customer-managed key is optional (var.kms_key_name); by default the dead-letter topic uses Google-managed encryption.
  project      = var.project_id
  name         = "${var.name}-dead-letter"
  kms_key_name = var.kms_key_name
  labels       = var.labels
}

resource "google_pubsub_subscription" "events" {
  project = var.project_id
  name    = "${var.name}-events"
  topic   = google_pubsub_topic.events.id
  labels  = var.labels

  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention_duration
  retain_acked_messages      = false

  # The router dedupes on the event id (the LogEntry insertId) and its cluster
  # actions are idempotent, so at-least-once delivery is enough; exactly-once
  # would add latency and make every ack a round trip that can fail.
  enable_exactly_once_delivery = false
  enable_message_ordering      = false

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # Never delete the subscription for inactivity (the default is 31 days).
  expiration_policy {
    ttl = ""
  }

  lifecycle {
    precondition {
      condition     = tonumber(trimsuffix(var.retry_minimum_backoff, "s")) <= tonumber(trimsuffix(var.retry_maximum_backoff, "s"))
      error_message = "retry_minimum_backoff must not exceed retry_maximum_backoff."
    }
  }
}

# Keeps dead-lettered messages: a topic without a subscription drops them.
resource "google_pubsub_subscription" "dead_letter" {
  project = var.project_id
  name    = "${var.name}-dead-letter"
  topic   = google_pubsub_topic.dead_letter.id
  labels  = var.labels

  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention_duration
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

# Dead-lettering runs as the Pub/Sub service agent: it must be able to publish
# to the dead-letter topic and to ack (subscribe to) the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.events.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

################################################################################
# Logging sink: Compute Engine system events → topic
################################################################################

resource "google_logging_project_sink" "compute_events" {
  project     = local.cluster_project_id
  name        = "${var.name}-compute-events"
  description = "Compute Engine preemption, host-error and maintenance audit events for eviction-router."
  destination = "pubsub.googleapis.com/${google_pubsub_topic.events.id}"
  filter      = local.sink_filter

  unique_writer_identity = true
}

resource "google_pubsub_topic_iam_member" "sink_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.publisher"
  member  = google_logging_project_sink.compute_events.writer_identity
}

################################################################################
# Router identity
################################################################################

resource "google_service_account" "router" {
  count = var.workload_identity_mode == "gsa" ? 1 : 0

  project      = var.project_id
  account_id   = var.name
  display_name = "eviction-router"
  description  = "eviction-router: Kubernetes ServiceAccount ${var.namespace}/${var.service_account} in ${local.workload_identity_pool}."
}

resource "google_service_account_iam_member" "workload_identity_user" {
  count = var.workload_identity_mode == "gsa" ? 1 : 0

  service_account_id = google_service_account.router[0].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${local.workload_identity_pool}[${var.namespace}/${var.service_account}]"
}

# Pull, ack, nack and modify the ack deadline.
resource "google_pubsub_subscription_iam_member" "router_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.events.name
  role         = "roles/pubsub.subscriber"
  member       = local.router_member
}

# The router's readiness check (its subscription watchdog) calls GetSubscription, which subscriber lacks.
resource "google_pubsub_subscription_iam_member" "router_viewer" {
  project      = var.project_id
  subscription = google_pubsub_subscription.events.name
  role         = "roles/pubsub.viewer"
  member       = local.router_member
}

# Fire drill: `eviction-router inject --provider gcp` publishes to the topic.
resource "google_pubsub_topic_iam_member" "router_drill_publisher" {
  count = var.enable_drill ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.publisher"
  member  = local.router_member
}

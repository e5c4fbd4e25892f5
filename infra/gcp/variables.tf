################################################################################
# Project, naming and labels
################################################################################

variable "project_id" {
  description = "Project that holds the Pub/Sub topics and subscriptions (and, in \"gsa\" mode, the router's Google service account)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID: 6-30 characters of lowercase letters, digits or '-', starting with a letter."
  }
}

variable "name" {
  description = "Name prefix for every resource (topics, subscriptions, logging sink) and the account ID of the Google service account in \"gsa\" mode. 6-30 characters: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit."
  type        = string
  default     = "eviction-router"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.name))
    error_message = "name must be 6-30 characters of lowercase letters, digits or '-', start with a letter and end with a letter or digit (it doubles as a service account ID)."
  }
}

variable "labels" {
  description = "Labels applied to the Pub/Sub topics and subscriptions."
  type        = map(string)
  default     = {}

  validation {
    condition     = length(var.labels) <= 64 && alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "At most 64 labels; keys must start with a lowercase letter and be at most 63 characters of lowercase letters, digits, '_' or '-'; values at most 63 of the same characters."
  }
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key (projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>) to encrypt both topics with. When null (the default) Pub/Sub uses Google-managed encryption. The Pub/Sub service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on the key; grant it outside this module."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must look like projects/<project>/locations/<location>/keyRings/<ring>/cryptoKeys/<key>."
  }
}

################################################################################
# Logging sink (Compute Engine system-event audit logs → topic)
################################################################################

variable "sink_method_names" {
  description = "protoPayload.methodName values of the Compute Engine system-event audit log entries the logging sink forwards to the topic."
  type        = list(string)
  default = [
    "compute.instances.preempted",
    "compute.instances.terminateOnHostMaintenance",
    "compute.instances.hostError",
    "compute.instances.upcomingMaintenance",
    "compute.instances.upcomingInfraMaintenance",
  ]

  validation {
    condition     = length(var.sink_method_names) >= 1 && alltrue([for m in var.sink_method_names : can(regex("^[A-Za-z0-9_.]+$", m))])
    error_message = "sink_method_names must be a non-empty list of method names (letters, digits, '.' and '_'), e.g. \"compute.instances.preempted\"."
  }
}

################################################################################
# Subscription
################################################################################

variable "ack_deadline_seconds" {
  description = "Seconds Pub/Sub waits for an ack before redelivering. The router extends the lease while it still works on a message, so this only bounds how long a message held by a crashed replica stays invisible."
  type        = number
  default     = 60

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600 && floor(var.ack_deadline_seconds) == var.ack_deadline_seconds
    error_message = "ack_deadline_seconds must be a whole number between 10 and 600."
  }
}

variable "message_retention_duration" {
  description = "How long the subscription keeps unacknowledged messages, in seconds with an \"s\" suffix, from \"600s\" (10 minutes) to \"604800s\" (7 days). A preemption notice is useless after minutes, so the default is the minimum."
  type        = string
  default     = "600s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.message_retention_duration)) && try(tonumber(trimsuffix(var.message_retention_duration, "s")) >= 600 && tonumber(trimsuffix(var.message_retention_duration, "s")) <= 604800, false)
    error_message = "message_retention_duration must be whole seconds with an \"s\" suffix between \"600s\" and \"604800s\"."
  }
}

variable "max_delivery_attempts" {
  description = "Delivery attempts (nacks or expired ack deadlines) after which Pub/Sub forwards a message to the dead-letter topic."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "retry_minimum_backoff" {
  description = "Retry policy: minimum delay before Pub/Sub redelivers a nacked message, e.g. \"10s\" (0s to 600s)."
  type        = string
  default     = "10s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]{1,9})?s$", var.retry_minimum_backoff)) && try(tonumber(trimsuffix(var.retry_minimum_backoff, "s")) <= 600, false)
    error_message = "retry_minimum_backoff must be a duration in seconds with an \"s\" suffix between \"0s\" and \"600s\"."
  }
}

variable "retry_maximum_backoff" {
  description = "Retry policy: maximum delay before Pub/Sub redelivers a nacked message, e.g. \"600s\" (0s to 600s, not less than retry_minimum_backoff)."
  type        = string
  default     = "600s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]{1,9})?s$", var.retry_maximum_backoff)) && try(tonumber(trimsuffix(var.retry_maximum_backoff, "s")) <= 600, false)
    error_message = "retry_maximum_backoff must be a duration in seconds with an \"s\" suffix between \"0s\" and \"600s\"."
  }
}

variable "dead_letter_retention_duration" {
  description = "How long the subscription on the dead-letter topic keeps dead-lettered messages for inspection, from \"600s\" to \"604800s\" (7 days, the default)."
  type        = string
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.dead_letter_retention_duration)) && try(tonumber(trimsuffix(var.dead_letter_retention_duration, "s")) >= 600 && tonumber(trimsuffix(var.dead_letter_retention_duration, "s")) <= 604800, false)
    error_message = "dead_letter_retention_duration must be whole seconds with an \"s\" suffix between \"600s\" and \"604800s\"."
  }
}

################################################################################
# Router identity (GKE Workload Identity Federation)
################################################################################

variable "cluster_project_id" {
  description = "Project of the GKE cluster: its workload identity pool (<project>.svc.id.goog) identifies the router, and its Compute Engine audit logs are what the logging sink exports. When null (the default), project_id."
  type        = string
  default     = null

  validation {
    condition     = var.cluster_project_id == null || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.cluster_project_id))
    error_message = "cluster_project_id must be a project ID: 6-30 characters of lowercase letters, digits or '-', starting with a letter."
  }
}

variable "namespace" {
  description = "Kubernetes namespace the router runs in."
  type        = string
  default     = "eviction-router"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a valid Kubernetes namespace name (DNS-1123 label, at most 63 characters)."
  }
}

variable "service_account" {
  description = "Name of the router's Kubernetes ServiceAccount (KSA). It must match the ServiceAccount the Helm release uses."
  type        = string
  default     = "eviction-router"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", var.service_account))
    error_message = "service_account must be a valid Kubernetes ServiceAccount name (DNS-1123 subdomain)."
  }
}

variable "workload_identity_mode" {
  description = "How the router's pods get Google credentials. \"direct\" (the default): Pub/Sub roles are granted straight to the KSA's Workload Identity Federation principal, no Google service account and no annotation. \"gsa\": a Google service account gets the roles, the KSA may impersonate it (roles/iam.workloadIdentityUser), and the KSA needs the iam.gke.io/gcp-service-account annotation (in helm_values)."
  type        = string
  default     = "direct"

  validation {
    condition     = contains(["direct", "gsa"], var.workload_identity_mode)
    error_message = "workload_identity_mode must be \"direct\" or \"gsa\"."
  }
}

variable "enable_drill" {
  description = "Also grant the router roles/pubsub.publisher on the topic, so that `eviction-router inject --provider gcp` can publish a fire-drill LogEntry from inside the cluster."
  type        = bool
  default     = true
}

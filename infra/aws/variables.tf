################################################################################
# Naming and tagging
################################################################################

variable "name" {
  description = "Name prefix for every resource (queues, rules, IAM role). 1-32 characters: letters, digits, '-' and '_', starting with a letter or digit."
  type        = string
  default     = "eviction-router"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$", var.name))
    error_message = "name must be 1-32 characters of letters, digits, '-' or '_', starting with a letter or digit (the longest rule name is name + 21 characters and must fit EventBridge's 64-character limit)."
  }
}

variable "tags" {
  description = "Tags applied to every taggable resource created by this module."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.tags : length(k) >= 1 && length(k) <= 128 && length(v) <= 256 && !startswith(lower(k), "aws:")])
    error_message = "Tag keys must be 1-128 characters and must not start with \"aws:\"; tag values must be at most 256 characters."
  }
}

################################################################################
# Queue
################################################################################

variable "message_retention_seconds" {
  description = "How long an event stays in the queue. Interruption notices are only useful for a few minutes, so the default is short: 300 s."
  type        = number
  default     = 300

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600 && floor(var.message_retention_seconds) == var.message_retention_seconds
    error_message = "message_retention_seconds must be a whole number between 60 and 1209600 (14 days)."
  }
}

variable "visibility_timeout_seconds" {
  description = "Seconds a received message stays hidden from other consumers before it can be received again. Should exceed the time the router needs to act on one event."
  type        = number
  default     = 60

  validation {
    condition     = var.visibility_timeout_seconds >= 0 && var.visibility_timeout_seconds <= 43200 && floor(var.visibility_timeout_seconds) == var.visibility_timeout_seconds
    error_message = "visibility_timeout_seconds must be a whole number between 0 and 43200 (12 hours)."
  }
}

variable "max_receive_count" {
  description = "Number of receives after which a message that was never deleted moves to the dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000 && floor(var.max_receive_count) == var.max_receive_count
    error_message = "max_receive_count must be a whole number between 1 and 1000."
  }
}

variable "dlq_message_retention_seconds" {
  description = "How long messages stay in the dead-letter queue. Defaults to the SQS maximum of 14 days so there is time to inspect them."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dlq_message_retention_seconds >= 60 && var.dlq_message_retention_seconds <= 1209600 && floor(var.dlq_message_retention_seconds) == var.dlq_message_retention_seconds
    error_message = "dlq_message_retention_seconds must be a whole number between 60 and 1209600 (14 days)."
  }
}

variable "kms_key_id" {
  description = "Optional ARN of a customer-managed KMS key for both queues. When null (the default) the queues use SQS-managed server-side encryption (SSE-SQS). When set, the key policy must allow events.amazonaws.com to use kms:GenerateDataKey and kms:Decrypt; the router role is granted kms:Decrypt on it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_id == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.kms_key_id))
    error_message = "kms_key_id must be null or a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>); aliases are not accepted because the router role's policy needs the key ARN."
  }
}

variable "kms_data_key_reuse_period_seconds" {
  description = "Seconds SQS may reuse a data key before calling KMS again. Only used when kms_key_id is set."
  type        = number
  default     = 300

  validation {
    condition     = var.kms_data_key_reuse_period_seconds >= 60 && var.kms_data_key_reuse_period_seconds <= 86400
    error_message = "kms_data_key_reuse_period_seconds must be between 60 and 86400."
  }
}

################################################################################
# EventBridge
################################################################################

variable "event_bus_name" {
  description = "Name or ARN of the EventBridge bus the rules are attached to, and that the router's fire drill publishes to. AWS service events (EC2, Health, Auto Scaling) are delivered to the account's \"default\" bus only."
  type        = string
  default     = "default"

  validation {
    condition     = can(regex("^(arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/)?[A-Za-z0-9._/-]{1,256}$", var.event_bus_name))
    error_message = "event_bus_name must be an event bus name (letters, digits, '.', '_', '-', '/') or an event bus ARN."
  }
}

variable "enable_rebalance_recommendations" {
  description = "Route \"EC2 Instance Rebalance Recommendation\" events to the queue."
  type        = bool
  default     = true
}

variable "enable_capacity_reservation_interruptions" {
  description = "Route \"EC2 Capacity Reservation Instance Interruption Warning\" events to the queue."
  type        = bool
  default     = true
}

variable "enable_state_change" {
  description = "Route \"EC2 Instance State-change Notification\" events for the states stopping, stopped, shutting-down and terminated to the queue."
  type        = bool
  default     = true
}

variable "enable_health_events" {
  description = "Route AWS Health scheduled-change events for EC2 (scheduled maintenance, retirement) to the queue."
  type        = bool
  default     = true
}

variable "enable_asg_lifecycle" {
  description = "Route Auto Scaling \"EC2 Instance-terminate Lifecycle Action\" events to the queue, and let the router role complete (CONTINUE) and heartbeat the lifecycle actions of the groups tagged lifecycle_group_tag_key = lifecycle_group_tag_value. Needs cluster_name or lifecycle_group_tag_key."
  type        = bool
  default     = true
}

variable "enable_drill" {
  description = "Route fire-drill events (source \"eviction-router.drill\") to the queue and allow the router role to publish them with events:PutEvents. Off by default: with it on, any principal allowed events:PutEvents on the bus can make the router drain a Node."
  type        = bool
  default     = false
}

variable "lifecycle_group_tag_key" {
  description = "Tag key that marks the Auto Scaling groups whose termination lifecycle actions the router may complete and heartbeat (only with enable_asg_lifecycle). Null (the default) means kubernetes.io/cluster/<cluster_name>, the tag that EKS managed node groups and the common self-managed node group tooling put on a cluster's groups; set it when cluster_name is not set or your groups are marked otherwise."
  type        = string
  default     = null

  validation {
    # try(): the operands of || are all evaluated, and the functions refuse null.
    condition = var.lifecycle_group_tag_key == null || try(
      length(trimspace(var.lifecycle_group_tag_key)) > 0 &&
      trimspace(var.lifecycle_group_tag_key) == var.lifecycle_group_tag_key &&
      length(var.lifecycle_group_tag_key) <= 128 &&
      !startswith(lower(var.lifecycle_group_tag_key), "aws:"),
      false
    )
    error_message = "lifecycle_group_tag_key must be null or an Auto Scaling group tag key: 1-128 characters, no leading or trailing white space, not starting with \"aws:\"."
  }
}

variable "lifecycle_group_tag_value" {
  description = "Value that lifecycle_group_tag_key must have on a group for the router to complete its lifecycle actions. Defaults to \"owned\", the value EKS and the node group tooling give kubernetes.io/cluster/<cluster_name>."
  type        = string
  default     = "owned"
  nullable    = false

  validation {
    condition     = length(trimspace(var.lifecycle_group_tag_value)) > 0 && length(var.lifecycle_group_tag_value) <= 256
    error_message = "lifecycle_group_tag_value must be a non-blank tag value of at most 256 characters."
  }
}

variable "lifecycle_hook_role_arns" {
  description = "ARNs of the IAM roles that Auto Scaling lifecycle hooks assume to post straight to the queue (their notification target). The queue policy lets these send, besides this module's EventBridge rules, and refuses every other sender."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.lifecycle_hook_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", arn))])
    error_message = "lifecycle_hook_role_arns must be IAM role ARNs (arn:<partition>:iam::<account>:role/<name>)."
  }
}

################################################################################
# Identity
################################################################################

variable "identity_mode" {
  description = "How the router's pods get AWS credentials: \"irsa\" (IAM Roles for Service Accounts, needs oidc_provider_arn), \"pod_identity\" (EKS Pod Identity) or \"none\" (no IAM role is created; bring your own)."
  type        = string
  default     = "irsa"

  validation {
    condition     = contains(["irsa", "pod_identity", "none"], var.identity_mode)
    error_message = "identity_mode must be one of \"irsa\", \"pod_identity\" or \"none\"."
  }
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC identity provider (arn:<partition>:iam::<account>:oidc-provider/<issuer>). Required when identity_mode is \"irsa\"."
  type        = string
  default     = null

  validation {
    condition     = var.oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be null or an IAM OIDC provider ARN (arn:<partition>:iam::<account>:oidc-provider/<issuer>)."
  }
}

variable "oidc_provider_url" {
  description = "Optional issuer URL of the cluster's OIDC provider (with or without https://). Only needed when it cannot be derived from oidc_provider_arn."
  type        = string
  default     = null

  validation {
    condition     = var.oidc_provider_url == null || can(regex("^(https://)?[A-Za-z0-9.-]+(/[A-Za-z0-9._~-]+)*/?$", var.oidc_provider_url))
    error_message = "oidc_provider_url must be null or an issuer URL such as https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE."
  }
}

variable "cluster_name" {
  description = "EKS cluster name. When set and identity_mode is \"pod_identity\", an EKS Pod Identity association for namespace/service_account is created. With enable_asg_lifecycle it also gives lifecycle_group_tag_key its default, kubernetes.io/cluster/<cluster_name>."
  type        = string
  default     = null

  validation {
    condition     = var.cluster_name == null || can(regex("^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", var.cluster_name))
    error_message = "cluster_name must be null or a valid EKS cluster name (1-100 characters: letters, digits, '-' and '_', starting with a letter or digit)."
  }
}

variable "namespace" {
  description = "Kubernetes namespace the router runs in."
  type        = string
  default     = "eviction-router"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a valid Kubernetes namespace name (RFC 1123 label, at most 63 characters)."
  }
}

variable "service_account" {
  description = "Name of the router's Kubernetes ServiceAccount."
  type        = string
  default     = "eviction-router"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", var.service_account))
    error_message = "service_account must be a valid Kubernetes ServiceAccount name (RFC 1123 subdomain, at most 253 characters)."
  }
}

variable "role_permissions_boundary_arn" {
  description = "Optional ARN of an IAM policy to set as the permissions boundary of the router role."
  type        = string
  default     = null

  validation {
    condition     = var.role_permissions_boundary_arn == null || can(regex("^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$", var.role_permissions_boundary_arn))
    error_message = "role_permissions_boundary_arn must be null or an IAM policy ARN."
  }
}

################################################################################
# Naming, placement and tagging
################################################################################

variable "name" {
  description = "Name prefix for every resource (system topics, event subscriptions, managed identity, queue). 3-40 characters: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit."
  type        = string
  default     = "eviction-router"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}[a-z0-9]$", var.name))
    error_message = "name must be 3-40 characters of lowercase letters, digits or '-', start with a letter and end with a letter or digit (the longest derived name, name + \"-maintenance-webhook\", must fit Event Grid's 64-character limit)."
  }
}

variable "tags" {
  description = "Tags applied to every taggable resource created by this module."
  type        = map(string)
  default     = {}

  validation {
    condition     = length(var.tags) <= 50 && alltrue([for k, v in var.tags : length(k) >= 1 && length(k) <= 512 && length(v) <= 256 && !can(regex("[<>%&\\\\?/]", k))])
    error_message = "At most 50 tags; keys must be 1-512 characters without < > % & \\ ? /, and values at most 256 characters."
  }
}

variable "resource_group_name" {
  description = "Resource group that holds the Service Bus namespace, the Event Grid system topics and the managed identity. It must already exist unless create_resource_group is true."
  type        = string

  validation {
    condition     = can(regex("^[-\\w._()]{0,89}[-\\w_()]$", var.resource_group_name))
    error_message = "resource_group_name must be 1-90 characters of letters, digits, '-', '_', '.', '(' or ')' and must not end with '.'."
  }
}

variable "create_resource_group" {
  description = "Create resource_group_name in location. When false (the default) the resource group must already exist and is left alone on destroy."
  type        = bool
  default     = false
}

variable "location" {
  description = "Azure region of the Service Bus namespace, the managed identity and (if created) the resource group, e.g. \"westeurope\". Use the region of the AKS cluster. The Event Grid system topics are always \"global\"."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9 ]*$", var.location))
    error_message = "location must be an Azure region name such as \"westeurope\" or \"West Europe\"."
  }
}

################################################################################
# Service Bus
################################################################################

variable "servicebus_namespace_name" {
  description = "Name of the Service Bus namespace. Namespace names are globally unique, so when null (the default) the name is name + \"-\" + 8 hex characters derived from the subscription, resource group and name (stable across applies)."
  type        = string
  default     = null

  validation {
    condition = var.servicebus_namespace_name == null || (
      can(regex("^[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]$", var.servicebus_namespace_name)) &&
      !can(regex("(?i)-(sb|mgmt)$", var.servicebus_namespace_name))
    )
    error_message = "servicebus_namespace_name must be 6-50 characters of letters, digits or '-', start with a letter, end with a letter or digit, and must not end with \"-sb\" or \"-mgmt\"."
  }
}

variable "local_auth_enabled" {
  description = "Allow Shared Access Signature (SAS) authentication on the namespace. Off by default so that only Microsoft Entra ID (workload identity) can reach the queue. When true, a queue-scoped SAS policy (Listen, plus Send if enable_drill) is created and exposed in the sas_connection_string output."
  type        = bool
  default     = false
}

variable "queue_name" {
  description = "Name of the Service Bus queue the system topics deliver to. When null (the default): name + \"-events\"."
  type        = string
  default     = null

  validation {
    condition     = var.queue_name == null || can(regex("^[A-Za-z0-9]([A-Za-z0-9._-]{0,258}[A-Za-z0-9])?$", var.queue_name))
    error_message = "queue_name must be 1-260 characters of letters, digits, '.', '-' or '_', starting and ending with a letter or digit."
  }
}

variable "max_delivery_count" {
  description = "Deliveries of one message (each abandon or expired lock counts) after which Service Bus moves it to the dead-letter subqueue. The router abandons poison messages, so this bounds how often a bad message is retried."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_count >= 1 && var.max_delivery_count <= 2000 && floor(var.max_delivery_count) == var.max_delivery_count
    error_message = "max_delivery_count must be a whole number between 1 and 2000."
  }
}

variable "lock_duration" {
  description = "Peek-lock duration (ISO 8601, PT5S to PT5M). The router renews the lock while it still works on a message, so this only bounds how long a message held by a crashed replica stays invisible before it is redelivered."
  type        = string
  default     = "PT1M"

  validation {
    condition = try(
      (
        tonumber(coalesce(regex("^PT(?:([0-9]+)M)?(?:([0-9]+)S)?$", var.lock_duration)[0], "0")) * 60 +
        tonumber(coalesce(regex("^PT(?:([0-9]+)M)?(?:([0-9]+)S)?$", var.lock_duration)[1], "0"))
      ) >= 5
      &&
      (
        tonumber(coalesce(regex("^PT(?:([0-9]+)M)?(?:([0-9]+)S)?$", var.lock_duration)[0], "0")) * 60 +
        tonumber(coalesce(regex("^PT(?:([0-9]+)M)?(?:([0-9]+)S)?$", var.lock_duration)[1], "0"))
      ) <= 300,
      false
    )
    error_message = "lock_duration must be an ISO 8601 duration of minutes and/or seconds between PT5S and PT5M, e.g. \"PT1M\" or \"PT30S\"."
  }
}

variable "message_ttl" {
  description = "Time to live of a message in the queue (ISO 8601, at least PT1M). Expired messages move to the dead-letter subqueue instead of vanishing. Interruption notices are useless after minutes and Azure scheduled events come at most about 15 minutes ahead, so the default is one hour."
  type        = string
  default     = "PT1H"

  validation {
    condition = try(
      (
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.message_ttl)[0], "0")) * 86400 +
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.message_ttl)[1], "0")) * 3600 +
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.message_ttl)[2], "0")) * 60 +
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.message_ttl)[3], "0"))
      ) >= 60 && !endswith(var.message_ttl, "T"),
      false
    )
    error_message = "message_ttl must be an ISO 8601 duration of days, hours, minutes and/or seconds of at least PT1M, e.g. \"PT1H\" or \"P1D\"."
  }
}

variable "duplicate_detection_window" {
  description = "Duplicate detection history window (ISO 8601, PT20S to P7D). A message whose MessageId was already seen within the window is dropped by Service Bus."
  type        = string
  default     = "PT10M"

  validation {
    condition = try(
      (
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.duplicate_detection_window)[0], "0")) * 86400 +
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.duplicate_detection_window)[1], "0")) * 3600 +
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.duplicate_detection_window)[2], "0")) * 60 +
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.duplicate_detection_window)[3], "0"))
      ) >= 20
      &&
      (
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.duplicate_detection_window)[0], "0")) * 86400 +
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.duplicate_detection_window)[1], "0")) * 3600 +
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.duplicate_detection_window)[2], "0")) * 60 +
        tonumber(coalesce(regex("^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$", var.duplicate_detection_window)[3], "0"))
      ) <= 604800
      && !endswith(var.duplicate_detection_window, "T"),
      false
    )
    error_message = "duplicate_detection_window must be an ISO 8601 duration between PT20S and P7D, e.g. \"PT10M\"."
  }
}

################################################################################
# Event Grid
################################################################################

variable "event_source_subscription_id" {
  description = "Subscription whose Resource Notifications (HealthResources, MaintenanceResources) the system topics listen to: the scope of the system topics. When null (the default), the subscription the azurerm provider is configured for. A system topic lives in the subscription of its source, so this must be the provider's subscription; for more subscriptions, instantiate the module once per subscription with an aliased provider."
  type        = string
  default     = null

  validation {
    condition     = var.event_source_subscription_id == null || can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.event_source_subscription_id))
    error_message = "event_source_subscription_id must be a subscription GUID (without the /subscriptions/ prefix)."
  }
}

variable "event_sources" {
  description = "Which system topics to create: \"health\" (Microsoft.ResourceNotifications.HealthResources, ResourceAnnotated events: VM preempted, planned maintenance, degraded hardware) and \"maintenance\" (Microsoft.ResourceNotifications.MaintenanceResources, ScheduledEventEmitted: Preempt, Terminate, Reboot, Redeploy, Freeze). Azure allows one system topic per source and topic type, so drop one here if the subscription already has it (see the README)."
  type        = set(string)
  default     = ["health", "maintenance"]

  validation {
    condition     = length(var.event_sources) >= 1 && alltrue([for s in var.event_sources : contains(["health", "maintenance"], s)])
    error_message = "event_sources must be a non-empty subset of [\"health\", \"maintenance\"]."
  }
}

variable "event_delivery_schema" {
  description = "Schema Event Grid delivers events in: \"EventGridSchema\" or \"CloudEventSchemaV1_0\". The router accepts both. Changing it replaces the event subscriptions. Webhook delivery (enable_webhook) requires \"EventGridSchema\"."
  type        = string
  default     = "EventGridSchema"

  validation {
    condition     = contains(["EventGridSchema", "CloudEventSchemaV1_0"], var.event_delivery_schema)
    error_message = "event_delivery_schema must be \"EventGridSchema\" or \"CloudEventSchemaV1_0\"."
  }
}

variable "event_retry_max_delivery_attempts" {
  description = "Retry policy of the event subscriptions: attempts Event Grid makes to deliver one event to the queue (or webhook) before dropping it."
  type        = number
  default     = 30

  validation {
    condition     = var.event_retry_max_delivery_attempts >= 1 && var.event_retry_max_delivery_attempts <= 30 && floor(var.event_retry_max_delivery_attempts) == var.event_retry_max_delivery_attempts
    error_message = "event_retry_max_delivery_attempts must be a whole number between 1 and 30."
  }
}

variable "event_retry_ttl_minutes" {
  description = "Retry policy of the event subscriptions: minutes Event Grid keeps retrying an undelivered event."
  type        = number
  default     = 1440

  validation {
    condition     = var.event_retry_ttl_minutes >= 1 && var.event_retry_ttl_minutes <= 1440 && floor(var.event_retry_ttl_minutes) == var.event_retry_ttl_minutes
    error_message = "event_retry_ttl_minutes must be a whole number between 1 and 1440."
  }
}

################################################################################
# Optional: Event Grid push to the router's webhook instead of Service Bus
################################################################################

variable "enable_webhook" {
  description = "Deliver events straight to the router's /v1/eventgrid HTTPS endpoint instead of the Service Bus queue. The Service Bus namespace, queue and identities are still created (so switching back is one flag), but no event subscription delivers to the queue."
  type        = bool
  default     = false
}

variable "webhook_url" {
  description = "Public HTTPS URL of the router's Event Grid endpoint, e.g. \"https://eviction-router.example.com/v1/eventgrid\". Required when enable_webhook is true. Event Grid validates it with a SubscriptionValidationEvent handshake when the subscription is created, so the router must already be reachable there."
  type        = string
  default     = null

  validation {
    condition     = var.webhook_url == null || can(regex("^https://[^\\s?#]+(\\?[^\\s#]*)?$", var.webhook_url))
    error_message = "webhook_url must be an https:// URL without a fragment."
  }
}

variable "webhook_secret" {
  description = "Shared secret appended to webhook_url as the ?code= query parameter; the router rejects webhook calls without it. Required when enable_webhook is true. At least 16 URL-safe characters (letters, digits, '-', '.', '_', '~'). It is stored in the Terraform state."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.webhook_secret == null || can(regex("^[A-Za-z0-9._~-]{16,}$", var.webhook_secret))
    error_message = "webhook_secret must be at least 16 URL-safe characters (letters, digits, '-', '.', '_', '~')."
  }
}

################################################################################
# Router identity (AKS Workload Identity)
################################################################################

variable "aks_oidc_issuer_url" {
  description = "OIDC issuer URL of the AKS cluster (az aks show --query oidcIssuerProfile.issuerUrl -o tsv), exactly as AKS reports it, trailing slash included: the federated credential must match the token's iss claim character for character."
  type        = string

  validation {
    condition     = can(regex("^https://[^\\s]+$", var.aks_oidc_issuer_url))
    error_message = "aks_oidc_issuer_url must be an https:// URL."
  }
}

variable "namespace" {
  description = "Kubernetes namespace the router runs in (part of the federated credential subject)."
  type        = string
  default     = "eviction-router"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a valid Kubernetes namespace name (DNS-1123 label, at most 63 characters)."
  }
}

variable "service_account" {
  description = "Name of the router's Kubernetes ServiceAccount (part of the federated credential subject). It must match the ServiceAccount the Helm release uses."
  type        = string
  default     = "eviction-router"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", var.service_account))
    error_message = "service_account must be a valid Kubernetes ServiceAccount name (DNS-1123 subdomain)."
  }
}

variable "enable_drill" {
  description = "Also grant the router identity \"Azure Service Bus Data Sender\" on the queue (and Send on the SAS policy, if any), so that `eviction-router inject --provider azure` can post a fire-drill event from inside the cluster."
  type        = bool
  default     = true
}

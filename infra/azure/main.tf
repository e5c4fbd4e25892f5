data "azurerm_client_config" "current" {}

locals {
  resource_group_name = var.create_resource_group ? azurerm_resource_group.this[0].name : var.resource_group_name

  source_subscription_id = coalesce(var.event_source_subscription_id, data.azurerm_client_config.current.subscription_id)

  # Service Bus namespace names are global; derive a stable suffix instead of
  # depending on a random provider.
  servicebus_namespace_name = coalesce(
    var.servicebus_namespace_name,
    "${var.name}-${substr(sha1("${data.azurerm_client_config.current.subscription_id}/${var.resource_group_name}/${var.name}"), 0, 8)}",
  )

  queue_name = coalesce(var.queue_name, "${var.name}-events")

  # Subscription-scoped system topics of Azure Resource Notifications, and the
  # only event type of each that the router acts on.
  all_system_topics = {
    health = {
      topic_type  = "Microsoft.ResourceNotifications.HealthResources"
      event_types = ["Microsoft.ResourceNotifications.HealthResources.ResourceAnnotated"]
    }
    maintenance = {
      topic_type  = "Microsoft.ResourceNotifications.MaintenanceResources"
      event_types = ["Microsoft.ResourceNotifications.MaintenanceResources.ScheduledEventEmitted"]
    }
  }
  system_topics = { for k, v in local.all_system_topics : k => v if contains(var.event_sources, k) }

  servicebus_subscriptions = var.enable_webhook ? {} : local.system_topics
  webhook_subscriptions    = var.enable_webhook ? local.system_topics : {}

  webhook_url = var.enable_webhook && var.webhook_url != null && var.webhook_secret != null ? (
    "${var.webhook_url}${strcontains(var.webhook_url, "?") ? "&" : "?"}code=${var.webhook_secret}"
  ) : null

  workload_identity_subject = "system:serviceaccount:${var.namespace}:${var.service_account}"
}

################################################################################
# Resource group (optional)
################################################################################

resource "azurerm_resource_group" "this" {
  count = var.create_resource_group ? 1 : 0

  name     = var.resource_group_name
  location = var.location
  tags     = var.tags
}

################################################################################
# Service Bus namespace and queue
################################################################################

resource "azurerm_servicebus_namespace" "this" {
  #checkov:skip=CKV_AZURE_199:Double (infrastructure) encryption needs a customer-managed key, which Service Bus supports only on the Premium tier; this Standard namespace holds short-lived event notifications encrypted at rest with Microsoft-managed keys.
  #checkov:skip=CKV_AZURE_201:Customer-managed keys are a Premium-tier feature; the Standard namespace uses Microsoft-managed encryption at rest for short-lived event notifications.
  #checkov:skip=CKV_AZURE_202:The namespace itself calls no other Azure service (no customer-managed key on Standard), so it needs no managed identity; the router and the system topics authenticate with their own identities.
  #checkov:skip=CKV_AZURE_204:With public network access off the namespace is reachable only through private endpoints, which Service Bus offers on the Premium tier only; Event Grid and the AKS pods reach this Standard namespace over its public endpoint, and access is limited to Microsoft Entra ID RBAC on the queue (local_auth_enabled defaults to false).
  name                          = local.servicebus_namespace_name
  resource_group_name           = local.resource_group_name
  location                      = var.location
  sku                           = "Standard"
  minimum_tls_version           = "1.2"
  local_auth_enabled            = var.local_auth_enabled
  public_network_access_enabled = true
  tags                          = var.tags
}

resource "azurerm_servicebus_queue" "events" {
  name         = local.queue_name
  namespace_id = azurerm_servicebus_namespace.this.id

  # Peek-lock: the router completes, or abandons, every message it receives.
  lock_duration      = var.lock_duration
  max_delivery_count = var.max_delivery_count

  # Expired messages go to the dead-letter subqueue instead of vanishing.
  default_message_ttl                  = var.message_ttl
  dead_lettering_on_message_expiration = true

  requires_duplicate_detection            = true
  duplicate_detection_history_time_window = var.duplicate_detection_window

  requires_session     = false
  partitioning_enabled = false
}

# Queue-scoped SAS policy, only when local (SAS) authentication is enabled.
resource "azurerm_servicebus_queue_authorization_rule" "router" {
  count = var.local_auth_enabled ? 1 : 0

  name     = "${var.name}-router"
  queue_id = azurerm_servicebus_queue.events.id
  listen   = true
  send     = var.enable_drill
  manage   = false
}

################################################################################
# Event Grid system topics (subscription scope) → queue
################################################################################

resource "azurerm_eventgrid_system_topic" "this" {
  for_each = local.system_topics

  name                = "${var.name}-${each.key}"
  resource_group_name = local.resource_group_name
  location            = "global"
  # Named source_arm_resource_id in every azurerm 4.x release (later 4.x
  # releases also accept source_resource_id).
  source_arm_resource_id = "/subscriptions/${local.source_subscription_id}"
  topic_type             = each.value.topic_type
  tags                   = var.tags

  identity {
    type = "SystemAssigned"
  }
}

# Each system topic delivers with its own managed identity: it may only send.
resource "azurerm_role_assignment" "system_topic_sender" {
  for_each = local.servicebus_subscriptions

  scope                = azurerm_servicebus_queue.events.id
  role_definition_name = "Azure Service Bus Data Sender"
  principal_id         = azurerm_eventgrid_system_topic.this[each.key].identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Event Grid system topic ${azurerm_eventgrid_system_topic.this[each.key].name} delivers to the eviction-router queue."
}

resource "azurerm_eventgrid_system_topic_event_subscription" "servicebus" {
  for_each = local.servicebus_subscriptions

  name                  = "${var.name}-${each.key}-sb"
  system_topic          = azurerm_eventgrid_system_topic.this[each.key].name
  resource_group_name   = local.resource_group_name
  event_delivery_schema = var.event_delivery_schema
  included_event_types  = each.value.event_types

  service_bus_queue_endpoint_id = azurerm_servicebus_queue.events.id

  delivery_identity {
    type = "SystemAssigned"
  }

  retry_policy {
    max_delivery_attempts = var.event_retry_max_delivery_attempts
    event_time_to_live    = var.event_retry_ttl_minutes
  }

  # The topic's identity must be allowed to send before Event Grid delivers.
  depends_on = [azurerm_role_assignment.system_topic_sender]
}

resource "azurerm_eventgrid_system_topic_event_subscription" "webhook" {
  for_each = local.webhook_subscriptions

  name                  = "${var.name}-${each.key}-webhook"
  system_topic          = azurerm_eventgrid_system_topic.this[each.key].name
  resource_group_name   = local.resource_group_name
  event_delivery_schema = var.event_delivery_schema
  included_event_types  = each.value.event_types

  webhook_endpoint {
    url = local.webhook_url
  }

  retry_policy {
    max_delivery_attempts = var.event_retry_max_delivery_attempts
    event_time_to_live    = var.event_retry_ttl_minutes
  }

  lifecycle {
    precondition {
      condition     = var.webhook_url != null && var.webhook_secret != null
      error_message = "enable_webhook = true needs both webhook_url and webhook_secret."
    }
    precondition {
      condition     = var.event_delivery_schema == "EventGridSchema"
      error_message = "Webhook delivery needs event_delivery_schema = \"EventGridSchema\": the router's /v1/eventgrid endpoint answers Event Grid's SubscriptionValidationEvent handshake."
    }
  }
}

################################################################################
# Router identity: user-assigned managed identity + AKS Workload Identity
################################################################################

resource "azurerm_user_assigned_identity" "router" {
  name                = var.name
  resource_group_name = local.resource_group_name
  location            = var.location
  tags                = var.tags
}

resource "azurerm_federated_identity_credential" "router" {
  name                = "${var.name}-aks"
  resource_group_name = local.resource_group_name
  parent_id           = azurerm_user_assigned_identity.router.id
  issuer              = var.aks_oidc_issuer_url
  subject             = local.workload_identity_subject
  audience            = ["api://AzureADTokenExchange"]
}

# Receive, complete, abandon and renew-lock all fall under Data Receiver.
resource "azurerm_role_assignment" "router_receiver" {
  scope                = azurerm_servicebus_queue.events.id
  role_definition_name = "Azure Service Bus Data Receiver"
  principal_id         = azurerm_user_assigned_identity.router.principal_id
  principal_type       = "ServicePrincipal"
  description          = "eviction-router consumes its events queue."
}

# Fire drill: `eviction-router inject --provider azure` sends to the queue.
resource "azurerm_role_assignment" "router_drill_sender" {
  count = var.enable_drill ? 1 : 0

  scope                = azurerm_servicebus_queue.events.id
  role_definition_name = "Azure Service Bus Data Sender"
  principal_id         = azurerm_user_assigned_identity.router.principal_id
  principal_type       = "ServicePrincipal"
  description          = "eviction-router posts fire-drill events to its queue."
}

provider "azurerm" {
  features {}

  # azurerm 4.x needs the subscription explicitly (or ARM_SUBSCRIPTION_ID).
  subscription_id = var.subscription_id
}

# The cluster whose Spot and maintenance signals the router handles; its OIDC
# issuer backs the workload identity federation.
data "azurerm_kubernetes_cluster" "this" {
  name                = var.aks_cluster_name
  resource_group_name = var.aks_resource_group_name
}

module "eviction_router" {
  source = "../.."

  name                  = var.name
  resource_group_name   = var.resource_group_name
  create_resource_group = true
  location              = var.location

  aks_oidc_issuer_url = data.azurerm_kubernetes_cluster.this.oidc_issuer_url
  namespace           = var.namespace
  service_account     = var.service_account

  local_auth_enabled         = false
  max_delivery_count         = 5
  lock_duration              = "PT1M"
  message_ttl                = "PT1H"
  duplicate_detection_window = "PT10M"

  event_sources                     = ["health", "maintenance"]
  event_delivery_schema             = "EventGridSchema"
  event_retry_max_delivery_attempts = 30
  event_retry_ttl_minutes           = 1440

  enable_drill = true

  tags = var.tags
}

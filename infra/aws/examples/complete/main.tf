provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "app.kubernetes.io/part-of" = "eviction-router"
    }
  }
}

module "eviction_router" {
  source = "../.."

  name           = var.name
  event_bus_name = var.event_bus_name

  identity_mode     = var.identity_mode
  oidc_provider_arn = var.oidc_provider_arn
  cluster_name      = var.cluster_name
  namespace         = var.namespace
  service_account   = var.service_account

  message_retention_seconds  = 300
  visibility_timeout_seconds = 60
  max_receive_count          = 5

  enable_rebalance_recommendations = true
  enable_state_change              = true
  enable_health_events             = true
  enable_asg_lifecycle             = true
  # The fire drill lets anyone allowed events:PutEvents on the bus make the router drain a
  # Node; turn it on where that is wanted (a staging account, say).
  enable_drill = var.enable_drill

  tags = var.tags
}

output "servicebus_namespace" {
  description = "Service Bus namespace name (Helm value azure.namespace)."
  value       = module.eviction_router.servicebus_namespace
}

output "servicebus_fqdn" {
  description = "Service Bus namespace host name."
  value       = module.eviction_router.servicebus_fqdn
}

output "queue_name" {
  description = "Events queue (Helm value azure.queue)."
  value       = module.eviction_router.queue_name
}

output "dead_letter_path" {
  description = "Dead-letter subqueue of the events queue."
  value       = module.eviction_router.dead_letter_path
}

output "client_id" {
  description = "Client ID of the router's managed identity (ServiceAccount annotation)."
  value       = module.eviction_router.client_id
}

output "tenant_id" {
  description = "Tenant of the router's managed identity."
  value       = module.eviction_router.tenant_id
}

output "helm_values" {
  description = "Ready-made values for the eviction-router Helm chart."
  value       = module.eviction_router.helm_values
}

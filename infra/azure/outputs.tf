output "resource_group_name" {
  description = "Resource group holding the module's resources."
  value       = local.resource_group_name
}

output "servicebus_namespace" {
  description = "Name of the Service Bus namespace (Helm value azure.namespace)."
  value       = azurerm_servicebus_namespace.this.name
}

output "servicebus_namespace_id" {
  description = "Resource ID of the Service Bus namespace."
  value       = azurerm_servicebus_namespace.this.id
}

output "servicebus_fqdn" {
  description = "Fully qualified host name of the Service Bus namespace, e.g. <name>.servicebus.windows.net."
  value       = try(regex("^[a-z]+://([^:/]+)", azurerm_servicebus_namespace.this.endpoint)[0], "${azurerm_servicebus_namespace.this.name}.servicebus.windows.net")
}

output "queue_name" {
  description = "Name of the events queue (Helm value azure.queue)."
  value       = azurerm_servicebus_queue.events.name
}

output "queue_id" {
  description = "Resource ID of the events queue (the scope of the role assignments)."
  value       = azurerm_servicebus_queue.events.id
}

output "dead_letter_path" {
  description = "Entity path of the queue's dead-letter subqueue, for inspecting or resubmitting dead-lettered events."
  value       = "${azurerm_servicebus_queue.events.name}/$DeadLetterQueue"
}

output "client_id" {
  description = "Client ID of the router's user-assigned managed identity (ServiceAccount annotation azure.workload.identity/client-id)."
  value       = azurerm_user_assigned_identity.router.client_id
}

output "principal_id" {
  description = "Object (principal) ID of the router's managed identity."
  value       = azurerm_user_assigned_identity.router.principal_id
}

output "identity_id" {
  description = "Resource ID of the router's managed identity."
  value       = azurerm_user_assigned_identity.router.id
}

output "tenant_id" {
  description = "Microsoft Entra tenant of the router's managed identity."
  value       = azurerm_user_assigned_identity.router.tenant_id
}

output "federated_subject" {
  description = "Subject the federated credential trusts: system:serviceaccount:<namespace>:<service_account>."
  value       = azurerm_federated_identity_credential.router.subject
}

output "system_topic_ids" {
  description = "Event Grid system topic IDs by source (\"health\", \"maintenance\")."
  value       = { for k, t in azurerm_eventgrid_system_topic.this : k => t.id }
}

output "event_subscription_ids" {
  description = "Event Grid event subscription IDs by source; they deliver to the queue, or to the webhook when enable_webhook is true."
  value = merge(
    { for k, s in azurerm_eventgrid_system_topic_event_subscription.servicebus : k => s.id },
    { for k, s in azurerm_eventgrid_system_topic_event_subscription.webhook : k => s.id },
  )
}

output "sas_policy_name" {
  description = "Name of the queue-scoped SAS policy, or null when local_auth_enabled is false."
  value       = one(azurerm_servicebus_queue_authorization_rule.router[*].name)
}

output "sas_connection_string" {
  description = "Primary connection string of the queue-scoped SAS policy (Listen, plus Send with enable_drill), or null when local_auth_enabled is false. Put it in a Kubernetes Secret; prefer workload identity."
  value       = one(azurerm_servicebus_queue_authorization_rule.router[*].primary_connection_string)
  sensitive   = true
}

output "helm_values" {
  description = "Values for the eviction-router Helm chart (azure provider, workload identity)."
  value = {
    provider = "azure"
    azure = {
      namespace = azurerm_servicebus_namespace.this.name
      queue     = azurerm_servicebus_queue.events.name
      auth      = "workload_identity"
    }
    serviceAccount = {
      annotations = {
        "azure.workload.identity/client-id" = azurerm_user_assigned_identity.router.client_id
      }
    }
    podLabels = {
      "azure.workload.identity/use" = "true"
    }
  }
}

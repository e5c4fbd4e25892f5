output "queue_url" {
  description = "URL of the events queue (Helm value aws.queueUrl)."
  value       = module.eviction_router.queue_url
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = module.eviction_router.dlq_url
}

output "rule_arns" {
  description = "EventBridge rule ARNs by signal group."
  value       = module.eviction_router.rule_arns
}

output "event_bus_name" {
  description = "Event bus for `eviction-router inject --event-bus`."
  value       = module.eviction_router.event_bus_name
}

output "role_arn" {
  description = "IAM role ARN for the router's ServiceAccount."
  value       = module.eviction_router.role_arn
}

output "lifecycle_group_tag" {
  description = "Tag an Auto Scaling group needs for the router to complete its termination lifecycle actions."
  value       = module.eviction_router.lifecycle_group_tag
}

output "region" {
  description = "Region of the resources (Helm value aws.region)."
  value       = module.eviction_router.region
}

output "helm_values" {
  description = "Ready-made values for the eviction-router Helm chart."
  value       = module.eviction_router.helm_values
}

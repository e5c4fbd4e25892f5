output "autoscaling_group_name" {
  description = "Name of the node group's Auto Scaling group."
  value       = aws_autoscaling_group.nodes.name
}

output "autoscaling_group_arn" {
  description = "ARN of the node group's Auto Scaling group."
  value       = aws_autoscaling_group.nodes.arn
}

output "lifecycle_hook_name" {
  description = "Name of the termination lifecycle hook the router completes."
  value       = aws_autoscaling_lifecycle_hook.drain.name
}

output "lifecycle_group_tag" {
  description = "The tag on the group that the router's lifecycle permission is conditioned on."
  value       = module.eviction_router.lifecycle_group_tag
}

output "asg_lifecycle_rule_arn" {
  description = "ARN of the EventBridge rule that forwards the lifecycle actions to the queue."
  value       = module.eviction_router.rule_arns["asg-lifecycle"]
}

output "queue_url" {
  description = "URL of the events queue (Helm value aws.queueUrl)."
  value       = module.eviction_router.queue_url
}

output "role_arn" {
  description = "IAM role ARN for the router's ServiceAccount."
  value       = module.eviction_router.role_arn
}

output "helm_values" {
  description = "Ready-made values for the eviction-router Helm chart."
  value       = module.eviction_router.helm_values
}

output "queue_url" {
  description = "URL of the SQS queue the router consumes."
  value       = aws_sqs_queue.events.url
}

output "queue_arn" {
  description = "ARN of the SQS queue the router consumes."
  value       = aws_sqs_queue.events.arn
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "rule_arns" {
  description = "ARNs of the EventBridge rules, keyed by signal group (spot-interruption, rebalance, capacity-reservation, state-change, health-scheduled, asg-lifecycle, drill)."
  value       = { for key, rule in aws_cloudwatch_event_rule.this : key => rule.arn }
}

output "event_bus_name" {
  description = "Name (or ARN) of the event bus the rules are attached to; pass it to `eviction-router inject --event-bus`."
  value       = var.event_bus_name
}

output "event_bus_arn" {
  description = "ARN of the event bus the rules are attached to."
  value       = local.event_bus_arn
}

output "role_arn" {
  description = "ARN of the router's IAM role, or null when identity_mode is \"none\"."
  value       = one(aws_iam_role.router[*].arn)
}

output "role_name" {
  description = "Name of the router's IAM role, or null when identity_mode is \"none\"."
  value       = one(aws_iam_role.router[*].name)
}

output "queue_policy_json" {
  description = "The events queue's resource policy as JSON: who may send to the queue, and so make the router act."
  value       = data.aws_iam_policy_document.events_queue.json
}

output "router_policy_json" {
  description = "The router's least-privilege IAM policy as JSON, for attaching to a role of your own when identity_mode is \"none\"."
  value       = data.aws_iam_policy_document.router.json
}

output "lifecycle_group_tag" {
  description = "The tag ({ key, value }) an Auto Scaling group must carry for the router to complete and heartbeat its termination lifecycle actions, or null when enable_asg_lifecycle is false. Put it on the groups of the cluster's nodes."
  value       = local.lifecycle_group_tag
}

output "pod_identity_association_id" {
  description = "ID of the EKS Pod Identity association, or null when none was created."
  value       = one(aws_eks_pod_identity_association.router[*].association_id)
}

output "region" {
  description = "AWS region the resources were created in."
  value       = local.region
}

output "helm_values" {
  description = "Values for the eviction-router Helm chart (e.g. `terraform output -json helm_values > values-aws.json` and `helm install -f values-aws.json`)."
  value = {
    provider = "aws"
    aws = {
      queueUrl = aws_sqs_queue.events.url
      region   = local.region
      eventBus = var.event_bus_name
    }
    serviceAccount = {
      name = var.service_account
      annotations = var.identity_mode == "irsa" ? tomap({
        "eks.amazonaws.com/role-arn" = one(aws_iam_role.router[*].arn)
      }) : tomap({})
    }
  }
}

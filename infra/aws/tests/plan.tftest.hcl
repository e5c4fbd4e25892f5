# Offline plan tests: fake static credentials and skip every call that would
# reach AWS. Run with `terraform test` (Terraform >= 1.7).

provider "aws" {
  region                      = "eu-west-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
}

override_data {
  target = data.aws_caller_identity.current
  values = {
    account_id = "111122223333"
    arn        = "arn:aws:iam::111122223333:user/test"
    user_id    = "AIDATEST"
  }
}

variables {
  oidc_provider_arn = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
  # enable_asg_lifecycle is on by default and needs a tag key; cluster_name gives it its default.
  cluster_name = "prod"
}

run "irsa_defaults" {
  command = plan

  assert {
    condition     = length(aws_cloudwatch_event_rule.this) == 6 && length(aws_cloudwatch_event_target.this) == 6 && !contains(keys(aws_cloudwatch_event_rule.this), "drill")
    error_message = "Six rule groups are enabled by default; the drill is off."
  }

  assert {
    condition     = aws_sqs_queue.events.message_retention_seconds == 300 && aws_sqs_queue.events.receive_wait_time_seconds == 20 && aws_sqs_queue.events.visibility_timeout_seconds == 60
    error_message = "Unexpected queue timing defaults."
  }

  assert {
    condition     = aws_sqs_queue.events.sqs_managed_sse_enabled && aws_sqs_queue.dlq.sqs_managed_sse_enabled
    error_message = "Both queues must use SQS-managed SSE by default."
  }

  assert {
    condition     = aws_sqs_queue.dlq.message_retention_seconds == 1209600
    error_message = "The DLQ keeps messages for 14 days by default."
  }

  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.this["state-change"].event_pattern).detail.state == ["stopping", "stopped", "shutting-down", "terminated"]
    error_message = "State-change rule must match the four terminal states."
  }

  assert {
    condition = jsondecode(aws_iam_role.router[0].assume_role_policy).Statement[0].Condition.StringEquals == {
      "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:sub" = "system:serviceaccount:eviction-router:eviction-router"
      "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:aud" = "sts.amazonaws.com"
    }
    error_message = "IRSA trust policy must pin the service account and audience."
  }

  assert {
    condition     = output.region == "eu-west-1"
    error_message = "region output must come from the provider."
  }

  assert {
    condition     = output.helm_values.provider == "aws" && output.helm_values.aws.eventBus == "default" && output.helm_values.aws.region == "eu-west-1"
    error_message = "helm_values must carry provider, region and event bus."
  }

  assert {
    condition     = length(output.helm_values.serviceAccount.annotations) == 1 && contains(keys(output.helm_values.serviceAccount.annotations), "eks.amazonaws.com/role-arn")
    error_message = "IRSA mode must annotate the service account with the role ARN."
  }

  assert {
    condition     = length(aws_eks_pod_identity_association.router) == 0
    error_message = "No Pod Identity association in IRSA mode."
  }
}

run "router_policy" {
  command = plan

  assert {
    condition     = [for s in jsondecode(output.router_policy_json).Statement : s.Sid] == ["ConsumeEventQueue", "CompleteLifecycleActions"]
    error_message = "Default policy: consume the queue and complete lifecycle actions, nothing else (the drill is off)."
  }

  assert {
    condition     = jsondecode(output.router_policy_json).Statement[0].Resource == "arn:aws:sqs:eu-west-1:111122223333:eviction-router-events"
    error_message = "Queue permissions must be scoped to the events queue."
  }
}

run "queue_policy_admits_only_the_rules" {
  command = plan

  assert {
    condition     = [for s in jsondecode(output.queue_policy_json).Statement : s.Sid] == ["AllowEventBridgeRules", "DenyOtherSenders", "DenyInsecureTransport"]
    error_message = "The queue admits the module's rules, denies every other sender, and requires TLS."
  }

  assert {
    condition     = toset(jsondecode(output.queue_policy_json).Statement[0].Condition.ArnEquals["aws:SourceArn"]) == toset([for k in ["asg-lifecycle", "capacity-reservation", "health-scheduled", "rebalance", "spot-interruption", "state-change"] : "arn:aws:events:eu-west-1:111122223333:rule/eviction-router-${k}"])
    error_message = "Only this module's rules (on the default bus) may send."
  }

  assert {
    condition = (
      jsondecode(output.queue_policy_json).Statement[1].Effect == "Deny" &&
      jsondecode(output.queue_policy_json).Statement[1].Principal == "*" &&
      jsondecode(output.queue_policy_json).Statement[1].Action == "sqs:SendMessage" &&
      toset(jsondecode(output.queue_policy_json).Statement[1].Condition.ArnNotEquals["aws:SourceArn"]) == toset(jsondecode(output.queue_policy_json).Statement[0].Condition.ArnEquals["aws:SourceArn"]) &&
      !contains(keys(jsondecode(output.queue_policy_json).Statement[1].Condition.ArnNotEquals), "aws:PrincipalArn")
    )
    error_message = "Every sender that is not one of the rules is denied, same-account principals included."
  }

  assert {
    condition     = [for s in aws_cloudwatch_event_rule.this : s.name if s.name == "eviction-router-drill"] == []
    error_message = "No drill rule by default."
  }
}

run "lifecycle_hook_roles_may_send" {
  command = plan

  variables {
    lifecycle_hook_role_arns = ["arn:aws:iam::111122223333:role/asg-hook"]
    event_bus_name           = "platform-events"
  }

  assert {
    condition     = [for s in jsondecode(output.queue_policy_json).Statement : s.Sid] == ["AllowEventBridgeRules", "AllowLifecycleHookRoles", "DenyOtherSenders", "DenyInsecureTransport"]
    error_message = "The hook roles are allowed besides the rules."
  }

  assert {
    condition     = jsondecode(output.queue_policy_json).Statement[1].Principal.AWS == "arn:aws:iam::111122223333:role/asg-hook"
    error_message = "The Allow names the hook role."
  }

  assert {
    condition     = jsondecode(output.queue_policy_json).Statement[2].Condition.ArnNotEquals["aws:PrincipalArn"] == "arn:aws:iam::111122223333:role/asg-hook"
    error_message = "The hook role is exempt from the Deny."
  }

  assert {
    condition     = contains(jsondecode(output.queue_policy_json).Statement[0].Condition.ArnEquals["aws:SourceArn"], "arn:aws:events:eu-west-1:111122223333:rule/platform-events/eviction-router-spot-interruption")
    error_message = "Rules on another bus have rule/<bus>/<name> ARNs."
  }
}

run "drill_when_enabled" {
  command = plan

  variables {
    enable_drill = true
  }

  assert {
    condition     = jsondecode(aws_cloudwatch_event_rule.this["drill"].event_pattern) == { source = ["eviction-router.drill"] }
    error_message = "Drill rule must match the drill source only."
  }

  assert {
    condition     = [for s in jsondecode(output.router_policy_json).Statement : s.Sid] == ["ConsumeEventQueue", "PublishFireDrillEvents", "CompleteLifecycleActions"]
    error_message = "With the drill: consume the queue, publish drill events and complete lifecycle actions, nothing else."
  }

  assert {
    condition     = jsondecode(output.router_policy_json).Statement[1].Resource == "arn:aws:events:eu-west-1:111122223333:event-bus/default"
    error_message = "PutEvents must be scoped to the event bus."
  }

  assert {
    condition     = jsondecode(output.router_policy_json).Statement[1].Condition.StringEquals["events:source"] == "eviction-router.drill"
    error_message = "PutEvents must be limited to the drill source."
  }
}

run "pod_identity_with_association" {
  command = plan

  variables {
    identity_mode     = "pod_identity"
    oidc_provider_arn = null
    cluster_name      = "prod"
  }

  assert {
    condition     = jsondecode(aws_iam_role.router[0].assume_role_policy).Statement[0].Principal.Service == "pods.eks.amazonaws.com"
    error_message = "Pod Identity trust policy must trust pods.eks.amazonaws.com."
  }

  assert {
    condition     = toset(jsondecode(aws_iam_role.router[0].assume_role_policy).Statement[0].Action) == toset(["sts:AssumeRole", "sts:TagSession"])
    error_message = "Pod Identity needs sts:AssumeRole and sts:TagSession."
  }

  assert {
    condition     = length(aws_eks_pod_identity_association.router) == 1 && aws_eks_pod_identity_association.router[0].service_account == "eviction-router"
    error_message = "A Pod Identity association must be created when cluster_name is set."
  }

  assert {
    condition     = length(output.helm_values.serviceAccount.annotations) == 0
    error_message = "Pod Identity mode needs no service account annotation."
  }
}

run "no_role_minimal_rules_kms" {
  command = plan

  variables {
    identity_mode                             = "none"
    oidc_provider_arn                         = null
    enable_rebalance_recommendations          = false
    enable_capacity_reservation_interruptions = false
    enable_state_change                       = false
    enable_health_events                      = false
    enable_asg_lifecycle                      = false
    enable_drill                              = false
    event_bus_name                            = "platform-events"
    kms_key_id                                = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }

  assert {
    condition     = length(aws_cloudwatch_event_rule.this) == 1 && contains(keys(aws_cloudwatch_event_rule.this), "spot-interruption")
    error_message = "Only the Spot interruption rule remains when every optional group is off."
  }

  assert {
    condition     = length(aws_iam_role.router) == 0 && output.role_arn == null
    error_message = "identity_mode = none creates no role."
  }

  assert {
    condition     = aws_sqs_queue.events.kms_master_key_id == var.kms_key_id && aws_sqs_queue.dlq.kms_master_key_id == var.kms_key_id
    error_message = "A customer-managed key, when given, encrypts both queues."
  }

  assert {
    condition     = [for s in jsondecode(output.router_policy_json).Statement : s.Sid] == ["ConsumeEventQueue", "DecryptEventQueue"]
    error_message = "Without the drill there is no PutEvents permission; with a CMK the role may decrypt."
  }

  assert {
    condition     = output.event_bus_arn == "arn:aws:events:eu-west-1:111122223333:event-bus/platform-events"
    error_message = "Event bus ARN must be built from the bus name."
  }
}

run "asg_lifecycle_completion" {
  command = plan

  assert {
    condition     = length([for s in jsondecode(output.router_policy_json).Statement : s if s.Sid == "CompleteLifecycleActions"]) == 1
    error_message = "With enable_asg_lifecycle (the default) there is exactly one lifecycle statement."
  }

  assert {
    condition = (
      one([for s in jsondecode(output.router_policy_json).Statement : s if s.Sid == "CompleteLifecycleActions"]).Effect == "Allow" &&
      length(one([for s in jsondecode(output.router_policy_json).Statement : s if s.Sid == "CompleteLifecycleActions"]).Action) == 2 &&
      toset(one([for s in jsondecode(output.router_policy_json).Statement : s if s.Sid == "CompleteLifecycleActions"]).Action) == toset(["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"])
    )
    error_message = "The lifecycle statement allows exactly CompleteLifecycleAction and RecordLifecycleActionHeartbeat."
  }

  assert {
    condition     = one([for s in jsondecode(output.router_policy_json).Statement : s if s.Sid == "CompleteLifecycleActions"]).Resource == "arn:aws:autoscaling:eu-west-1:111122223333:autoScalingGroup:*:autoScalingGroupName/*"
    error_message = "The lifecycle statement covers the Auto Scaling groups of this account and region only."
  }

  assert {
    condition = one([for s in jsondecode(output.router_policy_json).Statement : s if s.Sid == "CompleteLifecycleActions"]).Condition == {
      StringEquals = { "autoscaling:ResourceTag/kubernetes.io/cluster/prod" = "owned" }
    }
    error_message = "The groups are narrowed to the cluster's by kubernetes.io/cluster/<cluster_name> = owned, and nothing else."
  }

  assert {
    condition     = output.lifecycle_group_tag == { key = "kubernetes.io/cluster/prod", value = "owned" }
    error_message = "lifecycle_group_tag reports the tag the condition expects."
  }

  assert {
    condition     = jsondecode(aws_iam_role_policy.router[0].policy) == jsondecode(output.router_policy_json)
    error_message = "The role carries the policy with the lifecycle statement."
  }
}

run "asg_lifecycle_with_own_tag" {
  command = plan

  variables {
    cluster_name              = null
    lifecycle_group_tag_key   = "eviction-router/lifecycle"
    lifecycle_group_tag_value = "complete"
    identity_mode             = "none"
    oidc_provider_arn         = null
  }

  assert {
    condition = one([for s in jsondecode(output.router_policy_json).Statement : s if s.Sid == "CompleteLifecycleActions"]).Condition == {
      StringEquals = { "autoscaling:ResourceTag/eviction-router/lifecycle" = "complete" }
    }
    error_message = "A given tag key and value replace the default, also without cluster_name, and also in router_policy_json for a role of one's own."
  }

  assert {
    condition     = output.lifecycle_group_tag == { key = "eviction-router/lifecycle", value = "complete" }
    error_message = "lifecycle_group_tag reports the given tag."
  }
}

run "asg_lifecycle_off" {
  command = plan

  variables {
    enable_asg_lifecycle = false
    cluster_name         = null
  }

  assert {
    condition     = [for s in jsondecode(output.router_policy_json).Statement : s.Sid] == ["ConsumeEventQueue"]
    error_message = "Without enable_asg_lifecycle there is no autoscaling permission."
  }

  assert {
    condition     = length([for s in jsondecode(output.router_policy_json).Statement : s if length([for a in flatten([s.Action]) : a if startswith(a, "autoscaling:")]) > 0]) == 0
    error_message = "No statement grants any autoscaling action."
  }

  assert {
    condition     = !contains(keys(aws_cloudwatch_event_rule.this), "asg-lifecycle") && output.lifecycle_group_tag == null
    error_message = "No asg-lifecycle rule and no lifecycle tag when the feature is off."
  }
}

run "asg_lifecycle_needs_a_tag_key" {
  command = plan

  variables {
    cluster_name = null
  }

  expect_failures = [data.aws_iam_policy_document.router]
}

run "rejects_blank_lifecycle_tag_key" {
  command = plan

  variables {
    lifecycle_group_tag_key = "  "
  }

  expect_failures = [var.lifecycle_group_tag_key]
}

run "rejects_reserved_lifecycle_tag_key" {
  command = plan

  variables {
    lifecycle_group_tag_key = "aws:autoscaling:groupName"
  }

  expect_failures = [var.lifecycle_group_tag_key]
}

run "rejects_empty_lifecycle_tag_value" {
  command = plan

  variables {
    lifecycle_group_tag_value = ""
  }

  expect_failures = [var.lifecycle_group_tag_value]
}

run "irsa_requires_oidc_provider" {
  command = plan

  variables {
    oidc_provider_arn = null
  }

  expect_failures = [data.aws_iam_policy_document.assume_role]
}

run "rejects_bad_retention" {
  command = plan

  variables {
    message_retention_seconds = 30
  }

  expect_failures = [var.message_retention_seconds]
}

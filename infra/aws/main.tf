data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # `id` holds the region name; `name` is deprecated from provider 6.0 on and
  # `region` does not exist in 5.x, so `id` works without warnings in both.
  region = data.aws_region.current.id

  # Source of the events that `eviction-router inject` publishes.
  drill_source = "eviction-router.drill"

  use_kms = var.kms_key_id != null

  # Built from the name rather than read from the resource so that the router
  # policy is fully known (and reviewable) at plan time.
  events_queue_name = "${var.name}-events"
  events_queue_arn  = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:${local.events_queue_name}"

  event_bus_arn = startswith(var.event_bus_name, "arn:") ? var.event_bus_name : "arn:${local.partition}:events:${local.region}:${local.account_id}:event-bus/${var.event_bus_name}"
  # A rule's ARN is rule/<name> on the default bus and rule/<bus>/<name> on another one.
  event_bus_short = element(split("/", var.event_bus_name), length(split("/", var.event_bus_name)) - 1)
  rule_arn_prefix = local.event_bus_short == "default" ? "arn:${local.partition}:events:${local.region}:${local.account_id}:rule/" : "arn:${local.partition}:events:${local.region}:${local.account_id}:rule/${local.event_bus_short}/"

  # One EventBridge rule per group of signals. The key becomes part of the rule
  # name and the key of the `rule_arns` output.
  rule_groups = {
    spot-interruption = {
      enabled     = true
      description = "EC2 Spot Instance interruption warnings (two-minute notice)."
      pattern = jsonencode({
        source      = ["aws.ec2"]
        detail-type = ["EC2 Spot Instance Interruption Warning"]
      })
    }
    rebalance = {
      enabled     = var.enable_rebalance_recommendations
      description = "EC2 instance rebalance recommendations (elevated Spot interruption risk)."
      pattern = jsonencode({
        source      = ["aws.ec2"]
        detail-type = ["EC2 Instance Rebalance Recommendation"]
      })
    }
    capacity-reservation = {
      enabled     = var.enable_capacity_reservation_interruptions
      description = "EC2 Capacity Reservation instance interruption warnings."
      pattern = jsonencode({
        source      = ["aws.ec2"]
        detail-type = ["EC2 Capacity Reservation Instance Interruption Warning"]
      })
    }
    state-change = {
      enabled     = var.enable_state_change
      description = "EC2 instances that are stopping, stopped, shutting down or terminated."
      pattern = jsonencode({
        source      = ["aws.ec2"]
        detail-type = ["EC2 Instance State-change Notification"]
        detail = {
          state = ["stopping", "stopped", "shutting-down", "terminated"]
        }
      })
    }
    health-scheduled = {
      enabled     = var.enable_health_events
      description = "AWS Health scheduled changes for EC2 (maintenance, retirement)."
      pattern = jsonencode({
        source      = ["aws.health"]
        detail-type = ["AWS Health Event"]
        detail = {
          service           = ["EC2"]
          eventTypeCategory = ["scheduledChange"]
        }
      })
    }
    asg-lifecycle = {
      enabled     = var.enable_asg_lifecycle
      description = "Auto Scaling instance-terminate lifecycle actions."
      pattern = jsonencode({
        source      = ["aws.autoscaling"]
        detail-type = ["EC2 Instance-terminate Lifecycle Action"]
      })
    }
    drill = {
      enabled     = var.enable_drill
      description = "Fire-drill events published by `eviction-router inject`."
      pattern = jsonencode({
        source = [local.drill_source]
      })
    }
  }

  rules = { for key, group in local.rule_groups : key => group if group.enabled }
  # Built from the names, like events_queue_arn, so that the queue policy is known at plan time.
  rule_arns = [for key in sort(keys(local.rules)) : "${local.rule_arn_prefix}${var.name}-${key}"]

  create_role = var.identity_mode != "none"

  # The tag that marks the Auto Scaling groups whose termination lifecycle actions the router may
  # complete and heartbeat. kubernetes.io/cluster/<cluster> = owned is on the groups of EKS
  # managed node groups (EKS adds it, with eks:cluster-name) and on those of the usual
  # self-managed tooling (the terraform-aws-eks self-managed-node-group module, eksctl), because
  # the AWS cloud provider expects it on a cluster's instances; eks:cluster-name is only set by EKS
  # itself, so it would leave self-managed groups out.
  lifecycle_group_tag_key = var.lifecycle_group_tag_key != null ? var.lifecycle_group_tag_key : (
    var.cluster_name != null ? "kubernetes.io/cluster/${var.cluster_name}" : null
  )
  lifecycle_group_tag = var.enable_asg_lifecycle && local.lifecycle_group_tag_key != null ? {
    key   = local.lifecycle_group_tag_key
    value = var.lifecycle_group_tag_value
  } : null
  # Every group of this account and region: a group's ARN holds a generated id, and the tag
  # condition does the narrowing.
  autoscaling_group_arns = "arn:${local.partition}:autoscaling:${local.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/*"

  # Issuer host and path of the cluster's OIDC provider, e.g.
  # oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE, used as condition key prefix.
  oidc_issuer = try(
    trimsuffix(trimprefix(var.oidc_provider_url, "https://"), "/"),
    split(":oidc-provider/", var.oidc_provider_arn)[1],
    null,
  )
}

################################################################################
# Queues
################################################################################

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-events-dlq"
  message_retention_seconds = var.dlq_message_retention_seconds

  sqs_managed_sse_enabled           = local.use_kms ? null : true
  kms_master_key_id                 = var.kms_key_id
  kms_data_key_reuse_period_seconds = local.use_kms ? var.kms_data_key_reuse_period_seconds : null

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.dlq_message_retention_seconds >= var.message_retention_seconds
      error_message = "dlq_message_retention_seconds must be at least message_retention_seconds: a message keeps its original enqueue time when it moves to the dead-letter queue."
    }
  }
}

resource "aws_sqs_queue" "events" {
  name                       = local.events_queue_name
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = 20
  visibility_timeout_seconds = var.visibility_timeout_seconds

  sqs_managed_sse_enabled           = local.use_kms ? null : true
  kms_master_key_id                 = var.kms_key_id
  kms_data_key_reuse_period_seconds = local.use_kms ? var.kms_data_key_reuse_period_seconds : null

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = var.tags
}

# Only the events queue may use the DLQ as its dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events.arn]
  })
}

data "aws_iam_policy_document" "events_queue" {
  statement {
    sid       = "AllowEventBridgeRules"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [local.events_queue_arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = local.rule_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.lifecycle_hook_role_arns) > 0 ? [var.lifecycle_hook_role_arns] : []

    content {
      sid       = "AllowLifecycleHookRoles"
      effect    = "Allow"
      actions   = ["sqs:SendMessage"]
      resources = [local.events_queue_arn]

      principals {
        type        = "AWS"
        identifiers = statement.value
      }
    }
  }

  # An identity policy of the same account grants sqs:SendMessage without the queue policy, so
  # the Allow above is not enough: every sender but this module's rules (and the lifecycle hook
  # roles) is refused explicitly. Negated operators hold when the key is absent, so a caller
  # without aws:SourceArn (any IAM principal) is denied unless it is one of the hook roles.
  statement {
    sid       = "DenyOtherSenders"
    effect    = "Deny"
    actions   = ["sqs:SendMessage"]
    resources = [local.events_queue_arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "ArnNotEquals"
      variable = "aws:SourceArn"
      values   = local.rule_arns
    }

    dynamic "condition" {
      for_each = length(var.lifecycle_hook_role_arns) > 0 ? [var.lifecycle_hook_role_arns] : []

      content {
        test     = "ArnNotEquals"
        variable = "aws:PrincipalArn"
        values   = condition.value
      }
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [local.events_queue_arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "events" {
  queue_url = aws_sqs_queue.events.id
  policy    = data.aws_iam_policy_document.events_queue.json
}

data "aws_iam_policy_document" "dlq" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.dlq.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}

################################################################################
# EventBridge rules
################################################################################

resource "aws_cloudwatch_event_rule" "this" {
  for_each = local.rules

  name           = "${var.name}-${each.key}"
  description    = each.value.description
  event_bus_name = var.event_bus_name
  event_pattern  = each.value.pattern

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "this" {
  for_each = local.rules

  rule           = aws_cloudwatch_event_rule.this[each.key].name
  event_bus_name = var.event_bus_name
  target_id      = "${var.name}-events"
  arn            = aws_sqs_queue.events.arn

  # EventBridge can only deliver once the queue policy admits the rule.
  depends_on = [aws_sqs_queue_policy.events]
}

################################################################################
# IAM role for the router
################################################################################

data "aws_iam_policy_document" "router" {
  statement {
    sid = "ConsumeEventQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = [local.events_queue_arn]
  }

  dynamic "statement" {
    for_each = local.use_kms ? [var.kms_key_id] : []

    content {
      sid       = "DecryptEventQueue"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["sqs.${local.region}.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.enable_drill ? [local.event_bus_arn] : []

    content {
      sid       = "PublishFireDrillEvents"
      actions   = ["events:PutEvents"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "events:source"
        values   = [local.drill_source]
      }
    }
  }

  # After draining the Node of an instance held in Terminating:Wait by a termination lifecycle
  # hook, the router completes the action with CONTINUE, and heartbeats it while a long drain runs.
  # Both actions require the autoScalingGroup resource type
  # (arn:${Partition}:autoscaling:${Region}:${Account}:autoScalingGroup:${GroupId}:autoScalingGroupName/${GroupFriendlyName})
  # and support the condition key autoscaling:ResourceTag/${TagKey}: Service Authorization
  # Reference, "Actions, resources, and condition keys for Amazon EC2 Auto Scaling",
  # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html
  dynamic "statement" {
    for_each = local.lifecycle_group_tag != null ? [local.lifecycle_group_tag] : []

    content {
      sid = "CompleteLifecycleActions"
      actions = [
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:RecordLifecycleActionHeartbeat",
      ]
      resources = [local.autoscaling_group_arns]

      condition {
        test     = "StringEquals"
        variable = "autoscaling:ResourceTag/${statement.value.key}"
        values   = [statement.value.value]
      }
    }
  }

  lifecycle {
    precondition {
      condition     = !var.enable_asg_lifecycle || local.lifecycle_group_tag_key != null
      error_message = "enable_asg_lifecycle = true lets the router complete the lifecycle actions of the Auto Scaling groups tagged lifecycle_group_tag_key = lifecycle_group_tag_value: set cluster_name (the key then defaults to kubernetes.io/cluster/<cluster_name>) or lifecycle_group_tag_key, or set enable_asg_lifecycle = false."
    }
  }
}

data "aws_iam_policy_document" "assume_role" {
  count = local.create_role ? 1 : 0

  dynamic "statement" {
    for_each = var.identity_mode == "irsa" ? [var.oidc_provider_arn] : []

    content {
      sid     = "ServiceAccountWebIdentity"
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]

      principals {
        type        = "Federated"
        identifiers = [statement.value]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:sub"
        values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.identity_mode == "pod_identity" ? ["pods.eks.amazonaws.com"] : []

    content {
      sid     = "EksPodIdentity"
      effect  = "Allow"
      actions = ["sts:AssumeRole", "sts:TagSession"]

      principals {
        type        = "Service"
        identifiers = [statement.value]
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.identity_mode != "irsa" || (var.oidc_provider_arn != null && local.oidc_issuer != null)
      error_message = "identity_mode = \"irsa\" requires oidc_provider_arn (and oidc_provider_url when the issuer cannot be read from the ARN)."
    }
  }
}

resource "aws_iam_role" "router" {
  count = local.create_role ? 1 : 0

  name                 = var.name
  description          = "eviction-router: consumes ${local.events_queue_name} and publishes fire-drill events."
  assume_role_policy   = data.aws_iam_policy_document.assume_role[0].json
  permissions_boundary = var.role_permissions_boundary_arn

  tags = var.tags
}

resource "aws_iam_role_policy" "router" {
  count = local.create_role ? 1 : 0

  name   = "${var.name}-router"
  role   = aws_iam_role.router[0].id
  policy = data.aws_iam_policy_document.router.json
}

resource "aws_eks_pod_identity_association" "router" {
  count = var.identity_mode == "pod_identity" && var.cluster_name != null ? 1 : 0

  cluster_name    = var.cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.router[0].arn

  tags = var.tags
}

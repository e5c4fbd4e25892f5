# A self-managed node group whose terminations wait for the router: a termination lifecycle
# hook holds each instance in Terminating:Wait, Auto Scaling publishes
# "EC2 Instance-terminate Lifecycle Action" to EventBridge (no notification target is needed),
# the module's asg-lifecycle rule forwards it to the queue, and the router drains the Node and
# completes the action with CONTINUE.

locals {
  common_tags = merge({ "app.kubernetes.io/part-of" = "eviction-router" }, var.tags)

  group_name = "${var.name}-nodes"

  # The tag the router's lifecycle permission is conditioned on
  # (kubernetes.io/cluster/<cluster_name> = owned unless the module is told otherwise).
  lifecycle_group_tag = module.eviction_router.lifecycle_group_tag

  group_tags = merge(local.common_tags, {
    Name                            = local.group_name
    (local.lifecycle_group_tag.key) = local.lifecycle_group_tag.value
  })
}

provider "aws" {
  region = var.region

  default_tags {
    tags = local.common_tags
  }
}

module "eviction_router" {
  source = "../.."

  name = var.name

  identity_mode     = var.identity_mode
  oidc_provider_arn = var.oidc_provider_arn
  cluster_name      = var.cluster_name
  namespace         = var.namespace
  service_account   = var.service_account

  # Forward the lifecycle actions to the queue and let the router complete them on the groups
  # tagged kubernetes.io/cluster/<cluster_name> = owned (lifecycle_group_tag_key/_value).
  enable_asg_lifecycle = true

  tags = var.tags
}

resource "aws_launch_template" "nodes" {
  name_prefix            = "${local.group_name}-"
  description            = "Nodes of ${var.cluster_name} whose terminations wait for eviction-router."
  image_id               = var.ami_id
  instance_type          = var.instance_type
  user_data              = var.user_data_base64
  update_default_version = true

  iam_instance_profile {
    arn = var.instance_profile_arn
  }

  network_interfaces {
    device_index                = 0
    associate_public_ip_address = false
    delete_on_termination       = true
    security_groups             = var.security_group_ids
  }

  # IMDSv2 only. A hop limit of 1 keeps pods off the node's instance metadata (and its role);
  # host-network pods and the kubelet still reach it. The router itself uses IRSA or Pod Identity.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  # /dev/xvda is the root device of the EKS-optimized Amazon Linux AMIs.
  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = var.root_volume_size
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  # default_tags reach the launch template only; its volumes and network interfaces get them
  # here, and the instances from the group's propagated tags.
  tag_specifications {
    resource_type = "volume"
    tags          = local.group_tags
  }

  tag_specifications {
    resource_type = "network-interface"
    tags          = local.group_tags
  }
}

resource "aws_autoscaling_group" "nodes" {
  name                = local.group_name
  min_size            = var.min_size
  max_size            = var.max_size
  vpc_zone_identifier = var.subnet_ids
  health_check_type   = "EC2"

  # desired_capacity is left unset, so the group starts at min_size and Terraform does not undo
  # what the cluster autoscaler sets later.

  launch_template {
    id      = aws_launch_template.nodes.id
    version = aws_launch_template.nodes.latest_version
  }

  # The provider's default_tags do not apply to Auto Scaling groups. The lifecycle tag is
  # propagated too: the AWS cloud provider expects kubernetes.io/cluster/<cluster_name> on
  # the cluster's instances.
  dynamic "tag" {
    for_each = local.group_tags

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    precondition {
      condition     = var.min_size >= 0 && var.min_size <= var.max_size
      error_message = "min_size must be between 0 and max_size."
    }
  }
}

# The hook is a resource of its own rather than an initial_lifecycle_hook block of the group:
# Terraform then deletes it before the group, so `terraform destroy` empties the group without
# each instance waiting out the heartbeat timeout for a router that may already be gone (the
# provider also manages initial_lifecycle_hook only when the group is created). A termination
# hook has nothing to do while the group launches its first instances, so creating it after the
# group loses nothing.
#
# No notification_target_arn and role_arn: Auto Scaling sends the lifecycle action to
# EventBridge by itself, and the module's asg-lifecycle rule forwards it to the queue.
resource "aws_autoscaling_lifecycle_hook" "drain" {
  name                   = "${var.name}-drain"
  autoscaling_group_name = aws_autoscaling_group.nodes.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.heartbeat_timeout
  default_result         = "CONTINUE"
}

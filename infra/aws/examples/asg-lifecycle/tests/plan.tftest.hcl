# Offline plan test: the group carries the tag that the router's lifecycle permission is
# conditioned on, and the hook holds terminations for EventBridge. Fake static credentials;
# nothing reaches AWS. Run with `terraform test` (Terraform >= 1.7).

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
  target = module.eviction_router.data.aws_caller_identity.current
  values = {
    account_id = "111122223333"
    arn        = "arn:aws:iam::111122223333:user/test"
    user_id    = "AIDATEST"
  }
}

variables {
  cluster_name         = "prod"
  oidc_provider_arn    = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
  subnet_ids           = ["subnet-0123456789abcdef0"]
  security_group_ids   = ["sg-0123456789abcdef0"]
  ami_id               = "ami-0123456789abcdef0"
  instance_profile_arn = "arn:aws:iam::111122223333:instance-profile/prod-nodes"
  user_data_base64     = "IyBub2RlYWRtIE5vZGVDb25maWcK"
}

run "group_hook_and_permission_agree" {
  command = plan

  assert {
    condition = length([
      for t in aws_autoscaling_group.nodes.tag : t
      if t.key == "kubernetes.io/cluster/prod" && t.value == "owned" && t.propagate_at_launch
    ]) == 1
    error_message = "The group carries kubernetes.io/cluster/prod = owned and propagates it to its instances."
  }

  assert {
    condition = one([
      for s in jsondecode(module.eviction_router.router_policy_json).Statement : s
      if s.Sid == "CompleteLifecycleActions"
    ]).Condition.StringEquals == { "autoscaling:ResourceTag/kubernetes.io/cluster/prod" = "owned" }
    error_message = "The router may complete the lifecycle actions of groups with that very tag."
  }

  assert {
    condition = (
      aws_autoscaling_lifecycle_hook.drain.lifecycle_transition == "autoscaling:EC2_INSTANCE_TERMINATING" &&
      aws_autoscaling_lifecycle_hook.drain.default_result == "CONTINUE" &&
      aws_autoscaling_lifecycle_hook.drain.heartbeat_timeout == 300 &&
      aws_autoscaling_lifecycle_hook.drain.notification_target_arn == null &&
      aws_autoscaling_lifecycle_hook.drain.role_arn == null
    )
    error_message = "A termination hook, CONTINUE after 300 s, with no notification target (EventBridge carries the event)."
  }

  assert {
    condition     = length(aws_autoscaling_group.nodes.initial_lifecycle_hook) == 0
    error_message = "The hook is a resource of its own, not an initial_lifecycle_hook."
  }

  assert {
    condition = (
      aws_launch_template.nodes.metadata_options[0].http_tokens == "required" &&
      aws_launch_template.nodes.network_interfaces[0].associate_public_ip_address == "false"
    )
    error_message = "IMDSv2 only, and no public IP address."
  }

  assert {
    condition     = contains(keys(module.eviction_router.rule_arns), "asg-lifecycle")
    error_message = "The module's asg-lifecycle rule forwards the lifecycle actions to the queue."
  }
}

run "rejects_short_heartbeat" {
  command = plan

  variables {
    heartbeat_timeout = 10
  }

  expect_failures = [var.heartbeat_timeout]
}

variable "region" {
  description = "AWS region of the cluster and its node group."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.region))
    error_message = "region must look like an AWS region name, e.g. eu-west-1."
  }
}

variable "name" {
  description = "Name prefix for the module's resources, the node group and its lifecycle hook."
  type        = string
  default     = "eviction-router"
}

variable "cluster_name" {
  description = "Name of the EKS cluster the nodes join. The group is tagged kubernetes.io/cluster/<cluster_name> = owned, the tag the router's lifecycle permission expects."
  type        = string

  validation {
    condition     = can(regex("^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", var.cluster_name))
    error_message = "cluster_name must be a valid EKS cluster name."
  }
}

variable "identity_mode" {
  description = "\"irsa\", \"pod_identity\" or \"none\"."
  type        = string
  default     = "irsa"
}

variable "oidc_provider_arn" {
  description = "IAM OIDC provider ARN of the EKS cluster; required for identity_mode = \"irsa\"."
  type        = string
  default     = null
}

variable "namespace" {
  description = "Namespace the Helm release is installed into."
  type        = string
  default     = "eviction-router"
}

variable "service_account" {
  description = "ServiceAccount name used by the Helm release."
  type        = string
  default     = "eviction-router"
}

################################################################################
# Node group
################################################################################

variable "subnet_ids" {
  description = "Private subnets for the nodes (the instances get no public IP address)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", id))])
    error_message = "subnet_ids must be one or more subnet IDs (subnet-...)."
  }
}

variable "security_group_ids" {
  description = "Security groups of the nodes, e.g. the cluster's primary security group."
  type        = list(string)

  validation {
    condition     = length(var.security_group_ids) > 0 && alltrue([for id in var.security_group_ids : can(regex("^sg-[0-9a-f]{8,17}$", id))])
    error_message = "security_group_ids must be one or more security group IDs (sg-...)."
  }
}

variable "ami_id" {
  description = "AMI of the nodes, e.g. the EKS-optimized Amazon Linux 2023 AMI for the cluster's Kubernetes version (SSM parameter /aws/service/eks/optimized-ami/<version>/amazon-linux-2023/x86_64/standard/recommended/image_id)."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must be an AMI ID (ami-...)."
  }
}

variable "instance_type" {
  description = "Instance type of the nodes."
  type        = string
  default     = "m6i.large"
}

variable "instance_profile_arn" {
  description = "Instance profile of the node IAM role (AmazonEKSWorkerNodePolicy and friends); the role needs an EKS access entry of type EC2_LINUX to join the cluster."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:instance-profile/.+$", var.instance_profile_arn))
    error_message = "instance_profile_arn must be an instance profile ARN (arn:<partition>:iam::<account>:instance-profile/<name>)."
  }
}

variable "user_data_base64" {
  description = "Base64-encoded user data that joins an instance to the cluster, e.g. a nodeadm NodeConfig for Amazon Linux 2023 (cluster name, API server endpoint, certificate authority, service CIDR)."
  type        = string

  validation {
    condition     = can(base64decode(var.user_data_base64)) && length(var.user_data_base64) > 0
    error_message = "user_data_base64 must be non-empty base64."
  }
}

variable "root_volume_size" {
  description = "Size of the nodes' root volume in GiB (gp3, encrypted)."
  type        = number
  default     = 20

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 16384 && floor(var.root_volume_size) == var.root_volume_size
    error_message = "root_volume_size must be a whole number of GiB between 8 and 16384."
  }
}

variable "min_size" {
  description = "Minimum number of nodes; also the number the group starts with."
  type        = number
  default     = 1
}

variable "max_size" {
  description = "Maximum number of nodes."
  type        = number
  default     = 3
}

variable "heartbeat_timeout" {
  description = "Seconds an instance waits in Terminating:Wait for the router's next heartbeat or completion before Auto Scaling goes on with CONTINUE. Each heartbeat restarts it; the whole wait is capped at 100 times this value or 48 hours, whichever is less."
  type        = number
  default     = 300

  validation {
    condition     = var.heartbeat_timeout >= 30 && var.heartbeat_timeout <= 7200 && floor(var.heartbeat_timeout) == var.heartbeat_timeout
    error_message = "heartbeat_timeout must be a whole number of seconds between 30 and 7200."
  }
}

variable "tags" {
  description = "Tags for every resource; the group propagates them to its instances."
  type        = map(string)
  default = {
    environment = "example"
    owner       = "platform"
  }
}

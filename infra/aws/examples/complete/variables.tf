variable "region" {
  description = "AWS region of the cluster whose nodes the router protects."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.region))
    error_message = "region must look like an AWS region name, e.g. eu-west-1."
  }
}

variable "name" {
  description = "Name prefix for the module's resources."
  type        = string
  default     = "eviction-router"
}

variable "event_bus_name" {
  description = "EventBridge bus the rules attach to and the fire drill publishes to."
  type        = string
  default     = "default"
}

variable "enable_drill" {
  description = "Route `eviction-router inject` fire drills to the queue (and let the router role publish them)."
  type        = bool
  default     = false
}

variable "identity_mode" {
  description = "\"irsa\", \"pod_identity\" or \"none\"."
  type        = string
  default     = "irsa"
}

variable "oidc_provider_arn" {
  description = "IAM OIDC provider ARN of the EKS cluster (IRSA). The default is a placeholder: replace it."
  type        = string
  default     = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
}

variable "cluster_name" {
  description = "EKS cluster name: the router may complete the lifecycle actions of the Auto Scaling groups tagged kubernetes.io/cluster/<cluster_name> = owned, and with identity_mode = \"pod_identity\" it names the cluster of the Pod Identity association. The default is a placeholder: replace it."
  type        = string
  default     = "example"
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

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default = {
    environment = "example"
    owner       = "platform"
  }
}

variable "subscription_id" {
  description = "Subscription the resources go into; its Resource Notifications feed the router. The default is a placeholder: replace it."
  type        = string
  default     = "00000000-0000-0000-0000-000000000000"
}

variable "location" {
  description = "Azure region of the AKS cluster."
  type        = string
  default     = "westeurope"
}

variable "name" {
  description = "Name prefix for the module's resources."
  type        = string
  default     = "eviction-router"
}

variable "resource_group_name" {
  description = "Resource group the module creates for its resources."
  type        = string
  default     = "eviction-router"
}

variable "aks_cluster_name" {
  description = "Name of the AKS cluster (OIDC issuer and workload identity enabled)."
  type        = string
  default     = "example"
}

variable "aks_resource_group_name" {
  description = "Resource group of the AKS cluster."
  type        = string
  default     = "example-aks"
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

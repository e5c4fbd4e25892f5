variable "project_id" {
  description = "Project of the GKE cluster and the Pub/Sub resources. The default is a placeholder: replace it."
  type        = string
  default     = "example-project"
}

variable "name" {
  description = "Name prefix for the module's resources."
  type        = string
  default     = "eviction-router"
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

variable "workload_identity_mode" {
  description = "\"direct\" (KSA principal) or \"gsa\" (Google service account impersonated by the KSA)."
  type        = string
  default     = "direct"
}

variable "labels" {
  description = "Labels for the Pub/Sub resources."
  type        = map(string)
  default = {
    environment = "example"
    owner       = "platform"
  }
}

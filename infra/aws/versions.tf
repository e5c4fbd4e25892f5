terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.29 is the first 5.x release with aws_eks_pod_identity_association.
      version = ">= 5.29, < 7.0"
    }
  }
}

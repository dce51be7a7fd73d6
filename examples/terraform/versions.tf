# HCP Terraform workspace that installs the operator's chart and one GolfTrackerStack on
# an existing EKS cluster (see ../README.md for what it expects to exist).
terraform {
  required_version = ">= 1.6.0"

  cloud {
    organization = "golftracker"

    workspaces {
      name = "golftracker-production"
    }
  }

  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.35"
    }
  }
}

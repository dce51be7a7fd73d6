locals {
  # Both providers authenticate to EKS with the AWS CLI's token, as kubectl does.
  eks_exec = {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", var.cluster_name]
  }
  chart = "${path.module}/../../charts/golftracker-operator"
  # The production stack of ../production-stack.yaml, with this environment's names.
  stack = yamldecode(file("${path.module}/../production-stack.yaml"))
}

provider "kubernetes" {
  host                   = var.cluster_endpoint
  cluster_ca_certificate = base64decode(var.cluster_ca_certificate)

  exec {
    api_version = local.eks_exec.api_version
    command     = local.eks_exec.command
    args        = local.eks_exec.args
  }
}

provider "helm" {
  kubernetes = {
    host                   = var.cluster_endpoint
    cluster_ca_certificate = base64decode(var.cluster_ca_certificate)
    exec                   = local.eks_exec
  }
}

resource "helm_release" "operator" {
  name             = "golftracker-operator"
  chart            = local.chart
  namespace        = "golftracker-system"
  create_namespace = true
  values           = [file("${local.chart}/values-production.yaml")]

  set = [
    {
      name  = "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn"
      value = var.operator_role_arn
    },
  ]
}

# The CRD must exist when this is planned: on a new cluster, apply
# `-target=helm_release.operator` once first.
resource "kubernetes_manifest" "stack" {
  manifest = merge(local.stack, {
    spec = merge(local.stack.spec, {
      storage = merge(local.stack.spec.storage, {
        bucket     = var.bucket_name
        encryption = { mode = "SSE-KMS", kmsKeyId = var.kms_key_arn }
      })
      database = merge(local.stack.spec.database, { host = var.rds_endpoint })
      worker   = merge(local.stack.spec.worker, { image = var.worker_image })
    })
  })

  field_manager {
    name            = "terraform"
    force_conflicts = true
  }

  wait {
    condition {
      type   = "Ready"
      status = "True"
    }
  }

  timeouts {
    create = "10m"
    update = "10m"
  }

  depends_on = [helm_release.operator]
}

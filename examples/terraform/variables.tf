variable "cluster_name" {
  description = "Name of the EKS cluster."
  type        = string
}

variable "cluster_endpoint" {
  description = "API server endpoint of the EKS cluster."
  type        = string
}

variable "cluster_ca_certificate" {
  description = "Base64 CA certificate of the EKS cluster."
  type        = string
}

variable "operator_role_arn" {
  description = "IAM role (IRSA) of the operator: S3 on the video bucket, KMS on its key."
  type        = string
}

variable "bucket_name" {
  description = "S3 bucket for videos and reports (created by the operator)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS on the bucket."
  type        = string
}

variable "rds_endpoint" {
  description = "Endpoint of the RDS PostgreSQL cluster that holds the results."
  type        = string
}

variable "worker_image" {
  description = "Worker image (images/worker.Dockerfile), e.g. in ECR."
  type        = string
}

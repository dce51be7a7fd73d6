output "operator_release" {
  description = "Chart version the operator runs."
  value       = "${helm_release.operator.chart}-${helm_release.operator.version}"
}

output "stack" {
  description = "The GolfTrackerStack, as namespace/name."
  value       = "${kubernetes_manifest.stack.manifest.metadata.namespace}/${kubernetes_manifest.stack.manifest.metadata.name}"
}

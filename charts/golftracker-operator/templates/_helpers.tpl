{{/* Name of the chart's objects: the release name, with the chart name unless it already contains it. */}}
{{- define "golftracker-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "golftracker-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "golftracker-operator.labels" -}}
{{ include "golftracker-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: golftracker
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "golftracker-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "golftracker-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the operator's rules apply: a Role in watchNamespace, else a ClusterRole. */}}
{{- define "golftracker-operator.roleKind" -}}
{{- if .Values.watchNamespace -}}Role{{- else -}}ClusterRole{{- end -}}
{{- end -}}

{{/* A CRD from crds/yaml, shipped as a template so upgrades reach it: the file as it is,
     with the chart's labels (and the keep policy) added to its metadata. */}}
{{- define "golftracker-operator.crd" -}}
{{- $meta := dict "labels" (include "golftracker-operator.labels" .root | fromYaml) -}}
{{- if .root.Values.crds.keep -}}
{{- $_ := set $meta "annotations" (dict "helm.sh/resource-policy" "keep") -}}
{{- end -}}
{{- .root.Files.Get .file | replace "\nmetadata:\n" (printf "\nmetadata:\n%s\n" (toYaml $meta | trimSuffix "\n" | indent 2)) -}}
{{- end -}}

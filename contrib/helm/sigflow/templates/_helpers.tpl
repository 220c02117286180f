{{/* The objects' name: the release's. */}}
{{- define "sigflow.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sigflow.selectorLabels" -}}
app.kubernetes.io/name: sigflow
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sigflow.labels" -}}
{{ include "sigflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "sigflow.sasl" -}}
{{- if and .Values.kafka.sasl.secretName (hasPrefix "SASL_" .Values.kafka.securityProtocol) }}true{{ end -}}
{{- end -}}

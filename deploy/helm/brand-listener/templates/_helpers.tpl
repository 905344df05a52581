{{/* Names and labels shared by every template. */}}

{{- define "brand-listener.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "brand-listener.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "brand-listener.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "brand-listener.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "root" $ "component" "worker"). */}}
{{- define "brand-listener.selector" -}}
app.kubernetes.io/name: {{ include "brand-listener.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "brand-listener.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "brand-listener.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "brand-listener.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "brand-listener.hasSecret" -}}
{{- if or .Values.secrets.existingSecret (and .Values.secrets.create .Values.secrets.env) -}}true{{- end -}}
{{- end -}}

{{/* Fails the render when a worker count exceeds the partition count. */}}
{{- define "brand-listener.checkScale" -}}
{{- $partitions := int .Values.kafka.partitions -}}
{{- if gt (int .Values.worker.replicas) $partitions -}}
{{- fail (printf "worker.replicas (%d) exceeds kafka.partitions (%d): extra workers would sit idle" (int .Values.worker.replicas) $partitions) -}}
{{- end -}}
{{- if and .Values.keda.enabled (gt (int .Values.keda.maxReplicaCount) $partitions) -}}
{{- fail (printf "keda.maxReplicaCount (%d) exceeds kafka.partitions (%d)" (int .Values.keda.maxReplicaCount) $partitions) -}}
{{- end -}}
{{- end -}}

{{- define "brand-listener.inboxSecretName" -}}
{{- .Values.inbox.existingSecret | default (printf "%s-inbox" (include "brand-listener.fullname" .)) -}}
{{- end -}}

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

{{- define "brand-listener.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "brand-listener.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* Pod-spec lines every pod shares: service account, pull secrets, security context. */}}
{{- define "brand-listener.podCommon" -}}
serviceAccountName: {{ include "brand-listener.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* "true" when a monitoring toggle is on: its own value, or serviceMonitor.enabled when null. */}}
{{- define "brand-listener.monitoringOn" -}}
{{- $on := .value -}}
{{- if kindIs "invalid" $on -}}{{- $on = .root.Values.serviceMonitor.enabled -}}{{- end -}}
{{- if $on -}}true{{- end -}}
{{- end -}}

{{/* listen's webhook connector block, when configured and not `enabled: false` (else empty). */}}
{{- define "brand-listener.webhook" -}}
{{- $block := dig "connectors" "webhook" dict .Values.listen.config -}}
{{- if and .Values.listen.enabled $block (or (not (hasKey $block "enabled")) $block.enabled) -}}
{{- toJson $block -}}
{{- end -}}
{{- end -}}

{{- define "brand-listener.webhookPort" -}}
{{- dig "port" 8088 (include "brand-listener.webhook" . | fromJson) | int -}}
{{- end -}}

{{- define "brand-listener.webhookPath" -}}
{{- .Values.ingress.webhook.path | default (dig "path" "/webhooks/mentions" (include "brand-listener.webhook" . | fromJson)) -}}
{{- end -}}

{{/* --- Kafka security -------------------------------------------------------------------- */}}

{{- define "brand-listener.kafkaSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}

{{- define "brand-listener.kafkaSecretName" -}}
{{- .Values.kafka.sasl.existingSecret | default (printf "%s-kafka" (include "brand-listener.fullname" .)) -}}
{{- end -}}

{{/* Fails the render on Kafka settings that cannot connect. */}}
{{- define "brand-listener.checkKafka" -}}
{{- $k := .Values.kafka -}}
{{- if include "brand-listener.kafkaSasl" . -}}
{{- if not $k.sasl.username -}}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.username" $k.securityProtocol) -}}
{{- end -}}
{{- if not (or $k.sasl.password $k.sasl.existingSecret) -}}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.password or kafka.sasl.existingSecret" $k.securityProtocol) -}}
{{- end -}}
{{- end -}}
{{- if and $k.tls.keyPasswordKey (not $k.tls.clientSecret) -}}
{{- fail "kafka.tls.keyPasswordKey names a key of kafka.tls.clientSecret, which is empty" -}}
{{- end -}}
{{- end -}}

{{/* Non-secret Kafka settings (ConfigMap data) under both prefixes. */}}
{{- define "brand-listener.kafkaConfig" -}}
{{- $k := .Values.kafka -}}
{{- range $prefix := list "AGENTS_KAFKA__" "LISTENER_KAFKA__" }}
{{ $prefix }}BOOTSTRAP_SERVERS: {{ $k.bootstrapServers | quote }}
{{ $prefix }}TOPIC_PREFIX: {{ $k.topicPrefix | quote }}
{{ $prefix }}SECURITY_PROTOCOL: {{ $k.securityProtocol | quote }}
{{- if include "brand-listener.kafkaSasl" $ }}
{{ $prefix }}SASL_MECHANISM: {{ $k.sasl.mechanism | quote }}
{{ $prefix }}SASL_USERNAME: {{ $k.sasl.username | quote }}
{{- end }}
{{- if $k.tls.caSecret }}
{{ $prefix }}SSL_CAFILE: {{ printf "/etc/brand-listener/kafka/ca/%s" $k.tls.caKey | quote }}
{{- end }}
{{- if $k.tls.clientSecret }}
{{ $prefix }}SSL_CERTFILE: {{ printf "/etc/brand-listener/kafka/client/%s" $k.tls.certKey | quote }}
{{ $prefix }}SSL_KEYFILE: {{ printf "/etc/brand-listener/kafka/client/%s" $k.tls.keyKey | quote }}
{{- end }}
{{ $prefix }}SSL_CHECK_HOSTNAME: {{ $k.tls.checkHostname | quote }}
{{- end }}
{{- end -}}

{{/* Secret Kafka settings: container env entries under both prefixes. */}}
{{- define "brand-listener.kafkaSecretEnv" -}}
{{- $k := .Values.kafka -}}
{{- range $prefix := list "AGENTS_KAFKA__" "LISTENER_KAFKA__" }}
{{- if include "brand-listener.kafkaSasl" $ }}
- name: {{ $prefix }}SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "brand-listener.kafkaSecretName" $ }}
      key: {{ if $k.sasl.existingSecret }}{{ $k.sasl.existingSecretKey }}{{ else }}sasl-password{{ end }}
{{- end }}
{{- if $k.tls.keyPasswordKey }}
- name: {{ $prefix }}SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $k.tls.clientSecret }}
      key: {{ $k.tls.keyPasswordKey }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "brand-listener.kafkaVolumeMounts" -}}
{{- if .Values.kafka.tls.caSecret }}
- {name: kafka-ca, mountPath: /etc/brand-listener/kafka/ca, readOnly: true}
{{- end }}
{{- if .Values.kafka.tls.clientSecret }}
- {name: kafka-client, mountPath: /etc/brand-listener/kafka/client, readOnly: true}
{{- end }}
{{- end -}}

{{- define "brand-listener.kafkaVolumes" -}}
{{- $tls := .Values.kafka.tls -}}
{{- if $tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ $tls.caSecret }}
    defaultMode: 0440
    items:
      - {key: {{ $tls.caKey }}, path: {{ $tls.caKey }}}
{{- end }}
{{- if $tls.clientSecret }}
- name: kafka-client
  secret:
    secretName: {{ $tls.clientSecret }}
    defaultMode: 0440
    items:
      - {key: {{ $tls.certKey }}, path: {{ $tls.certKey }}}
      - {key: {{ $tls.keyKey }}, path: {{ $tls.keyKey }}}
{{- end }}
{{- end -}}

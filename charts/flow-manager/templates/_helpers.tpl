{{/*
Helpers. Every template here takes a chart context (.Values, .Release, .Chart): this chart's own, or
the subchart context a parent chart passes (index .Subcharts "flow-manager"), see _sidecar.tpl.
*/}}

{{- define "flow-manager.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flow-manager.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flow-manager.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flow-manager.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flow-manager.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "flow-manager.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "flow-manager.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "flow-manager.secretName" -}}
{{- default (printf "%s-token" (include "flow-manager.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "flow-manager.secretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "flow-manager.claimName" -}}
{{- default (printf "%s-state" (include "flow-manager.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* The link directory as the Docker engine sees it. */}}
{{- define "flow-manager.linkHostDir" -}}
{{- if eq .Values.engine.mode "host" }}
{{- default (printf "/var/lib/flow-manager/%s-%s/links" .Release.Namespace (include "flow-manager.fullname" .)) .Values.engine.host.linkDir }}
{{- else }}
{{- include "flow-manager.linkDir" . }}
{{- end }}
{{- end }}

{{/* Paths inside the manager container (the image's defaults). */}}
{{- define "flow-manager.linkDir" -}}/run/flow-manager/sockets{{- end }}
{{- define "flow-manager.stateDir" -}}/var/lib/flow-manager{{- end }}
{{- define "flow-manager.tokenDir" -}}/var/run/secrets/flow-manager{{- end }}
{{- define "flow-manager.dindSocketDir" -}}/var/run/flow-manager-engine{{- end }}
{{- define "flow-manager.uid" -}}10001{{- end }}

{{- define "flow-manager.loopback" -}}
{{- if or (eq .Values.server.listenAddress "127.0.0.1") (eq .Values.server.listenAddress "::1") (eq .Values.server.listenAddress "localhost") }}true{{ end }}
{{- end }}

{{/*
Values that would break the one-manager-per-instance rule or the topology: refused with a message
(values.schema.json refuses most of them earlier; these are the cross-field rules).
*/}}
{{- define "flow-manager.validate" -}}
{{- if hasKey .Values "replicaCount" }}
{{- fail "flow-manager: replicaCount cannot be set: exactly one manager per instance may run (two would delete each other's containers)" }}
{{- end }}
{{- if and (eq .Values.engine.mode "host") (not .Values.engine.host.socketGroup) }}
{{- fail "flow-manager: engine.mode=host needs engine.host.socketGroup, the GID owning the node's Docker socket (stat -c %g /var/run/docker.sock)" }}
{{- end }}
{{- if and .Values.service.enabled (include "flow-manager.loopback" .) }}
{{- fail "flow-manager: server.listenAddress is a loopback address, which a Service cannot reach: set service.enabled=false (sidecar) or listen on 0.0.0.0" }}
{{- end }}
{{- if and .Values.service.enabled (not .Values.deployment.enabled) }}
{{- fail "flow-manager: service.enabled needs deployment.enabled (a parent chart that includes the containers makes its own Service)" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.deployment.enabled) }}
{{- fail "flow-manager: networkPolicy.enabled needs deployment.enabled (it selects this chart's pod)" }}
{{- end }}
{{- end }}

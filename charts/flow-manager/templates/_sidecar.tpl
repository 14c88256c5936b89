{{/*
For parent charts that run flow-manager inside their own pod (flow-manager as a dependency with
deployment.enabled=false and service.enabled=false; its Secret and claim are still rendered):

  spec:
    securityContext:
      {{- include "flow-manager.sidecar.podSecurityContext" . | nindent 6 }}
    initContainers:
      {{- include "flow-manager.sidecar.initContainers" . | nindent 6 }}
    containers:
      - name: my-app   # connects to http://127.0.0.1:8000 with the token
      {{- include "flow-manager.sidecar.containers" . | nindent 6 }}
    volumes:
      {{- include "flow-manager.sidecar.volumes" . | nindent 6 }}

Each takes the parent's context and renders with the flow-manager subchart's own values and names
(.Subcharts, Helm 3.7+). Exactly one such pod may run per instance: use replicas: 1 and the Recreate
strategy in the parent's Deployment too.
*/}}


{{- define "flow-manager.sidecar.containers" -}}
{{- $sub := index .Subcharts "flow-manager" }}
{{- include "flow-manager.validate" $sub }}
{{- include "flow-manager.containers" $sub }}
{{- end }}

{{- define "flow-manager.sidecar.initContainers" -}}
{{- include "flow-manager.initContainers" (index .Subcharts "flow-manager") }}
{{- end }}

{{- define "flow-manager.sidecar.volumes" -}}
{{- include "flow-manager.volumes" (index .Subcharts "flow-manager") }}
{{- end }}

{{- define "flow-manager.sidecar.podSecurityContext" -}}
{{- include "flow-manager.podSecurityContext" (index .Subcharts "flow-manager") }}
{{- end }}

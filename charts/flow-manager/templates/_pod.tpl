{{/*
The pod's parts, shared by this chart's Deployment and by parent charts (_sidecar.tpl).
*/}}

{{- define "flow-manager.args" -}}
- serve
- --host={{ .Values.server.listenAddress }}
- --port={{ .Values.server.port }}
- --log-level={{ .Values.server.logLevel }}
- --instance={{ .Values.instance }}
- --flow-image={{ .Values.server.flowImage }}
- --no-build-image
- --store=journal
- --state-dir={{ include "flow-manager.stateDir" . }}
- --socket-dir={{ include "flow-manager.linkDir" . }}
- --socket-host-dir={{ include "flow-manager.linkHostDir" . }}
{{- if eq .Values.engine.mode "dind" }}
- --docker-host=unix://{{ include "flow-manager.dindSocketDir" . }}/docker.sock
{{- else }}
- --docker-host=unix:///var/run/docker.sock
{{- end }}
- --token-file={{ include "flow-manager.tokenDir" . }}/token
{{- with .Values.server.corsOrigins }}
- --cors-origins={{ join "," . }}
{{- end }}
{{- with .Values.security }}
{{- with .volumeRoots }}
- --volume-roots={{ join "," . }}
{{- end }}
{{- with .codeRoots }}
- --code-roots={{ join "," . }}
{{- end }}
- --allowed-images={{ join "," .allowedImages }}
- {{ if .pullImages }}--pull-images{{ else }}--no-pull-images{{ end }}
- --host-port-range={{ .hostPortRange }}
- --publish-host-ip={{ .publishHostIp }}
- --max-containers={{ int64 .maxContainers }}
- --default-memory-limit={{ int64 .defaultMemoryLimit }}
- --max-memory-limit={{ int64 .maxMemoryLimit }}
- --default-pids-limit={{ int64 .defaultPidsLimit }}
- --max-pids-limit={{ int64 .maxPidsLimit }}
{{- end }}
{{- end }}

{{- define "flow-manager.probe" -}}
{{- $probe := index .root.Values.probes .kind }}
{{- if include "flow-manager.loopback" .root }}
exec:
  command:
    - python3
    - -c
    - {{ printf "import sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%d%s', timeout=%d).status == 200 else 1)" (int .root.Values.server.port) $probe.path (int $probe.timeoutSeconds) | quote }}
{{- else }}
httpGet:
  path: {{ $probe.path }}
  port: http
{{- end }}
initialDelaySeconds: {{ $probe.initialDelaySeconds }}
periodSeconds: {{ $probe.periodSeconds }}
timeoutSeconds: {{ $probe.timeoutSeconds }}
failureThreshold: {{ $probe.failureThreshold }}
{{- end }}

{{/* The manager's container securityContext: nothing it does needs more. */}}
{{- define "flow-manager.containerSecurityContext" -}}
runAsUser: {{ include "flow-manager.uid" . }}
runAsGroup: {{ include "flow-manager.uid" . }}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "flow-manager.containers" -}}
- name: manager
  image: {{ include "flow-manager.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    {{- include "flow-manager.args" . | nindent 4 }}
  ports:
    - name: http
      containerPort: {{ .Values.server.port }}
      protocol: TCP
  livenessProbe:
    {{- include "flow-manager.probe" (dict "root" . "kind" "liveness") | trim | nindent 4 }}
  readinessProbe:
    {{- include "flow-manager.probe" (dict "root" . "kind" "readiness") | trim | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- include "flow-manager.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: flow-manager-state
      mountPath: {{ include "flow-manager.stateDir" . }}
    - name: flow-manager-links
      mountPath: {{ include "flow-manager.linkDir" . }}
    - name: flow-manager-token
      mountPath: {{ include "flow-manager.tokenDir" . }}
      readOnly: true
    - name: flow-manager-tmp
      mountPath: /tmp
    {{- if eq .Values.engine.mode "dind" }}
    - name: flow-manager-engine-socket
      mountPath: {{ include "flow-manager.dindSocketDir" . }}
    {{- else }}
    - name: flow-manager-docker-socket
      mountPath: /var/run/docker.sock
    {{- end }}
{{- if eq .Values.engine.mode "dind" }}
{{- /* The engine needs privileged (mounts, cgroups, iptables): it is isolated in its own container, and
  the manager reaches it only through the socket directory, which dockerd gives the manager's group. */}}
- name: engine
  image: {{ printf "%s:%s" .Values.engine.dind.image.repository .Values.engine.dind.image.tag }}
  imagePullPolicy: {{ .Values.engine.dind.image.pullPolicy }}
  args:
    - --host=unix://{{ include "flow-manager.dindSocketDir" . }}/docker.sock
    - --group={{ include "flow-manager.uid" . }}
  env:
    - name: DOCKER_TLS_CERTDIR
      value: ""
  resources:
    {{- toYaml .Values.engine.dind.resources | nindent 4 }}
  securityContext:
    privileged: true
    runAsUser: 0
    runAsNonRoot: false
  volumeMounts:
    - name: flow-manager-engine-socket
      mountPath: {{ include "flow-manager.dindSocketDir" . }}
    - name: flow-manager-links
      mountPath: {{ include "flow-manager.linkDir" . }}
    - name: flow-manager-engine-data
      mountPath: /var/lib/docker
{{- end }}
{{- end }}

{{/* host mode: the node directory of the links is created root-owned; hand it to the manager's user. */}}
{{- define "flow-manager.initContainers" -}}
{{- if eq .Values.engine.mode "host" }}
- name: link-dir-owner
  image: {{ include "flow-manager.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["chown", "{{ include "flow-manager.uid" . }}:{{ include "flow-manager.uid" . }}", "{{ include "flow-manager.linkDir" . }}"]
  securityContext:
    runAsUser: 0
    runAsNonRoot: false
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities:
      drop: [ALL]
      add: [CHOWN]
    seccompProfile:
      type: RuntimeDefault
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      memory: 32Mi
  volumeMounts:
    - name: flow-manager-links
      mountPath: {{ include "flow-manager.linkDir" . }}
{{- end }}
{{- end }}

{{- define "flow-manager.volumes" -}}
- name: flow-manager-state
  {{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "flow-manager.claimName" . }}
  {{- else }}
  emptyDir: {}
  {{- end }}
- name: flow-manager-token
  secret:
    secretName: {{ include "flow-manager.secretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "flow-manager.secretKey" . }}
        path: token
- name: flow-manager-tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- if eq .Values.engine.mode "dind" }}
- name: flow-manager-links
  emptyDir: {}
- name: flow-manager-engine-socket
  emptyDir: {}
- name: flow-manager-engine-data
  {{- with .Values.engine.dind.storageSizeLimit }}
  emptyDir:
    sizeLimit: {{ . }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- else }}
- name: flow-manager-links
  hostPath:
    path: {{ include "flow-manager.linkHostDir" . }}
    type: DirectoryOrCreate
- name: flow-manager-docker-socket
  hostPath:
    path: {{ .Values.engine.host.socketPath }}
    type: Socket
{{- end }}
{{- end }}

{{/* Pod-level security: the group that may reach the node's socket, the state volume's group. */}}
{{- define "flow-manager.podSecurityContext" -}}
fsGroup: {{ include "flow-manager.uid" . }}
{{- if eq .Values.engine.mode "host" }}
supplementalGroups: [{{ int64 .Values.engine.host.socketGroup }}]
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

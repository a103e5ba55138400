{{/* The release's resource name. */}}
{{- define "woorelay.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "woorelay.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "woorelay.labels" -}}
{{ include "woorelay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Secret holding the write keys and the admin token. */}}
{{- define "woorelay.secretName" -}}
{{- default (include "woorelay.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* A source's write key variable: WOORELAY_WRITE_KEY_<NAME>. */}}
{{- define "woorelay.keyEnv" -}}
{{- printf "WOORELAY_WRITE_KEY_%s" (. | upper | replace "-" "_" | replace "." "_") -}}
{{- end -}}

{{/* Whether the relays share a NATS JetStream queue (a Deployment) or each keep one on disk (a StatefulSet). */}}
{{- define "woorelay.shared" -}}
{{- if .Values.queue.urls }}true{{ end -}}
{{- end -}}

{{/* The pod template of either workload. */}}
{{- define "woorelay.podTemplate" -}}
metadata:
  labels:
    {{- include "woorelay.selectorLabels" . | nindent 4 }}
  annotations:
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: woorelay
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - serve
        - --config=/etc/woorelay/woorelay.yaml
        - --watch
        - --listen=:{{ .Values.service.port }}
        - --admin-listen=:{{ .Values.adminService.port }}
        - --drain-timeout={{ .Values.drainTimeout }}
        {{- if include "woorelay.shared" . }}
        - --queue={{ join "," .Values.queue.urls }}
        {{- else }}
        - --data=/var/lib/woorelay
        - --disk-budget={{ .Values.persistence.diskBudget }}
        {{- end }}
      env:
        - name: WOORELAY_ADMIN_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ include "woorelay.secretName" . }}
              key: admin-token
        {{- range .Values.config.sources }}
        - name: {{ include "woorelay.keyEnv" .name }}
          valueFrom:
            secretKeyRef:
              name: {{ include "woorelay.secretName" $ }}
              key: write-key-{{ .name }}
        {{- end }}
        {{- range $k, $v := .Values.env }}
        - name: {{ $k }}
          value: {{ $v | quote }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.service.port }}
          protocol: TCP
        - name: admin
          containerPort: {{ .Values.adminService.port }}
          protocol: TCP
      startupProbe:
        httpGet: {path: /healthz, port: http}
        periodSeconds: 2
        failureThreshold: 60
      livenessProbe:
        httpGet: {path: /healthz, port: http}
        periodSeconds: 10
        failureThreshold: 3
      readinessProbe:
        httpGet: {path: /readyz, port: http}
        periodSeconds: 5
        failureThreshold: 2
      lifecycle:
        preStop:
          sleep:
            seconds: {{ .Values.preStopSeconds }}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: [ALL]
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/woorelay
          readOnly: true
        {{- if not (include "woorelay.shared" .) }}
        - name: data
          mountPath: /var/lib/woorelay
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "woorelay.fullname" . }}
        items:
          - key: woorelay.yaml
            path: woorelay.yaml
          {{- range $folder, $files := .Values.mappings }}
          {{- range $file, $_ := $files }}
          - key: mappings.{{ $folder }}.{{ $file }}
            path: mappings/{{ $folder }}/{{ $file }}
          {{- end }}
          {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
Names and labels. Every object is <fullname>-<component>; a component is a
stage (resize), a classifier instance (classifier-prod), the dashboard or init.
*/}}
{{- define "eyeflow.fullname" -}}
{{- if contains "eyeflow" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-eyeflow" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "eyeflow.selectorLabels" -}}
app.kubernetes.io/name: eyeflow
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end -}}

{{/* part-of is the ServiceMonitor's job label: job="eyeflow", as deploy/prometheus's rules expect. */}}
{{- define "eyeflow.labels" -}}
{{ include "eyeflow.selectorLabels" . }}
app.kubernetes.io/part-of: eyeflow
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | quote }}
{{- end -}}

{{- define "eyeflow.image" -}}
{{- printf "%s:%s" .repository (.tag | default .appVersion) -}}
{{- end -}}

{{/*
The durable consumers each stage reads, as the stage catalogue declares them
(pipeline.Stages(): Input.Stream, Input.Consumers()); the classifier's are one
per env, classifier-<env> on EYE_SPLITS. cmd/eyeflow/helm_test.go holds this
table to the catalogue.
*/}}
{{- define "eyeflow.inputs" -}}
ingest: [{stream: EYE_UPLOADS, consumer: ingest-ledger}]
resize: [{stream: EYE_UPLOADS, consumer: resize}]
splitter: [{stream: EYE_RESIZED, consumer: splitter}]
driftwatch: [{stream: EYE_PREDICTIONS, consumer: driftwatch}]
labelsink: [{stream: EYE_RETRAIN, consumer: labelsink}]
trainer: [{stream: EYE_RETRAIN, consumer: trainer}]
{{- end -}}

{{/*
The stage Deployments as data, one per stage and one per classifier instance:
component, stage, the eyeflow command line (args: the image's entrypoint stays,
so the GPU image's wrapper still finds the Vulkan driver), the consumers it
reads, its extra environment, replicas, resources, autoscaling and image. The
Deployments, Services, ScaledObjects and the dashboard's --metrics-urls are all
rendered from it.
*/}}
{{- define "eyeflow.workloads" -}}
{{- $root := . -}}
{{- $inputs := include "eyeflow.inputs" . | fromYaml -}}
{{- $secret := .Values.secrets.name -}}
{{- $keys := .Values.secrets.keys -}}
{{- $cpuImage := include "eyeflow.image" (dict "repository" .Values.image.repository "tag" .Values.image.tag "appVersion" .Chart.AppVersion) -}}
{{- $saltEnv := list (dict "name" "EYEFLOW_SPLIT_SALT" "valueFrom" (dict "secretKeyRef" (dict "name" $secret "key" $keys.splitSalt))) (dict "name" "EYEFLOW_SPLIT_SALT_VERSION" "value" .Values.splitSaltVersion) -}}
workloads:
{{- range $stage := list "ingest" "resize" "splitter" "classifier" "driftwatch" "labelsink" "trainer" }}
{{- $v := index $root.Values.stages $stage }}
{{- if eq $stage "classifier" }}
{{- $gpu := $v.gpu }}
{{- range $instance, $iv := $v.instances }}
{{- $args := list "classifier" "--envs" (join "," $iv.envs) }}
{{- $env := list }}
{{- $image := $cpuImage }}
{{- $resources := deepCopy $v.resources }}
{{- if $gpu.enabled }}
{{- $args = concat $args (list "--device" $gpu.device) }}
{{- $image = include "eyeflow.image" (dict "repository" $gpu.image.repository "tag" $gpu.image.tag "appVersion" $root.Chart.AppVersion) }}
{{- /* Not NVIDIA_VISIBLE_DEVICES: the device plugin sets it to the pod's own GPUs. */}}
{{- $env = list (dict "name" "NVIDIA_DRIVER_CAPABILITIES" "value" $gpu.driverCapabilities) (dict "name" "XDG_RUNTIME_DIR" "value" "/tmp/xdg-eyeflow") }}
{{- /* Extended resources are asked for in limits (requests default to them). */}}
{{- $limits := merge (dict $gpu.resourceName (toString (int $gpu.count))) ($resources.limits | default dict) }}
{{- $_ := set $resources "limits" $limits }}
{{- end }}
{{- $consumers := list }}
{{- range $e := $iv.envs }}
{{- $consumers = append $consumers (dict "stream" "EYE_SPLITS" "consumer" (printf "classifier-%s" $e)) }}
{{- end }}
- component: {{ printf "classifier-%s" $instance | quote }}
  stage: classifier
  args: {{ concat $args ($iv.args | default list) | toJson }}
  consumers: {{ $consumers | toJson }}
  env: {{ $env | toJson }}
  replicas: {{ int $v.replicas }}
  resources: {{ $resources | toJson }}
  autoscaling: {{ $v.autoscaling | toJson }}
  image: {{ $image | quote }}
{{- end }}
{{- else }}
{{- $args := list $stage }}
{{- $env := list }}
{{- $consumers := index $inputs $stage }}
{{- if or (eq $stage "resize") (eq $stage "splitter") }}
{{- /* Patient ids are hashed with the splitter's salt: resize needs the same one. */}}
{{- $env = $saltEnv }}
{{- end }}
{{- if eq $stage "labelsink" }}
{{- with $v.labelstudio.url }}
{{- $args = concat $args (list "--labelstudio-url" .) }}
{{- end }}
{{- if gt (float64 $v.lowConfidence) 0.0 }}
{{- $args = concat $args (list "--label-low-confidence" (toString $v.lowConfidence)) }}
{{- $consumers = append $consumers (dict "stream" "EYE_PREDICTIONS" "consumer" "labelsink-predictions") }}
{{- end }}
{{- $env = list (dict "name" "EYEFLOW_LABELSTUDIO_TOKEN" "valueFrom" (dict "secretKeyRef" (dict "name" $secret "key" $keys.labelstudioToken "optional" true))) (dict "name" "EYEFLOW_LABELSTUDIO_STORAGE_ID" "value" (toString (int $v.labelstudio.storageId))) }}
{{- end }}
- component: {{ $stage | quote }}
  stage: {{ $stage | quote }}
  args: {{ concat $args ($v.args | default list) | toJson }}
  consumers: {{ $consumers | toJson }}
  env: {{ $env | toJson }}
  replicas: {{ int $v.replicas }}
  resources: {{ $v.resources | toJson }}
  autoscaling: {{ $v.autoscaling | toJson }}
  image: {{ $cpuImage | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The environment every eyeflow process shares (compose.yaml's x-eyeflow-env),
logged in as NATS user eyeflow-<role> with the password of the Secret's
EYEFLOW_NATS_PASSWORD_<ROLE> (security/natsauth's names). withS3: the S3 store
and its credentials; withHTTP: the HTTP endpoint.
*/}}
{{- define "eyeflow.env" -}}
{{- $v := .root.Values -}}
- name: EYEFLOW_NATS
  value: {{ $v.nats.url | quote }}
- name: EYEFLOW_NATS_USER
  value: {{ printf "eyeflow-%s" .role | quote }}
- name: EYEFLOW_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.secrets.name | quote }}
      key: {{ printf "EYEFLOW_NATS_PASSWORD_%s" (upper .role) | quote }}
- name: EYEFLOW_LOG_FORMAT
  value: json
- name: EYEFLOW_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
{{- if .withS3 }}
- name: EYEFLOW_S3
  value: {{ $v.s3.endpoint | quote }}
{{- with $v.s3.region }}
- name: EYEFLOW_S3_REGION
  value: {{ . | quote }}
{{- end }}
- name: EYEFLOW_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.secrets.name | quote }}
      key: {{ $v.secrets.keys.s3AccessKey | quote }}
- name: EYEFLOW_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.secrets.name | quote }}
      key: {{ $v.secrets.keys.s3SecretKey | quote }}
{{- end }}
{{- if .withHTTP }}
- name: EYEFLOW_HTTP
  value: {{ printf "0.0.0.0:%d" (int $v.httpPort) | quote }}
{{- end }}
{{- end -}}

{{/* A container's hardening: the images need no root, no capability and no writable image. */}}
{{- define "eyeflow.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Writable scratch over a read-only image: /tmp (the trainer's work, the GPU image's XDG_RUNTIME_DIR) and $HOME (driver caches). */}}
{{- define "eyeflow.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /var/lib/eyeflow
{{- end -}}

{{- define "eyeflow.scratchVolumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- end -}}

{{/* Pod settings every workload shares. No pod talks to the Kubernetes API. */}}
{{- define "eyeflow.podSpec" -}}
{{- $v := .Values -}}
automountServiceAccountToken: false
{{- with $v.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
securityContext: {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Liveness on /healthz, readiness on /readyz (503 while a process waits for NATS, S3 or its consumers). */}}
{{- define "eyeflow.probes" -}}
ports:
  - name: http
    containerPort: {{ int .Values.httpPort }}
    protocol: TCP
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  initialDelaySeconds: 10
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 6
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}

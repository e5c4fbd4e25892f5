{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "eviction-router.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources: fullnameOverride, else the release name when it already
contains the chart name, else <release>-<chart>.
*/}}
{{- define "eviction-router.fullname" -}}
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

{{/*
chart label: name-version.
*/}}
{{- define "eviction-router.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "eviction-router.labels" -}}
helm.sh/chart: {{ include "eviction-router.chart" . }}
{{ include "eviction-router.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eviction-router
{{- end }}

{{/*
Selector labels: stable across upgrades.
*/}}
{{- define "eviction-router.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eviction-router.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount.
*/}}
{{- define "eviction-router.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eviction-router.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the leader-election Lease.
*/}}
{{- define "eviction-router.leaseName" -}}
{{- default (include "eviction-router.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Container image reference: repository@digest, else repository:tag (tag defaults to appVersion).
*/}}
{{- define "eviction-router.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
True (non-empty) when priorityClassName is one of the classes some platforms only admit outside
kube-system under a ResourceQuota.
*/}}
{{- define "eviction-router.criticalPriorityClass" -}}
{{- if has .Values.priorityClassName (list "system-cluster-critical" "system-node-critical") }}true{{ end }}
{{- end }}

{{/*
Checks that the schema cannot express across keys. Included once, from the ConfigMap.
*/}}
{{- define "eviction-router.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) (eq .Values.cluster.mode "kubernetes") }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true in cluster.mode=kubernetes: every replica would act on the same Nodes" }}
{{- end }}
{{- if and .Values.cluster.failback.enabled (not .Values.cluster.makeBeforeBreak.enabled) }}
{{- fail "cluster.failback.enabled needs cluster.makeBeforeBreak.enabled: failback makes the Spot room with a placeholder before it evicts" }}
{{- end }}
{{- if and .Values.nats.enabled (or .Values.nats.secret.credsKey .Values.nats.secret.nkeySeedKey .Values.nats.secret.tokenKey .Values.nats.secret.caKey) (not .Values.nats.secret.name) }}
{{- fail "nats.secret.name is required when a nats.secret key is set" }}
{{- end }}
{{- if and .Values.nats.enabled (gt (len (compact (list .Values.nats.secret.credsKey .Values.nats.secret.nkeySeedKey .Values.nats.secret.tokenKey))) 1) }}
{{- fail "set at most one of nats.secret.credsKey, nkeySeedKey and tokenKey" }}
{{- end }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (add (int .Values.router.shutdownGraceSeconds) 10) }}
{{- fail "terminationGracePeriodSeconds must be at least router.shutdownGraceSeconds + 10: the router takes up to the grace plus 5 s to stop, and the kubelet kills it at terminationGracePeriodSeconds" }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the ingest token: the one named, or the one the chart creates.
*/}}
{{- define "eviction-router.ingestTokenSecret" -}}
{{- default (printf "%s-ingest" (include "eviction-router.fullname" .)) .Values.httpIngest.tokenSecret.name }}
{{- end }}

{{/*
The router's config file (config.yaml). Keys are the router's own; it rejects unknown ones.
Secrets are never written here: ${VAR} references are expanded by the router from the
environment variables the Deployment sets from Secrets.
*/}}
{{- define "eviction-router.config" -}}
sources:
{{- if eq .Values.provider "aws" }}
  - type: aws_sqs
    queue_url: {{ required "aws.queueUrl is required when provider is aws" .Values.aws.queueUrl | toJson }}
    {{- with .Values.aws.region }}
    region: {{ . | toJson }}
    {{- end }}
    pollers: {{ int .Values.aws.pollers }}
{{- else if eq .Values.provider "azure" }}
  - type: azure_service_bus
    namespace: {{ required "azure.namespace is required when provider is azure" .Values.azure.namespace | toJson }}
    queue: {{ required "azure.queue is required when provider is azure" .Values.azure.queue | toJson }}
    auth: {{ .Values.azure.auth | toJson }}
    {{- if eq .Values.azure.auth "sas" }}
    connection_string: "${SERVICEBUS_CONNECTION_STRING}"
    {{- end }}
{{- else if eq .Values.provider "gcp" }}
  - type: gcp_pubsub
    subscription: {{ required "gcp.subscription is required when provider is gcp" .Values.gcp.subscription | toJson }}
{{- end }}
{{- if .Values.httpIngest.enabled }}
  - type: http_ingest
    token: "${EVICTION_ROUTER_INGEST_TOKEN}"
{{- end }}
{{- if .Values.webhook.enabled }}
  - type: azure_event_grid_webhook
    secret: "${EVENTGRID_WEBHOOK_SECRET}"
{{- end }}
router:
  concurrency: {{ int .Values.router.concurrency }}
  dedupe_window_seconds: {{ int .Values.router.dedupeWindowSeconds }}
  message_timeout_seconds: {{ int .Values.router.messageTimeoutSeconds }}
  shutdown_grace_seconds: {{ int .Values.router.shutdownGraceSeconds }}
cluster:
  mode: {{ .Values.cluster.mode }}
  force_after_deadline: {{ .Values.cluster.forceAfterDeadline | default false }}
  karpenter: {{ .Values.cluster.karpenter | toJson }}
  make_before_break:
    {{- if .Values.cluster.makeBeforeBreak.enabled }}
    kinds: [interruption, termination]
    priority_class: {{ printf "%s-placeholder" (include "eviction-router.fullname" .) | toJson }}
    timeout_seconds: {{ int .Values.cluster.makeBeforeBreak.timeoutSeconds }}
    max_pool_share: {{ .Values.cluster.makeBeforeBreak.maxPoolShare }}
    {{- else }}
    kinds: []
    {{- end }}
  failback:
    enabled: {{ .Values.cluster.failback.enabled }}
    namespaces: {{ .Values.cluster.failback.namespaces | toJson }}
    selector: {{ .Values.cluster.failback.selector | toJson }}
    dwell_seconds: {{ int .Values.cluster.failback.dwellSeconds }}
    max_pods_per_interval: {{ int .Values.cluster.failback.maxPodsPerInterval }}
    max_nodes_per_interval: {{ int .Values.cluster.failback.maxNodesPerInterval }}
    windows: {{ .Values.cluster.failback.windows | toJson }}
  pool_stats:
    enabled: {{ .Values.cluster.poolStats.enabled }}
    interval_seconds: {{ int .Values.cluster.poolStats.intervalSeconds }}
    config_map: {{ printf "%s-pool-stats" (include "eviction-router.fullname" .) | toJson }}
  asg_lifecycle:
    complete: {{ .Values.cluster.asgLifecycle.complete }}
    heartbeat_interval_seconds: {{ int .Values.cluster.asgLifecycle.heartbeatIntervalSeconds }}
  shelter:
    enabled: {{ .Values.cluster.shelter.enabled }}
    window_seconds: {{ int .Values.cluster.shelter.windowSeconds }}
    exclude_pools: {{ .Values.cluster.shelter.excludePools | toJson }}
  leader_election:
    enabled: {{ .Values.leaderElection.enabled }}
    lease_name: {{ include "eviction-router.leaseName" . | toJson }}
sinks:{{ if not (or .Values.sinks .Values.nats.enabled .Values.sse.enabled) }} []{{ end }}
{{- with .Values.sinks }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.nats.enabled }}
  - type: nats
    url: {{ required "nats.url is required when nats.enabled" .Values.nats.url | toJson }}
    cluster: {{ required "nats.cluster is required when nats.enabled" .Values.nats.cluster | toJson }}
    subject_prefix: {{ .Values.nats.subjectPrefix | toJson }}
    mode: {{ .Values.nats.mode }}
    required: {{ .Values.nats.required }}
    ack_timeout_ms: {{ int .Values.nats.ackTimeoutMs }}
    {{- with .Values.nats.secret }}
    {{- if .credsKey }}
    creds_file: {{ printf "/etc/eviction-router/nats/%s" .credsKey | toJson }}
    {{- end }}
    {{- if .nkeySeedKey }}
    nkey_seed_file: {{ printf "/etc/eviction-router/nats/%s" .nkeySeedKey | toJson }}
    {{- end }}
    {{- if .tokenKey }}
    token: ${NATS_TOKEN}
    {{- end }}
    {{- if .caKey }}
    tls:
      ca_file: {{ printf "/etc/eviction-router/nats/%s" .caKey | toJson }}
    {{- end }}
    {{- end }}
{{- end }}
{{- if .Values.sse.enabled }}
  - type: sse
    max_subscribers: {{ int .Values.sse.maxSubscribers }}
    ring_capacity: {{ int .Values.sse.ringCapacity }}
    subscriber_buffer: {{ int .Values.sse.subscriberBuffer }}
    heartbeat_seconds: {{ int .Values.sse.heartbeatSeconds }}
{{- end }}
server:
  listen: "0.0.0.0:8080"
log:
  format: {{ .Values.log.format }}
{{- end }}

{{/* Names, labels, image references and value checks shared by every template. */}}

{{- define "user-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: DNS labels stop at 63 characters. */}}
{{- define "user-service.fullname" -}}
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

{{- define "user-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "user-service.labels" -}}
helm.sh/chart: {{ include "user-service.chart" . }}
{{ include "user-service.selectorLabels" . }}
app.kubernetes.io/version: {{ include "user-service.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: user-service
{{- end }}

{{/* Selector labels never change across upgrades: a Deployment selector is immutable. */}}
{{- define "user-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "user-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector of the app pods. The component label keeps the migration, test and load-test pods
(which share name and instance) out of the Service, the PDB and the NetworkPolicy.
*/}}
{{- define "user-service.appSelectorLabels" -}}
{{ include "user-service.selectorLabels" . }}
app.kubernetes.io/component: api
{{- end }}

{{- define "user-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "user-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The migration Job's account. A pre-install hook runs before the release's own ServiceAccount
exists, so hooks get a hook-made twin with the same annotations (workload identity).
*/}}
{{- define "user-service.migrationServiceAccountName" -}}
{{- if .Values.migrations.serviceAccountName }}
{{- .Values.migrations.serviceAccountName }}
{{- else if and .Values.migrations.useHelmHooks .Values.serviceAccount.create }}
{{- include "user-service.fullname" . | trunc 55 | trimSuffix "-" }}-migrate
{{- else }}
{{- include "user-service.serviceAccountName" . }}
{{- end }}
{{- end }}

{{- define "user-service.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "user-service.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "user-service.secretName" -}}
{{- default (include "user-service.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
An env value as the app reads it. Helm hands numbers over as float64, so integers are
printed with %d: 1209600 must not become "1.2096e+06".
*/}}
{{- define "user-service.envValue" -}}
{{- $v := . }}
{{- if kindIs "float64" $v }}
{{- if eq $v (floor $v) }}{{ printf "%d" (int64 $v) }}{{ else }}{{ $v }}{{ end }}
{{- else if kindIs "bool" $v }}
{{- ternary "true" "false" $v }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}

{{/*
The env vars the ConfigMap carries, derived ones included (BIND, PROMETHEUS_MULTIPROC_DIR,
OTEL_*). SERVICE_VERSION and GIT_COMMIT are not set: the image bakes them in at build time,
and a tag (skaffold's content hash, say) is not a version.
*/}}
{{- define "user-service.configData" -}}
{{- range $key, $value := .Values.config }}
{{- if and (not (kindIs "invalid" $value)) (not (and (eq $key "DB_PGBOUNCER") $.Values.postgres.pgbouncer.enabled)) }}
{{ $key }}: {{ include "user-service.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- if .Values.postgres.pgbouncer.enabled }}
DB_PGBOUNCER: "true"
{{- end }}
{{- with .Values.redis.sentinel.hosts }}
REDIS_SENTINELS: {{ join "," . | quote }}
REDIS_SENTINEL_MASTER: {{ $.Values.redis.sentinel.masterName | quote }}
{{- end }}
{{- with .Values.redis.cluster.nodes }}
REDIS_CLUSTER_NODES: {{ join "," . | quote }}
{{- if not (regexMatch "\\{[^{}]+\\}" (include "user-service.setting" (list $ "CACHE_KEY_PREFIX"))) }}
{{- fail "user-service: redis.cluster.nodes needs config.CACHE_KEY_PREFIX with a hash tag, for example {us:v1}, so every script and pipeline stays in one slot" }}
{{- end }}
{{- end }}
BIND: {{ printf "0.0.0.0:%d" (int64 .Values.containerPort) | quote }}
METRICS_PORT: {{ .Values.metrics.port | int64 | quote }}
FORWARDED_ALLOW_IPS: {{ join "," .Values.trustedProxies | quote }}
PROMETHEUS_MULTIPROC_DIR: "/run/prometheus"
OTEL_SERVICE_NAME: {{ include "user-service.name" . | quote }}
{{- if .Values.otel.enabled }}
OTEL_SDK_DISABLED: "false"
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .Values.otel.endpoint | quote }}
OTEL_EXPORTER_OTLP_PROTOCOL: {{ .Values.otel.protocol | quote }}
OTEL_TRACES_SAMPLER: {{ .Values.otel.tracesSampler | quote }}
OTEL_TRACES_SAMPLER_ARG: {{ .Values.otel.tracesSamplerArg | quote }}
{{- else }}
OTEL_SDK_DISABLED: "true"
{{- end }}
{{- with .Values.otel.resourceAttributes }}
OTEL_RESOURCE_ATTRIBUTES: {{ . | quote }}
{{- end }}
{{- if .Values.keys.rotation.enabled }}
SIGNING_KEY_OVERLAP_SECONDS: {{ .Values.keys.rotation.overlapSeconds | int64 | quote }}
SIGNING_KEY_ROTATION_PERIOD_SECONDS: {{ .Values.keys.rotation.periodSeconds | int64 | quote }}
{{- end }}
{{- end }}

{{/* Percent-escape for URL userinfo: urlquery writes a space as "+", which a URL parser keeps as "+". */}}
{{- define "user-service.urlEscape" -}}
{{- urlquery . | replace "+" "%20" }}
{{- end }}

{{/* The Secret's data: a full URL wins over parts; missing required values fail by name. */}}
{{- define "user-service.databaseUrl" -}}
{{- $pg := .Values.postgres }}
{{- if $pg.url }}
{{- $pg.url }}
{{- else }}
{{- if not $pg.host }}
{{- fail "user-service: set postgres.url, or postgres.host and postgres.password (or existingSecret naming a Secret with DATABASE_URL, REDIS_URL and JWT_SECRET_KEY)" }}
{{- end }}
{{- if not $pg.password }}
{{- fail "user-service: postgres.password is required when postgres.host is set (or set postgres.url, or existingSecret)" }}
{{- end }}
{{- $url := printf "postgresql+asyncpg://%s:%s@%s:%d/%s" (include "user-service.urlEscape" $pg.user) (include "user-service.urlEscape" $pg.password) $pg.host (int64 $pg.port) $pg.database }}
{{- if $pg.query }}{{ printf "%s?%s" $url $pg.query }}{{ else }}{{ $url }}{{ end }}
{{- end }}
{{- end }}

{{- define "user-service.redisUrl" -}}
{{- $r := .Values.redis }}
{{- if $r.url }}
{{- $r.url }}
{{- else }}
{{- if not $r.host }}
{{- fail "user-service: set redis.url or redis.host (or existingSecret naming a Secret with DATABASE_URL, REDIS_URL and JWT_SECRET_KEY)" }}
{{- end }}
{{- $auth := "" }}
{{- if $r.password }}{{ $auth = printf ":%s@" (include "user-service.urlEscape" $r.password) }}{{ end }}
{{- printf "%s://%s%s:%d/%d" (ternary "rediss" "redis" $r.tls) $auth $r.host (int64 $r.port) (int64 $r.db) }}
{{- end }}
{{- end }}

{{/* Redis's lines of the Secret: REDIS_URL, or with Sentinel the two passwords. */}}
{{- define "user-service.redisSecretData" -}}
{{- if or .Values.redis.sentinel.hosts .Values.redis.cluster.nodes }}
{{- with .Values.redis.password }}
REDIS_PASSWORD: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.redis.sentinel.password }}
REDIS_SENTINEL_PASSWORD: {{ . | b64enc | quote }}
{{- end }}
{{- else }}
REDIS_URL: {{ include "user-service.redisUrl" . | b64enc | quote }}
{{- end }}
{{- end }}

{{- define "user-service.jwtSecretKey" -}}
{{- $key := .Values.jwt.secretKey }}
{{- if and (not $key) (eq (include "user-service.setting" (list . "JWT_ALGORITHM")) "HS256") }}
{{- fail "user-service: jwt.secretKey is required with config.JWT_ALGORITHM=HS256 (at least 32 characters), or set existingSecret" }}
{{- end }}
{{- if and $key (lt (len $key) 32) }}
{{- fail (printf "user-service: jwt.secretKey must be at least 32 characters (got %d); production refuses shorter keys" (len $key)) }}
{{- end }}
{{- $key }}
{{- end }}

{{/* Signing keys and introspection clients: the Secret's lines (app and migration Job). */}}
{{- define "user-service.keySecretData" -}}
{{- $jwt := include "user-service.jwtSecretKey" . }}
{{- if $jwt }}
JWT_SECRET_KEY: {{ $jwt | b64enc | quote }}
{{- end }}
{{- if ne (include "user-service.setting" (list . "JWT_ALGORITHM")) "HS256" }}
{{- $kek := .Values.keys.encryptionKey }}
{{- if lt (len $kek) 32 }}
{{- fail "user-service: keys.encryptionKey is required (32+ characters, e.g. `openssl rand -base64 32`): it encrypts the signing keys in PostgreSQL; or set existingSecret with SIGNING_KEY_ENCRYPTION_KEY" }}
{{- end }}
SIGNING_KEY_ENCRYPTION_KEY: {{ $kek | b64enc | quote }}
{{- end }}
{{- with .Values.introspection.clients }}
INTROSPECTION_CLIENTS: {{ join "," . | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
A config value as the app will see it: the value set, or, when it is null or absent, the
app's own default (files/app-defaults.yaml, generated from the app). Called with (list $ "KEY").
*/}}
{{- define "user-service.setting" -}}
{{- $root := index . 0 }}
{{- $key := index . 1 }}
{{- $value := index $root.Values.config $key }}
{{- if kindIs "invalid" $value }}
{{- $value = index ($root.Files.Get "files/app-defaults.yaml" | fromYaml) $key }}
{{- end }}
{{- if kindIs "invalid" $value }}
{{- fail (printf "user-service: no app default for config.%s in files/app-defaults.yaml" $key) }}
{{- end }}
{{- $value }}
{{- end }}

{{/*
Checks across values that a JSON schema cannot express. Included by the Deployment, so
`helm template` and `helm install` refuse before anything is applied.
*/}}
{{- define "user-service.validate" -}}
{{- $replicas := ternary .Values.autoscaling.maxReplicas .Values.replicaCount .Values.autoscaling.enabled | int }}
{{- $replicasName := ternary "autoscaling.maxReplicas" "replicaCount" .Values.autoscaling.enabled }}
{{- $workers := include "user-service.setting" (list . "WEB_CONCURRENCY") | int }}
{{- $pool := include "user-service.setting" (list . "DB_POOL_SIZE") | int }}
{{- $overflow := include "user-service.setting" (list . "DB_MAX_OVERFLOW") | int }}
{{- /* The Deployment's maxSurge: a rollout at maxReplicas briefly runs one pod more. */}}
{{- $surge := 1 }}
{{- /* Each worker's readiness check opens its own connection, outside the pool. */}}
{{- $probe := 1 }}
{{- $migration := ternary 1 0 .Values.migrations.enabled }}
{{- $needed := add (mul (add $replicas $surge) $workers (add $pool $overflow $probe)) $migration }}
{{- $budget := sub (int .Values.postgres.maxConnections) (int .Values.postgres.reservedConnections) }}
{{- $pooler := or .Values.postgres.pgbouncer.enabled (eq (include "user-service.setting" (list . "DB_PGBOUNCER") | toString) "true") }}
{{- if and $pooler (gt (int $needed) (int .Values.postgres.pgbouncer.maxClientConnections)) }}
{{- fail (printf "user-service: connection budget exceeded: (%s (%d) + rollout surge (%d)) x config.WEB_CONCURRENCY (%d) x (config.DB_POOL_SIZE (%d) + config.DB_MAX_OVERFLOW (%d) + readiness probe (%d)) + migration Job (%d) = %d client connections > postgres.pgbouncer.maxClientConnections (%d), PgBouncer's max_client_conn; lower one of them or raise max_client_conn" $replicasName $replicas $surge $workers $pool $overflow $probe $migration (int $needed) (int .Values.postgres.pgbouncer.maxClientConnections)) }}
{{- end }}
{{- if and (not $pooler) (gt (int $needed) (int $budget)) }}
{{- fail (printf "user-service: connection budget exceeded: (%s (%d) + rollout surge (%d)) x config.WEB_CONCURRENCY (%d) x (config.DB_POOL_SIZE (%d) + config.DB_MAX_OVERFLOW (%d) + readiness probe (%d)) + migration Job (%d) = %d > postgres.maxConnections (%d) - postgres.reservedConnections (%d) = %d; lower one of them or raise postgres.maxConnections (or put PgBouncer in front and set config.DB_PGBOUNCER)" $replicasName $replicas $surge $workers $pool $overflow $probe $migration (int $needed) (int .Values.postgres.maxConnections) (int .Values.postgres.reservedConnections) (int $budget)) }}
{{- end }}
{{- $graceful := include "user-service.setting" (list . "GUNICORN_GRACEFUL_TIMEOUT") | int }}
{{- $drain := include "user-service.setting" (list . "SHUTDOWN_DRAIN_SECONDS") | float64 | ceil | int }}
{{- $preStop := .Values.lifecycle.preStopSleepSeconds | int }}
{{- $shutdown := add $preStop $drain $graceful }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $shutdown) }}
{{- fail (printf "user-service: terminationGracePeriodSeconds (%d) must be longer than lifecycle.preStopSleepSeconds (%d) + config.SHUTDOWN_DRAIN_SECONDS (%d) + config.GUNICORN_GRACEFUL_TIMEOUT (%d) = %d, or the kubelet kills requests still in flight" (int .Values.terminationGracePeriodSeconds) $preStop $drain $graceful (int $shutdown)) }}
{{- end }}
{{- /* /readyz checks the database and Redis side by side, each within READINESS_TIMEOUT: that is its worst case. */}}
{{- $readinessTimeout := include "user-service.setting" (list . "READINESS_TIMEOUT") | float64 | ceil | int }}
{{- if le (int .Values.probes.readiness.timeoutSeconds) (int $readinessTimeout) }}
{{- fail (printf "user-service: probes.readiness.timeoutSeconds (%d) must be longer than config.READINESS_TIMEOUT (%d), the worst case of /readyz (database and Redis are checked side by side, each within it), or a slow dependency looks like a dead pod" (int .Values.probes.readiness.timeoutSeconds) $readinessTimeout) }}
{{- end }}
{{- if and .Values.lifecycle.nativeSleepAction (semverCompare "<1.30.0-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "user-service: lifecycle.nativeSleepAction needs Kubernetes 1.30 or later (rendering for %s); leave it false to use exec sleep" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if .Values.keys.rotation.enabled }}
{{- $maxAge := include "user-service.setting" (list . "JWKS_MAX_AGE_SECONDS") | float64 | int }}
{{- $reload := include "user-service.setting" (list . "SIGNING_KEY_REFRESH_SECONDS") | float64 | ceil | int }}
{{- $access := include "user-service.setting" (list . "ACCESS_TOKEN_TTL_SECONDS") | float64 | int }}
{{- $refresh := include "user-service.setting" (list . "REFRESH_TOKEN_TTL_SECONDS") | float64 | int }}
{{- $minOverlap := add $maxAge (max $access $refresh) }}
{{- if lt (int .Values.keys.rotation.overlapSeconds) (int $minOverlap) }}
{{- fail (printf "user-service: keys.rotation.overlapSeconds (%d) must be at least config.JWKS_MAX_AGE_SECONDS (%d) + the longest token lifetime, max(config.ACCESS_TOKEN_TTL_SECONDS, config.REFRESH_TOKEN_TTL_SECONDS) (%d) = %d, or a retired key disappears while tokens it signed are still valid" (int .Values.keys.rotation.overlapSeconds) $maxAge (max $access $refresh) (int $minOverlap)) }}
{{- end }}
{{- /* 5: the app's time limit on one reload of the keys (SIGNING_KEY_LOAD_TIMEOUT_SECONDS) */}}
{{- if le (int .Values.keys.rotation.periodSeconds) (add $maxAge $reload 5) }}
{{- fail (printf "user-service: keys.rotation.periodSeconds (%d) must exceed config.JWKS_MAX_AGE_SECONDS + config.SIGNING_KEY_REFRESH_SECONDS + 5 s of reload time limit (%d): a next key signs only after every cached JWKS holds it" (int .Values.keys.rotation.periodSeconds) (add $maxAge $reload 5)) }}
{{- end }}
{{- end }}
{{- if eq (int .Values.metrics.port) (int .Values.containerPort) }}
{{- fail (printf "user-service: metrics.port (%d) must differ from containerPort (%d): /metrics is never served on the public port" (int .Values.metrics.port) (int .Values.containerPort)) }}
{{- end }}
{{- if and .Values.otel.enabled (not .Values.otel.endpoint) }}
{{- fail "user-service: otel.enabled needs otel.endpoint (for example http://otel-collector.observability:4317)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail (printf "user-service: autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- end }}

{{/* Pod env shared by the app and the migration Job: config, secrets, downward API. */}}
{{- define "user-service.envFrom" -}}
- configMapRef:
    name: {{ include "user-service.fullname" . }}
- secretRef:
    name: {{ include "user-service.secretName" . }}
{{- end }}

{{- define "user-service.downwardEnv" -}}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end }}

{{/* checksum of config and secret: a change of either rolls the pods. */}}
{{- define "user-service.configChecksum" -}}
{{- include "user-service.configData" . | sha256sum }}
{{- end }}

{{- define "user-service.secretChecksum" -}}
{{- if .Values.existingSecret }}
{{- printf "existing:%s" .Values.existingSecret | sha256sum }}
{{- else }}
{{- include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/*
The ports a URL names, as a JSON list, for the NetworkPolicy: every host of a multi-host URL,
each with its explicit port or the scheme's default. Called with (list url defaultPort).
*/}}
{{- define "user-service.urlPorts" -}}
{{- $url := urlParse (index . 0) }}
{{- $ports := list }}
{{- $hosts := splitList "," $url.host }}
{{- /* asyncpg's multi-host form names its hosts in the query: ?host=a:5432&host=b:5432 */}}
{{- if not $url.host }}{{ $hosts = regexFindAll "host=[^&]+" $url.query -1 | default (list "") }}{{ end }}
{{- range $hosts }}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" .) }}
{{- $ports = append $ports (ternary (index $ 1) ($port | int) (eq $port "")) }}
{{- end }}
{{- $ports | uniq | toJson }}
{{- end }}

{{/* Egress ports to PostgreSQL: an explicit list, else those of postgres.url, else postgres.port. */}}
{{- define "user-service.postgresPorts" -}}
{{- if .Values.networkPolicy.postgresPorts }}
{{- .Values.networkPolicy.postgresPorts | toJson }}
{{- else if and .Values.postgres.url (not .Values.existingSecret) }}
{{- include "user-service.urlPorts" (list .Values.postgres.url 5432) }}
{{- else }}
{{- list .Values.postgres.port | toJson }}
{{- end }}
{{- end }}

{{/* Egress ports to Redis: an explicit list, else those of redis.url, else redis.port. */}}
{{- define "user-service.redisPorts" -}}
{{- if .Values.networkPolicy.redisPorts }}
{{- .Values.networkPolicy.redisPorts | toJson }}
{{- else if or .Values.redis.sentinel.hosts .Values.redis.cluster.nodes }}
{{- /* The Sentinels' or seed nodes' ports, and the port of the Redis servers they name. */}}
{{- $ports := list (int .Values.redis.port) }}
{{- range concat .Values.redis.sentinel.hosts .Values.redis.cluster.nodes }}{{ $ports = append $ports (regexFind "[0-9]+$" . | int) }}{{ end }}
{{- $ports | uniq | toJson }}
{{- else if and .Values.redis.url (not .Values.existingSecret) }}
{{- include "user-service.urlPorts" (list .Values.redis.url 6379) }}
{{- else }}
{{- list .Values.redis.port | toJson }}
{{- end }}
{{- end }}

{{/* The OTLP endpoint's port, for the NetworkPolicy: explicit port, else the protocol's default. */}}
{{- define "user-service.otlpPort" -}}
{{- $u := urlParse .Values.otel.endpoint }}
{{- $hostPort := splitList ":" $u.host }}
{{- if gt (len $hostPort) 1 }}{{ last $hostPort }}{{ else if eq .Values.otel.protocol "grpc" }}4317{{ else }}4318{{ end }}
{{- end }}

{{/* Restricted Pod Security and the app's service-links choice for the chart's Jobs and test pods. */}}
{{- define "user-service.jobPodSecurity" -}}
automountServiceAccountToken: false
enableServiceLinks: {{ .Values.enableServiceLinks }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* The config as an env list, for the migration hook that runs before the ConfigMap exists. */}}
{{- define "user-service.configEnv" -}}
{{- range $key, $value := (include "user-service.configData" . | fromYaml) }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

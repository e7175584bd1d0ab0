{{/* Chart name, overridable. */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; trimmed to 57 so suffixes like "-admin" and "-grpc" still fit 63. */}}
{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 57 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "switchboard.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
{{ include "switchboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchboard
{{- end }}

{{/* Labels that select this release's pods. */}}
{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "switchboard.secretName" -}}
{{- default (include "switchboard.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "switchboard.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* Whole seconds from milliseconds, rounded up. */}}
{{- define "switchboard.msToSeconds" -}}
{{- div (add (int64 .) 999) 1000 }}
{{- end }}

{{/*
The pod's termination grace period. Kubernetes starts the countdown before the preStop hook,
and the gateway may use all of SHUTDOWN_TIMEOUT_MS after SIGTERM (DRAIN_WINDOW_MS of 1001
closes, then releasing sessions and routes), so the period must exceed both added together.
*/}}
{{- define "switchboard.terminationGracePeriodSeconds" -}}
{{- $l := .Values.lifecycle }}
{{- $preStop := int64 $l.preStopSleepSeconds }}
{{- $drain := include "switchboard.msToSeconds" $l.drainWindowMs | int64 }}
{{- $shutdown := include "switchboard.msToSeconds" $l.shutdownTimeoutMs | int64 }}
{{- if ge (int64 $l.drainWindowMs) (int64 $l.shutdownTimeoutMs) }}
{{- fail (printf "lifecycle.drainWindowMs (%d) must be shorter than lifecycle.shutdownTimeoutMs (%d): after the drain window the gateway still releases sessions and routes before it exits" (int64 $l.drainWindowMs) (int64 $l.shutdownTimeoutMs)) }}
{{- end }}
{{- $needed := add $preStop $shutdown }}
{{- if kindIs "invalid" $l.terminationGracePeriodSeconds }}
{{- add $needed (int64 $l.graceMarginSeconds) }}
{{- else }}
{{- $grace := int64 $l.terminationGracePeriodSeconds }}
{{- if le $grace $needed }}
{{- fail (printf "lifecycle.terminationGracePeriodSeconds (%d) is too short: it must exceed preStopSleepSeconds (%d) + shutdownTimeoutMs (%ds, which includes the %ds drain window) = %ds, or Kubernetes kills pods before they drain; raise it or leave it null to compute it" $grace $preStop $shutdown $drain $needed) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/*
The four keys of the chart-made Secret. A value set in values wins; otherwise the value already
in the cluster is kept (so upgrades do not rotate keys); otherwise one is generated. The result
is memoised in .Values so the Secret and the Deployment's checksum see the same values.
*/}}
{{- define "switchboard.secretData" -}}
{{- if not (hasKey .Values.secrets "__generated") }}
{{- $existing := dict }}
{{- $found := lookup "v1" "Secret" .Release.Namespace (include "switchboard.fullname" .) }}
{{- if and $found $found.data }}
{{- $existing = $found.data }}
{{- end }}
{{- $s := .Values.secrets }}
{{- $data := dict }}
{{- $_ := set $data "SECRET_TOKEN" ($s.secretToken | default (get $existing "SECRET_TOKEN" | b64dec) | default (randAlphaNum 32)) }}
{{- $_ := set $data "ADMIN_SECRET_TOKEN" ($s.adminSecretToken | default (get $existing "ADMIN_SECRET_TOKEN" | b64dec) | default (randAlphaNum 32)) }}
{{- $_ := set $data "TOKEN_AES_KEY" ($s.tokenAesKey | default (get $existing "TOKEN_AES_KEY" | b64dec) | default (randAlphaNum 64 | sha256sum)) }}
{{- $_ := set $data "ADMIN_TOKEN_AES_KEY" ($s.adminTokenAesKey | default (get $existing "ADMIN_TOKEN_AES_KEY" | b64dec) | default (randAlphaNum 64 | sha256sum)) }}
{{- if eq (get $data "SECRET_TOKEN") (get $data "ADMIN_SECRET_TOKEN") }}
{{- fail "secrets.adminSecretToken must differ from secrets.secretToken, or the user key would open the admin API" }}
{{- end }}
{{- $_ := set .Values.secrets "__generated" $data }}
{{- end }}
{{- toYaml (get .Values.secrets "__generated") }}
{{- end }}

{{/* Fails early on settings the gateway would refuse at start-up, or that break a cluster. */}}
{{- define "switchboard.validate" -}}
{{- $c := .Values.config }}
{{- if gt (mul (int64 $c.leaseRenewIntervalMs) 3) (int64 $c.leaseTtlMs) }}
{{- fail "config.leaseRenewIntervalMs must be at most a third of config.leaseTtlMs, so a lease survives a missed renewal" }}
{{- end }}
{{- if lt (int64 $c.rateLimitBurst) (int64 $c.rateLimitPerSecond) }}
{{- fail "config.rateLimitBurst must be at least config.rateLimitPerSecond" }}
{{- end }}
{{- $p := .Values.ports }}
{{- if or (eq (int64 $p.http) (int64 $p.admin)) (eq (int64 $p.http) (int64 $p.grpc)) (eq (int64 $p.admin) (int64 $p.grpc)) }}
{{- fail "ports.http, ports.admin and ports.grpc must differ" }}
{{- end }}
{{- $several := or .Values.autoscaling.enabled (gt (int64 .Values.replicaCount) 1) }}
{{- if and $several (not .Values.redis.url) (not .Values.redis.existingSecret) }}
{{- fail "redis.url (or redis.existingSecret) is required with more than one pod: pods share sessions and routes through Redis; without it each pod runs its own in-process engine" }}
{{- end }}
{{- if hasPrefix "websocket." .Values.nats.deadLetterSubject }}
{{- fail "nats.deadLetterSubject must be outside websocket.>, or dead events would be consumed again" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.secretName is required when tls.enabled is true" }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int64 .Values.autoscaling.maxReplicas) (int64 .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- end }}

{{/* The URL scheme of the probes: HTTPS when the pod itself speaks TLS. */}}
{{- define "switchboard.probeScheme" -}}
{{- if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* Names, labels and derived settings shared by every template. */}}

{{- define "modelops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or the release name when it already contains the chart name. */}}
{{- define "modelops.fullname" -}}
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

{{- define "modelops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "modelops.labels" -}}
helm.sh/chart: {{ include "modelops.chart" . }}
{{ include "modelops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelops
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "modelops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per-component names and labels: call with (dict "ctx" $ "component" "operator"). */}}
{{- define "modelops.componentName" -}}
{{- printf "%s-%s" (include "modelops.fullname" .ctx | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{- define "modelops.componentLabels" -}}
{{ include "modelops.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "modelops.componentSelectorLabels" -}}
{{ include "modelops.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "modelops.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelops.componentName" (dict "ctx" . "component" "operator")) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "modelops.operator.image" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) }}
{{- end }}

{{- define "modelops.servingImage" -}}
{{- printf "%s:%s" .Values.operator.servingImage.repository (default .Chart.AppVersion .Values.operator.servingImage.tag) }}
{{- end }}

{{- define "modelops.exportImage" -}}
{{- printf "%s:%s" .Values.exportImage.repository (default .Chart.AppVersion .Values.exportImage.tag) }}
{{- end }}

{{/* MLflow runs in the export (training) image, which has full MLflow, unless an image is configured. */}}
{{- define "modelops.mlflow.image" -}}
{{- if .Values.mlflow.image.repository }}
{{- printf "%s:%s" .Values.mlflow.image.repository (default .Chart.AppVersion .Values.mlflow.image.tag) }}
{{- else }}
{{- include "modelops.exportImage" . }}
{{- end }}
{{- end }}

{{- define "modelops.mlflow.pullPolicy" -}}
{{- default .Values.operator.image.pullPolicy .Values.mlflow.image.pullPolicy }}
{{- end }}

{{- define "modelops.mlflow.serviceName" -}}
{{- include "modelops.componentName" (dict "ctx" . "component" "mlflow") }}
{{- end }}

{{/* The operator's tracking URI: the value, else the chart's own MLflow Service. */}}
{{- define "modelops.trackingUri" -}}
{{- if .Values.operator.trackingUri }}
{{- .Values.operator.trackingUri }}
{{- else if .Values.mlflow.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "modelops.mlflow.serviceName" .) .Release.Namespace (int .Values.mlflow.port) }}
{{- end }}
{{- end }}

{{- define "modelops.podTrackingUri" -}}
{{- default (include "modelops.trackingUri" .) .Values.operator.podTrackingUri }}
{{- end }}

{{/* The namespace the operator watches; empty: the whole cluster. */}}
{{- define "modelops.watchNamespace" -}}
{{- if .Values.operator.watchNamespace }}
{{- .Values.operator.watchNamespace }}
{{- else if .Values.rbac.namespaced }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{- define "modelops.peeringName" -}}
{{- default (include "modelops.fullname" .) .Values.operator.peering.name }}
{{- end }}

{{- define "modelops.webhookSecretName" -}}
{{- default (include "modelops.componentName" (dict "ctx" . "component" "webhook")) .Values.operator.webhook.existingSecret }}
{{- end }}

{{/* The Bearer token of POST /webhooks/alertmanager: the chart's Secret <fullname>-alert-webhook (key token),
generated once and kept (lookup), or operator.alertWebhook.existingSecret/existingSecretKey. The
AlertmanagerConfig sends the same Secret's key. */}}
{{- define "modelops.alertWebhookSecretName" -}}
{{- default (printf "%s-alert-webhook" (include "modelops.fullname" .)) .Values.operator.alertWebhook.existingSecret }}
{{- end }}

{{- define "modelops.alertWebhookSecretKey" -}}
{{- ternary .Values.operator.alertWebhook.existingSecretKey "token" (not (empty .Values.operator.alertWebhook.existingSecret)) }}
{{- end }}

{{/* MLflow basic auth: the Secret with the admin's credentials and the Flask key (given or the chart's). */}}
{{- define "modelops.mlflow.authSecretName" -}}
{{- default (include "modelops.componentName" (dict "ctx" . "component" "mlflow-auth")) .Values.mlflow.auth.existingSecret }}
{{- end }}

{{/* Env entries MLFLOW_TRACKING_USERNAME/PASSWORD from the auth Secret, for the operator and test pods. */}}
{{- define "modelops.mlflow.authClientEnv" -}}
{{- $secret := include "modelops.mlflow.authSecretName" . }}
- name: MLFLOW_TRACKING_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.mlflow.auth.secretKeys.username }}
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.mlflow.auth.secretKeys.password }}
{{- end }}

{{/* The job label Prometheus gives the operator's targets (a ServiceMonitor's job is its Service's name). */}}
{{- define "modelops.operator.job" -}}
{{- include "modelops.componentName" (dict "ctx" . "component" "operator") }}
{{- end }}

{{- define "modelops.monitoringLabels" -}}
{{ include "modelops.labels" . }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Whether the cluster serves a Prometheus Operator kind: (dict "ctx" $ "kind" "ServiceMonitor"), at
version v1 unless given: (dict "ctx" $ "kind" "AlertmanagerConfig" "version" "v1alpha1"). */}}
{{- define "modelops.hasMonitoringKind" -}}
{{- if .ctx.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/%s/%s" (default "v1" .version) .kind) }}true{{ end }}
{{- end }}

{{/* Empty, or an imagePullSecrets block: use as {{- with include ... }}{{ . | nindent N }}{{- end }}. */}}
{{- define "modelops.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* MODELOPS_GATEWAY, the default parentRef of ModelDeployments' HTTPRoutes: "<namespace>/<name>[/<sectionName>]", or empty. */}}
{{- define "modelops.gateway" -}}
{{- with .Values.operator.gateway }}
{{- if .name }}
{{- join "/" (compact (list .namespace .name .sectionName)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Refuse combinations that cannot work, at render time. */}}
{{- define "modelops.validate" -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.peering.enabled) }}
{{- fail "operator.replicas > 1 needs operator.peering.enabled=true (replicas would handle the same objects at once)" }}
{{- end }}
{{- if and .Values.operator.webhook.enabled (not .Values.operator.webhook.existingSecret) (not .Values.operator.webhook.secret) }}
{{- fail "operator.webhook.enabled needs operator.webhook.existingSecret or operator.webhook.secret" }}
{{- end }}
{{- if and .Values.mlflow.auth.enabled (not .Values.mlflow.enabled) }}
{{- fail "mlflow.auth.enabled configures the chart's MLflow (mlflow.enabled=false): for an external MLflow give the operator operator.trackingCredentialsSecret" }}
{{- end }}
{{- if and .Values.mlflow.auth.enabled .Values.operator.trackingCredentialsSecret }}
{{- fail "operator.trackingCredentialsSecret is for an external MLflow: with mlflow.auth.enabled the operator uses the chart's auth Secret" }}
{{- end }}
{{- if and (not .Values.mlflow.enabled) (not .Values.operator.trackingUri) }}
{{- fail "mlflow.enabled=false needs operator.trackingUri (the operator reads models from MLflow)" }}
{{- end }}
{{- with .Values.operator.gateway }}
{{- if and .name (not .namespace) }}
{{- fail "operator.gateway.name needs operator.gateway.namespace (MODELOPS_GATEWAY is <namespace>/<name>[/<sectionName>])" }}
{{- end }}
{{- if and (not .name) (or .namespace .sectionName) }}
{{- fail "operator.gateway.namespace and .sectionName need operator.gateway.name (empty name: no default Gateway)" }}
{{- end }}
{{- end }}
{{- end }}

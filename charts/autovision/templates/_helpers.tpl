{{/*
The chart name, overridable with nameOverride.
*/}}
{{- define "autovision.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: the release name, prefixed with the chart
name unless the release name already contains it. Truncated to 55 characters so
that the longest suffix added to it ("-storage") still fits a DNS label (63).
*/}}
{{- define "autovision.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else if contains (include "autovision.name" .) .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "autovision.name" .) | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Labels of every object the release owns, without the component.
*/}}
{{- define "autovision.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "autovision.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: autovision
{{- end }}

{{/*
Labels of the operator's objects.
*/}}
{{- define "autovision.labels" -}}
{{ include "autovision.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Labels selecting the operator's pods; never change them, Deployments cannot.
*/}}
{{- define "autovision.selectorLabels" -}}
{{ include "autovision.componentSelectorLabels" (dict "context" . "component" "operator") }}
{{- end }}

{{/*
Labels of another component's objects. Call with (dict "context" $ "component" "storage").
*/}}
{{- define "autovision.componentLabels" -}}
{{ include "autovision.commonLabels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Labels selecting another component's pods. Call with (dict "context" $ "component" "storage").
*/}}
{{- define "autovision.componentSelectorLabels" -}}
app.kubernetes.io/name: {{ include "autovision.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "autovision.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "autovision.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag}; the tag defaults to the appVersion.
Call with (dict "image" .Values.x.image "context" $).
*/}}
{{- define "autovision.image" -}}
{{- printf "%s:%s" .image.repository (default .context.Chart.AppVersion .image.tag) }}
{{- end }}

{{/*
Name of the bundled object storage's Service, Deployment, PVC and Secret.
*/}}
{{- define "autovision.storageName" -}}
{{- printf "%s-storage" (include "autovision.fullname" .) }}
{{- end }}

{{/*
The S3 port of the bundled object storage.
*/}}
{{- define "autovision.storagePort" -}}
8333
{{- end }}

{{/*
The S3 endpoint every component uses: the bundled storage's Service, or storage.endpoint.
*/}}
{{- define "autovision.storageEndpoint" -}}
{{- if .Values.storage.bundled.enabled }}
{{- printf "http://%s.%s.svc:%s" (include "autovision.storageName" .) .Release.Namespace (include "autovision.storagePort" .) }}
{{- else }}
{{- .Values.storage.endpoint }}
{{- end }}
{{- end }}

{{/*
The Secret with the operator's AWS_* storage credentials: the bundled storage's, or storage.credentialsSecret.
*/}}
{{- define "autovision.storageSecret" -}}
{{- if .Values.storage.bundled.enabled }}
{{- include "autovision.storageName" . }}
{{- else }}
{{- .Values.storage.credentialsSecret }}
{{- end }}
{{- end }}

{{/*
Pod-level security context of every pod of the chart: Pod Security Standard
"restricted". 65532 is the non-root user of the AutoVision images.
*/}}
{{- define "autovision.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Container-level security context of every container of the chart ("restricted").
*/}}
{{- define "autovision.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/*
What the operator may do in the API, and nothing more: no wildcards, no verb the
code does not use. tests/test_rbac.py derives these rules from the operator's
code (its kopf handlers, its kubernetes client calls, kopf's peering and event
posting) and fails, naming the missing and unused rules, when they drift apart.
Call with (dict "clusterwide" true|false): kopf keeps its peering in a
cluster-scoped ClusterKopfPeering when it serves all namespaces, else in a
KopfPeering in each served namespace.
*/}}
{{- define "autovision.rbacRules" -}}
# kopf watches the resources it has handlers for, and patches them (finalizers,
# its bookkeeping annotations) and their status subresource. The operator also
# reads them: a TrainingJob's Dataset, a ModelDeployment's TrainingJob.
- apiGroups: ["autovision.dev"]
  resources: ["datasets", "trainingjobs", "modeldeployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["autovision.dev"]
  resources: ["datasets/status", "trainingjobs/status", "modeldeployments/status"]
  verbs: ["patch"]
# Children carry owner references with blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin (e.g. OpenShift) only
# allows with update on the owner's finalizers.
- apiGroups: ["autovision.dev"]
  resources: ["datasets/finalizers", "trainingjobs/finalizers", "modeldeployments/finalizers"]
  verbs: ["update"]
# spec.deploy of a TrainingJob: create (or adopt) its ModelDeployment.
- apiGroups: ["autovision.dev"]
  resources: ["modeldeployments"]
  verbs: ["create"]
# Import and search Jobs: created once, then read back by the status timer.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "create"]
# A ModelDeployment's drift check (spec.monitoring): its CronJob, updated in
# place and removed when monitoring is unset.
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "create", "patch", "delete"]
# Serving: each model's Triton Deployment, Service, disruption budget and
# autoscaler, and the gateway's, created, updated in place and removed when no
# request is routed to them (found by listing a ModelDeployment's Deployments);
# with spec.auth.requireToken, a NetworkPolicy letting only the gateway reach
# the models.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "delete"]
# The gateway pods' traffic counts (GET /v1/traffic on their port 8080, through
# the API server's pod proxy), which gated rollouts and status are made of.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["pods/proxy"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "create", "patch", "delete"]
# Whether a Dataset's storageSecretRef exists (its data is never read), and
# whether the serving ServiceAccount of spec.auth.requireToken does.
- apiGroups: [""]
  resources: ["secrets", "serviceaccounts"]
  verbs: ["get"]
# Events about handler progress and errors (kopf.info / kopf.warn).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# kopf peering: which operator replica is active.
- apiGroups: ["kopf.dev"]
  resources: [{{ ternary "clusterkopfpeerings" "kopfpeerings" .clusterwide | quote }}]
  verbs: ["list", "watch", "patch"]
{{- end }}

{{/*
Fail early, with one readable message, on value combinations that cannot work.
*/}}
{{- define "autovision.validate" -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.peering.enabled) }}
{{- fail "operator.replicas > 1 needs operator.peering.enabled: without kopf peering every replica would reconcile at once" }}
{{- end }}
{{- if and .Values.storage.bundled.enabled (or .Values.storage.endpoint .Values.storage.credentialsSecret) }}
{{- fail "storage.bundled.enabled sets the storage endpoint and credentials itself: leave storage.endpoint and storage.credentialsSecret empty" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if and .Values.console.enabled .Values.watchNamespaces (not (has (include "autovision.consoleNamespace" .) .Values.watchNamespaces)) }}
{{- fail "console.namespace must be one of watchNamespaces: the operator reconciles nothing the console would create elsewhere" }}
{{- end }}
{{- end }}

{{/*
Egress every AutoVision server pod of the chart needs (the operator, the console):
the cluster DNS, the API server, and the object storage (the bundled one by pod
selector, else storage.endpoint's port at networkPolicy.storage.to).
*/}}
{{- define "autovision.egressRules" -}}
{{- $np := .Values.networkPolicy }}
- to:
    {{- toYaml $np.dns.to | nindent 4 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- to:
    {{- toYaml $np.apiServer.to | nindent 4 }}
  ports:
    {{- range $np.apiServer.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- if .Values.storage.bundled.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "autovision.componentSelectorLabels" (dict "context" . "component" "storage") | nindent 10 }}
  ports:
    - port: {{ include "autovision.storagePort" . }}
      protocol: TCP
{{- else }}
{{- $ports := $np.storage.ports }}
{{- if not $ports }}
{{- $url := urlParse (default "https://s3.amazonaws.com" .Values.storage.endpoint) }}
{{- $hostPort := splitList ":" $url.host }}
{{- if gt (len $hostPort) 1 }}
{{- $ports = list (last $hostPort | int) }}
{{- else }}
{{- $ports = list (ternary 80 443 (eq $url.scheme "http")) }}
{{- end }}
{{- end }}
- to:
    {{- toYaml $np.storage.to | nindent 4 }}
  ports:
    {{- range $ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{/*
The namespace the console shows and creates resources in: console.namespace, else the release's.
*/}}
{{- define "autovision.consoleNamespace" -}}
{{- default .Release.Namespace .Values.console.namespace }}
{{- end }}

{{/*
The console's Deployment, Service and ServiceAccount name.
*/}}
{{- define "autovision.consoleName" -}}
{{- printf "%s-console" (include "autovision.fullname" .) }}
{{- end }}

{{- define "servicepool.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "servicepool.labels" -}}
app.kubernetes.io/name: servicepool-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "servicepool.selectorLabels" -}}
app.kubernetes.io/name: servicepool-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The one image with both entrypoints: the operator runs it and hands it to its proxies. */}}
{{- define "servicepool.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}

{{- define "servicepool.serviceAccountName" -}}
{{- default (include "servicepool.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The rules the operator needs in every namespace it serves. */}}
{{- define "servicepool.poolRules" -}}
- apiGroups: [servicepool.dev]
  resources: [servicepools]
  verbs: [get, list, watch]
- apiGroups: [servicepool.dev]
  resources: [servicepools/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, create, patch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch, delete]
{{- end -}}

{{/* Name of the chart, or nameOverride. */}}
{{- define "causeway-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart, or fullnameOverride; parts append -stub, -dns, -scheduler. */}}
{{- define "causeway-hub.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "causeway-hub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "causeway-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: causeway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one part: include with (dict "ctx" $ "part" "dns"). */}}
{{- define "causeway-hub.selector" -}}
app.kubernetes.io/name: {{ include "causeway-hub.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .part }}
{{- end -}}

{{/* ServiceAccount of one part (each part has its own, with only its own RBAC):
include with (dict "ctx" $ "part" "dns"). */}}
{{- define "causeway-hub.serviceAccountName" -}}
{{- if .ctx.Values.serviceAccount.create -}}
{{- printf "%s-%s" (include "causeway-hub.fullname" .ctx) .part -}}
{{- else -}}
{{- default "default" .ctx.Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "causeway-hub.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* The pod-level settings every part shares: include with (dict "ctx" $ "part" "dns"). */}}
{{- define "causeway-hub.podCommon" -}}
serviceAccountName: {{ include "causeway-hub.serviceAccountName" . }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* The Lease's kubeconfig: the pod's own ServiceAccount against the hub's API server. */}}
{{- define "causeway-hub.inClusterKubeconfig" -}}
apiVersion: v1
kind: Config
clusters:
  - name: hub
    cluster:
      server: https://kubernetes.default.svc
      certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
users:
  - name: self
    user:
      tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
contexts:
  - name: hub
    context: {cluster: hub, user: self, namespace: {{ .Release.Namespace }}}
current-context: hub
{{- end -}}

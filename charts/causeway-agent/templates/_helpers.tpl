{{- define "causeway-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "causeway-agent.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "causeway-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "causeway-agent.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: causeway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "causeway-agent.selector" -}}
app.kubernetes.io/name: {{ include "causeway-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "causeway-agent.serviceAccountName" -}}
{{- default (include "causeway-agent.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "causeway-agent.secretName" -}}
{{- default (printf "%s-join-token" (include "causeway-agent.fullname" .)) .Values.joinToken.existingSecret -}}
{{- end -}}

{{- define "causeway-agent.identitySecretName" -}}
{{- default (printf "%s-identity" (include "causeway-agent.fullname" .)) .Values.identity.secretName -}}
{{- end -}}

{{- /* Whether the agents share their enrolled identity through a Secret they make. */ -}}
{{- define "causeway-agent.sharedIdentity" -}}
{{- if and (not .Values.identity.existingSecret) .Values.identity.shared -}}true{{- end -}}
{{- end -}}

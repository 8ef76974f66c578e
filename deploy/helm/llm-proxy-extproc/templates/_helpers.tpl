{{/* The chart name, or nameOverride. */}}
{{- define "llm-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name, at most 63 characters (DNS label). */}}
{{- define "llm-proxy.fullname" -}}
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

{{/* The Envoy front proxy's name. */}}
{{- define "llm-proxy.envoyName" -}}
{{- printf "%s-envoy" (include "llm-proxy.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "llm-proxy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "llm-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector of the server's pods. */}}
{{- define "llm-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: extproc
{{- end -}}

{{/* Selector of the Envoy pods. */}}
{{- define "llm-proxy.envoySelectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: envoy
{{- end -}}

{{/* The service account the server runs as. */}}
{{- define "llm-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llm-proxy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* LLM_PROXY_CONFIG: base rules, then every mounted rule file in name order. */}}
{{- define "llm-proxy.configFiles" -}}
{{- $files := list -}}
{{- if .Values.includeBaseRules -}}
{{- $files = append $files "configs/base.yml" -}}
{{- end -}}
{{- range $name, $_ := .Values.rules -}}
{{- $files = append $files (printf "/etc/llm-proxy/%s" $name) -}}
{{- end -}}
{{- if not $files -}}
{{- fail "no rule files: set includeBaseRules or rules" -}}
{{- end -}}
{{- join "," $files -}}
{{- end -}}

{{/*
Names and labels shared by our templates. Only objects the upstream charts lack
are rendered here.
*/}}

{{/* The hub-code ConfigMap's name; fixed because z2jh does not template hub.extraVolumes. */}}
{{- define "pangeo-cloud.hubCodeName" -}}
pangeo-cloud-hub-code
{{- end }}

{{- define "pangeo-cloud.chart" -}}
{{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Standard labels for every object this chart renders itself. */}}
{{- define "pangeo-cloud.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pangeo-cloud
helm.sh/chart: {{ include "pangeo-cloud.chart" . }}
{{- end }}

{{/*
The hub's Python modules as flat ConfigMap keys: files/pangeo_cloud/hub/x.py
becomes pangeo_cloud.hub.x.py. files/pangeo_cloud is a symlink into src/, so
the chart ships exactly the code the tests import.
*/}}
{{- define "pangeo-cloud.hubCodeData" -}}
{{- range $path, $_ := .Files.Glob "files/pangeo_cloud/**.py" }}
{{ trimPrefix "files/" $path | replace "/" "." }}: |-
{{ $.Files.Get $path | indent 2 }}
{{- end }}
z2jh_entry.py: |-
{{ .Files.Get "files/pangeo_cloud/hub/z2jh_entry.py" | indent 2 }}
{{- end }}

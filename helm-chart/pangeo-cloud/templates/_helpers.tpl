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
{{- range $path, $_ := .Files.Glob "files/pangeo_cloud/{__init__,bundle,scratch,hub/*}.py" }}
{{ trimPrefix "files/" $path | replace "/" "." }}: |-
{{ $.Files.Get $path | indent 2 }}
{{- end }}
z2jh_entry.py: |-
{{ .Files.Get "files/pangeo_cloud/hub/z2jh_entry.py" | indent 2 }}
{{- end }}

{{/*
The scratch-credentials broker. Names are fixed (one release per namespace):
hub.services.scratch-credentials.url and custom.pangeo.scratch.broker.url in
values.yaml name the Service, and z2jh keeps the service's token in the `hub`
Secret under hub.services.scratch-credentials.apiToken.
*/}}
{{- define "pangeo-cloud.brokerName" -}}
scratch-credentials
{{- end }}

{{- define "pangeo-cloud.brokerCodeName" -}}
pangeo-cloud-scratch-broker
{{- end }}

{{/* Mounted into user pods and Dask workers (values.yaml: singleuser.storage.extraVolumes). */}}
{{- define "pangeo-cloud.brokerClientName" -}}
pangeo-cloud-scratch-client
{{- end }}

{{- define "pangeo-cloud.brokerSelector" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: scratch-broker
{{- end }}

{{/* The broker's Python: the bundle loader, scratch.py and broker/*.py as flat keys. */}}
{{- define "pangeo-cloud.brokerCodeData" -}}
{{- range $path, $_ := .Files.Glob "files/pangeo_cloud/{__init__,bundle,scratch}.py" }}
{{ trimPrefix "files/" $path | replace "/" "." }}: |-
{{ $.Files.Get $path | indent 2 }}
{{- end }}
{{- range $path, $_ := .Files.Glob "files/pangeo_cloud/broker/*.py" }}
{{ trimPrefix "files/" $path | replace "/" "." }}: |-
{{ $.Files.Get $path | indent 2 }}
{{- end }}
{{- end }}

{{/* The broker's configuration file (service.py: scratch settings, lifetime, provider). */}}
{{- define "pangeo-cloud.brokerConfig" -}}
{{- $scratch := omit (.Values.jupyterhub.custom.pangeo.scratch | default dict) "broker" }}
{{- $b := .Values.scratchBroker }}
{{- $provider := dict }}
{{- if hasPrefix "s3://" ($scratch.url | default "") }}
{{- $provider = dict "roleArn" $b.aws.scratchRoleArn "stsEndpoint" ($b.aws.stsEndpoint | default "") }}
{{- else }}
{{- $provider = dict "serviceAccount" $b.gcp.serviceAccount "tokenUrl" ($b.gcp.stsEndpoint | default "") }}
{{- end }}
{{- dict "scratch" $scratch "lifetime" $b.lifetime "provider" $provider | toPrettyJson }}
{{- end }}

{{/* The identity annotation of the broker's ServiceAccount, from the cloud settings. */}}
{{- define "pangeo-cloud.brokerIdentity" -}}
{{- $b := .Values.scratchBroker }}
{{- if $b.aws.identityRoleArn }}
eks.amazonaws.com/role-arn: {{ $b.aws.identityRoleArn | quote }}
{{- end }}
{{- if $b.gcp.serviceAccount }}
iam.gke.io/gcp-service-account: {{ $b.gcp.serviceAccount | quote }}
{{- end }}
{{- with $b.serviceAccount.annotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
gs:// scratch: the Google credentials file of user pods and Dask workers, what
google_client.external_account_info(<broker url> + "api/token/gcs",
"python3 -I -S <dir>/google_client.py subject-token") returns (the constants
are google_client's AUDIENCE and SUBJECT_TOKEN_TYPE; tests/integration/chart
compares the two). No secret: the executable prints the process's own token.
*/}}
{{- define "pangeo-cloud.gcsCredentials" -}}
{{- $broker := .Values.jupyterhub.custom.pangeo.scratch.broker }}
{{- $command := printf "python3 -I -S %s/google_client.py subject-token" (dir $broker.gcsCredentialsFile) }}
{{- $source := dict "executable" (dict "command" $command "timeout_millis" 10000) }}
{{- $tokenUrl := printf "%s/api/token/gcs" (trimSuffix "/" $broker.url) }}
{{- dict "type" "external_account" "audience" "//pangeo-cloud/services/scratch-credentials" "subject_token_type" "urn:ietf:params:oauth:token-type:id_token" "token_url" $tokenUrl "credential_source" $source | toPrettyJson }}
{{- end }}

{{/*
The dask-gateway subchart's fullname (its dask-gateway.fullname helper), which
the gateway and controller use as gateway.dask.org/instance on every pod.
*/}}
{{- define "pangeo-cloud.daskGatewayInstance" -}}
{{- $values := index .Values "dask-gateway" -}}
{{- if $values.fullnameOverride -}}
{{- $values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "dask-gateway" $values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* Dask scheduler and worker pods of one gateway instance (the argument). */}}
{{- define "pangeo-cloud.daskPodSelector" -}}
matchLabels:
  app.kubernetes.io/name: dask-gateway
  gateway.dask.org/instance: {{ . }}
matchExpressions:
  - {key: app.kubernetes.io/component, operator: In, values: [dask-scheduler, dask-worker]}
{{- end }}

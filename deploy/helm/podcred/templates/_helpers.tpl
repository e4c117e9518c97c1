{{- define "podcred.name" -}}
{{- default "podcred-webhook" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "podcred.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "podcred-webhook" .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "podcred.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "podcred.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podcred.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "podcred.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "podcred.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: podcred
{{- end }}

{{- define "podcred.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "podcred.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "podcred.certSecretName" -}}
{{- default (printf "%s-cert" (include "podcred.fullname" .)) .Values.pki.existingSecret }}
{{- end }}

{{- define "podcred.image" -}}
{{- printf "%s/%s:%s" .registry .repository .tag }}
{{- end }}

{{/* The generated bootstrap CA + serving certificate: reused from the existing Secret on upgrade, and generated
     once per render (cached in .Values) so the Secret and the webhook's caBundle agree. */}}
{{- define "podcred.selfSignedPki" -}}
{{- if not (hasKey .Values.pki "generatedPki") -}}
{{- $secretName := include "podcred.certSecretName" . -}}
{{- $existing := lookup "v1" "Secret" (include "podcred.namespace" .) $secretName -}}
{{- if and $existing $existing.data (index $existing.data "ca.crt") -}}
{{- $_ := set .Values.pki "generatedPki" (dict "tls.crt" (index $existing.data "tls.crt") "tls.key" (index $existing.data "tls.key") "ca.crt" (index $existing.data "ca.crt")) -}}
{{- else -}}
{{- $fullname := include "podcred.fullname" . -}}
{{- $ns := include "podcred.namespace" . -}}
{{- $ca := genCA (printf "%s-ca" $fullname) (int .Values.pki.selfSigned.validityDays) -}}
{{- $dns := list $fullname (printf "%s.%s" $fullname $ns) (printf "%s.%s.svc" $fullname $ns) (printf "%s.%s.svc.cluster.local" $fullname $ns) -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $fullname $ns) nil $dns (int .Values.pki.selfSigned.validityDays) $ca -}}
{{- $_ := set .Values.pki "generatedPki" (dict "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc) "ca.crt" ($ca.Cert | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- toYaml .Values.pki.generatedPki -}}
{{- end }}

{{/* "true" when the chart generates the PKI itself, "" otherwise (include returns a string). */}}
{{- define "podcred.selfSigned" -}}
{{- if and (not .Values.pki.certManager.enabled) (not .Values.pki.existingSecret) (not .Values.pki.cert) }}true{{ end }}
{{- end }}

{{/* Istio's root namespace, where aeraki runs. */}}
{{- define "aeraki.namespace" -}}
{{- required "rootNamespace is required: Istio's root namespace" .Values.rootNamespace -}}
{{- end -}}

{{/* aeraki's ServiceAccount as the apiserver names it. */}}
{{- define "aeraki.username" -}}
system:serviceaccount:{{ include "aeraki.namespace" . }}:aeraki
{{- end -}}

{{/* istiod's secure xDS address: the explicit one, or the Service of istiod (of its revision) in the root namespace. */}}
{{- define "aeraki.istiodAddr" -}}
{{- if .Values.istiod.address -}}
{{- .Values.istiod.address -}}
{{- else if .Values.istiod.revision -}}
istiod-{{ .Values.istiod.revision }}.{{ include "aeraki.namespace" . }}.svc:15012
{{- else -}}
istiod.{{ include "aeraki.namespace" . }}.svc:15012
{{- end -}}
{{- end -}}

{{/* The namespace of istiod's Service when the address names one (<name>.<namespace>.svc...), else empty. */}}
{{- define "aeraki.istiodNamespace" -}}
{{- $host := regexReplaceAll ":[0-9]+$" (include "aeraki.istiodAddr" .) "" -}}
{{- $parts := splitList "." $host -}}
{{- if and (ge (len $parts) 3) (eq (index $parts 2) "svc") -}}
{{- index $parts 1 -}}
{{- end -}}
{{- end -}}

{{/* The port of istiod's address. */}}
{{- define "aeraki.istiodPort" -}}
{{- $port := regexFind "[0-9]+$" (include "aeraki.istiodAddr" .) -}}
{{- required "istiod.address needs a port (host:port)" $port -}}
{{- end -}}

{{/* The labels of every object, and the pod's. */}}
{{- define "aeraki.labels" -}}
app.kubernetes.io/name: aeraki
{{- end -}}

{{/* The name of the metrics port: https-metrics, or http-metrics when served without TLS. */}}
{{- define "aeraki.metricsPortName" -}}
{{- if .Values.metrics.secure -}}https-metrics{{- else -}}http-metrics{{- end -}}
{{- end -}}

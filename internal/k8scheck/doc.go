// Package k8scheck renders the Helm chart and reads Kubernetes manifests
// strictly, for tests that validate the repository's deployment files
// without a cluster.
//
// RenderChart runs Helm's own template engine (helm.sh/helm/v4) on a chart
// directory, so every Sprig function, include, tpl, .Files lookup and
// values coalescing behaves as `helm template` does. Decode turns one
// manifest into its typed Go object — the Kubernetes API types (k8s.io/api),
// the Prometheus Operator's ServiceMonitor, the Gateway API and Envoy
// Gateway's CRDs — rejecting unknown and duplicate fields, so a misspelt or
// misplaced key fails instead of being silently dropped by the API server's
// pruning.
//
// Everything here is read-only on its inputs and safe for concurrent use.
package k8scheck

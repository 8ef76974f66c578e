package k8scheck_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/k8scheck"
)

// envoyGatewayCRDs loads the CRDs Envoy Gateway v1.9.1 installs (its own and
// the Gateway API's), from the module go.mod requires.
func envoyGatewayCRDs(t *testing.T) *k8scheck.CRDs {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/envoyproxy/gateway").Output()
	require.NoError(t, err, "locate the github.com/envoyproxy/gateway module (go mod download)")
	dir := filepath.Join(strings.TrimSpace(string(out)), "charts", "gateway-helm", "charts", "crds", "crds")
	paths, err := filepath.Glob(filepath.Join(dir, "generated", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, paths, dir)
	crds, err := k8scheck.LoadCRDs(append(paths, filepath.Join(dir, "gatewayapi-crds.yaml"))...)
	require.NoError(t, err)
	return crds
}

// TestEnvoyGatewayExampleMatchesCRDs validates every object of the example
// against the OpenAPI schema and CEL rules of its CRD, as the API server
// would on kubectl apply.
func TestEnvoyGatewayExampleMatchesCRDs(t *testing.T) {
	crds := envoyGatewayCRDs(t)
	files, err := filepath.Glob(filepath.Join(egDir, "*.yaml"))
	require.NoError(t, err)
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, doc := range k8scheck.SplitDocuments(data) {
			require.NoError(t, crds.Validate(t.Context(), doc), "%s:\n%s", f, doc)
			n++
		}
	}
	require.Equal(t, 20, n, "every object of the example was validated")
}

func TestCRDValidationRejects(t *testing.T) {
	crds := envoyGatewayCRDs(t)
	tests := []struct {
		name, doc, want string
	}{
		{"enum", `apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata: {name: a, namespace: b}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  extProc:
  - backendRefs: [{name: s, port: 50051}]
    processingMode: {request: {body: Whole}}
`, "Unsupported value"},
		{"CEL rule", `apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata: {name: a, namespace: b}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  extProc:
  - backendRefs: [{name: s, port: 50051}]
    failOpen: true
    processingMode: {request: {body: FullDuplexStreamed}}
`, "FailOpen must be false"},
		{"pattern", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: b}
spec:
  rules:
  - timeouts: {request: 10 minutes}
`, "timeouts.request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorContains(t, crds.Validate(t.Context(), []byte(tt.doc)), tt.want)
		})
	}
	require.ErrorContains(t, crds.Validate(t.Context(), []byte("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n")), "no CRD")
}

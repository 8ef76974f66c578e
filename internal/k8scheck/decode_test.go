package k8scheck_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/k8scheck"
)

const goodService = `apiVersion: v1
kind: Service
metadata:
  name: extproc
  namespace: llm-proxy
  labels: {app: extproc}
spec:
  ports:
  - {name: grpc, port: 50051, targetPort: grpc}
`

func TestDecode(t *testing.T) {
	obj, err := k8scheck.Decode([]byte(goodService))
	require.NoError(t, err)
	require.Equal(t, "Service", obj.Kind)
	require.Equal(t, "extproc", obj.Name)
	require.Equal(t, int32(50051), obj.Value.(*corev1.Service).Spec.Ports[0].Port)
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"unknown kind", "apiVersion: v1\nkind: Pod2\nmetadata: {name: a}\n", "unknown apiVersion/kind"},
		{"unknown top-level field", goodService + "extra: 1\n", `unknown field "extra"`},
		{"unknown nested field", `apiVersion: apps/v1
kind: Deployment
metadata: {name: a}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
      - name: c
        image: i
        imagePullPolcy: Always
`, `unknown field "spec.template.spec.containers[0].imagePullPolcy"`},
		{"misplaced field", `apiVersion: v1
kind: Service
metadata: {name: a}
ports: [{port: 1}]
`, `unknown field "ports"`},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v, k: w}\n", "already set"},
		{"wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: grpc}]}\n", "cannot unmarshal"},
		{"no name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "name"},
		{"bad name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n", "Bad_Name"},
		{"bad namespace", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: a.b}\n", "namespace"},
		{"bad label", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {app: \"no spaces\"}}\n", "label"},
		{"two documents", goodService + "---\n" + goodService, "one YAML document, got 2"},
		{"field name case", strings.Replace(goodService, "targetPort", "targetport", 1), `unknown field "spec.ports[0].targetport"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k8scheck.Decode([]byte(tt.doc))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestSplitDocuments(t *testing.T) {
	docs := k8scheck.SplitDocuments([]byte("# only a comment\n---\na: 1\n---\n\n---\nb: 2\n--- \n"))
	require.Equal(t, [][]byte{[]byte("a: 1\n"), []byte("b: 2\n")}, docs)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/admin"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-version"}, getenv(nil), nil, &out, io.Discard))
	require.Equal(t, version+"\n", out.String())
}

func TestKeyIDFlag(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-key-id"}, getenv(nil), strings.NewReader("sk-secret\n"), &out, io.Discard))
	require.Equal(t, processor.KeyID("sk-secret")+"\n", out.String())
}

func TestValidateConfigFlag(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	require.NoError(t, os.WriteFile(bad, []byte("processing: {nope: 1}\nfeatures: {rate_limiting: {estimation: {bytes_per_token: -2}}}\n"), 0o600))
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-validate-config", "../../configs/base.yml"}, getenv(nil), nil, &out, io.Discard))
	require.Contains(t, out.String(), "configuration valid")

	err := run(t.Context(), []string{"-validate-config", "../../configs/base.yml," + bad}, getenv(nil), nil, &out, io.Discard)
	require.Error(t, err)
	require.Contains(t, err.Error(), "processing.nope: unknown key")
	require.Contains(t, err.Error(), "bytes_per_token: must be a positive number")
}

func TestBadSettings(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"log format", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT"},
		{"log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{"missing config", map[string]string{"LLM_PROXY_CONFIG": "/nonexistent.yml"}, "nonexistent.yml"},
		{"bad duration", map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, "ShutdownTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"GRPC_ADDR": "127.0.0.1:0", "ADMIN_ADDR": "127.0.0.1:0", "LLM_PROXY_CONFIG": "../../configs/base.yml"}
			for k, v := range tt.env {
				env[k] = v
			}
			err := run(t.Context(), nil, getenv(env), nil, io.Discard, io.Discard)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestServeAndShutdown(t *testing.T) {
	var logs bytes.Buffer
	s := Settings{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", ConfigFiles: "../../configs/base.yml",
		LogLevel: "info", LogFormat: "json", ShutdownTimeout: 2 * time.Second}
	ctx, cancel := context.WithCancel(t.Context())
	a, err := start(ctx, s, &syncWriter{w: &logs})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.wait(ctx) }()

	adminURL := "http://" + a.adminLn.Addr().String()
	resp, err := http.Get(adminURL + "/health")
	require.NoError(t, err)
	var h admin.Health
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
	resp.Body.Close()
	require.Equal(t, "healthy", h.Status)
	require.Equal(t, "https://api.anthropic.com", h.Providers["anthropic"].BaseURL)
	require.True(t, h.Providers["gemini"].StreamingSupport)
	require.Len(t, h.Providers, 3)

	resp, err = http.Get(adminURL + "/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, err = http.Get(adminURL + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), "go_goroutines")

	conn, err := grpc.NewClient(a.grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	hc, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{
		Service: extprocv3.ExternalProcessor_ServiceDesc.ServiceName})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, hc.GetStatus())

	// An open stream delays shutdown until it ends; then the server stops.
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(t.Context())
	require.NoError(t, err)
	require.NoError(t, stream.Send(&extprocv3.ProcessingRequest{}))
	cancel()
	select {
	case err := <-done:
		t.Fatalf("server stopped with a stream open: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, stream.CloseSend())
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop after the last stream ended")
	}
	require.True(t, strings.Contains(logs.String(), "extproc stopped"))
}

func TestShutdownTimeoutCutsLongStreams(t *testing.T) {
	s := Settings{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", ConfigFiles: "../../configs/base.yml",
		LogLevel: "error", LogFormat: "text", ShutdownTimeout: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	a, err := start(ctx, s, io.Discard)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.wait(ctx) }()
	conn, err := grpc.NewClient(a.grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(t.Context())
	require.NoError(t, err)
	require.NoError(t, stream.Send(&extprocv3.ProcessingRequest{}))
	time.Sleep(20 * time.Millisecond) // let the stream reach the server
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("shutdown did not honour SHUTDOWN_TIMEOUT")
	}
}

// syncWriter serialises writes from the server's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// A rule file written for the characters-per-token estimate still starts
// the server, which names the keys that no longer have an effect.
func TestDeprecatedKeysLoadWithAWarning(t *testing.T) {
	var logs bytes.Buffer
	extra := filepath.Join(t.TempDir(), "old.yml")
	require.NoError(t, os.WriteFile(extra, []byte("features: {rate_limiting: {estimation: {chars_per_token: 3.5}}}\n"), 0o600))
	s := Settings{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", ConfigFiles: "../../configs/base.yml," + extra,
		LogLevel: "info", LogFormat: "json", ShutdownTimeout: 2 * time.Second}
	ctx, cancel := context.WithCancel(t.Context())
	a, err := start(ctx, s, &syncWriter{w: &logs})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.wait(ctx) }()
	cancel()
	require.NoError(t, <-done)
	require.Contains(t, logs.String(), `"msg":"rules set keys that no longer have an effect; remove them (README: estimation)","keys":["features.rate_limiting.estimation.chars_per_token"]`)
}

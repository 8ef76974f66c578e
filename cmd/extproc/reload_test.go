package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
)

// admit opens a call and plays it up to the admission decision. It returns
// the stream (nil when refused) and the refusal's status (0 when admitted).
func admit(t *testing.T, c extprocv3.ExternalProcessorClient, id string) (extprocv3.ExternalProcessor_ProcessClient, int32) {
	t.Helper()
	st, err := c.Process(t.Context())
	require.NoError(t, err)
	require.NoError(t, st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			hv(":method", "POST"), hv(":path", "/openai/v1/chat/completions"),
			hv("content-type", "application/json"), hv("x-request-id", id)}}}}}))
	_, err = st.Recv()
	require.NoError(t, err)
	require.NoError(t, st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{EndOfStream: true,
			Body: []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)}}}))
	resp, err := st.Recv()
	require.NoError(t, err)
	if ir := resp.GetImmediateResponse(); ir != nil {
		_ = st.CloseSend()
		return nil, int32(ir.GetStatus().GetCode())
	}
	require.NotNil(t, resp.GetRequestBody(), "admitted: %v", resp)
	return st, 0
}

// finish plays the upstream's answer on an admitted call.
func finish(t *testing.T, st extprocv3.ExternalProcessor_ProcessClient) {
	t.Helper()
	for _, m := range []*extprocv3.ProcessingRequest{
		{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{
			Headers: []*corev3.HeaderValue{hv(":status", "200"), hv("content-type", "application/json"), hv("content-length", "120")}}}}},
		{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{EndOfStream: true,
			Body: []byte(`{"id":"x","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`)}}},
	} {
		require.NoError(t, st.Send(m))
		resp, err := st.Recv()
		require.NoError(t, err)
		require.Nil(t, resp.GetImmediateResponse(), "a call admitted before the reload is not refused after it")
	}
	require.NoError(t, st.CloseSend())
}

// reloadStatus reads /health's config_reload section.
func reloadStatus(t *testing.T, adminAddr string) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/health")
	require.NoError(t, err)
	defer resp.Body.Close()
	var h map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
	sec, ok := h["config_reload"].(map[string]any)
	require.True(t, ok, "/health has config_reload: %v", h)
	return sec
}

func metricsText(t *testing.T, adminAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func limitRules(perDay int, keyPrefix string) string {
	return fmt.Sprintf(`
features:
  rate_limiting:
    enabled: true
    backend: memory
    key_prefix: %q
    global: {requests_per_day: %d}
`, keyPrefix, perDay)
}

// TestSIGHUPReloadsRules: a lowered limit is enforced after SIGHUP while a
// call admitted before it completes; an invalid file leaves the running
// rules in force, counted and shown on /health; a restart-only change is
// reported, not applied silently.
func TestSIGHUPReloadsRules(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the server as a child process")
	}
	cfgFile := filepath.Join(t.TempDir(), "rules.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(limitRules(10, "llmproxy:rl:")), 0o600))
	cmd, client, adminAddr := startChildFile(t, cfgFile)
	require.EqualValues(t, 1, reloadStatus(t, adminAddr)["version"])

	held, code := admit(t, client, "held") // 1 of 10
	require.Zero(t, code)
	st, code := admit(t, client, "second") // 2 of 10
	require.Zero(t, code)
	finish(t, st)

	// Lower the limit to 3 (and change a restart-only setting).
	require.NoError(t, os.WriteFile(cfgFile, []byte(limitRules(3, "other:")), 0o600))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return reloadStatus(t, adminAddr)["version"] == float64(2) },
		30*time.Second, 10*time.Millisecond, "SIGHUP reloads the rules")
	status := reloadStatus(t, adminAddr)
	require.Equal(t, "ok", status["last_result"])
	require.Equal(t, []any{"features.rate_limiting.key_prefix"}, status["restart_required"])

	st, code = admit(t, client, "third") // 3 of 3
	require.Zero(t, code)
	finish(t, st)
	_, code = admit(t, client, "fourth")
	require.EqualValues(t, 429, code, "the reloaded limit of 3 is enforced")
	finish(t, held) // admitted under the old rules, completes normally

	// An invalid file (a negative limit) that would also raise the limit.
	require.NoError(t, os.WriteFile(cfgFile, []byte(strings.Replace(limitRules(100, "other:"),
		"global: {requests_per_day: 100}", "global: {requests_per_day: 100, requests_per_minute: -1}", 1)), 0o600))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return reloadStatus(t, adminAddr)["last_result"] == "error" },
		30*time.Second, 10*time.Millisecond, "the failed reload is shown on /health")
	status = reloadStatus(t, adminAddr)
	require.EqualValues(t, 2, status["version"], "the running rules stay")
	require.Contains(t, status["last_error"], "requests_per_minute")
	require.Contains(t, metricsText(t, adminAddr), `llm_proxy_config_reload_total{result="error"} 1`)
	_, code = admit(t, client, "fifth")
	require.EqualValues(t, 429, code, "the limit of 3 is still in force")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
}

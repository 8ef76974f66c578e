package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestMain lets the test binary run the real main when re-executed by
// TestSIGTERMFlushesAcknowledgedCostRecords.
func TestMain(m *testing.M) {
	if os.Getenv("EXTPROC_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func hv(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }

// lifecycle plays one OpenAI call the way Envoy does and waits for the last
// reply: after it, the call's cost record is acknowledged to the gateway.
func lifecycle(ctx context.Context, c extprocv3.ExternalProcessorClient, i int) error {
	st, err := c.Process(ctx)
	if err != nil {
		return err
	}
	msgs := []*extprocv3.ProcessingRequest{
		{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{
			Headers: []*corev3.HeaderValue{hv(":method", "POST"), hv(":path", "/openai/v1/chat/completions"),
				hv("content-type", "application/json"), hv("x-request-id", fmt.Sprintf("req-%d", i))}}}}},
		{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{EndOfStream: true,
			Body: []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)}}},
		{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{
			Headers: []*corev3.HeaderValue{hv(":status", "200"), hv("content-type", "application/json"), hv("content-length", "120")}}}}},
		{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{EndOfStream: true,
			Body: []byte(`{"id":"x","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`)}}},
	}
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			return err
		}
		if _, err := st.Recv(); err != nil {
			return err
		}
	}
	return st.CloseSend()
}

// startChild runs the real main in a child process with base.yml plus the
// rule document extra, waits until it is ready and returns it with an
// ext_proc client.
func startChild(t *testing.T, extra string) (*exec.Cmd, extprocv3.ExternalProcessorClient) {
	t.Helper()
	cfgFile := filepath.Join(t.TempDir(), "extra.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(extra), 0o600))
	cmd, client, _ := startChildFile(t, cfgFile)
	return cmd, client
}

// startChildFile is startChild on the rule file cfgFile (read again on
// SIGHUP); it also returns the admin address.
func startChildFile(t *testing.T, cfgFile string) (*exec.Cmd, extprocv3.ExternalProcessorClient, string) {
	t.Helper()
	grpcAddr, adminAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "EXTPROC_RUN_MAIN=1", "GRPC_ADDR="+grpcAddr, "ADMIN_ADDR="+adminAddr,
		"LLM_PROXY_CONFIG=../../configs/base.yml,"+cfgFile, "LOG_LEVEL=warn")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + adminAddr + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 20*time.Second, 20*time.Millisecond, "server not ready: %s", &stderr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return cmd, extprocv3.NewExternalProcessorClient(conn), adminAddr
}

func TestSIGTERMFlushesAcknowledgedCostRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the server as a child process")
	}
	records := filepath.Join(t.TempDir(), "costs.jsonl")
	// A flush interval far beyond the test: only the shutdown flush can
	// write the records.
	cmd, client := startChild(t, fmt.Sprintf(`
features:
  cost_tracking:
    enabled: true
    flush_interval: 1h
    batch_size: 100000
    queue_size: 100000
    sinks: [{type: file, file: {path: %q}}]
`, records))
	const n = 500
	done := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := w; i < n; i += 8 {
				if err := lifecycle(t.Context(), client, i); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		require.NoError(t, <-done)
	}
	// Under load nothing has reached the file yet: it waits for the hour.
	if st, err := os.Stat(records); err == nil {
		require.Zero(t, st.Size(), "records written before shutdown")
	}

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "graceful exit")

	f, err := os.Open(records)
	require.NoError(t, err)
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, `"request_id":"`)
		require.GreaterOrEqual(t, i, 0)
		id := line[i+len(`"request_id":"`):]
		id = id[:strings.IndexByte(id, '"')]
		require.False(t, seen[id], "record %s written twice", id)
		seen[id] = true
	}
	require.Len(t, seen, n, "every call acknowledged before SIGTERM has its record")
}

func TestSIGHUPReopensCostRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the server as a child process")
	}
	records := filepath.Join(t.TempDir(), "costs.jsonl")
	cmd, client := startChild(t, fmt.Sprintf(`
features:
  cost_tracking:
    enabled: true
    flush_interval: 10ms
    sinks: [{type: file, file: {path: %q}}]
`, records))
	require.NoError(t, lifecycle(t.Context(), client, 1))
	require.Eventually(t, func() bool { st, err := os.Stat(records); return err == nil && st.Size() > 0 }, 30*time.Second, 10*time.Millisecond)
	// logrotate: move the file away, then SIGHUP.
	require.NoError(t, os.Rename(records, records+".1"))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { _, err := os.Stat(records); return err == nil }, 30*time.Second, 10*time.Millisecond,
		"SIGHUP reopens the file at its configured path")
	require.NoError(t, lifecycle(t.Context(), client, 2))
	require.Eventually(t, func() bool { st, err := os.Stat(records); return err == nil && st.Size() > 0 }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
}

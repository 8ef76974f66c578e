package bench

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/gateway"
)

// everyGuard is every guard on, memory backends, limits far above what the
// test sends (as bench/load's "memory" rule set).
func everyGuard(dir string) string {
	return `
features:
  rate_limiting:
    enabled: true
    backend: memory
    limits: {requests_per_minute: 100000000, tokens_per_minute: 100000000000, requests_per_day: 1000000000}
  circuit_breaker:
    enabled: true
    mode: enforce
    backend: memory
  cost_tracking:
    enabled: true
    sinks:
    - {type: file, file: {path: ` + filepath.Join(dir, "costs.jsonl") + `}}
    budgets:
      enabled: true
      backend: memory
      per_key: {default: {daily_usd: 100000000, monthly_usd: 1000000000}}
`
}

// heapPerStream returns the heap in use after a collection, in bytes per
// open stream.
func heapPerStream(n int) float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / float64(n)
}

// TestOpenStreamsHoldNoMemoryPerChunk holds many streamed responses open
// through our server with every guard on and sends chunks on all of them:
// what a stream holds must not grow with the chunks it has passed (no
// whole-body buffering, no per-chunk retention), and every goroutine a
// stream started must be gone once the streams end. Memory is compared
// after a forced collection, so the outcome does not depend on scheduling;
// the bound (1 KiB per stream over 40 chunks of ~130 bytes) leaves room for
// allocator noise and fails a retention of even 25 bytes per chunk.
func TestOpenStreamsHoldNoMemoryPerChunk(t *testing.T) {
	if testing.Short() {
		t.Skip("holds 500 streams open")
	}
	cfg, err := config.Parse(nil, []byte(everyGuard(t.TempDir())))
	require.NoError(t, err)
	g, err := gateway.New(t.Context(), cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
	require.NoError(t, err)
	defer g.Close()
	addr, stop, err := serve(g.Processor)
	require.NoError(t, err)
	defer stop()
	d, closeConn, err := dial(addr)
	require.NoError(t, err)
	defer closeConn()

	req := strings.Replace(ChatRequest, `"n":1,`, `"n":1,"stream":true,"stream_options":{"include_usage":true},`, 1)
	open := []*extprocv3.ProcessingRequest{
		{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: HeaderMap(
			":authority", "llm-gateway.example.com", ":path", "/openai/v1/chat/completions", ":method", "POST",
			"content-type", "application/json", "authorization", "Bearer sk-test-streams")}},
			ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_BUFFERED, ResponseBodyMode: filterv3.ProcessingMode_NONE}},
		{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(req), EndOfStream: true}}},
		{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: HeaderMap(
			":status", "200", "content-type", "text/event-stream")}}},
	}
	chunk := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{
		Body: []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n")}}}
	last := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{EndOfStream: true,
		Body: []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":412,"completion_tokens":48,"total_tokens":460}}` + "\n\ndata: [DONE]\n\n")}}}
	send := func(s extprocv3.ExternalProcessor_ProcessClient, m *extprocv3.ProcessingRequest) {
		t.Helper()
		require.NoError(t, s.Send(m))
		resp, err := s.Recv()
		require.NoError(t, err)
		require.Nil(t, resp.GetImmediateResponse(), "no guard refuses")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang guard
	defer cancel()
	// One whole stream first, so that the connection (and its transport
	// goroutines) exists before the baseline is taken.
	warm, err := d.client.Process(ctx)
	require.NoError(t, err)
	for _, m := range append(open, last) {
		send(warm, m)
	}
	require.NoError(t, warm.CloseSend())
	_, err = warm.Recv()
	require.ErrorIs(t, err, io.EOF)
	goroutines0 := runtime.NumGoroutine()
	const n = 500
	streams := make([]extprocv3.ExternalProcessor_ProcessClient, n)
	for i := range streams {
		s, err := d.client.Process(ctx)
		require.NoError(t, err)
		for _, m := range open {
			send(s, m)
		}
		streams[i] = s
	}
	var after10 float64
	for round := range 50 {
		for _, s := range streams {
			send(s, chunk)
		}
		if round == 9 {
			after10 = heapPerStream(n)
		}
	}
	after50 := heapPerStream(n)
	t.Logf("heap in use per open stream (client and server): %.2f KiB after 10 chunks, %.2f KiB after 50", after10/1024, after50/1024)
	require.Less(t, after50-after10, 1024.0, "what an open stream holds grows with the chunks it passed")

	for _, s := range streams {
		send(s, last)
		require.NoError(t, s.CloseSend())
		_, err := s.Recv()
		require.True(t, errors.Is(err, io.EOF), "the server ends each stream: %v", err)
	}
	// Polled here, not with assert.Eventually: that runs its condition on a
	// goroutine of its own, which the count would then include (the test
	// passed only when some other goroutine happened to end meanwhile).
	for deadline := time.Now().Add(2 * time.Minute); runtime.NumGoroutine() > goroutines0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines0 {
		var b strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Fatalf("the streams' goroutines did not end with them: %d left, %d before:\n%s", n, goroutines0, b.String())
	}
}

package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

func record(model string) *processor.Record {
	return &processor.Record{
		Call: processor.Call{RequestID: "r1", Provider: "openai", Info: providers.RequestInfo{Model: model, Stream: true},
			EstimatedInputTokens: 12, EstimateSource: "text", Identity: processor.Identity{User: "u1"}},
		Status: 200, Outcome: processor.OutcomeCompleted,
		Usage: providers.Usage{InputTokens: 10, OutputTokens: 5, TotalTokens: 15, CacheReadTokens: 4, Found: true},
		TTFB:  120 * time.Millisecond, Duration: time.Second,
	}
}

func TestMetricsObserve(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Observe(record("gpt-4o"))
	m.Observe(record("gpt-4o"))
	require.InDelta(t, 2, testutil.ToFloat64(m.requests.WithLabelValues("openai", "gpt-4o", "2xx", "completed", "true")), 0)
	require.InDelta(t, 20, testutil.ToFloat64(m.tokens.WithLabelValues("openai", "gpt-4o", "input")), 0)
	require.InDelta(t, 8, testutil.ToFloat64(m.tokens.WithLabelValues("openai", "gpt-4o", "cache_read")), 0)
	require.Equal(t, 0, testutil.CollectAndCount(m.noUsage))

	missing := record("gpt-4o")
	missing.Usage = providers.Usage{}
	m.Observe(missing)
	require.InDelta(t, 1, testutil.ToFloat64(m.noUsage.WithLabelValues("openai")), 0)

	errored := record("gpt-4o")
	errored.Status, errored.Usage = 503, providers.Usage{}
	m.Observe(errored)
	require.InDelta(t, 1, testutil.ToFloat64(m.noUsage.WithLabelValues("openai")), 0, "errors carry no usage by design")
	require.InDelta(t, 1, testutil.ToFloat64(m.requests.WithLabelValues("openai", "gpt-4o", "5xx", "completed", "true")), 0)
}

func TestModelLabelCardinalityIsBounded(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	tests := []struct {
		name, model, want string
	}{
		{"plain", "claude-sonnet-4-5", "claude-sonnet-4-5"},
		{"empty", "", "unknown"},
		{"spaces", "gpt 4", "other"},
		{"too long", strings.Repeat("a", 200), "other"},
		{"control bytes", "m\x00", "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, m.modelLabel("openai", tt.model))
		})
	}
	for i := range MaxModels * 2 {
		m.modelLabel("openai", fmt.Sprintf("model-%d", i))
	}
	require.Equal(t, "other", m.modelLabel("openai", "brand-new-model"))
	require.Equal(t, "claude-sonnet-4-5", m.modelLabel("openai", "claude-sonnet-4-5"), "known models keep their label")
}

func TestLoggerWritesOneLinePerRecord(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	rec := record("gpt-4o")
	rec.Call.Header = func(string) string { return "Bearer sk-secret-value" }
	l.Observe(rec)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &got))
	require.Equal(t, "llm request", got["msg"])
	require.Equal(t, "openai", got["provider"])
	require.Equal(t, "gpt-4o", got["model"])
	require.EqualValues(t, 15, got["total_tokens"])
	require.EqualValues(t, 120, got["ttfb_ms"])
	require.Equal(t, "completed", got["outcome"])
	require.NotContains(t, buf.String(), "sk-secret")
}

func TestObserversFanOut(t *testing.T) {
	var n int
	o := Observers{obsFunc(func(*processor.Record) { n++ }), obsFunc(func(*processor.Record) { n += 10 })}
	o.Observe(record("m"))
	require.Equal(t, 11, n)
}

type obsFunc func(*processor.Record)

func (f obsFunc) Observe(r *processor.Record) { f(r) }

func TestAsyncLoggerWritesEveryLine(t *testing.T) {
	var buf bytes.Buffer
	w := &lockedWriter{w: &buf}
	a := NewAsyncLogger(slog.New(slog.NewJSONHandler(w, nil)))
	for range 10000 {
		a.Observe(record("gpt-4o"))
	}
	require.NoError(t, a.Close())
	a.Observe(record("gpt-4o")) // after Close: written synchronously
	require.NoError(t, a.Close())
	require.Equal(t, 10001, strings.Count(w.String(), "\n"))
}

// TestAsyncLoggerWakesWhenIdle: a line observed while the writer waits is
// written without Close, however the lines of concurrent callers fall
// around the writer's gather and idle steps (a lost wake-up would leave a
// line queued until Close, and the wait below would time out).
func TestAsyncLoggerWakesWhenIdle(t *testing.T) {
	var buf bytes.Buffer
	w := &lockedWriter{w: &buf}
	a := NewAsyncLogger(slog.New(slog.NewJSONHandler(w, nil)))
	defer a.Close()
	want := 0
	for round := range 200 {
		callers := 1 + round%4
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() { a.Observe(record("gpt-4o")) })
		}
		wg.Wait()
		want += callers
		require.Eventually(t, func() bool { return strings.Count(w.String(), "\n") == want },
			10*time.Second, 100*time.Microsecond, "round %d", round)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func TestGatewayKeySeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	keyed := func(team, id string) *processor.Record {
		r := record("gpt-4o")
		r.Identity.KeyID, r.Identity.Team, r.Identity.GatewayKey = id, team, &keys.Identity{}
		r.Cost = processor.Cost{Known: true, TotalUSD: 0.25}
		return r
	}
	m.Observe(keyed("ml", "key_000000000001"))
	m.Observe(keyed("ml", "key_000000000001"))
	m.Observe(record("gpt-4o")) // passthrough: not on the gateway-key series
	require.InDelta(t, 2, testutil.ToFloat64(m.keyRequests.WithLabelValues("ml", "key_000000000001", "completed")), 0)
	require.InDelta(t, 0.5, testutil.ToFloat64(m.keyCost.WithLabelValues("ml", "key_000000000001")), 1e-12)
	require.Equal(t, 1, testutil.CollectAndCount(m.keyRequests))
	for i := range MaxKeyLabels + 5 {
		m.Observe(keyed("t", fmt.Sprintf("key_%012d", i+2)))
	}
	require.Equal(t, MaxKeyLabels+1, testutil.CollectAndCount(m.keyRequests), "bounded: the rest is other")
	require.InDelta(t, 6, testutil.ToFloat64(m.keyRequests.WithLabelValues("other", "other", "completed")), 0)
}

func TestFailoverCountedAndLogged(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	var buf bytes.Buffer
	l := NewLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	served := record("claude-sonnet-4-5")
	served.Provider = "anthropic"
	served.Failover = &processor.Failover{Requested: failover.Target{Provider: "openai", Model: "gpt-4o-2024-08-06"},
		Chain: "openai:gpt-4o*", Reason: "circuit_open"}
	m.Observe(served)
	m.Observe(record("gpt-4o"))
	l.Observe(served)
	require.Equal(t, 1, testutil.CollectAndCount(m.failovers), "only failed-over calls are counted")
	require.InDelta(t, 1, testutil.ToFloat64(m.failovers.WithLabelValues("openai:gpt-4o*", "anthropic:claude-sonnet-4-5", "circuit_open")), 0,
		"from is the chain key: the requested name is the client's")
	require.InDelta(t, 1, testutil.ToFloat64(m.requests.WithLabelValues("anthropic", "claude-sonnet-4-5", "2xx", "completed", "true")), 0,
		"requests are the target's")
	var got map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	require.Equal(t, "anthropic", got["provider"])
	require.Equal(t, "claude-sonnet-4-5", got["model"])
	require.Equal(t, "openai", got["requested_provider"])
	require.Equal(t, "gpt-4o-2024-08-06", got["requested_model"])
	require.Equal(t, "openai:gpt-4o*", got["failover_chain"])
	require.Equal(t, "circuit_open", got["failover_reason"])
}

// TestLoggerSkipsDisabledLevel checks that a handler above Info gets no
// line and the record is not formatted.
func TestLoggerSkipsDisabledLevel(t *testing.T) {
	var buf bytes.Buffer
	NewLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))).Observe(record("gpt-4o"))
	require.Empty(t, buf.String())
}

// BenchmarkLoggerLine writes one request line to a JSON handler, against
// the same attributes through slog.Logger.LogAttrs with a fresh slice
// (LogAttrs also walks the stack for the caller's program counter).
func BenchmarkLoggerLine(b *testing.B) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	rec := record("gpt-4o")
	b.Run("observe", func(b *testing.B) {
		l := NewLogger(log)
		b.ReportAllocs()
		for b.Loop() {
			l.Observe(rec)
		}
	})
	b.Run("LogAttrs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			log.LogAttrs(context.Background(), slog.LevelInfo, "llm request", lineAttrs(nil, rec)...)
		}
	})
}

package tracing

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

const (
	parentTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpanID  = "00f067aa0ba902b7"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// headers serves a Record's request headers from a map.
func headers(kv map[string]string) func(string) string {
	return func(name string) string { return kv[name] }
}

// streamedChat is a completed streamed OpenAI chat whose client sent a
// sampled traceparent, admitted by the circuit breaker and the rate limiter.
func streamedChat() *processor.Record {
	return &processor.Record{
		Call: processor.Call{
			RequestID: "req-1", Provider: "openai", Path: "/v1/chat/completions", Method: "POST",
			Info: providers.RequestInfo{Endpoint: providers.EndpointChatCompletions, Model: "gpt-4o",
				Stream: true, MaxOutputTokens: 256},
			Identity:             processor.Identity{User: "alice", KeyID: "3f9a0c1d2e4b5a6978c1"},
			EstimatedInputTokens: 11, EstimateSource: "text", Start: t0,
			Header: headers(map[string]string{
				"traceparent":   "00-" + parentTraceID + "-" + parentSpanID + "-01",
				"tracestate":    "vendor=opaque",
				"authorization": "Bearer sk-live-secret",
			}),
		},
		Guards: []processor.GuardDecision{
			{Guard: "circuit_breaker", Verdict: processor.VerdictAdmitted, State: "closed", At: t0.Add(time.Millisecond)},
			{Guard: "rate_limit", Verdict: processor.VerdictAdmitted, At: t0.Add(2 * time.Millisecond)},
		},
		Status: 200, Outcome: processor.OutcomeCompleted,
		Usage: providers.Usage{InputTokens: 12, CacheReadTokens: 4, OutputTokens: 5, TotalTokens: 17,
			Model: "gpt-4o-2024-08-06", RequestID: "chatcmpl-1", FinishReason: "stop", Found: true},
		TTFB: 300 * time.Millisecond, Duration: 1500 * time.Millisecond,
		Cost: processor.Cost{Known: true, Model: "gpt-4o", TotalUSD: 0.0001},
	}
}

func recordSpans(t *testing.T, sampler sdktrace.Sampler, recs ...*processor.Record) []sdktrace.ReadOnlySpan {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sampler))
	tr := New(tp)
	for _, r := range recs {
		tr.Observe(r)
	}
	require.NoError(t, tp.ForceFlush(context.Background()))
	spans := exp.GetSpans().Snapshots() // Shutdown would reset the exporter
	require.NoError(t, tp.Shutdown(context.Background()))
	return spans
}

func attrs(s sdktrace.ReadOnlySpan) map[string]attribute.Value {
	out := map[string]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[string(kv.Key)] = kv.Value
	}
	return out
}

func TestSpanFollowsGenAIConventions(t *testing.T) {
	spans := recordSpans(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), streamedChat())
	require.Len(t, spans, 1)
	s := spans[0]
	require.Equal(t, "chat gpt-4o", s.Name())
	require.Equal(t, trace.SpanKindClient, s.SpanKind())
	require.Equal(t, t0, s.StartTime(), "the Record's own start")
	require.Equal(t, t0.Add(1500*time.Millisecond), s.EndTime())
	require.Equal(t, parentTraceID, s.SpanContext().TraceID().String())
	require.Equal(t, parentSpanID, s.Parent().SpanID().String())
	require.True(t, s.Parent().IsRemote())
	require.Equal(t, "vendor=opaque", s.SpanContext().TraceState().String())
	require.Equal(t, codes.Unset, s.Status().Code)

	a := attrs(s)
	for k, want := range map[string]any{
		"gen_ai.operation.name":                "chat",
		"gen_ai.provider.name":                 "openai",
		"gen_ai.request.model":                 "gpt-4o",
		"gen_ai.request.max_tokens":            int64(256),
		"gen_ai.response.model":                "gpt-4o-2024-08-06",
		"gen_ai.response.id":                   "chatcmpl-1",
		"gen_ai.usage.input_tokens":            int64(12),
		"gen_ai.usage.output_tokens":           int64(5),
		"gen_ai.usage.cache_read.input_tokens": int64(4),
		"http.response.status_code":            int64(200),
		"llm_proxy.request_id":                 "req-1",
		"llm_proxy.outcome":                    "completed",
		"llm_proxy.stream":                     true,
		"llm_proxy.user":                       "alice",
		"llm_proxy.key_id":                     "3f9a0c1d2e4b5a6978c1",
		"llm_proxy.estimated_input_tokens":     int64(11),
		"llm_proxy.cost_usd":                   0.0001,
	} {
		require.Contains(t, a, k)
		require.Equal(t, want, a[k].AsInterface(), k)
	}
	require.Equal(t, []string{"stop"}, a["gen_ai.response.finish_reasons"].AsStringSlice())
	require.NotContains(t, a, "error.type")
	require.NotContains(t, a, "gen_ai.usage.cache_creation.input_tokens", "zero counts are left out")

	ev := s.Events()
	require.Len(t, ev, 3)
	require.Equal(t, EventGuard, ev[0].Name)
	require.Equal(t, t0.Add(time.Millisecond), ev[0].Time)
	require.ElementsMatch(t, []attribute.KeyValue{attribute.String(attrGuard, "circuit_breaker"),
		attribute.String(attrVerdict, "admitted"), attribute.String(attrState, "closed")}, ev[0].Attributes)
	require.Equal(t, EventGuard, ev[1].Name)
	require.ElementsMatch(t, []attribute.KeyValue{attribute.String(attrGuard, "rate_limit"),
		attribute.String(attrVerdict, "admitted")}, ev[1].Attributes)
	require.Equal(t, EventFirstChunk, ev[2].Name)
	require.Equal(t, t0.Add(300*time.Millisecond), ev[2].Time)
}

func TestSpanOfFailures(t *testing.T) {
	refused := streamedChat()
	refused.Outcome, refused.Status, refused.RefusedBy, refused.Usage, refused.TTFB = processor.OutcomeRefused, 503,
		processor.CircuitOpenDetails, providers.Usage{}, 0
	refused.Guards = []processor.GuardDecision{{Guard: "circuit_breaker", Verdict: processor.VerdictRefused,
		Details: processor.CircuitOpenDetails, At: t0}}

	replaced := streamedChat()
	replaced.Status, replaced.ReplacedBy, replaced.Usage = 503, processor.CircuitDegradedDetails, providers.Usage{}

	gemini := streamedChat()
	gemini.Provider, gemini.Info = "gemini", providers.RequestInfo{Endpoint: providers.EndpointGenerateContent}
	gemini.Status, gemini.Usage, gemini.Header, gemini.Guards = 429, providers.Usage{}, nil, nil

	spans := recordSpans(t, sdktrace.AlwaysSample(), refused, replaced, gemini)
	require.Len(t, spans, 3)

	a := attrs(spans[0])
	require.Equal(t, "llm_proxy_circuit_open", a["error.type"].AsString())
	require.Equal(t, codes.Error, spans[0].Status().Code)
	require.NotContains(t, a, "gen_ai.usage.input_tokens", "no usage, no usage attributes")
	ev := spans[0].Events()
	require.Len(t, ev, 1)
	require.ElementsMatch(t, []attribute.KeyValue{attribute.String(attrGuard, "circuit_breaker"),
		attribute.String(attrVerdict, "refused"), attribute.String(attrDetails, "llm_proxy_circuit_open"),
		attribute.String(attrState, "open")}, ev[0].Attributes)

	require.Equal(t, "llm_proxy_provider_degraded", attrs(spans[1])["error.type"].AsString())
	last := spans[1].Events()[len(spans[1].Events())-1]
	require.Equal(t, EventReplaced, last.Name)
	require.Equal(t, spans[1].EndTime(), last.Time)

	g := spans[2]
	require.Equal(t, "generate_content", g.Name(), "no model, no model in the name")
	require.Equal(t, "gcp.gemini", attrs(g)["gen_ai.provider.name"].AsString())
	require.Equal(t, "429", attrs(g)["error.type"].AsString())
	require.False(t, g.Parent().IsValid(), "no traceparent: a root span")
}

func TestUnsampledParentIsNotRecorded(t *testing.T) {
	r := streamedChat()
	r.Header = headers(map[string]string{"traceparent": "00-" + parentTraceID + "-" + parentSpanID + "-00"})
	require.Empty(t, recordSpans(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), r))
}

func TestMalformedTraceparentStartsANewTrace(t *testing.T) {
	r := streamedChat()
	r.Header = headers(map[string]string{"traceparent": "00-not-a-trace-01"})
	spans := recordSpans(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), r)
	require.Len(t, spans, 1)
	require.False(t, spans[0].Parent().IsValid())
	require.NotEqual(t, parentTraceID, spans[0].SpanContext().TraceID().String())
}

func TestNoSecretOrTextInSpans(t *testing.T) {
	spans := recordSpans(t, sdktrace.AlwaysSample(), streamedChat())
	require.Len(t, spans, 1)
	var all []attribute.KeyValue
	all = append(all, spans[0].Attributes()...)
	for _, e := range spans[0].Events() {
		all = append(all, e.Attributes...)
	}
	for _, kv := range all {
		require.NotContains(t, kv.Value.String(), "sk-live", string(kv.Key))
		require.False(t, strings.HasPrefix(string(kv.Key), "gen_ai.input") || strings.HasPrefix(string(kv.Key), "gen_ai.output"),
			"no message content attributes: %s", kv.Key)
	}
}

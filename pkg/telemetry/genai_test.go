package telemetry

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// histogram returns the sample count, sum and upper bounds of the series
// of name whose labels are exactly want; ok is false when there is none.
func histogram(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) (count uint64, sum float64, bounds []float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		require.Equal(t, dto.MetricType_HISTOGRAM, mf.GetType())
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			got, want := nonEmpty(got), nonEmpty(want)
			if len(got) != len(want) {
				continue
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			h := m.GetHistogram()
			for _, b := range h.GetBucket() {
				bounds = append(bounds, b.GetUpperBound())
			}
			return h.GetSampleCount(), h.GetSampleSum(), bounds, true
		}
	}
	return 0, 0, nil, false
}

// nonEmpty drops empty values: Prometheus treats an empty label as absent.
func nonEmpty(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

func genAIRecords() []*processor.Record {
	chat := providers.RequestInfo{Endpoint: providers.EndpointChatCompletions, Model: "gpt-4o", Stream: true}
	return []*processor.Record{
		// A streamed OpenAI chat: first chunk after 0.5 s, done at 2.5 s,
		// 5 output tokens: 0.5 s per token after the first.
		{Call: processor.Call{Provider: "openai", Info: chat}, Status: 200, Outcome: processor.OutcomeCompleted,
			Usage: providers.Usage{InputTokens: 12, OutputTokens: 5, Model: "gpt-4o-2024-08-06", Found: true},
			TTFB:  500 * time.Millisecond, Duration: 2500 * time.Millisecond},
		// Anthropic reports cache reads and writes beside the input: the
		// semconv input count includes them (10 + 4 + 2).
		{Call: processor.Call{Provider: "anthropic", Info: providers.RequestInfo{Endpoint: providers.EndpointMessages, Model: "claude-sonnet-4-5"}},
			Status: 200, Outcome: processor.OutcomeCompleted,
			Usage: providers.Usage{InputTokens: 10, CacheReadTokens: 4, CacheWriteTokens: 2, OutputTokens: 7, Model: "claude-sonnet-4-5", Found: true},
			TTFB:  time.Second, Duration: time.Second},
		// A vendor 503 on a stream: duration with error_type, no TTFT.
		{Call: processor.Call{Provider: "openai", Info: chat}, Status: 503, Outcome: processor.OutcomeCompleted,
			TTFB: 100 * time.Millisecond, Duration: 200 * time.Millisecond},
		// Refused by the gateway: the vendor was not asked.
		{Call: processor.Call{Provider: "openai", Info: chat}, Status: 429, Outcome: processor.OutcomeRefused,
			RefusedBy: processor.RateLimitDetails, Duration: time.Millisecond},
		// A stream cut short after its first chunk: no TTFT (not successful).
		{Call: processor.Call{Provider: "gemini", Info: providers.RequestInfo{Endpoint: providers.EndpointStreamGenerateContent, Model: "gemini-2.5-flash", Stream: true}},
			Status: 200, Outcome: processor.OutcomeAborted, TTFB: 300 * time.Millisecond, Duration: 400 * time.Millisecond},
	}
}

func TestGenAIMetricsFollowTheSemanticConventions(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	for _, r := range genAIRecords() {
		m.Observe(r)
	}
	openai := map[string]string{labelOperation: "chat", labelProvider: "openai", labelRequestModel: "gpt-4o",
		labelResponseModel: "gpt-4o-2024-08-06"}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	anthropic := map[string]string{labelOperation: "chat", labelProvider: "anthropic", labelRequestModel: "claude-sonnet-4-5",
		labelResponseModel: "claude-sonnet-4-5"}

	tests := []struct {
		name   string
		metric string
		labels map[string]string
		count  uint64
		sum    float64
		bounds []float64
	}{
		{"openai input tokens", "gen_ai_client_token_usage", with(openai, labelTokenType, "input"), 1, 12, genAITokenBuckets},
		{"openai output tokens", "gen_ai_client_token_usage", with(openai, labelTokenType, "output"), 1, 5, genAITokenBuckets},
		{"anthropic input counts the cache", "gen_ai_client_token_usage", with(anthropic, labelTokenType, "input"), 1, 16, genAITokenBuckets},
		{"success duration", "gen_ai_server_request_duration_seconds", with(openai, labelErrorType, ""), 1, 2.5, genAIDurationBuckets},
		{"error duration", "gen_ai_server_request_duration_seconds",
			with(openai, labelResponseModel, "", labelErrorType, "503"), 1, 0.2, genAIDurationBuckets},
		{"aborted duration", "gen_ai_server_request_duration_seconds",
			map[string]string{labelOperation: "generate_content", labelProvider: "gcp.gemini", labelRequestModel: "gemini-2.5-flash",
				labelErrorType: "aborted"}, 1, 0.4, genAIDurationBuckets},
		{"time to first token", "gen_ai_server_time_to_first_token_seconds", openai, 1, 0.5, genAITTFTBuckets},
		{"time per output token", "gen_ai_server_time_per_output_token_seconds", openai, 1, 0.5, genAITPOTBuckets},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			count, sum, bounds, ok := histogram(t, reg, tt.metric, tt.labels)
			require.True(t, ok, "no %s series %v", tt.metric, tt.labels)
			require.Equal(t, tt.count, count)
			require.InDelta(t, tt.sum, sum, 1e-9)
			require.Equal(t, tt.bounds, bounds, "the semconv's recommended buckets")
		})
	}

	// What must not be there.
	for _, tt := range []struct {
		metric string
		labels map[string]string
	}{
		{"gen_ai_server_request_duration_seconds", with(openai, labelResponseModel, "", labelErrorType, processor.RateLimitDetails)},
		{"gen_ai_server_time_to_first_token_seconds", anthropic}, // not streamed
		{"gen_ai_server_time_to_first_token_seconds", with(openai, labelResponseModel, "")},
		{"gen_ai_server_time_to_first_token_seconds", map[string]string{labelOperation: "generate_content",
			labelProvider: "gcp.gemini", labelRequestModel: "gemini-2.5-flash"}},
	} {
		_, _, _, ok := histogram(t, reg, tt.metric, tt.labels)
		require.False(t, ok, "%s %v", tt.metric, tt.labels)
	}
	// The pre-semconv names are gone.
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		require.NotEqual(t, "gen_ai_client_operation_duration_seconds", mf.GetName())
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				require.NotEqual(t, "gen_ai_system", lp.GetName())
			}
		}
	}
}

package e2e

import (
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/otlptest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/gateway"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
)

// TestStreamedCallIsTracedAndMeasured drives a streamed OpenAI chat with
// a client traceparent through Envoy (emulated) to the fake vendor, with
// the circuit breaker and the rate limiter on and OTLP export configured
// only by the standard environment. The collector stub receives one span
// joined to the client's trace, and /metrics shows the GenAI series with
// the call's values. Not parallel: it sets the process environment.
func TestStreamedCallIsTracedAndMeasured(t *testing.T) {
	col := otlptest.StartGRPC(t)
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.Endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_SERVICE_NAME", "gateway-e2e")

	var gw *gateway.Gateway
	s := startEmulated(t, circuit(nil), limits(func(c *ratelimit.Config) {
		c.Limits = ratelimit.Limits{RequestsPerMinute: 100}
	}), withGateway(func(g *gateway.Gateway) { gw = g }))

	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	// A plain client that reads the stream to its end: the SDKs hang up at
	// [DONE], which races the vendor's end of stream and may record the
	// call as aborted.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL()+"/openai/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello."}]}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-test")
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	resp, err := httpClient().Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), "data: [DONE]")
	rec := s.Records(t, 1)[0]
	require.Equal(t, "completed", string(rec.Outcome))
	require.True(t, rec.Usage.Found)
	require.Greater(t, rec.Usage.OutputTokens, int64(1))

	// /metrics, scraped as Prometheus would.
	mf := scrape(t, s.adminURL+"/metrics")
	call := map[string]string{"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
		"gen_ai_request_model": "gpt-4o-mini", "gen_ai_response_model": rec.Usage.Model}
	with := func(k, v string) map[string]string {
		out := map[string]string{k: v}
		for ck, cv := range call {
			out[ck] = cv
		}
		return out
	}
	type want struct {
		metric string
		labels map[string]string
		sum    float64
	}
	wants := []want{
		{"gen_ai_client_token_usage", with("gen_ai_token_type", "input"), float64(rec.Usage.InputTokens)},
		{"gen_ai_client_token_usage", with("gen_ai_token_type", "output"), float64(rec.Usage.OutputTokens)},
		{"gen_ai_server_request_duration_seconds", call, rec.Duration.Seconds()},
		{"gen_ai_server_time_to_first_token_seconds", call, rec.TTFB.Seconds()},
	}
	if rec.Duration > rec.TTFB { // the first chunk was not also the last
		wants = append(wants, want{"gen_ai_server_time_per_output_token_seconds", call,
			(rec.Duration - rec.TTFB).Seconds() / float64(rec.Usage.OutputTokens-1)})
	}
	for _, tt := range wants {
		h := series(t, mf, tt.metric, tt.labels)
		require.EqualValues(t, 1, h.GetSampleCount(), tt.metric)
		require.InDelta(t, tt.sum, h.GetSampleSum(), 1e-9, tt.metric)
	}

	// Close flushes the batch span processor: no waiting on its timer.
	require.NoError(t, gw.Close())
	spans := col.Spans()
	require.Len(t, spans, 1)
	sp := spans[0]
	require.Equal(t, traceID, hex.EncodeToString(sp.GetTraceId()), "joined to the client's trace")
	require.Equal(t, parentID, hex.EncodeToString(sp.GetParentSpanId()))
	require.Equal(t, "gateway-e2e", sp.Resource["service.name"].GetStringValue())
	require.Equal(t, "chat gpt-4o-mini", sp.GetName())
	require.Equal(t, tracepb.Span_SPAN_KIND_CLIENT, sp.GetKind())
	require.Equal(t, uint64(rec.Start.UnixNano()), sp.GetStartTimeUnixNano())
	require.Equal(t, uint64(rec.Start.Add(rec.Duration).UnixNano()), sp.GetEndTimeUnixNano())
	for k, want := range map[string]string{
		"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
		"gen_ai.response.model": rec.Usage.Model, "llm_proxy.request_id": rec.RequestID, "llm_proxy.key_id": rec.Identity.KeyID,
	} {
		require.Equal(t, want, sp.Attr(k).GetStringValue(), k)
	}
	require.NotEmpty(t, rec.RequestID)
	require.Equal(t, rec.Usage.InputTokens, sp.Attr("gen_ai.usage.input_tokens").GetIntValue())
	require.Equal(t, rec.Usage.OutputTokens, sp.Attr("gen_ai.usage.output_tokens").GetIntValue())
	require.EqualValues(t, 200, sp.Attr("http.response.status_code").GetIntValue())
	if rec.Usage.FinishReason != "" {
		require.Equal(t, rec.Usage.FinishReason, sp.Attr("gen_ai.response.finish_reasons").GetArrayValue().GetValues()[0].GetStringValue())
	}
	require.Nil(t, sp.Attr("error.type"))
	for _, kv := range sp.GetAttributes() {
		require.NotContains(t, kv.GetValue().String(), "sk-test", "no API key in %s", kv.GetKey())
	}

	var guards []string
	for _, e := range sp.GetEvents() {
		if e.GetName() == "llm_proxy.guard" {
			guards = append(guards, otlptest.EventAttr(e, "llm_proxy.guard.name").GetStringValue()+":"+
				otlptest.EventAttr(e, "llm_proxy.guard.verdict").GetStringValue())
		}
	}
	require.Equal(t, []string{"circuit_breaker:admitted", "rate_limit:admitted"}, guards, "breaker first, then limits")
	require.Equal(t, "closed", otlptest.EventAttr(sp.GetEvents()[0], "llm_proxy.guard.state").GetStringValue())
}

// scrape reads a Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := httpClient().Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return mf
}

// series returns the histogram of metric whose non-empty labels are
// exactly labels.
func series(t *testing.T, mf map[string]*dto.MetricFamily, metric string, labels map[string]string) *dto.Histogram {
	t.Helper()
	fam, ok := mf[metric]
	require.True(t, ok, "no %s on /metrics", metric)
next:
	for _, m := range fam.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			if lp.GetValue() != "" {
				got[lp.GetName()] = lp.GetValue()
			}
		}
		if len(got) != len(labels) {
			continue
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		return m.GetHistogram()
	}
	require.Failf(t, "no series", "%s%v in %v", metric, labels, fam)
	return nil
}

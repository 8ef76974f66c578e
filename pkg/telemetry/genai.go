package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/genai"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// Bucket boundaries the GenAI semantic conventions recommend for each
// histogram (explicit bucket boundaries advice), in the metric's unit.
var (
	genAITokenBuckets    = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	genAIDurationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	genAITTFTBuckets     = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	genAITPOTBuckets     = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5}
)

// Prometheus label names of the GenAI attributes (dots become
// underscores, as OpenTelemetry's Prometheus exporter writes them).
const (
	labelOperation     = "gen_ai_operation_name"
	labelProvider      = "gen_ai_provider_name"
	labelRequestModel  = "gen_ai_request_model"
	labelResponseModel = "gen_ai_response_model"
	labelTokenType     = "gen_ai_token_type"
	labelErrorType     = "error_type"
)

// genAIMetrics are the OpenTelemetry GenAI semantic-convention metrics, in
// the Prometheus naming OpenTelemetry's exporter uses (unit suffix
// _seconds; {token} has none):
//
//   - gen_ai_client_token_usage: input and output tokens per call with
//     reported usage;
//   - gen_ai_server_request_duration_seconds: every call the vendor was
//     asked for (gateway refusals are not vendor requests), error_type set
//     on failures;
//   - gen_ai_server_time_to_first_token_seconds: streamed 2xx responses
//     that completed, from the request headers to the first response body
//     chunk;
//   - gen_ai_server_time_per_output_token_seconds: the same calls with more
//     than one output token, (duration - time to first token) / (output
//     tokens - 1).
type genAIMetrics struct {
	tokens   *prometheus.HistogramVec
	duration *prometheus.HistogramVec
	ttft     *prometheus.HistogramVec
	tpot     *prometheus.HistogramVec

	// series caches the histogram of each label set: one map lookup per
	// observation instead of hashing the label values. Its size is bounded
	// by the label values' (models are bounded by MaxModels).
	mu     sync.RWMutex
	series map[seriesKey]prometheus.Observer
}

// The histograms of genAIMetrics, for seriesKey.
const (
	seriesInput uint8 = iota
	seriesOutput
	seriesDuration
	seriesTTFT
	seriesTPOT
)

// seriesKey names one series: the histogram, the call's label values and
// (for the duration) its error type.
type seriesKey struct {
	metric                            uint8
	op, provider, reqModel, respModel string
	errType                           string
}

func newGenAIMetrics(reg prometheus.Registerer) *genAIMetrics {
	call := []string{labelOperation, labelProvider, labelRequestModel, labelResponseModel}
	m := &genAIMetrics{
		tokens: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gen_ai_client_token_usage",
			Help:    "Tokens per LLM call by gen_ai.token.type: input (every prompt token, cached or not) and output (including reasoning).",
			Buckets: genAITokenBuckets,
		}, append(call[:len(call):len(call)], labelTokenType)),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gen_ai_server_request_duration_seconds",
			Help:    "LLM call duration, from the request headers to the end of the response, in seconds; error_type is set on failures.",
			Buckets: genAIDurationBuckets,
		}, append(call[:len(call):len(call)], labelErrorType)),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gen_ai_server_time_to_first_token_seconds",
			Help:    "Time from the request headers to the first chunk of a successful streamed response, in seconds.",
			Buckets: genAITTFTBuckets,
		}, call),
		tpot: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gen_ai_server_time_per_output_token_seconds",
			Help:    "Time per output token after the first of a successful streamed response, in seconds.",
			Buckets: genAITPOTBuckets,
		}, call),
	}
	m.series = map[seriesKey]prometheus.Observer{}
	reg.MustRegister(m.tokens, m.duration, m.ttft, m.tpot)
	return m
}

// observer returns the series of k, created on its first observation so
// that no empty series is exposed.
func (m *genAIMetrics) observer(k seriesKey) prometheus.Observer {
	m.mu.RLock()
	o, ok := m.series[k]
	m.mu.RUnlock()
	if ok {
		return o
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if o, ok := m.series[k]; ok {
		return o
	}
	switch k.metric {
	case seriesInput:
		o = m.tokens.WithLabelValues(k.op, k.provider, k.reqModel, k.respModel, genai.TokenTypeInput)
	case seriesOutput:
		o = m.tokens.WithLabelValues(k.op, k.provider, k.reqModel, k.respModel, genai.TokenTypeOutput)
	case seriesDuration:
		o = m.duration.WithLabelValues(k.op, k.provider, k.reqModel, k.respModel, k.errType)
	case seriesTTFT:
		o = m.ttft.WithLabelValues(k.op, k.provider, k.reqModel, k.respModel)
	default:
		o = m.tpot.WithLabelValues(k.op, k.provider, k.reqModel, k.respModel)
	}
	m.series[k] = o
	return o
}

// observe records r; model bounds the model labels' cardinality.
func (m *genAIMetrics) observe(r *processor.Record, model func(provider, model string) string) {
	if r.Outcome == processor.OutcomeRefused {
		return
	}
	k := seriesKey{metric: seriesDuration, op: genai.Operation(r.Info.Endpoint), provider: genai.Provider(r.Provider),
		reqModel: model(r.Provider, r.Info.Model), errType: genai.ErrorTypeOf(r)}
	if r.Usage.Model != "" {
		k.respModel = model(r.Provider, r.Usage.Model)
	}
	m.observer(k).Observe(r.Duration.Seconds())
	k.errType = ""
	if u := r.Usage; u.Found {
		k.metric = seriesInput
		m.observer(k).Observe(float64(processor.PromptTokens(r.Provider, r.Info, u)))
		k.metric = seriesOutput
		m.observer(k).Observe(float64(u.OutputTokens))
	}
	ok := r.Info.Stream && r.Outcome == processor.OutcomeCompleted && r.Status >= 200 && r.Status < 300 &&
		r.ReplacedBy == "" && r.TTFB > 0
	if !ok {
		return
	}
	k.metric = seriesTTFT
	m.observer(k).Observe(r.TTFB.Seconds())
	if out := r.Usage.OutputTokens; out > 1 && r.Duration > r.TTFB {
		k.metric = seriesTPOT
		m.observer(k).Observe((r.Duration - r.TTFB).Seconds() / float64(out-1))
	}
}

package telemetry

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkMetricsObserve is the metrics cost per LLM call (the llm_proxy_*
// series and the GenAI histograms), paid after the call's last reply.
func BenchmarkMetricsObserve(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	r := genAIRecords()[0] // a completed stream: every GenAI histogram
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(r)
	}
}

// BenchmarkGenAIObserve is the GenAI histograms' share of it.
func BenchmarkGenAIObserve(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	r := genAIRecords()[0]
	b.ReportAllocs()
	for b.Loop() {
		m.genAI.observe(r, m.modelLabel)
	}
}

package correction

import "testing"

// BenchmarkCorrectorFactor measures the per-request read of the learned
// correction.
func BenchmarkCorrectorFactor(b *testing.B) {
	c := New(Config{MinObservations: 1})
	c.Observe("openai", "gpt-4o", 100, 120)
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Correct("openai", "gpt-4o", 1000)
	}
}

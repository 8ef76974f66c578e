package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// discard is an exporter that drops what it is given.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkObserve is the tracing cost per LLM call, paid on the stream's
// goroutine after its last reply. Off, Start adds no observer at all, so
// that cost is zero by construction; "unsampled" is a span whose parent
// (or sampler) says not to record; "batch" is the production setup.
func BenchmarkObserve(b *testing.B) {
	for _, bc := range []struct {
		name    string
		sampler sdktrace.Sampler
	}{
		{"unsampled", sdktrace.NeverSample()},
		{"batch", sdktrace.AlwaysSample()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(bc.sampler),
				sdktrace.WithBatcher(discard{}, sdktrace.WithMaxQueueSize(1<<16)))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			var obs processor.Observer = New(tp)
			r := streamedChat()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				obs.Observe(r)
			}
		})
	}
}

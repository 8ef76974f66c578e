package costlog

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// discardSink acknowledges every batch at once.
type discardSink struct{}

func (discardSink) Write(context.Context, []Record) error { return nil }
func (discardSink) Close(context.Context) error           { return nil }

// BenchmarkEnqueue measures the request path when the queue has room:
// one Enqueue of a full record. The timer stops while the writer drains
// the queue every 32768 records, so only accepted enqueues are timed.
func BenchmarkEnqueue(b *testing.B) {
	const chunk = 1 << 15
	w, err := NewWriter([]Sink{discardSink{}}, Options{QueueSize: chunk}, Hooks{})
	require.NoError(b, err)
	ctx := context.Background()
	r := rec("bench")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%chunk == chunk-1 {
			b.StopTimer()
			require.NoError(b, w.Flush(ctx))
			b.StartTimer()
		}
		if !w.Enqueue(r) {
			b.Fatal("dropped with room in the queue")
		}
	}
	b.StopTimer()
	require.NoError(b, w.Close(ctx))
	require.Zero(b, w.Stats().Dropped)
}

// BenchmarkEnqueueParallel measures Enqueue under contention from
// GOMAXPROCS producers; most calls hit a full queue (the drop path), as
// producers outrun the single consumer.
func BenchmarkEnqueueParallel(b *testing.B) {
	w, err := NewWriter([]Sink{discardSink{}}, Options{QueueSize: 1 << 16}, Hooks{})
	require.NoError(b, err)
	r := rec("bench")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Enqueue(r)
		}
	})
	b.StopTimer()
	require.NoError(b, w.Close(context.Background()))
	b.ReportMetric(float64(w.Stats().Dropped), "drops")
}

// BenchmarkEnqueueFull measures the drop path (queue full, sink blocked).
func BenchmarkEnqueueFull(b *testing.B) {
	sink := newBlockSink()
	w, err := NewWriter([]Sink{sink}, Options{QueueSize: 1, BatchSize: 1, Clock: newFakeClock()}, Hooks{})
	require.NoError(b, err)
	r := rec("bench")
	w.Enqueue(r)
	<-sink.entered
	w.Enqueue(r)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Enqueue(r)
	}
	b.StopTimer()
	close(sink.release)
	require.NoError(b, w.Close(context.Background()))
}

// BenchmarkAppendJSON measures encoding one record.
func BenchmarkAppendJSON(b *testing.B) {
	r := rec("bench")
	var buf []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = AppendJSON(buf[:0], r)
	}
}

package costlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWriterKeepsOrderWithinSink(t *testing.T) {
	sink := &memSink{}
	w, err := NewWriter([]Sink{sink}, Options{QueueSize: 5000, BatchSize: 7, Clock: newFakeClock()}, Hooks{})
	require.NoError(t, err)
	var want []string
	for i := range 3000 {
		id := strconv.Itoa(i)
		want = append(want, id)
		for !w.Enqueue(rec(id)) {
			t.Fatalf("record %d refused with a queue larger than the input", i)
		}
	}
	require.NoError(t, w.Close(ctxTimeout(t, 10*time.Second)))
	require.Equal(t, want, sink.ids())
	require.True(t, sink.closed)
	require.Equal(t, Stats{Accepted: 3000, Written: 3000}, w.Stats())
}

func TestWriterConcurrentProducersKeepPerProducerOrder(t *testing.T) {
	sink := &memSink{}
	w, err := NewWriter([]Sink{sink}, Options{QueueSize: 100, BatchSize: 16}, Hooks{})
	require.NoError(t, err)
	const producers, each = 8, 1000
	accepted := make([][]int, producers)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				if w.Enqueue(rec(fmt.Sprintf("%d-%d", p, i))) {
					accepted[p] = append(accepted[p], i)
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, w.Close(ctxTimeout(t, 10*time.Second)))
	seen := make([][]int, producers)
	for _, id := range sink.ids() {
		var p, i int
		_, err := fmt.Sscanf(id, "%d-%d", &p, &i)
		require.NoError(t, err)
		seen[p] = append(seen[p], i)
	}
	st := w.Stats()
	for p := range producers {
		require.Equal(t, accepted[p], seen[p], "producer %d", p)
	}
	require.Equal(t, int64(producers*each), st.Accepted+st.Dropped)
	require.Equal(t, st.Accepted, st.Written)
	require.Zero(t, st.Failed)
	require.Zero(t, st.Queued)
}

func TestWriterDropsWhenQueueFull(t *testing.T) {
	sink := newBlockSink()
	var drops sync.Map
	var dropCount atomic.Int64
	hooks := Hooks{OnDrop: func(reason string) {
		dropCount.Add(1)
		drops.Store(reason, true)
	}}
	w, err := NewWriter([]Sink{sink}, Options{QueueSize: 4, BatchSize: 1, Clock: newFakeClock()}, hooks)
	require.NoError(t, err)

	require.True(t, w.Enqueue(rec("first")))
	<-sink.entered // the writer holds "first" inside the blocked sink
	for i := range 4 {
		require.True(t, w.Enqueue(rec(strconv.Itoa(i))))
	}
	require.False(t, w.Enqueue(rec("overflow-1")))
	require.False(t, w.Enqueue(rec("overflow-2")))
	require.Equal(t, Stats{Accepted: 5, Queued: 5, Dropped: 2}, w.Stats())
	require.Equal(t, int64(2), dropCount.Load())
	_, ok := drops.Load(DropQueueFull)
	require.True(t, ok)

	close(sink.release)
	require.NoError(t, w.Close(ctxTimeout(t, 10*time.Second)))
	require.Equal(t, []string{"first", "0", "1", "2", "3"}, sink.ids())
	require.Equal(t, Stats{Accepted: 5, Written: 5, Dropped: 2}, w.Stats())

	require.False(t, w.Enqueue(rec("late")))
	_, ok = drops.Load(DropClosed)
	require.True(t, ok)
	require.Equal(t, int64(3), w.Stats().Dropped)
}

func TestWriterRetries(t *testing.T) {
	tests := []struct {
		name        string
		sink        *memSink
		wantWritten int64
		wantFailed  int64
		wantErrors  int
		flushErr    bool
	}{
		{name: "transient failure recovers", sink: &memSink{failFirst: 2}, wantWritten: 10, wantErrors: 2},
		{name: "persistent failure is counted", sink: &memSink{failAlways: true}, wantFailed: 10, wantErrors: 3, flushErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var errs []*WriteError
			var written atomic.Int64
			hooks := Hooks{
				OnWriteError: func(err error) {
					var we *WriteError
					require.True(t, errors.As(err, &we))
					mu.Lock()
					errs = append(errs, we)
					mu.Unlock()
				},
				OnWritten: func(n int) { written.Add(int64(n)) },
			}
			w, err := NewWriter([]Sink{tt.sink}, Options{BatchSize: 100, MaxAttempts: 3, Clock: newFakeClock()}, hooks)
			require.NoError(t, err)
			for i := range 10 {
				require.True(t, w.Enqueue(rec(strconv.Itoa(i))))
			}
			err = w.Flush(ctxTimeout(t, 10*time.Second))
			if tt.flushErr {
				require.ErrorContains(t, err, "10 records failed")
				require.ErrorIs(t, err, errSinkDown)
			} else {
				require.NoError(t, err)
			}
			st := w.Stats()
			require.Equal(t, tt.wantWritten, st.Written)
			require.Equal(t, tt.wantFailed, st.Failed)
			require.Equal(t, tt.wantWritten, written.Load())
			require.Zero(t, st.Queued)
			mu.Lock()
			require.Len(t, errs, tt.wantErrors)
			for i, we := range errs {
				require.Equal(t, i+1, we.Attempt)
				require.Equal(t, 10, we.Records)
				require.Equal(t, tt.flushErr && i == len(errs)-1, we.Final)
				require.ErrorIs(t, we, errSinkDown)
			}
			mu.Unlock()
			require.NoError(t, w.Close(ctxTimeout(t, 10*time.Second)))
		})
	}
}

func TestWriterOneFailingSinkFailsTheRecordButOthersKeepIt(t *testing.T) {
	good, bad := &memSink{}, &memSink{failAlways: true}
	w, err := NewWriter([]Sink{good, bad}, Options{MaxAttempts: 2, Clock: newFakeClock()}, Hooks{})
	require.NoError(t, err)
	require.True(t, w.Enqueue(rec("a")))
	err = w.Close(ctxTimeout(t, 10*time.Second))
	require.ErrorContains(t, err, "1 records could not be flushed")
	require.Equal(t, []string{"a"}, good.ids())
	require.Equal(t, Stats{Accepted: 1, Failed: 1}, w.Stats())
	require.True(t, good.closed)
	require.True(t, bad.closed)
}

func TestWriterTickFlushesPartialBatch(t *testing.T) {
	clk := newFakeClock()
	sink := &memSink{}
	written := make(chan int, 1)
	w, err := NewWriter([]Sink{sink}, Options{BatchSize: 100, Clock: clk}, Hooks{OnWritten: func(n int) { written <- n }})
	require.NoError(t, err)
	for i := range 3 {
		require.True(t, w.Enqueue(rec(strconv.Itoa(i))))
	}
	require.Equal(t, 3, w.queued(), "a partial batch waits for the tick")
	clk.tick <- time.Now()
	require.Equal(t, 3, <-written)
	require.Equal(t, []string{"0", "1", "2"}, sink.ids())
	require.NoError(t, w.Close(ctxTimeout(t, 10*time.Second)))
}

func TestWriterLogsDropsAndLosses(t *testing.T) {
	var buf bytes.Buffer
	var bufMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{mu: &bufMu, w: &buf}, nil))
	clk := newFakeClock()
	sink := newBlockSink()
	sink.failAlways = true
	w, err := NewWriter([]Sink{sink}, Options{QueueSize: 2, BatchSize: 2, MaxAttempts: 2, Clock: clk, Logger: logger}, Hooks{})
	require.NoError(t, err)
	// A full batch wakes the writer, which takes it out of the ring and
	// blocks in the sink: from here on the ring only fills.
	require.True(t, w.Enqueue(rec("0")))
	require.True(t, w.Enqueue(rec("1")))
	<-sink.entered
	require.True(t, w.Enqueue(rec("2")))
	require.True(t, w.Enqueue(rec("3")))
	require.False(t, w.Enqueue(rec("4")), "the ring is full while the sink blocks")
	close(sink.release)    // every attempt of both batches now fails
	clk.tick <- time.Now() // reports the drop once both batches failed
	require.NoError(t, w.Flush(ctxTimeout(t, 10*time.Second)))
	require.NoError(t, w.Close(ctxTimeout(t, 10*time.Second)))
	bufMu.Lock()
	out := buf.String()
	bufMu.Unlock()
	require.Contains(t, out, "cost records dropped")
	require.Contains(t, out, "dropped=1")
	require.Contains(t, out, "cost record write failed; retrying")
	require.Contains(t, out, "cost records lost")
	require.Equal(t, Stats{Accepted: 4, Dropped: 1, Failed: 4}, w.Stats())
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestWriterFullBatchWrittenWithoutTick(t *testing.T) {
	sink := &memSink{}
	written := make(chan int, 1)
	w, err := NewWriter([]Sink{sink}, Options{BatchSize: 4, Clock: newFakeClock()}, Hooks{OnWritten: func(n int) { written <- n }})
	require.NoError(t, err)
	for i := range 4 {
		require.True(t, w.Enqueue(rec(strconv.Itoa(i))))
	}
	require.Equal(t, 4, <-written)
	require.NoError(t, w.Close(ctxTimeout(t, 10*time.Second)))
}

func TestWriterCloseWithDeadline(t *testing.T) {
	sink := newBlockSink() // never released: only ctx ends its writes
	w, err := NewWriter([]Sink{sink}, Options{BatchSize: 2, MaxAttempts: 100, Clock: newFakeClock()}, Hooks{})
	require.NoError(t, err)
	for i := range 5 {
		require.True(t, w.Enqueue(rec(strconv.Itoa(i))))
	}
	<-sink.entered
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Close(ctx) }()
	cancel()
	err = <-errc
	require.ErrorContains(t, err, "5 records could not be flushed")
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, Stats{Accepted: 5, Failed: 5}, w.Stats())
	require.True(t, sink.closed)
	require.NoError(t, w.Close(context.Background()), "second Close")
	require.ErrorIs(t, w.Flush(context.Background()), ErrClosed)
}

func TestWriterFlushHonoursContext(t *testing.T) {
	sink := newBlockSink()
	w, err := NewWriter([]Sink{sink}, Options{BatchSize: 1, Clock: newFakeClock()}, Hooks{})
	require.NoError(t, err)
	require.True(t, w.Enqueue(rec("a")))
	<-sink.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, w.Flush(ctx), context.Canceled)
	close(sink.release)
	require.NoError(t, w.Flush(ctxTimeout(t, 10*time.Second)))
	require.NoError(t, w.Close(ctxTimeout(t, 10*time.Second)))
	require.Equal(t, []string{"a"}, sink.ids())
}

func TestNilWriter(t *testing.T) {
	var w *Writer
	require.False(t, w.Enqueue(rec("a")))
	require.NoError(t, w.Flush(context.Background()))
	require.NoError(t, w.Reopen())
	require.Equal(t, Stats{}, w.Stats())
	require.NoError(t, w.Close(context.Background()))
}

func TestNewWriterRejectsBadSinks(t *testing.T) {
	tests := []struct {
		name  string
		sinks []Sink
	}{
		{name: "no sinks"},
		{name: "nil sink", sinks: []Sink{&memSink{}, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWriter(tt.sinks, Options{}, Hooks{})
			require.Error(t, err)
			require.Nil(t, w)
		})
	}
}

func TestWriteErrorMessage(t *testing.T) {
	e := &WriteError{Sink: "file:x", Records: 3, Attempt: 2, Final: true, Err: errSinkDown}
	require.Equal(t, "costlog: sink file:x: 3 records, attempt 2 (giving up): sink down", e.Error())
}

func TestWriterBatchLargerThanQueueStillWakes(t *testing.T) {
	sink := &memSink{}
	written := make(chan int, 1)
	w, err := NewWriter([]Sink{sink}, Options{QueueSize: 3, BatchSize: 100, Clock: newFakeClock()}, Hooks{OnWritten: func(n int) { written <- n }})
	require.NoError(t, err)
	for i := range 3 {
		require.True(t, w.Enqueue(rec(strconv.Itoa(i))))
	}
	require.Equal(t, 3, <-written, "a full queue is a full batch")
	require.NoError(t, w.Close(ctxTimeout(t, 10*time.Second)))
}

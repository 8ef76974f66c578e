package costlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Drop reasons passed to [Hooks.OnDrop].
const (
	// DropQueueFull means the queue was at capacity.
	DropQueueFull = "queue_full"
	// DropClosed means the Writer was closed.
	DropClosed = "closed"
)

// Defaults of [Options] (and of [Config]) used when a field is zero.
const (
	DefaultQueueSize       = 10000
	DefaultBatchSize       = 256
	DefaultFlushInterval   = 200 * time.Millisecond
	DefaultMaxAttempts     = 5
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultMaxRetryBackoff = 5 * time.Second
)

// ErrClosed is returned by [Writer.Flush] after [Writer.Close].
var ErrClosed = errors.New("costlog: writer closed")

// Hooks observe the Writer, typically to feed metrics. Every field is
// optional. OnDrop runs on the caller's goroutine inside Enqueue and must
// be fast and non-blocking; the others run on the Writer's goroutine.
type Hooks struct {
	// OnDrop is called once per record refused by Enqueue, with
	// [DropQueueFull] or [DropClosed].
	OnDrop func(reason string)
	// OnWriteError is called for every failed sink write attempt; the
	// error is a *[WriteError] whose Final field tells whether the
	// records were given up (counted in [Stats].Failed).
	OnWriteError func(err error)
	// OnWritten is called after a batch of n records was acknowledged by
	// every sink.
	OnWritten func(n int)
}

// WriteError describes a failed attempt to write a batch to one sink.
type WriteError struct {
	// Sink names the sink (for example "file:/var/log/cost.jsonl").
	Sink string
	// Records is the size of the batch.
	Records int
	// Attempt counts from 1.
	Attempt int
	// Final is true when the Writer gave up on the batch for this sink.
	Final bool
	// Err is the sink's error.
	Err error
}

// Error implements error.
func (e *WriteError) Error() string {
	state := "will retry"
	if e.Final {
		state = "giving up"
	}
	return fmt.Sprintf("costlog: sink %s: %d records, attempt %d (%s): %v", e.Sink, e.Records, e.Attempt, state, e.Err)
}

// Unwrap returns the sink's error.
func (e *WriteError) Unwrap() error { return e.Err }

// Options tune a [Writer]. Zero fields take the Default* constants.
type Options struct {
	// QueueSize is the capacity of the queue, in records. Default 10000.
	// At most QueueSize records wait, plus one batch being written.
	QueueSize int
	// BatchSize is the largest batch handed to a sink; a full batch is
	// written at once, without waiting for FlushInterval. Default 256;
	// larger than QueueSize means QueueSize.
	BatchSize int
	// FlushInterval is the longest a record waits in a partial batch.
	// Default 200ms.
	FlushInterval time.Duration
	// MaxAttempts bounds the attempts per batch and sink. Default 5.
	MaxAttempts int
	// RetryBackoff is the wait after the first failed attempt; it doubles
	// after each further failure up to MaxRetryBackoff. Defaults 100ms and
	// 5s.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// Clock drives batching and backoff. Default [SystemClock].
	Clock Clock
	// Logger receives retry, failure and drop reports. Default
	// slog.Default().
	Logger *slog.Logger
}

func (o *Options) applyDefaults() {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.BatchSize > o.QueueSize {
		o.BatchSize = o.QueueSize
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.MaxRetryBackoff <= 0 {
		o.MaxRetryBackoff = DefaultMaxRetryBackoff
	}
	if o.MaxRetryBackoff < o.RetryBackoff {
		o.MaxRetryBackoff = o.RetryBackoff
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Stats are the Writer's counters since it was created. Accepted equals
// Queued + Written + Failed at any quiescent moment.
type Stats struct {
	// Accepted counts records Enqueue took.
	Accepted int64
	// Queued counts accepted records neither written nor failed yet,
	// including the batch being written.
	Queued int64
	// Written counts records acknowledged by every sink.
	Written int64
	// Dropped counts records Enqueue refused (queue full or closed).
	Dropped int64
	// Failed counts accepted records that at least one sink did not
	// acknowledge after the allowed attempts, or that Close could not
	// flush before its deadline.
	Failed int64
}

// Writer queues cost records in memory and writes them in batches to its
// sinks from one background goroutine. Enqueue never blocks on I/O. A
// record is acknowledged (counted in Written) only once every sink
// accepted its batch; sinks are written in order, batches in enqueue
// order. A slow or failing sink delays all sinks, and while it retries the
// queue fills and further records are dropped (counted, hooked and
// logged).
//
// A nil *Writer is valid and disabled: Enqueue returns false, the other
// methods do nothing. All methods are safe for concurrent use.
type Writer struct {
	opts  Options
	hooks Hooks
	sinks []Sink

	mu     sync.Mutex // guards the ring and closed
	ring   []Record   // fixed capacity QueueSize
	head   int        // index of the oldest queued record
	count  int        // queued records in ring
	closed bool
	notify chan struct{} // capacity 1: a full batch is waiting

	flushReq chan chan error
	stop     chan struct{}
	done     chan struct{}
	runCtx   context.Context
	cancel   context.CancelFunc

	accepted atomic.Int64
	written  atomic.Int64
	dropped  atomic.Int64
	failed   atomic.Int64

	lastErrMu sync.Mutex
	lastErr   error
}

// NewWriter starts a Writer over sinks, which it owns from now on: Close
// closes them. It fails when sinks is empty or holds a nil sink.
func NewWriter(sinks []Sink, opts Options, hooks Hooks) (*Writer, error) {
	if len(sinks) == 0 {
		return nil, errors.New("costlog: no sinks")
	}
	for i, s := range sinks {
		if s == nil {
			return nil, fmt.Errorf("costlog: sink %d is nil", i)
		}
	}
	opts.applyDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{
		opts:     opts,
		hooks:    hooks,
		sinks:    append([]Sink(nil), sinks...),
		ring:     make([]Record, opts.QueueSize),
		notify:   make(chan struct{}, 1),
		flushReq: make(chan chan error),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		runCtx:   ctx,
		cancel:   cancel,
	}
	go w.run()
	return w, nil
}

// Enqueue hands r to the Writer without blocking on I/O: it copies r into
// a fixed ring under a mutex that is never held across I/O (the writer
// holds it only to copy out one batch), and wakes the writer only when a
// full batch is waiting. It returns false, and counts the
// record as dropped and calls Hooks.OnDrop, when the queue is full or the
// Writer is closed. It does not allocate.
func (w *Writer) Enqueue(r Record) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	if w.closed || w.count == len(w.ring) {
		reason := DropQueueFull
		if w.closed {
			reason = DropClosed
		}
		w.mu.Unlock()
		w.drop(reason)
		return false
	}
	i := w.head + w.count
	if i >= len(w.ring) {
		i -= len(w.ring)
	}
	w.ring[i] = r
	w.count++
	full := w.count >= w.opts.BatchSize
	w.accepted.Add(1) // under the lock, before the writer can take r
	w.mu.Unlock()
	if full {
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
	return true
}

// take moves up to max queued records, oldest first, to the end of batch.
func (w *Writer) take(batch []Record, limit int) []Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := min(limit, w.count)
	for range n {
		batch = append(batch, w.ring[w.head])
		w.ring[w.head] = Record{}
		w.head++
		if w.head == len(w.ring) {
			w.head = 0
		}
	}
	w.count -= n
	return batch
}

// queued returns how many records wait in the ring.
func (w *Writer) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

func (w *Writer) drop(reason string) {
	w.dropped.Add(1)
	if w.hooks.OnDrop != nil {
		w.hooks.OnDrop(reason)
	}
}

// Stats returns the current counters.
func (w *Writer) Stats() Stats {
	if w == nil {
		return Stats{}
	}
	// Read the outcomes before Accepted so Queued is never negative.
	written, failed := w.written.Load(), w.failed.Load()
	s := Stats{
		Accepted: w.accepted.Load(),
		Written:  written,
		Dropped:  w.dropped.Load(),
		Failed:   failed,
	}
	s.Queued = max(s.Accepted-written-failed, 0)
	return s
}

// Flush writes every record queued before the call, waiting for the
// outcome or ctx. It returns an error when some of them failed, and
// [ErrClosed] after Close. Records keep flowing normally meanwhile.
func (w *Writer) Flush(ctx context.Context) error {
	if w == nil {
		return nil
	}
	reply := make(chan error, 1)
	select {
	case w.flushReq <- reply:
	case <-w.stop:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("costlog: flush: %w", ctx.Err())
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("costlog: flush: %w", ctx.Err())
	}
}

// Reopen calls Reopen on every sink that implements [Reopener] (the file
// sink: call it on SIGHUP after log rotation) and joins their errors.
func (w *Writer) Reopen() error {
	if w == nil {
		return nil
	}
	var errs []error
	for _, s := range w.sinks {
		if r, ok := s.(Reopener); ok {
			if err := r.Reopen(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Close stops accepting records, writes everything queued to the sinks
// (retrying as usual) until ctx is done, then closes the sinks. Records it
// could not write are counted as failed and named in the error. Close
// returns when the background goroutine has exited; sinks must honour ctx
// for that to be prompt. Later calls return nil.
func (w *Writer) Close(ctx context.Context) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true // from now on the ring only shrinks
	w.mu.Unlock()
	failedBefore := w.failed.Load()
	close(w.stop)
	select {
	case <-w.done:
	case <-ctx.Done():
		w.cancel() // abort retries and in-flight writes
		<-w.done
	}
	w.cancel()

	var errs []error
	if n := w.failed.Load() - failedBefore; n > 0 {
		cause := ctx.Err()
		if cause == nil {
			cause = w.lastError()
		}
		errs = append(errs, fmt.Errorf("costlog: close: %d records could not be flushed: %w", n, cause))
	}
	for _, s := range w.sinks {
		if err := s.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("costlog: close sink %s: %w", sinkName(s), err))
		}
	}
	if d := w.dropped.Load(); d > 0 {
		w.opts.Logger.Warn("cost records dropped during the writer's life", "dropped", d)
	}
	return errors.Join(errs...)
}

func (w *Writer) lastError() error {
	w.lastErrMu.Lock()
	defer w.lastErrMu.Unlock()
	if w.lastErr == nil {
		return errors.New("unknown error")
	}
	return w.lastErr
}

// run is the background goroutine: it batches records and writes them.
func (w *Writer) run() {
	defer close(w.done)
	tick, stopTick := w.opts.Clock.Ticker(w.opts.FlushInterval)
	defer stopTick()
	batch := make([]Record, 0, w.opts.BatchSize)
	var reportedDrops int64
	for {
		select {
		case <-w.notify:
			batch = w.drain(batch, true)
		case <-tick:
			batch = w.drain(batch, false)
			reportedDrops = w.reportDrops(reportedDrops)
		case reply := <-w.flushReq:
			failedBefore := w.failed.Load()
			batch = w.drain(batch, false)
			if n := w.failed.Load() - failedBefore; n > 0 {
				reply <- fmt.Errorf("costlog: flush: %d records failed: %w", n, w.lastError())
			} else {
				reply <- nil
			}
		case <-w.stop:
			// Enqueue refuses records now: the ring holds the final set.
			w.drain(batch, false)
			w.reportDrops(reportedDrops)
			return
		}
	}
}

// drain writes the queued records in batches of at most BatchSize. With
// fullOnly it stops when less than a full batch is left, leaving it for
// the next tick. It returns the emptied batch buffer.
func (w *Writer) drain(batch []Record, fullOnly bool) []Record {
	for {
		if fullOnly && w.queued() < w.opts.BatchSize {
			return batch
		}
		batch = w.take(batch, w.opts.BatchSize)
		if len(batch) == 0 {
			return batch
		}
		w.writeBatch(batch)
		batch = clearBatch(batch)
	}
}

// clearBatch empties batch, zeroing it so written records' strings can be
// collected.
func clearBatch(batch []Record) []Record {
	clear(batch)
	return batch[:0]
}

func (w *Writer) reportDrops(reported int64) int64 {
	if d := w.dropped.Load(); d > reported {
		w.opts.Logger.Warn("cost records dropped", "dropped", d-reported, "dropped_total", d)
		return d
	}
	return reported
}

// writeBatch writes batch to every sink and counts the outcome.
func (w *Writer) writeBatch(batch []Record) {
	n := len(batch)
	ok := true
	for _, s := range w.sinks {
		if !w.writeSink(s, batch) {
			ok = false
		}
	}
	if ok {
		w.written.Add(int64(n))
		if w.hooks.OnWritten != nil {
			w.hooks.OnWritten(n)
		}
		return
	}
	w.failed.Add(int64(n))
}

// writeSink writes batch to s with bounded, exponentially backed-off
// retries and reports whether s acknowledged it.
func (w *Writer) writeSink(s Sink, batch []Record) bool {
	ctx := w.runCtx
	backoff := w.opts.RetryBackoff
	for attempt := 1; ; attempt++ {
		var err error
		if err = ctx.Err(); err == nil {
			if err = s.Write(ctx, batch); err == nil {
				return true
			}
		}
		final := attempt >= w.opts.MaxAttempts || ctx.Err() != nil
		werr := &WriteError{Sink: sinkName(s), Records: len(batch), Attempt: attempt, Final: final, Err: err}
		w.lastErrMu.Lock()
		w.lastErr = werr
		w.lastErrMu.Unlock()
		if w.hooks.OnWriteError != nil {
			w.hooks.OnWriteError(werr)
		}
		if final {
			w.opts.Logger.Error("cost records lost", "sink", werr.Sink, "records", len(batch), "attempts", attempt, "error", err)
			return false
		}
		w.opts.Logger.Warn("cost record write failed; retrying", "sink", werr.Sink, "records", len(batch), "attempt", attempt, "backoff", backoff, "error", err)
		select {
		case <-w.opts.Clock.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(backoff*2, w.opts.MaxRetryBackoff)
	}
}

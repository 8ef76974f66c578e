package costlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain fails the run when a goroutine started by this package or by
// go-redis outlives the tests (a leak check without goleak, which is not
// in go.mod).
func TestMain(m *testing.M) {
	// Retry and drop reports are expected in these tests; keep the output
	// readable. TestWriterLogsDropsAndLosses checks them with its own
	// logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func leakedGoroutines() string {
	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "costlog.TestMain") || strings.Contains(g, "costlog.leakedGoroutines") {
				continue
			}
			if strings.Contains(g, "pkg/costlog.") || strings.Contains(g, "go-redis") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memSink keeps every acknowledged record in memory. failFirst makes the
// first attempts fail; failAlways makes every attempt fail.
type memSink struct {
	mu         sync.Mutex
	records    []Record
	attempts   int
	failFirst  int
	failAlways bool
	closed     bool
}

var errSinkDown = errors.New("sink down")

func (s *memSink) Write(_ context.Context, batch []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.failAlways || s.attempts <= s.failFirst {
		return errSinkDown
	}
	s.records = append(s.records, batch...)
	return nil
}

func (s *memSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *memSink) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.records))
	for i, r := range s.records {
		out[i] = r.RequestID
	}
	return out
}

// blockSink blocks every Write until release is closed or ctx is done,
// announcing each call on entered.
type blockSink struct {
	memSink
	entered chan struct{}
	release chan struct{}
}

func newBlockSink() *blockSink {
	return &blockSink{entered: make(chan struct{}, 100), release: make(chan struct{})}
}

func (s *blockSink) Write(ctx context.Context, batch []Record) error {
	s.entered <- struct{}{}
	select {
	case <-s.release:
		return s.memSink.Write(ctx, batch)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fakeClock ticks only when the test sends on tick; After fires at once,
// so retries never sleep.
type fakeClock struct {
	tick chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{tick: make(chan time.Time)} }

func (c *fakeClock) Ticker(time.Duration) (<-chan time.Time, func()) { return c.tick, func() {} }

func (c *fakeClock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

func rec(id string) Record {
	return Record{
		Timestamp:    time.Date(2026, 8, 1, 12, 0, 0, 123456789, time.UTC),
		RequestID:    id,
		User:         "alice",
		KeyID:        "0123456789abcdef0123",
		Provider:     "openai",
		Model:        "gpt-5.4-mini",
		PricedModel:  "gpt-5.4-mini",
		Endpoint:     "chat_completions",
		Path:         "/v1/chat/completions",
		Status:       200,
		Outcome:      OutcomeCompleted,
		InputTokens:  1000,
		OutputTokens: 200,
		TotalTokens:  1200,
		InputCostUSD: 0.00075, OutputCostUSD: 0.0009, TotalCostUSD: 0.00165,
		CostKnown: true,
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

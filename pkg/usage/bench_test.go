package usage

import (
	"fmt"
	"testing"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

// BenchmarkLedgerRecord measures recording one request's spend.
func BenchmarkLedgerRecord(b *testing.B) {
	backends := []struct {
		name string
		new  func(b *testing.B) Ledger
	}{
		{name: "memory", new: func(*testing.B) Ledger { return NewMemoryLedger(Config{}) }},
		{name: "redis", new: func(b *testing.B) Ledger {
			l, err := NewRedisLedger(b.Context(), Config{Backend: BackendRedis, Redis: redisconf.Config{Address: redistest.Start(b).Addr}, KeyPrefix: "bench:"}, Hooks{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = l.Close() })
			return l
		}},
	}
	usages := make([]Usage, 1024)
	for i := range usages {
		usages[i] = Usage{User: fmt.Sprintf("user-%d", i), KeyID: fmt.Sprintf("key-%d", i%64), Provider: "openai",
			Model: "gpt-4o", CostNanos: int64(1000 + i), InputTokens: int64(100 + i), OutputTokens: 50, CostKnown: true}
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			l := be.new(b)
			ctx := b.Context()
			now := time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := l.Record(ctx, usages[i%len(usages)], now); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkLedgerReport measures GET /usage over 1000 users, 64 keys and
// one model.
func BenchmarkLedgerReport(b *testing.B) {
	l := NewMemoryLedger(Config{})
	now := time.Now()
	for i := range 1000 {
		_ = l.Record(b.Context(), Usage{User: fmt.Sprintf("user-%d", i), KeyID: fmt.Sprintf("key-%d", i%64),
			Provider: "openai", Model: "gpt-4o", CostNanos: int64(i), CostKnown: true}, now)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Report(b.Context(), now); err != nil {
			b.Fatal(err)
		}
	}
}

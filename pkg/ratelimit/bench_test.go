package ratelimit

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// benchConfig applies four scopes (global, provider, key, user), each with
// minute and day windows: eight counters per request. The limits are high
// enough never to refuse.
func benchConfig() Config {
	huge := Limits{RequestsPerMinute: 1 << 40, TokensPerMinute: 1 << 50, RequestsPerDay: 1 << 40, TokensPerDay: 1 << 50}
	return Config{
		Enabled:     true,
		Limits:      huge,
		Global:      huge,
		PerProvider: map[string]Limits{"openai": huge},
		Settings:    quota.Settings{KeyPrefix: "bench:"},
	}
}

func benchRequests() []Request {
	reqs := make([]Request, 1024)
	for i := range reqs {
		reqs[i] = Request{Provider: "openai", Model: "gpt-4o", User: fmt.Sprintf("user-%d", i),
			KeyID: fmt.Sprintf("key-%d", i%64), InputTokens: int64(100 + i)}
	}
	return reqs
}

// BenchmarkReserveSettle measures one admission plus its settlement, the
// limiter's cost per request.
func BenchmarkReserveSettle(b *testing.B) {
	cfg := benchConfig()
	backends := []struct {
		name string
		new  func(b *testing.B) (Limiter, func())
	}{
		{name: "disabled", new: func(*testing.B) (Limiter, func()) { return Nop{}, func() {} }},
		{name: "memory", new: func(b *testing.B) (Limiter, func()) { return newMemory(b, cfg), func() {} }},
		{name: "redis", new: func(b *testing.B) (Limiter, func()) {
			s := redistest.Start(b)
			c := cfg
			c.Backend, c.Redis = quota.BackendRedis, redisconf.Config{Address: s.Addr}
			r, err := Open(b.Context(), c, quota.Hooks{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = r.Close() })
			return r, redistest.MeasureCPU(b, s)
		}},
		{name: "redis-cluster", new: func(b *testing.B) (Limiter, func()) {
			c := cfg
			c.Backend = quota.BackendRedis
			c.Redis = redisconf.Config{Mode: "cluster", Addresses: redistest.StartCluster(b).Addrs()}
			r, err := Open(b.Context(), c, quota.Hooks{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = r.Close() })
			return r, func() {}
		}},
	}
	reqs := benchRequests()
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			l, reportCPU := be.new(b)
			ctx := b.Context()
			now := time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				d, err := l.Reserve(ctx, reqs[i%len(reqs)], now)
				if err != nil || !d.Allowed {
					b.Fatalf("reserve: %v %+v", err, d)
				}
				if err := l.Settle(ctx, d.Reservation, 150, now); err != nil {
					b.Fatal(err)
				}
				i++
			}
			reportCPU()
		})
		b.Run(be.name+"/parallel", func(b *testing.B) {
			l, reportCPU := be.new(b)
			ctx := b.Context()
			now := time.Now()
			var seq atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					d, err := l.Reserve(ctx, reqs[int(seq.Add(1))%len(reqs)], now)
					if err != nil || !d.Allowed {
						b.Errorf("reserve: %v %+v", err, d)
						return
					}
					if err := l.Settle(ctx, d.Reservation, 150, now); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportCPU()
		})
	}
}

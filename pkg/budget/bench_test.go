package budget

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// benchConfig applies two scopes (key, user), each with day and month
// windows: four counters per request. The limits are high enough never to
// refuse.
func benchConfig() Config {
	huge := Limits{DailyUSD: MaxUSD, MonthlyUSD: MaxUSD}
	return Config{Enabled: true, PerKey: Policy{Default: huge}, PerUser: Policy{Default: huge}, Settings: quota.Settings{KeyPrefix: "bench:"}}
}

func benchRequests() []Request {
	reqs := make([]Request, 1024)
	for i := range reqs {
		reqs[i] = Request{User: fmt.Sprintf("user-%d", i),
			KeyID: fmt.Sprintf("key-%d", i%64), EstimatedUSD: 0.001 * float64(1+i%7)}
	}
	return reqs
}

func benchRedisConfig(b *testing.B) (Config, *redistest.Server) {
	s := redistest.Start(b)
	c := benchConfig()
	c.Backend, c.Redis = quota.BackendRedis, redisconf.Config{Address: s.Addr}
	return c, s
}

// BenchmarkReserveSettle measures one admission plus its settlement, the
// budget's cost per request.
func BenchmarkReserveSettle(b *testing.B) {
	backends := []struct {
		name string
		new  func(b *testing.B) (Limiter, func())
	}{
		{name: "disabled", new: func(*testing.B) (Limiter, func()) { return Nop{}, func() {} }},
		{name: "memory", new: func(b *testing.B) (Limiter, func()) { return newMemory(b, benchConfig()), func() {} }},
		{name: "redis", new: func(b *testing.B) (Limiter, func()) {
			c, s := benchRedisConfig(b)
			r, err := Open(b.Context(), c, quota.Hooks{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = r.Close() })
			return r, redistest.MeasureCPU(b, s)
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
				if err := l.Settle(ctx, d.Reservation, 0.0015, now); err != nil {
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
					if err := l.Settle(ctx, d.Reservation, 0.0015, now); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportCPU()
		})
	}
}

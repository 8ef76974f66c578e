package breaker

import (
	"context"
	"testing"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

// BenchmarkAllowReport measures the breaker's cost per request on the hot
// path (closed circuit, success): Allow then Report. "disabled" is the
// baseline of a gateway without the breaker; all three run in one go test
// invocation so the numbers compare.
func BenchmarkAllowReport(b *testing.B) {
	s := redistest.Start(b)
	backends := []struct {
		name string
		cfg  func() Config
	}{
		{"disabled", func() Config { return Config{} }},
		{"memory", func() Config { c := Defaults(); c.Enabled = true; return c }},
		{"redis", func() Config {
			c := Defaults()
			c.Enabled, c.Backend, c.Redis.Address = true, BackendRedis, s.Addr
			return c
		}},
	}
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) {
			br, err := New(context.Background(), bk.cfg(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			ctx := context.Background()
			now := time.Now()
			out := Outcome{Class: None, Terminal: true}
			b.ReportAllocs()
			for b.Loop() {
				adm, err := br.Allow(ctx, "openai", "gpt-4o", now)
				if err != nil || !adm.Allowed {
					b.Fatalf("allow: %v %+v", err, adm)
				}
				if _, err := br.Report(ctx, adm, out, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAllowParallel measures Allow under contention on one key.
func BenchmarkAllowParallel(b *testing.B) {
	c := Defaults()
	c.Enabled = true
	br, err := New(context.Background(), c, Options{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Allow(context.Background(), "openai", "gpt-4o", now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

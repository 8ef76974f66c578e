package cost

import (
	"testing"
	"time"
)

var sink Breakdown

// BenchmarkLookupCompute measures price lookup plus computation for the
// shipped prices (catalog) and, in the same run, for the hand-written table
// that preceded the catalog (handwritten), on the same names.
func BenchmarkLookupCompute(b *testing.B) {
	tests := []struct {
		name, provider, model string
	}{
		{name: "exact", provider: "openai", model: "gpt-4o-mini"},
		{name: "snapshot", provider: "anthropic", model: "claude-sonnet-4-5-20250929"},
		{name: "prefix-version", provider: "gemini", model: "models/gemini-2.0-flash-001"},
		{name: "fine-tune", provider: "openai", model: "ft:gpt-4o-mini-2024-07-18:acme:support:9xYz"},
	}
	tables := []struct {
		name string
		tab  *Table
	}{
		{name: "catalog", tab: DefaultTable()},
		{name: "handwritten", tab: handwrittenTable(b)},
	}
	u := Usage{Input: 12_000, Output: 800, CacheRead: 9_000, CacheWrite: 500, Reasoning: 300}
	for _, tt := range tests {
		for _, tab := range tables {
			b.Run(tt.name+"/"+tab.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					p, _, ok := tab.tab.Lookup(tt.provider, tt.model)
					if !ok {
						b.Fatal("unknown model")
					}
					sink = Compute(tt.provider, false, p, u)
				}
			})
		}
	}
}

// BenchmarkLookupAtCompute is the hot path with the request's time, on
// catalog names only the catalog knows, including a price history.
func BenchmarkLookupAtCompute(b *testing.B) {
	tests := []struct {
		name, provider, model string
	}{
		{name: "listed", provider: "openai", model: "gpt-5.2-2025-12-11"},
		{name: "matched", provider: "anthropic", model: "claude-opus-4-8-20261115"},
		{name: "history", provider: "anthropic", model: "claude-sonnet-4-6"},
		{name: "tiered", provider: "gemini", model: "gemini-3-pro-preview"},
	}
	tab := DefaultTable()
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	u := Usage{Input: 12_000, Output: 800, CacheRead: 9_000, CacheWrite: 500, Reasoning: 300}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, _, ok := tab.LookupAt(tt.provider, tt.model, at)
				if !ok {
					b.Fatal("unknown model")
				}
				sink = Compute(tt.provider, false, p, u)
			}
		})
	}
}

// BenchmarkCompute compares the text-only path with the general unit split
// (taken when a usage has 1-hour writes, audio or image counts).
func BenchmarkCompute(b *testing.B) {
	p, _, _ := DefaultTable().Lookup("openai", "gpt-realtime")
	tests := []struct {
		name string
		u    Usage
	}{
		{name: "text", u: Usage{Input: 12_000, Output: 800, CacheRead: 9_000, Reasoning: 300}},
		{name: "audio", u: Usage{Input: 12_000, Output: 800, CacheRead: 9_000, InputAudio: 4_000, CacheReadAudio: 2_000, OutputAudio: 500}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = Compute("openai", false, p, tt.u)
			}
		})
	}
}

func BenchmarkEstimate(b *testing.B) {
	p, _, _ := DefaultTable().Lookup("gemini", "gemini-2.5-pro")
	var s float64
	b.ReportAllocs()
	for b.Loop() {
		s += Estimate(p, 250_000, 4_096)
	}
	_ = s
}

func FuzzLookupCompute(f *testing.F) {
	f.Add("openai", "gpt-4o-2024-08-06", int64(10), int64(5), int64(3), int64(1), int64(2), false)
	f.Add("anthropic", "claude-sonnet-4@20250514", int64(-1), int64(0), int64(1<<62), int64(1<<62), int64(0), false)
	f.Add("openai", "ft::", int64(0), int64(0), int64(0), int64(0), int64(0), true)
	f.Add("gemini", "models/-001", int64(1), int64(1), int64(1), int64(1), int64(1), false)
	tab := DefaultTable()
	f.Fuzz(func(t *testing.T, prov, model string, in, out, cr, cw, r int64, compat bool) {
		p, c, ok := tab.Lookup(prov, model)
		if ok != (c != "") {
			t.Fatalf("ok %v with canonical %q", ok, c)
		}
		b := Compute(prov, compat, p, Usage{Input: in, Output: out, CacheRead: cr, CacheWrite: cw, Reasoning: r})
		if b.TotalUSD < 0 || b.InputUSD < 0 || b.OutputUSD < 0 || b.CacheReadUSD < 0 || b.CacheWriteUSD < 0 {
			t.Fatalf("negative cost %+v", b)
		}
		_ = b.Micros()
		_ = Estimate(p, in, out)
	})
}

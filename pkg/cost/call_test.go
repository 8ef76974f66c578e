package cost

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// TestPriceCall prices parsed usages through the gateway's pricing path,
// against hand-computed catalog rates (USD per million tokens).
func TestPriceCall(t *testing.T) {
	tab := DefaultTable()
	june := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	january := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		provider  string
		info      providers.RequestInfo
		usage     providers.Usage
		at        time.Time
		wantOK    bool
		wantModel string
		wantUSD   float64
	}{
		{
			// claude-sonnet-4-6: input 3, 5-minute write 3.75, 1-hour
			// write 6, output 15.
			name: "anthropic 1-hour writes apart from 5-minute ones", provider: "anthropic",
			info:  providers.RequestInfo{Model: "claude-sonnet-4-6"},
			usage: providers.Usage{Model: "claude-sonnet-4-6", InputTokens: 1000, CacheWriteTokens: 2000, CacheWrite1hTokens: 1500, OutputTokens: 100},
			at:    june, wantOK: true, wantModel: "claude-sonnet-4-6",
			wantUSD: (1000*3 + 500*3.75 + 1500*6 + 100*15) / 1e6,
		},
		{
			// The catalog's history: until 2026-03-13 prompts above 200k
			// tokens cost 6 in and 22.5 out, flat 3 and 15 after.
			name: "price in force at the request's time, before a change", provider: "anthropic",
			info:  providers.RequestInfo{Model: "claude-sonnet-4-6"},
			usage: providers.Usage{Model: "claude-sonnet-4-6", InputTokens: 300_000, OutputTokens: 1000},
			at:    january, wantOK: true, wantModel: "claude-sonnet-4-6",
			wantUSD: (300_000*6 + 1000*22.5) / 1e6,
		},
		{
			name: "price in force at the request's time, after a change", provider: "anthropic",
			info:  providers.RequestInfo{Model: "claude-sonnet-4-6"},
			usage: providers.Usage{Model: "claude-sonnet-4-6", InputTokens: 300_000, OutputTokens: 1000},
			at:    june, wantOK: true, wantModel: "claude-sonnet-4-6",
			wantUSD: (300_000*3 + 1000*15) / 1e6,
		},
		{
			// Recorded usage (video with sound, cached). gemini-2.5-flash:
			// text 0.3, audio 1, cached text 0.03, cached audio 0.1, output
			// 2.5. Uncached text = 17713 − 17379 cached − 36 uncached audio.
			name: "gemini audio and cached audio", provider: "gemini",
			info: providers.RequestInfo{Model: "gemini-2.5-flash"},
			usage: providers.Usage{Model: "gemini-2.5-flash", InputTokens: 17713, OutputTokens: 889, ReasoningTokens: 821,
				CacheReadTokens: 17379, InputAudioTokens: 1917, CacheReadAudioTokens: 1881},
			at: june, wantOK: true, wantModel: "gemini-2.5-flash",
			wantUSD: (298*0.3 + 36*1 + (17379-1881)*0.03 + 1881*0.1 + 889*2.5) / 1e6,
		},
		{
			// gpt-5: input 1.25, cached 0.125, output 10; flex is half.
			name: "openai flex service tier", provider: "openai",
			info:  providers.RequestInfo{Model: "gpt-5"},
			usage: providers.Usage{Model: "gpt-5-2025-08-07", InputTokens: 2000, CacheReadTokens: 1000, OutputTokens: 500, ServiceTier: "flex"},
			at:    june, wantOK: true, wantModel: "gpt-5",
			wantUSD: (1000*1.25 + 1000*0.125 + 500*10) / 2 / 1e6,
		},
		{
			name: "reported model unknown, requested one priced", provider: "openai",
			info:  providers.RequestInfo{Model: "gpt-5"},
			usage: providers.Usage{Model: "no-such-model", InputTokens: 1000, OutputTokens: 100},
			at:    june, wantOK: true, wantModel: "gpt-5",
			wantUSD: (1000*1.25 + 100*10) / 1e6,
		},
		{
			name: "neither model priced", provider: "openai",
			info:  providers.RequestInfo{Model: "no-such-model"},
			usage: providers.Usage{InputTokens: 1000, OutputTokens: 100},
			at:    june,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, model, ok := tab.PriceCall(tc.provider, &tc.info, &tc.usage, tc.at)
			require.Equal(t, tc.wantOK, ok)
			require.Equal(t, tc.wantModel, model)
			require.InDelta(t, tc.wantUSD, b.TotalUSD, 1e-12)
		})
	}
}

func TestPriceCallAllocatesNothing(t *testing.T) {
	tab := DefaultTable()
	info := providers.RequestInfo{Model: "gemini-2.5-flash"}
	u := providers.Usage{Model: "gemini-2.5-flash", InputTokens: 17713, OutputTokens: 889, CacheReadTokens: 17379,
		InputAudioTokens: 1917, CacheReadAudioTokens: 1881}
	at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	allocs := testing.AllocsPerRun(100, func() { _, _, _ = tab.PriceCall("gemini", &info, &u, at) })
	require.Zero(t, allocs)
}

// BenchmarkPriceCall is the gateway's pricing path per call: resolution at
// the request's time plus Compute on a parsed usage, text-only and with
// audio counts (the general split).
func BenchmarkPriceCall(b *testing.B) {
	tab := DefaultTable()
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name, provider string
		info           providers.RequestInfo
		usage          providers.Usage
	}{
		{name: "text", provider: "anthropic", info: providers.RequestInfo{Model: "claude-sonnet-4-6"},
			usage: providers.Usage{Model: "claude-sonnet-4-6", InputTokens: 12_000, OutputTokens: 800, CacheReadTokens: 9_000, CacheWriteTokens: 500}},
		{name: "audio", provider: "gemini", info: providers.RequestInfo{Model: "gemini-2.5-flash"},
			usage: providers.Usage{Model: "gemini-2.5-flash", InputTokens: 17713, OutputTokens: 889, CacheReadTokens: 17379,
				InputAudioTokens: 1917, CacheReadAudioTokens: 1881}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink, _, _ = tab.PriceCall(tt.provider, &tt.info, &tt.usage, at)
			}
		})
	}
}

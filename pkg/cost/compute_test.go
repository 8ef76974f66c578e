package cost

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// Prices used by the hand-computed cases, copied here so that a change to
// the default table does not silently change the expected values.
var (
	gpt4o        = Price{Input: 2.50, Output: 10, CacheRead: 1.25}
	o4mini       = Price{Input: 1.10, Output: 4.40, CacheRead: 0.275}
	sonnet45     = Price{Input: 3, Output: 15, CacheWrite: 3.75, CacheRead: 0.30, Tiers: []Tier{{AbovePromptTokens: 200_000, Input: 6, Output: 22.50, CacheWrite: 7.50, CacheRead: 0.60}}}
	sonnet46     = Price{Input: 3, Output: 15, CacheWrite: 3.75, CacheWrite1h: 6, CacheRead: 0.30}
	gptAudio     = Price{Input: 2.50, Output: 10, InputAudio: 32, OutputAudio: 64}
	gemini3flash = Price{Input: 0.30, Output: 2.50, CacheRead: 0.03, InputAudio: 1, CacheReadAudio: 0.10}
	haiku45      = Price{Input: 1, Output: 5, CacheWrite: 1.25, CacheRead: 0.10}
	gemini25pro  = Price{Input: 1.25, Output: 10, CacheRead: 0.125, Tiers: []Tier{{AbovePromptTokens: 200_000, Input: 2.50, Output: 15, CacheRead: 0.25}}}
	gemini25fl   = Price{Input: 0.30, Output: 2.50, CacheRead: 0.03}
	noCache      = Price{Input: 2, Output: 8}
	threeTiers   = Price{Input: 1, Output: 1, Tiers: []Tier{{AbovePromptTokens: 100, Input: 2, Output: 2}, {AbovePromptTokens: 1000, Input: 3, Output: 3, CacheRead: 0.5}}}
)

func TestCompute(t *testing.T) {
	tests := []struct {
		name     string
		provider string
		compat   bool
		price    Price
		usage    Usage
		want     Breakdown
	}{
		{
			// 6,000 uncached × 2.50 + 4,000 cached × 1.25 + 2,000 out × 10.
			name: "openai cached and reasoning", provider: "openai", price: gpt4o,
			usage: Usage{Input: 10_000, CacheRead: 4_000, Output: 2_000, Reasoning: 500},
			want:  Breakdown{InputUSD: 0.015, CacheReadUSD: 0.005, OutputUSD: 0.02, TotalUSD: 0.04},
		},
		{
			// 800,000 × 1.10 + 200,000 × 0.275 + 50,000 × 4.40 (reasoning inside output).
			name: "openai reasoning model", provider: "openai", price: o4mini,
			usage: Usage{Input: 1_000_000, CacheRead: 200_000, Output: 50_000, Reasoning: 40_000},
			want:  Breakdown{InputUSD: 0.88, CacheReadUSD: 0.055, OutputUSD: 0.22, TotalUSD: 1.155},
		},
		{
			// Input excludes the cache: 1,000 × 3 + 50,000 × 0.30 + 10,000 × 3.75 + 800 × 15.
			name: "anthropic native cache read and write", provider: "anthropic", price: sonnet45,
			usage: Usage{Input: 1_000, CacheRead: 50_000, CacheWrite: 10_000, Output: 800, Reasoning: 300},
			want:  Breakdown{InputUSD: 0.003, CacheReadUSD: 0.015, CacheWriteUSD: 0.0375, OutputUSD: 0.012, TotalUSD: 0.0675},
		},
		{
			// Prompt = 100,000 + 100,000 = 200,000, not above the threshold.
			name: "anthropic tier boundary stays base", provider: "anthropic", price: sonnet45,
			usage: Usage{Input: 100_000, CacheRead: 100_000, Output: 1_000},
			want:  Breakdown{InputUSD: 0.3, CacheReadUSD: 0.03, OutputUSD: 0.015, TotalUSD: 0.345},
		},
		{
			// Prompt = 100,001 + 100,000 = 200,001: long-context rates for every part,
			// although input_tokens alone is far below 200k.
			name: "anthropic tier counts cache tokens", provider: "anthropic", price: sonnet45,
			usage: Usage{Input: 100_001, CacheRead: 100_000, Output: 1_000},
			want:  Breakdown{InputUSD: 0.600006, CacheReadUSD: 0.06, OutputUSD: 0.0225, TotalUSD: 0.682506, Tier: 1},
		},
		{
			// Compatible endpoint: input includes cache, 8,000 × 1 + 2,000 × 0.10 + 1,000 × 5.
			name: "anthropic openai-compatible", provider: "anthropic", compat: true, price: haiku45,
			usage: Usage{Input: 10_000, CacheRead: 2_000, Output: 1_000},
			want:  Breakdown{InputUSD: 0.008, CacheReadUSD: 0.0002, OutputUSD: 0.005, TotalUSD: 0.0132},
		},
		{
			// Same counts read as native: input excludes cache, 10,000 × 1 + 2,000 × 0.10 + 1,000 × 5.
			name: "anthropic native same counts", provider: "anthropic", price: haiku45,
			usage: Usage{Input: 10_000, CacheRead: 2_000, Output: 1_000},
			want:  Breakdown{InputUSD: 0.01, CacheReadUSD: 0.0002, OutputUSD: 0.005, TotalUSD: 0.0152},
		},
		{
			// promptTokenCount 150,000 with 100,000 cached; candidates 2,000 + thoughts 3,000.
			name: "gemini native cache and thoughts", provider: "gemini", price: gemini25pro,
			usage: Usage{Input: 150_000, CacheRead: 100_000, Output: 5_000, Reasoning: 3_000},
			want:  Breakdown{InputUSD: 0.0625, CacheReadUSD: 0.0125, OutputUSD: 0.05, TotalUSD: 0.125},
		},
		{
			name: "gemini tier boundary stays base", provider: "gemini", price: gemini25pro,
			usage: Usage{Input: 200_000, Output: 1_000},
			want:  Breakdown{InputUSD: 0.25, OutputUSD: 0.01, TotalUSD: 0.26},
		},
		{
			name: "gemini above tier", provider: "gemini", price: gemini25pro,
			usage: Usage{Input: 200_001, Output: 1_000},
			want:  Breakdown{InputUSD: 0.5000025, OutputUSD: 0.015, TotalUSD: 0.5150025, Tier: 1},
		},
		{
			// Cached tokens count toward the Gemini tier too; tier cache rate 0.25.
			name: "gemini tier with cache", provider: "gemini", price: gemini25pro,
			usage: Usage{Input: 300_000, CacheRead: 200_000, Output: 2_000},
			want:  Breakdown{InputUSD: 0.25, CacheReadUSD: 0.05, OutputUSD: 0.03, TotalUSD: 0.33, Tier: 1},
		},
		{
			// 10,000 × 0.30 + 10,000 × 0.03 + 4,000 × 2.50.
			name: "gemini openai-compatible", provider: "gemini", compat: true, price: gemini25fl,
			usage: Usage{Input: 20_000, CacheRead: 10_000, Output: 4_000},
			want:  Breakdown{InputUSD: 0.003, CacheReadUSD: 0.0003, OutputUSD: 0.01, TotalUSD: 0.0133},
		},
		{
			// No cache rate: cached tokens at the input rate, 600 × 2 + 400 × 2.
			name: "cache read without rate bills input", provider: "openai", price: noCache,
			usage: Usage{Input: 1_000, CacheRead: 400},
			want:  Breakdown{InputUSD: 0.0012, CacheReadUSD: 0.0008, TotalUSD: 0.002},
		},
		{
			// No cache-write rate: 100 × 2 + 1,000 × 2.
			name: "cache write without rate bills input", provider: "anthropic", price: noCache,
			usage: Usage{Input: 100, CacheWrite: 1_000},
			want:  Breakdown{InputUSD: 0.0002, CacheWriteUSD: 0.002, TotalUSD: 0.0022},
		},
		{
			// Prompt 31,000: 4,000 1h writes × 6 + 6,000 5m writes × 3.75 +
			// 20,000 reads × 0.30 + 1,000 uncached × 3 + 500 out × 15.
			name: "anthropic 1h and 5m cache writes apart", provider: "anthropic", price: sonnet46,
			usage: Usage{Input: 1_000, CacheWrite: 10_000, CacheWrite1h: 4_000, CacheRead: 20_000, Output: 500},
			want:  Breakdown{InputUSD: 0.003, CacheReadUSD: 0.006, CacheWriteUSD: 0.0465, OutputUSD: 0.0075, TotalUSD: 0.063},
		},
		{
			// No 1-hour rate: all 10,000 writes at the 5-minute 3.75.
			name: "1h writes without a rate bill the write rate", provider: "anthropic", price: sonnet45,
			usage: Usage{Input: 1_000, CacheWrite: 10_000, CacheWrite1h: 4_000, CacheRead: 20_000, Output: 500},
			want:  Breakdown{InputUSD: 0.003, CacheReadUSD: 0.006, CacheWriteUSD: 0.0375, OutputUSD: 0.0075, TotalUSD: 0.054},
		},
		{
			// 200 text × 2.50 + 1,100 audio × 32; 120 text out × 10 + 780 audio out × 64.
			name: "openai audio in and out", provider: "openai", price: gptAudio,
			usage: Usage{Input: 1_300, InputAudio: 1_100, Output: 900, OutputAudio: 780},
			want:  Breakdown{InputUSD: 0.0357, OutputUSD: 0.05112, TotalUSD: 0.08682},
		},
		{
			// Cached audio 5,000 × 0.10; other cache 3,000 × 0.03; other audio
			// 7,000 × 1; text 24,000 − 3,000 − 7,000 − 5,000 = 9,000 × 0.30; 900 × 2.50.
			name: "gemini cached audio is counted once", provider: "gemini", price: gemini3flash,
			usage: Usage{Input: 24_000, CacheRead: 8_000, InputAudio: 12_000, CacheReadAudio: 5_000, Output: 900},
			want:  Breakdown{InputUSD: 0.0097, CacheReadUSD: 0.00059, OutputUSD: 0.00225, TotalUSD: 0.01254},
		},
		{
			// No audio rate: audio is input, 1,000 × 2.50.
			name: "audio without a rate bills input", provider: "openai", price: gpt4o,
			usage: Usage{Input: 1_000, InputAudio: 400, Output: 10},
			want:  Breakdown{InputUSD: 0.0025, OutputUSD: 0.0001, TotalUSD: 0.0026},
		},
		{
			// A part larger than its whole: 300 audio × 2, text floored at 0.
			name: "inconsistent parts floor at zero", provider: "openai", price: Price{Input: 1, Output: 1, InputAudio: 2},
			usage: Usage{Input: 100, InputAudio: 300},
			want:  Breakdown{InputUSD: 0.0006, TotalUSD: 0.0006},
		},
		{
			name: "reasoning above output is billed", provider: "openai", price: noCache,
			usage: Usage{Output: 100, Reasoning: 500},
			want:  Breakdown{OutputUSD: 0.004, TotalUSD: 0.004},
		},
		{
			// One token is 0.15e-6 USD, not rounded up to a cent fraction.
			name: "no per-field rounding", provider: "openai", price: Price{Input: 0.15, Output: 0.60},
			usage: Usage{Input: 1, Output: 1},
			want:  Breakdown{InputUSD: 0.15e-6, OutputUSD: 0.6e-6, TotalUSD: 0.75e-6},
		},
		{
			name: "negative counts are zero", provider: "openai", price: gpt4o,
			usage: Usage{Input: -5, Output: -1, CacheRead: -3, CacheWrite: -7, Reasoning: -2},
			want:  Breakdown{},
		},
		{
			// Inconsistent report: cached above input; uncached floors at 0.
			name: "cache read above input", provider: "openai", price: gpt4o,
			usage: Usage{Input: 100, CacheRead: 300},
			want:  Breakdown{CacheReadUSD: 0.000375, TotalUSD: 0.000375},
		},
		{
			name: "unknown provider uses openai split", provider: "other", price: gpt4o,
			usage: Usage{Input: 1_000, CacheRead: 1_000},
			want:  Breakdown{CacheReadUSD: 0.00125, TotalUSD: 0.00125},
		},
		{
			name: "second tier", provider: "openai", price: threeTiers,
			usage: Usage{Input: 1_001, CacheRead: 1, Output: 10},
			want:  Breakdown{InputUSD: 0.003, CacheReadUSD: 0.5e-6, OutputUSD: 0.00003, TotalUSD: 0.0030305, Tier: 2},
		},
		{
			name: "first tier at second threshold", provider: "openai", price: threeTiers,
			usage: Usage{Input: 1_000},
			want:  Breakdown{InputUSD: 0.002, TotalUSD: 0.002, Tier: 1},
		},
		{
			name: "zero price", provider: "openai", price: Price{},
			usage: Usage{Input: 1_000, Output: 1_000, CacheRead: 10},
			want:  Breakdown{},
		},
		{
			name: "huge counts do not overflow", provider: "anthropic", price: Price{Input: 1},
			usage: Usage{Input: math.MaxInt64, CacheRead: math.MaxInt64},
			want: Breakdown{
				// Counts are capped at 2^58 tokens before they are added.
				InputUSD: float64(1<<58) / 1e6, CacheReadUSD: float64(1<<58) / 1e6,
				TotalUSD: 2 * float64(1<<58) / 1e6,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compute(tt.provider, tt.compat, tt.price, tt.usage)
			const eps = 1e-12
			require.Equal(t, tt.want.Tier, got.Tier, "tier")
			require.InEpsilon(t, 1+tt.want.InputUSD, 1+got.InputUSD, eps, "input")
			require.InEpsilon(t, 1+tt.want.CacheReadUSD, 1+got.CacheReadUSD, eps, "cache read")
			require.InEpsilon(t, 1+tt.want.CacheWriteUSD, 1+got.CacheWriteUSD, eps, "cache write")
			require.InEpsilon(t, 1+tt.want.OutputUSD, 1+got.OutputUSD, eps, "output")
			require.InEpsilon(t, 1+tt.want.TotalUSD, 1+got.TotalUSD, eps, "total")
			require.Equal(t, got.InputUSD+got.CacheReadUSD+got.CacheWriteUSD+got.OutputUSD, got.TotalUSD)
		})
	}
}

func TestComputeDefaultTableEndToEnd(t *testing.T) {
	tests := []struct {
		name      string
		provider  string
		model     string
		compat    bool
		usage     Usage
		wantModel string
		wantUSD   float64
		wantMicro int64
	}{
		{
			// gpt-4o-mini: 0.15 / 0.60, cache 0.075: 1,500 × 0.15 + 500 × 0.075 + 301 × 0.60
			// = 225 + 37.5 + 180.6 = 443.1 micro-dollars.
			name: "openai dated snapshot", provider: "openai", model: "gpt-4o-mini-2024-07-18",
			usage:     Usage{Input: 2_000, CacheRead: 500, Output: 301},
			wantModel: "gpt-4o-mini", wantUSD: 0.0004431, wantMicro: 443,
		},
		{
			// claude-opus-4-1: 15 / 75, write 18.75, read 1.50:
			// 2,000 × 15 + 10,000 × 1.50 + 4,000 × 18.75 + 1,000 × 75 = 0.03 + 0.015 + 0.075 + 0.075.
			name: "anthropic dated id", provider: "anthropic", model: "claude-opus-4-1-20250805",
			usage:     Usage{Input: 2_000, CacheRead: 10_000, CacheWrite: 4_000, Output: 1_000, Reasoning: 600},
			wantModel: "claude-opus-4-1", wantUSD: 0.195, wantMicro: 195_000,
		},
		{
			// gemini-2.5-flash: 0.30 / 2.50, cache 0.03: 3,000 × 0.30 + 1,000 × 0.03 + 1,200 × 2.50.
			name: "gemini models prefix", provider: "gemini", model: "models/gemini-2.5-flash",
			usage:     Usage{Input: 4_000, CacheRead: 1_000, Output: 1_200, Reasoning: 1_000},
			wantModel: "gemini-2.5-flash", wantUSD: 0.00393, wantMicro: 3_930,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, canonical, ok := DefaultTable().Lookup(tt.provider, tt.model)
			require.True(t, ok)
			require.Equal(t, tt.wantModel, canonical)
			b := Compute(tt.provider, tt.compat, p, tt.usage)
			require.InDelta(t, tt.wantUSD, b.TotalUSD, 1e-12)
			require.Equal(t, tt.wantMicro, b.Micros())
		})
	}
}

func TestEstimate(t *testing.T) {
	tests := []struct {
		name    string
		price   Price
		in, out int64
		want    float64
	}{
		{name: "base", price: gemini25pro, in: 1_000, out: 1_000, want: 0.01125},
		{name: "tier by input", price: gemini25pro, in: 250_000, out: 1_000, want: 0.64},
		{name: "at threshold", price: gemini25pro, in: 200_000, out: 0, want: 0.25},
		{name: "negative", price: gpt4o, in: -1, out: -1, want: 0},
		{name: "anthropic", price: sonnet45, in: 10_000, out: 4_096, want: 0.03 + 0.06144},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.InDelta(t, tt.want, Estimate(tt.price, tt.in, tt.out), 1e-12)
		})
	}
}

func TestToMicros(t *testing.T) {
	tests := []struct {
		name string
		usd  float64
		want int64
	}{
		{name: "zero", usd: 0, want: 0},
		{name: "round down", usd: 1.2345674, want: 1_234_567},
		{name: "round up", usd: 1.2345676, want: 1_234_568},
		{name: "sub micro", usd: 0.75e-6, want: 1},
		{name: "negative", usd: -1.25e-4, want: -125},
		{name: "nan", usd: math.NaN(), want: 0},
		{name: "plus inf", usd: math.Inf(1), want: math.MaxInt64},
		{name: "minus inf", usd: math.Inf(-1), want: math.MinInt64},
		{name: "huge", usd: 1e300, want: math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, ToMicros(tt.usd))
		})
	}
}

func TestComputeAllocs(t *testing.T) {
	tab := DefaultTable()
	allocs := testing.AllocsPerRun(100, func() {
		p, _, ok := tab.Lookup("anthropic", "claude-sonnet-4-5-20250929")
		if !ok {
			panic("not found")
		}
		_ = Compute("anthropic", false, p, Usage{Input: 1000, Output: 200, CacheRead: 5000})
		_, _, _ = tab.Lookup("openai", "ft:gpt-4o-mini-2024-07-18:org:name:id")
		_, _, _ = tab.Lookup("gemini", "models/gemini-2.0-flash-001")
	})
	require.Zero(t, allocs)
}

// TestComputeTextPathMatchesGeneral checks that the fast path for usage
// without audio, image or 1-hour counts gives exactly what the general
// unit split gives.
func TestComputeTextPathMatchesGeneral(t *testing.T) {
	prices := []Price{gpt4o, sonnet45, sonnet46, gemini25pro, noCache, threeTiers, gptAudio, gemini3flash, {}}
	usages := []Usage{
		{Input: 10_000, CacheRead: 4_000, Output: 2_000, Reasoning: 500},
		{Input: 100_001, CacheRead: 100_000, CacheWrite: 7, Output: 1_000},
		{Input: 5, CacheRead: 50, CacheWrite: 50},
		{Input: 300_000, Output: 1, Reasoning: 9},
		{},
	}
	for _, prov := range []string{"openai", "anthropic", "gemini"} {
		for _, compat := range []bool{false, true} {
			for pi, p := range prices {
				for ui, u := range usages {
					fast := Compute(prov, compat, p, u)
					gen := computeGeneral(prov, compat, &p, &u)
					require.Equal(t, gen, fast, "%s compat=%v price %d usage %d", prov, compat, pi, ui)
				}
			}
		}
	}
}

func TestComputeServiceTiers(t *testing.T) {
	gpt5 := Price{Input: 1.25, Output: 10, CacheRead: 0.125, ServiceTiers: map[string]Price{
		"priority": {Input: 2.50, Output: 20, CacheRead: 0.25},
	}}
	u := Usage{Input: 10_000, CacheRead: 8_000, Output: 1_000, Reasoning: 600}
	// Standard: 2,000 × 1.25 + 8,000 × 0.125 + 1,000 × 10.
	standard := Breakdown{InputUSD: 0.0025, CacheReadUSD: 0.001, OutputUSD: 0.01, TotalUSD: 0.0135}
	tests := []struct {
		name, provider, tier string
		compat               bool
		want                 Breakdown
	}{
		{name: "no tier", provider: "openai", want: standard},
		{name: "default", provider: "openai", tier: "default", want: standard},
		{name: "configured priority", provider: "openai", tier: "priority",
			want: Breakdown{InputUSD: 0.005, CacheReadUSD: 0.002, OutputUSD: 0.02, TotalUSD: 0.027, ServiceTier: "priority"}},
		{name: "openai flex is half", provider: "openai", tier: "flex",
			want: Breakdown{InputUSD: 0.00125, CacheReadUSD: 0.0005, OutputUSD: 0.005, TotalUSD: 0.00675, ServiceTier: "flex"}},
		{name: "unpriced tier bills standard", provider: "openai", tier: "scale", want: standard},
		{name: "flex rule is OpenAI's only", provider: "gemini", tier: "flex", want: standard},
		{name: "flex rule not on compatible endpoints", provider: "gemini", compat: true, tier: "flex", want: standard},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := u
			u.ServiceTier = tt.tier
			got := Compute(tt.provider, tt.compat, gpt5, u)
			const eps = 1e-12
			require.InEpsilon(t, 1+tt.want.InputUSD, 1+got.InputUSD, eps, "input")
			require.InEpsilon(t, 1+tt.want.CacheReadUSD, 1+got.CacheReadUSD, eps, "cache read")
			require.InEpsilon(t, 1+tt.want.OutputUSD, 1+got.OutputUSD, eps, "output")
			require.InEpsilon(t, 1+tt.want.TotalUSD, 1+got.TotalUSD, eps, "total")
			require.Equal(t, tt.want.ServiceTier, got.ServiceTier)
		})
	}
	allocs := testing.AllocsPerRun(100, func() {
		sink = Compute("openai", false, gpt5, Usage{Input: 10, Output: 1, ServiceTier: "priority"})
	})
	require.Zero(t, allocs)
}

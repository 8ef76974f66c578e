package processor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/cost"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// TestTablePricer checks that the pricer bills at the prices in force at
// the request's start time and with every parsed count, against
// hand-computed catalog rates (USD per million tokens).
func TestTablePricer(t *testing.T) {
	p := TablePricer{Table: cost.DefaultTable()}
	january := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	june := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	sonnet := providers.RequestInfo{Model: "claude-sonnet-4-6"}
	cases := []struct {
		name     string
		provider string
		info     providers.RequestInfo
		usage    providers.Usage
		at       time.Time
		want     Cost
	}{
		{
			// claude-sonnet-4-6 had a 200k-token tier (6 in, 22.5 out)
			// until 2026-03-13.
			name: "long prompt before the price change", provider: "anthropic", info: sonnet, at: january,
			usage: providers.Usage{Model: "claude-sonnet-4-6", InputTokens: 300_000, OutputTokens: 1000},
			want:  Cost{Known: true, Model: "claude-sonnet-4-6", InputUSD: 1.8, OutputUSD: 0.0225, TotalUSD: 1.8225},
		},
		{
			name: "long prompt after the price change", provider: "anthropic", info: sonnet, at: june,
			usage: providers.Usage{Model: "claude-sonnet-4-6", InputTokens: 300_000, OutputTokens: 1000},
			want:  Cost{Known: true, Model: "claude-sonnet-4-6", InputUSD: 0.9, OutputUSD: 0.015, TotalUSD: 0.915},
		},
		{
			// 5-minute writes at 3.75, 1-hour writes at 6.
			name: "1-hour cache writes", provider: "anthropic", info: sonnet, at: june,
			usage: providers.Usage{Model: "claude-sonnet-4-6", InputTokens: 10, CacheWriteTokens: 3000, CacheWrite1hTokens: 1000},
			want: Cost{Known: true, Model: "claude-sonnet-4-6", InputUSD: 10 * 3 / 1e6,
				CacheWriteUSD: (2000*3.75 + 1000*6) / 1e6, TotalUSD: (10*3 + 2000*3.75 + 1000*6) / 1e6},
		},
		{
			name: "unknown model", provider: "openai", info: providers.RequestInfo{Model: "no-such-model"}, at: june,
			usage: providers.Usage{InputTokens: 10, OutputTokens: 10},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Price(tc.provider, tc.info, tc.usage, tc.at)
			require.Equal(t, tc.want.Known, got.Known)
			require.Equal(t, tc.want.Model, got.Model)
			for name, pair := range map[string][2]float64{
				"input": {tc.want.InputUSD, got.InputUSD}, "cache read": {tc.want.CacheReadUSD, got.CacheReadUSD},
				"cache write": {tc.want.CacheWriteUSD, got.CacheWriteUSD}, "output": {tc.want.OutputUSD, got.OutputUSD},
				"total": {tc.want.TotalUSD, got.TotalUSD},
			} {
				require.InDelta(t, pair[0], pair[1], 1e-12, name)
			}
		})
	}
}

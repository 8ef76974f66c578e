package processor

import (
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/cost"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// TablePricer prices usage with a cost.Table. It is safe for concurrent
// use (the table is immutable).
type TablePricer struct{ Table *cost.Table }

var _ Pricer = TablePricer{}

// Price implements [Pricer]. The model the vendor reported wins over the
// requested one (it names the dated snapshot actually used); either is
// resolved by the table's explicit rules.
func (p TablePricer) Price(provider string, info providers.RequestInfo, u providers.Usage) Cost {
	price, canonical, ok := p.lookup(provider, u.Model, info.Model)
	if !ok {
		return Cost{}
	}
	b := cost.Compute(provider, info.OpenAICompatible, price, cost.Usage{
		Input: u.InputTokens, Output: u.OutputTokens, CacheRead: u.CacheReadTokens,
		CacheWrite: u.CacheWriteTokens, Reasoning: u.ReasoningTokens,
	})
	return Cost{Known: true, Model: canonical, InputUSD: b.InputUSD, CacheReadUSD: b.CacheReadUSD,
		CacheWriteUSD: b.CacheWriteUSD, OutputUSD: b.OutputUSD, TotalUSD: b.TotalUSD}
}

// Estimate returns the expected cost of a request before it is sent: its
// estimated input and its output cap (or defaultOutput) at the model's
// rates; ok is false when the model has no price.
func (p TablePricer) Estimate(provider, model string, input, output int64) (usd float64, ok bool) {
	price, _, ok := p.Table.Lookup(provider, model)
	if !ok {
		return 0, false
	}
	return cost.Estimate(price, input, output), true
}

func (p TablePricer) lookup(provider string, models ...string) (cost.Price, string, bool) {
	for _, m := range models {
		if m == "" {
			continue
		}
		if price, canonical, ok := p.Table.Lookup(provider, m); ok {
			return price, canonical, true
		}
	}
	return cost.Price{}, "", false
}

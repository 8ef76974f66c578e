package processor

import (
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/cost"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// TablePricer prices usage with a cost.Table. It is safe for concurrent
// use (the table is immutable).
type TablePricer struct{ Table *cost.Table }

var _ Pricer = TablePricer{}

// Price implements [Pricer] with [cost.Table.PriceCall]: the price in
// force at the request's start time of the model the vendor reported (it
// names the dated snapshot actually used), else of the requested one, with
// every count the usage parser read (1-hour cache writes, audio and image
// tokens, OpenAI's service tier included).
func (p TablePricer) Price(provider string, info providers.RequestInfo, u providers.Usage, at time.Time) Cost {
	b, canonical, ok := p.Table.PriceCall(provider, &info, &u, at)
	if !ok {
		return Cost{}
	}
	return Cost{Known: true, Model: canonical, InputUSD: b.InputUSD, CacheReadUSD: b.CacheReadUSD,
		CacheWriteUSD: b.CacheWriteUSD, OutputUSD: b.OutputUSD, TotalUSD: b.TotalUSD}
}

// Estimate returns the expected cost of a request before it is sent: its
// estimated input and its output cap (or defaultOutput) at the model's
// current rates; ok is false when the model has no price.
func (p TablePricer) Estimate(provider, model string, input, output int64) (usd float64, ok bool) {
	price, _, ok := p.Table.Lookup(provider, model)
	if !ok {
		return 0, false
	}
	return cost.Estimate(price, input, output), true
}

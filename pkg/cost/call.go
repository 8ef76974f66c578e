package cost

import (
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// UsageOf converts the usage a vendor reported, as package providers reads
// it, into the counts [Compute] prices: every count the parsers surface
// (cache reads and writes with the 1-hour part, reasoning, audio and image
// counts, the OpenAI service tier) carries over unchanged, field X of
// Usage being XTokens of providers.Usage.
func UsageOf(u *providers.Usage) Usage {
	return Usage{
		Input: u.InputTokens, Output: u.OutputTokens, CacheRead: u.CacheReadTokens,
		CacheWrite: u.CacheWriteTokens, CacheWrite1h: u.CacheWrite1hTokens, Reasoning: u.ReasoningTokens,
		InputAudio: u.InputAudioTokens, InputImage: u.InputImageTokens,
		CacheReadAudio: u.CacheReadAudioTokens, CacheReadImage: u.CacheReadImageTokens,
		OutputAudio: u.OutputAudioTokens, OutputImage: u.OutputImageTokens,
		ServiceTier: u.ServiceTier,
	}
}

// PriceCall prices one call: the usage u read from the response of a
// request described by info, sent to provider at at (the request's start
// time; zero means now). The model the vendor reported (u.Model) is
// resolved first, since it names the snapshot actually used, then the
// requested one (info.Model), each by [Table.LookupAt]; ok is false when
// neither has a price. canonical is the entry the price came from. This is
// the one pricing path of the gateway. info and u are read only (pointers,
// so that a call copies neither). It allocates nothing and is safe for
// concurrent use.
func (t *Table) PriceCall(provider string, info *providers.RequestInfo, u *providers.Usage, at time.Time) (b Breakdown, canonical string, ok bool) {
	p, name, found := t.lookupNamed(provider, u.Model, at)
	if !found {
		if p, name, found = t.lookupNamed(provider, info.Model, at); !found {
			return Breakdown{}, "", false
		}
	}
	return Compute(provider, info.OpenAICompatible, p, UsageOf(u)), name, true
}

// lookupNamed is LookupAt for a model name that may be empty (not
// reported): an empty name has no price.
func (t *Table) lookupNamed(provider, model string, at time.Time) (Price, string, bool) {
	if model == "" {
		return Price{}, "", false
	}
	return t.LookupAt(provider, model, at)
}

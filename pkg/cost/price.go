package cost

import (
	"fmt"
	"math"
)

// Price is what a model costs, in USD per million tokens.
//
// A zero CacheRead or CacheWrite means the vendor publishes no separate
// rate for that kind of token: such tokens are then billed at the Input rate
// of the same tier, never for free. There is no reasoning rate: all three
// vendors bill reasoning (thinking) tokens as output tokens.
//
// Tiers raise the rates for large prompts. Tier i applies when the request's
// prompt tokens (uncached input + cache reads + cache writes) are strictly
// greater than Tiers[i].AbovePromptTokens and no later tier applies; below
// every threshold the base rates apply. Thresholds must be ascending.
//
// A Price is a value; it is safe for concurrent use once built.
type Price struct {
	// Input is the rate for uncached input tokens.
	Input float64 `json:"input"`
	// Output is the rate for output tokens, reasoning included.
	Output float64 `json:"output"`
	// CacheRead is the rate for input tokens read from the prompt cache;
	// 0 means no separate rate (billed at Input).
	CacheRead float64 `json:"cache_read,omitempty"`
	// CacheWrite is the rate for input tokens written to the prompt cache
	// (Anthropic: the 5-minute cache write); 0 means no separate rate
	// (billed at Input).
	CacheWrite float64 `json:"cache_write,omitempty"`
	// Tiers are the long-prompt rates, by ascending threshold.
	Tiers []Tier `json:"tiers,omitempty"`
}

// Tier is a complete set of rates, in USD per million tokens, that replaces
// the base rates of a Price when the prompt exceeds AbovePromptTokens
// tokens. Its zero CacheRead and CacheWrite fall back to the tier's Input.
type Tier struct {
	// AbovePromptTokens is the threshold in tokens; the tier applies to
	// prompts strictly larger than it. It must be positive.
	AbovePromptTokens int64   `json:"above_prompt_tokens"`
	Input             float64 `json:"input"`
	Output            float64 `json:"output"`
	CacheRead         float64 `json:"cache_read,omitempty"`
	CacheWrite        float64 `json:"cache_write,omitempty"`
}

// rates are the effective per-million rates for one request.
type rates struct {
	input, output, cacheRead, cacheWrite float64
	tier                                 int
}

// ratesFor returns the rates for a prompt of promptTokens tokens, with the
// zero cache rates replaced by the input rate.
func (p Price) ratesFor(promptTokens int64) rates {
	r := rates{input: p.Input, output: p.Output, cacheRead: p.CacheRead, cacheWrite: p.CacheWrite}
	for i := len(p.Tiers) - 1; i >= 0; i-- {
		t := p.Tiers[i]
		if promptTokens > t.AbovePromptTokens {
			r = rates{input: t.Input, output: t.Output, cacheRead: t.CacheRead, cacheWrite: t.CacheWrite, tier: i + 1}
			break
		}
	}
	if r.cacheRead == 0 {
		r.cacheRead = r.input
	}
	if r.cacheWrite == 0 {
		r.cacheWrite = r.input
	}
	return r
}

// validate appends to errs every problem of p, each prefixed with where.
func (p Price) validate(where string, errs []error) []error {
	errs = checkRate(where, "input", p.Input, errs)
	errs = checkRate(where, "output", p.Output, errs)
	errs = checkRate(where, "cache_read", p.CacheRead, errs)
	errs = checkRate(where, "cache_write", p.CacheWrite, errs)
	var prev int64
	for i, t := range p.Tiers {
		tw := fmt.Sprintf("%s: tiers[%d]", where, i)
		switch {
		case t.AbovePromptTokens <= 0:
			errs = append(errs, fmt.Errorf("%s: above_prompt_tokens must be positive, got %d", tw, t.AbovePromptTokens))
		case i > 0 && t.AbovePromptTokens <= prev:
			errs = append(errs, fmt.Errorf("%s: above_prompt_tokens %d must be greater than the previous tier's %d", tw, t.AbovePromptTokens, prev))
		}
		prev = t.AbovePromptTokens
		errs = checkRate(tw, "input", t.Input, errs)
		errs = checkRate(tw, "output", t.Output, errs)
		errs = checkRate(tw, "cache_read", t.CacheRead, errs)
		errs = checkRate(tw, "cache_write", t.CacheWrite, errs)
	}
	return errs
}

func checkRate(where, name string, v float64, errs []error) []error {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return append(errs, fmt.Errorf("%s: %s must be a finite non-negative USD per million tokens, got %v", where, name, v))
	}
	return errs
}

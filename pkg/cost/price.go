package cost

import (
	"fmt"
	"math"
)

// Price is what a model costs, in USD per million tokens.
//
// Input and Output are the base rates. Every other rate prices a subset of
// the prompt or of the output separately; zero means the vendor publishes
// no separate rate, and those tokens are then billed at the rate of the
// enclosing kind, never for free:
//
//	CacheWrite1h               → CacheWrite → Input
//	CacheRead, CacheWrite      → Input
//	InputAudio, InputImage     → Input
//	CacheReadAudio             → CacheRead and InputAudio (both apply as
//	                             the catalog's reference implementation does)
//	CacheReadImage             → CacheRead and InputImage
//	OutputAudio, OutputImage   → Output
//
// There is no reasoning rate: all three vendors bill reasoning (thinking)
// tokens as output tokens. See [Compute] for how usage is split into these
// kinds.
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
	// CacheWrite1h is the rate for Anthropic's 1-hour cache writes; 0 means
	// they are billed at CacheWrite.
	CacheWrite1h float64 `json:"cache_write_1h,omitempty"`
	// InputAudio and InputImage price audio and image prompt tokens; 0
	// means billed at Input.
	InputAudio float64 `json:"input_audio,omitempty"`
	InputImage float64 `json:"input_image,omitempty"`
	// CacheReadAudio and CacheReadImage price cached audio and image prompt
	// tokens; 0 means no separate rate.
	CacheReadAudio float64 `json:"cache_read_audio,omitempty"`
	CacheReadImage float64 `json:"cache_read_image,omitempty"`
	// OutputAudio and OutputImage price audio and image output tokens; 0
	// means billed at Output.
	OutputAudio float64 `json:"output_audio,omitempty"`
	OutputImage float64 `json:"output_image,omitempty"`
	// Tiers are the long-prompt rates, by ascending threshold.
	Tiers []Tier `json:"tiers,omitempty"`
	// ServiceTiers are the complete prices of other processing tiers, by
	// the service_tier name the vendor reports (OpenAI: "flex",
	// "priority"); they cannot nest. A response in a tier listed here is
	// billed at that price; see [Compute] for tiers not listed.
	ServiceTiers map[string]Price `json:"service_tiers,omitempty"`
}

// Tier is a complete set of rates, in USD per million tokens, that replaces
// the base rates of a Price when the prompt exceeds AbovePromptTokens
// tokens. Its zero rates fall back as a Price's do, within the tier.
type Tier struct {
	// AbovePromptTokens is the threshold in tokens; the tier applies to
	// prompts strictly larger than it. It must be positive.
	AbovePromptTokens int64   `json:"above_prompt_tokens"`
	Input             float64 `json:"input"`
	Output            float64 `json:"output"`
	CacheRead         float64 `json:"cache_read,omitempty"`
	CacheWrite        float64 `json:"cache_write,omitempty"`
	CacheWrite1h      float64 `json:"cache_write_1h,omitempty"`
	InputAudio        float64 `json:"input_audio,omitempty"`
	InputImage        float64 `json:"input_image,omitempty"`
	CacheReadAudio    float64 `json:"cache_read_audio,omitempty"`
	CacheReadImage    float64 `json:"cache_read_image,omitempty"`
	OutputAudio       float64 `json:"output_audio,omitempty"`
	OutputImage       float64 `json:"output_image,omitempty"`
}

// rates are the per-million rates of one tier, indexed by unit.
type rates [numUnits]float64

func (p *Price) base() rates {
	return rates{
		unitInput: p.Input, unitOutput: p.Output, unitCacheRead: p.CacheRead,
		unitCacheWrite: p.CacheWrite, unitCacheWrite1h: p.CacheWrite1h,
		unitInputAudio: p.InputAudio, unitCacheReadAudio: p.CacheReadAudio, unitOutputAudio: p.OutputAudio,
		unitInputImage: p.InputImage, unitCacheReadImage: p.CacheReadImage, unitOutputImage: p.OutputImage,
	}
}

func (t *Tier) rates() rates {
	return rates{
		unitInput: t.Input, unitOutput: t.Output, unitCacheRead: t.CacheRead,
		unitCacheWrite: t.CacheWrite, unitCacheWrite1h: t.CacheWrite1h,
		unitInputAudio: t.InputAudio, unitCacheReadAudio: t.CacheReadAudio, unitOutputAudio: t.OutputAudio,
		unitInputImage: t.InputImage, unitCacheReadImage: t.CacheReadImage, unitOutputImage: t.OutputImage,
	}
}

// tierAt returns the tier that applies to a prompt of promptTokens tokens:
// 0 for the base rates, i+1 for Tiers[i].
func (p *Price) tierAt(promptTokens int64) int {
	for i := len(p.Tiers) - 1; i >= 0; i-- {
		if promptTokens > p.Tiers[i].AbovePromptTokens {
			return i + 1
		}
	}
	return 0
}

// ratesFor stores in r the rates for a prompt of promptTokens tokens and
// returns the tier they come from (see tierAt).
func (p *Price) ratesFor(promptTokens int64, r *rates) int {
	t := p.tierAt(promptTokens)
	if t > 0 {
		tr := &p.Tiers[t-1]
		*r = rates{
			unitInput: tr.Input, unitOutput: tr.Output, unitCacheRead: tr.CacheRead,
			unitCacheWrite: tr.CacheWrite, unitCacheWrite1h: tr.CacheWrite1h,
			unitInputAudio: tr.InputAudio, unitCacheReadAudio: tr.CacheReadAudio, unitOutputAudio: tr.OutputAudio,
			unitInputImage: tr.InputImage, unitCacheReadImage: tr.CacheReadImage, unitOutputImage: tr.OutputImage,
		}
		return t
	}
	*r = rates{
		unitInput: p.Input, unitOutput: p.Output, unitCacheRead: p.CacheRead,
		unitCacheWrite: p.CacheWrite, unitCacheWrite1h: p.CacheWrite1h,
		unitInputAudio: p.InputAudio, unitCacheReadAudio: p.CacheReadAudio, unitOutputAudio: p.OutputAudio,
		unitInputImage: p.InputImage, unitCacheReadImage: p.CacheReadImage, unitOutputImage: p.OutputImage,
	}
	return 0
}

// validate appends to errs every problem of p, each prefixed with where.
func (p Price) validate(where string, errs []error) []error {
	errs = checkRates(where, p.base(), errs)
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
		errs = checkRates(tw, t.rates(), errs)
	}
	for _, name := range sortedKeys(p.ServiceTiers) {
		st := p.ServiceTiers[name]
		sw := fmt.Sprintf("%s: service_tiers.%s", where, name)
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("%s: service tier name must not be empty", where))
		case len(st.ServiceTiers) > 0:
			errs = append(errs, fmt.Errorf("%s: service tiers cannot nest", sw))
		}
		errs = st.validate(sw, errs)
	}
	return errs
}

func checkRates(where string, r rates, errs []error) []error {
	for u, v := range r {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("%s: %s must be a finite non-negative USD per million tokens, got %v", where, unitNames[u], v))
		}
	}
	return errs
}

package cost

import "math"

// Usage is the token accounting of one response, in tokens, with the
// semantics of providers.Usage (field X here is XTokens there). Negative
// counts are treated as zero.
//
// How Input relates to the cache counts depends on the endpoint; see
// [Compute]. Output always includes Reasoning.
type Usage struct {
	Input      int64
	Output     int64
	CacheRead  int64
	CacheWrite int64
	Reasoning  int64
}

// Breakdown is the cost of one response in USD, at full float64 precision:
// no field is rounded. TotalUSD is the sum of the four parts. Tier is 0 for
// the base rates and i+1 when Price.Tiers[i] applied.
type Breakdown struct {
	InputUSD      float64
	CacheReadUSD  float64
	CacheWriteUSD float64
	OutputUSD     float64
	TotalUSD      float64
	Tier          int
}

// Micros returns TotalUSD in micro-dollars (1e-6 USD), rounded to the
// nearest, for integer counters and budget stores. See [ToMicros].
func (b Breakdown) Micros() int64 { return ToMicros(b.TotalUSD) }

// ToMicros converts USD to micro-dollars, rounding to the nearest (half
// away from zero; an amount within float64 error of an exact half may round
// either way). NaN gives 0; values beyond the int64 range saturate.
func ToMicros(usd float64) int64 {
	m := math.Round(usd * 1e6)
	switch {
	case math.IsNaN(m):
		return 0
	case m >= math.MaxInt64:
		return math.MaxInt64
	case m <= math.MinInt64:
		return math.MinInt64
	}
	return int64(m)
}

// anthropic is the provider name whose native endpoint reports input
// tokens without the cached ones.
const anthropic = "anthropic"

// Compute prices usage u at p for a response from provider (the gateway's
// provider name) on its native endpoint, or on its OpenAI-compatible
// endpoint when openAICompatible is set.
//
// Splitting the prompt:
//   - Anthropic native endpoint (provider "anthropic", not compatible):
//     Input excludes the cache; uncached input = Input, and CacheRead and
//     CacheWrite are added to it.
//   - Every other case (OpenAI, Gemini native, every OpenAI-compatible
//     endpoint, unknown providers): Input is the whole prompt and includes
//     CacheRead (and CacheWrite when a vendor reports one); uncached input =
//     Input - CacheRead - CacheWrite, floored at 0.
//
// The prompt size that selects the tier is uncached + CacheRead +
// CacheWrite. Output is billed at the output rate; it already includes
// reasoning, but if a vendor reports more Reasoning than Output, Reasoning
// is billed instead so that thinking is never lost. Cache tokens are billed
// at the cache rates of the selected tier (Input when the rate is 0).
//
// Compute never panics, allocates nothing and is safe for concurrent use.
func Compute(provider string, openAICompatible bool, p Price, u Usage) Breakdown {
	in, out := nonNeg(u.Input), nonNeg(u.Output)
	cr, cw := nonNeg(u.CacheRead), nonNeg(u.CacheWrite)
	if r := nonNeg(u.Reasoning); r > out {
		out = r
	}
	uncached := in
	if provider != anthropic || openAICompatible {
		uncached = in - cr - cw
		if uncached < 0 {
			uncached = 0
		}
	}
	r := p.ratesFor(sat(sat(uncached, cr), cw))
	b := Breakdown{
		InputUSD:      usd(uncached, r.input),
		CacheReadUSD:  usd(cr, r.cacheRead),
		CacheWriteUSD: usd(cw, r.cacheWrite),
		OutputUSD:     usd(out, r.output),
		Tier:          r.tier,
	}
	b.TotalUSD = b.InputUSD + b.CacheReadUSD + b.CacheWriteUSD + b.OutputUSD
	return b
}

// Estimate returns the expected cost in USD of a request with inputTokens
// uncached input tokens and outputTokens output tokens, for budget
// reservations before the vendor answers. The tier is chosen by
// inputTokens. Negative counts are treated as zero.
func Estimate(p Price, inputTokens, outputTokens int64) float64 {
	in, out := nonNeg(inputTokens), nonNeg(outputTokens)
	r := p.ratesFor(in)
	return usd(in, r.input) + usd(out, r.output)
}

// usd is tokens at rate USD per million tokens.
func usd(tokens int64, rate float64) float64 {
	return float64(tokens) * rate / 1e6
}

func nonNeg(n int64) int64 {
	if n < 0 {
		return 0
	}
	return n
}

// sat adds two non-negative counts, saturating at MaxInt64.
func sat(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxInt64
}

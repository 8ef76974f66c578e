package cost

import "math"

// Usage is the token accounting of one response, in tokens, with the
// semantics of providers.Usage (field X here is XTokens there). Negative
// counts are treated as zero, counts above 2^58 as 2^58.
//
// How Input relates to the cache counts depends on the endpoint; see
// [Compute]. Output always includes Reasoning, OutputAudio and OutputImage;
// the prompt (Input, and the cache counts where Input excludes them)
// includes InputAudio and InputImage. CacheWrite counts every cache write
// and CacheWrite1h the part of it written with Anthropic's 1-hour TTL
// (usage.cache_creation.ephemeral_1h_input_tokens); CacheReadAudio and
// CacheReadImage are the audio and image parts of CacheRead.
type Usage struct {
	Input          int64
	Output         int64
	CacheRead      int64
	CacheWrite     int64
	CacheWrite1h   int64
	Reasoning      int64
	InputAudio     int64
	InputImage     int64
	CacheReadAudio int64
	CacheReadImage int64
	OutputAudio    int64
	OutputImage    int64
	// ServiceTier is the processing tier the vendor reports for the
	// response (OpenAI's service_tier: "default", "flex", "priority"); ""
	// or an unlisted tier means standard rates, see [Compute].
	ServiceTier string
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
	// ServiceTier is the processing tier whose prices applied: the
	// Usage's tier when the Price lists it or a documented rule prices it
	// (OpenAI flex), else "" for standard rates.
	ServiceTier string
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
// The whole prompt:
//   - Anthropic native endpoint (provider "anthropic", not compatible):
//     Input excludes the cache; the prompt is Input + CacheRead + CacheWrite.
//   - Every other case (OpenAI, Gemini native, every OpenAI-compatible
//     endpoint, unknown providers): Input is the whole prompt and includes
//     CacheRead (and CacheWrite when a vendor reports one); the prompt is
//     Input, or CacheRead + CacheWrite if a vendor reports more cache than
//     input.
//
// The prompt size selects the tier. The prompt and the output are then
// split as the genai-prices reference implementation splits them: each
// kind of token with a rate of its own (see [Price]) is billed at that
// rate, and what remains at the rate of the enclosing kind; so uncached
// text input = prompt − cache reads − cache writes − audio and image input
// (+ cached audio and image, when those have rates, so nothing counts
// twice). A part that would come out negative because a vendor reported
// inconsistent counts is billed as zero. Output is billed at the output
// rate; it already includes reasoning, but if a vendor reports more
// Reasoning than Output, Reasoning is billed instead so that thinking is
// never lost.
//
// Service tiers: a Usage whose ServiceTier is listed in p.ServiceTiers is
// billed at that price. OpenAI's "flex" tier, when not listed, is billed
// at half the standard price (OpenAI prices flex at its Batch API rates).
// Any other tier ("", "default", "standard", or one without a price, such
// as OpenAI "priority" unless configured) is billed at the standard rates
// and Breakdown.ServiceTier stays "".
//
// Compute never panics, allocates nothing and is safe for concurrent use.
func Compute(provider string, openAICompatible bool, p Price, u Usage) Breakdown {
	if u.ServiceTier == "" || u.ServiceTier == "default" || u.ServiceTier == "standard" {
		return computeStandard(provider, openAICompatible, &p, &u)
	}
	if st, ok := p.ServiceTiers[u.ServiceTier]; ok {
		b := computeStandard(provider, openAICompatible, &st, &u)
		b.ServiceTier = u.ServiceTier
		return b
	}
	b := computeStandard(provider, openAICompatible, &p, &u)
	if provider == openAI && !openAICompatible && u.ServiceTier == flex {
		// OpenAI bills flex processing at Batch API rates, half of the
		// standard ones (prompt-cache discounts included).
		b.InputUSD, b.CacheReadUSD, b.CacheWriteUSD, b.OutputUSD, b.TotalUSD =
			b.InputUSD/2, b.CacheReadUSD/2, b.CacheWriteUSD/2, b.OutputUSD/2, b.TotalUSD/2
		b.ServiceTier = flex
	}
	return b
}

const (
	openAI = "openai"
	flex   = "flex"
)

func computeStandard(provider string, openAICompatible bool, p *Price, u *Usage) Breakdown {
	if u.CacheWrite1h <= 0 && u.InputAudio <= 0 && u.InputImage <= 0 && u.CacheReadAudio <= 0 &&
		u.CacheReadImage <= 0 && u.OutputAudio <= 0 && u.OutputImage <= 0 {
		prompt, cr, cw, out := split(provider, openAICompatible, u)
		return computeText(p, prompt, cr, cw, out)
	}
	return computeGeneral(provider, openAICompatible, p, u)
}

// split returns the whole prompt, the cache reads and writes and the
// billable output of u, as Compute defines them.
func split(provider string, openAICompatible bool, u *Usage) (prompt, cr, cw, out int64) {
	in, out := nonNeg(u.Input), nonNeg(u.Output)
	cr, cw = nonNeg(u.CacheRead), nonNeg(u.CacheWrite)
	if r := nonNeg(u.Reasoning); r > out {
		out = r
	}
	prompt = in
	if provider == anthropic && !openAICompatible {
		prompt = in + cr + cw
	} else if c := cr + cw; c > prompt {
		prompt = c
	}
	return prompt, cr, cw, out
}

// computeGeneral is Compute by the full unit split.
func computeGeneral(provider string, openAICompatible bool, p *Price, u *Usage) Breakdown {
	var counts [numUnits]int64
	counts[unitInput], counts[unitCacheRead], counts[unitCacheWrite], counts[unitOutput] = split(provider, openAICompatible, u)
	counts[unitCacheWrite1h] = nonNeg(u.CacheWrite1h)
	counts[unitInputAudio] = nonNeg(u.InputAudio)
	counts[unitCacheReadAudio] = nonNeg(u.CacheReadAudio)
	counts[unitOutputAudio] = nonNeg(u.OutputAudio)
	counts[unitInputImage] = nonNeg(u.InputImage)
	counts[unitCacheReadImage] = nonNeg(u.CacheReadImage)
	counts[unitOutputImage] = nonNeg(u.OutputImage)

	var r rates
	tier := p.ratesFor(counts[unitInput], &r)
	fillCacheRates(&r)
	leaves := splitLeaves(&r, &counts)
	var parts [numUnits]float64
	for k := range parts {
		parts[k] = usd(leaves[k], r[k])
	}
	b := Breakdown{
		InputUSD:      parts[unitInput] + parts[unitInputAudio] + parts[unitInputImage],
		CacheReadUSD:  parts[unitCacheRead] + parts[unitCacheReadAudio] + parts[unitCacheReadImage],
		CacheWriteUSD: parts[unitCacheWrite] + parts[unitCacheWrite1h],
		OutputUSD:     parts[unitOutput] + parts[unitOutputAudio] + parts[unitOutputImage],
		Tier:          tier,
	}
	b.TotalUSD = b.InputUSD + b.CacheReadUSD + b.CacheWriteUSD + b.OutputUSD
	return b
}

// fillCacheRates gives cache tokens without a rate of their own the input
// rate they are billed at either way, which keeps them in CacheReadUSD and
// CacheWriteUSD instead of InputUSD. Totals do not change: the tokens (less
// any rated parts, which are subtracted either way) move from the input
// part to their own at the same rate.
func fillCacheRates(r *rates) {
	if r[unitCacheRead] == 0 {
		r[unitCacheRead] = r[unitInput]
	}
	if r[unitCacheWrite] == 0 {
		r[unitCacheWrite] = r[unitInput]
	}
}

// computeText is Compute for usage without 1-hour writes, audio or image
// counts, the common case: those units then bill nothing whatever their
// rates, and the split reduces to uncached = prompt − cache reads − cache
// writes. It gives exactly the general path's result.
func computeText(p *Price, prompt, cr, cw, out int64) Breakdown {
	t := p.tierAt(prompt)
	rIn, rOut, rCR, rCW := p.Input, p.Output, p.CacheRead, p.CacheWrite
	if t > 0 {
		tr := &p.Tiers[t-1]
		rIn, rOut, rCR, rCW = tr.Input, tr.Output, tr.CacheRead, tr.CacheWrite
	}
	// As fillCacheRates.
	if rCR == 0 {
		rCR = rIn
	}
	if rCW == 0 {
		rCW = rIn
	}
	uncached := prompt
	if rCR != 0 {
		uncached -= cr
	}
	if rCW != 0 {
		uncached -= cw
	}
	if uncached < 0 {
		uncached = 0
	}
	b := Breakdown{
		InputUSD:      usd(uncached, rIn),
		CacheReadUSD:  usd(cr, rCR),
		CacheWriteUSD: usd(cw, rCW),
		OutputUSD:     usd(out, rOut),
		Tier:          t,
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
	rIn, rOut := p.Input, p.Output
	if t := p.tierAt(in); t > 0 {
		rIn, rOut = p.Tiers[t-1].Input, p.Tiers[t-1].Output
	}
	return usd(in, rIn) + usd(out, rOut)
}

// usd is tokens at rate USD per million tokens.
func usd(tokens int64, rate float64) float64 {
	return rate * float64(tokens) / 1e6
}

// maxTokens caps every count (2.9e17 tokens, far beyond any real
// response) so that sums of the twelve counts of a Usage cannot overflow.
const maxTokens = 1 << 58

// nonNeg returns n floored at 0 and capped at maxTokens.
func nonNeg(n int64) int64 {
	switch {
	case n < 0:
		return 0
	case n > maxTokens:
		return maxTokens
	}
	return n
}

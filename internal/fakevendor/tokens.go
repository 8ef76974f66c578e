package fakevendor

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// usageStyle is how a vendor relates cached and reasoning tokens to the
// input and output counts it reports.
type usageStyle int

const (
	// styleOpenAI: cached tokens are part of the prompt count, reasoning
	// tokens part of the completion count.
	styleOpenAI usageStyle = iota
	// styleAnthropic: cache reads and writes are reported besides
	// input_tokens, thinking tokens are part of output_tokens; no total.
	styleAnthropic
	// styleGemini: cached tokens are part of promptTokenCount, thoughts are
	// reported besides candidatesTokenCount and added to the total.
	styleGemini
)

// maxTextWords caps the words of generated text; usage numbers are not capped.
const maxTextWords = 1024

// plan is the usage of one answer and the amount of visible text to produce.
type plan struct {
	usage     Usage
	words     int  // visible words to generate, one per visible output token
	truncated bool // the answer stopped at the request's token limit
}

// estimateTokens is the fake's tokenizer: one token per started group of
// four Unicode characters of prompt text, and at least one token.
func estimateTokens(text string) int64 {
	n := int64(utf8.RuneCountInString(text))
	return max(1, (n+3)/4)
}

// planUsage derives the usage of an answer. promptText is the request's
// prompt text, maxTokens its output token limit (0 for none) and
// defaultOutput the visible output tokens produced when not forced.
func planUsage(style usageStyle, promptText string, maxTokens int64, d directives, defaultOutput int64) plan {
	var p plan
	u := &p.usage
	u.CacheReadTokens = max(0, d.cachedTokens)
	u.CacheWriteTokens = max(0, d.cacheWriteTokens)
	u.ReasoningTokens = max(0, d.reasoningTokens)
	switch {
	case d.inputTokens >= 0:
		u.InputTokens = d.inputTokens
	case style == styleAnthropic:
		u.InputTokens = estimateTokens(promptText)
	default:
		u.InputTokens = max(estimateTokens(promptText), u.CacheReadTokens)
	}
	visible := defaultOutput
	if d.outputTokens >= 0 {
		visible = d.outputTokens
		if style != styleGemini {
			visible = max(0, d.outputTokens-u.ReasoningTokens)
		}
		p.truncated = maxTokens > 0 && d.outputTokens >= maxTokens
	} else if maxTokens > 0 && visible+u.ReasoningTokens > maxTokens {
		visible = max(0, maxTokens-u.ReasoningTokens)
		p.truncated = true
	}
	switch {
	case style == styleGemini:
		u.OutputTokens = visible
	case d.outputTokens >= 0:
		u.OutputTokens = d.outputTokens
	default:
		u.OutputTokens = visible + u.ReasoningTokens
	}
	switch style {
	case styleGemini:
		u.TotalTokens = u.InputTokens + u.OutputTokens + u.ReasoningTokens
	case styleOpenAI:
		u.TotalTokens = u.InputTokens + u.OutputTokens
	}
	p.words = int(min(visible, maxTextWords))
	return p
}

var lexicon = strings.Fields(`the quick fake model answers every request with these
deterministic words so tests can count tokens stream deltas and usage without
guessing what a real vendor would say today`)

// words returns n generated words; word i is lexicon[i mod len].
func words(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = lexicon[i%len(lexicon)]
	}
	return out
}

// deltas splits n generated words into stream deltas, one word per delta
// with its leading space, so that joining them yields text(n).
func deltas(n int) []string {
	ws := words(n)
	for i := 1; i < len(ws); i++ {
		ws[i] = " " + ws[i]
	}
	return ws
}

// text returns n generated words joined by spaces.
func text(n int) string { return strings.Join(words(n), " ") }

// textCollector gathers prompt text from decoded JSON.
type textCollector struct{ b strings.Builder }

func (tc *textCollector) add(s string) {
	if s == "" {
		return
	}
	if tc.b.Len() > 0 {
		tc.b.WriteByte('\n')
	}
	tc.b.WriteString(s)
}

// content adds a string, or the "text" of every part of an array of parts.
func (tc *textCollector) content(v any) {
	switch c := v.(type) {
	case string:
		tc.add(c)
	case []any:
		for _, part := range c {
			switch p := part.(type) {
			case string:
				tc.add(p)
			case map[string]any:
				if s, ok := p["text"].(string); ok {
					tc.add(s)
				}
				// Anthropic tool_result blocks nest their content.
				if inner, ok := p["content"]; ok {
					tc.content(inner)
				}
			}
		}
	}
}

func (tc *textCollector) String() string { return tc.b.String() }

// decodeObject decodes a JSON object body; it reports false for anything
// that is not a JSON object.
func decodeObject(body []byte) (map[string]any, bool) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func num(m map[string]any, key string) int64 {
	f, _ := m[key].(float64)
	if f < 0 || f > 1<<40 {
		return 0
	}
	return int64(f)
}

func obj(m map[string]any, key string) map[string]any {
	o, _ := m[key].(map[string]any)
	return o
}

func list(m map[string]any, key string) []any {
	l, _ := m[key].([]any)
	return l
}

package providers

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// refPieces counts the pieces of b one byte at a time, by the definitions
// in pieces.go: the reference for the eight-byte masks of pieces.chunk.
func refPieces(b []byte) pieces {
	const (
		none = iota
		lower
		upper
		high
		digit
		space
		punct
	)
	class := func(c byte) int {
		switch {
		case c >= 'a' && c <= 'z':
			return lower
		case c >= 'A' && c <= 'Z':
			return upper
		case c >= 0x80:
			return high
		case c >= '0' && c <= '9':
			return digit
		case c == ' ':
			return space
		case c > ' ':
			return punct
		}
		return none
	}
	letter := func(k int) bool { return k == lower || k == upper || k == high }
	var p pieces
	var runs, letters, spaceRuns, nonASCII int64
	prev, prev2 := none, none
	for _, c := range b {
		k := class(c)
		if letter(k) && (!letter(prev) || k == upper && prev == lower) ||
			k == digit && prev != digit || k == punct && prev != punct {
			runs++
		}
		switch {
		case k == lower || k == upper:
			letters++
		case k == high && c >= 0xC0:
			letters++
			nonASCII++
			if c >= 0xE3 && c <= 0xED || c >= 0xF0 && c <= 0xF4 {
				p.wide++
			}
		case k == high:
			p.cont++
		case k == digit:
			p.digits++
		case k == space && prev == space && prev2 != space:
			spaceRuns++
		}
		prev2, prev = prev, k
	}
	p.priced = int64(len(b)) // the callers' texts are shorter than pricedPrefix
	p.milli = o200kRun*runs + o200kLetter*letters + o200kDigit*p.digits + o200kSpaceRun*spaceRuns + o200kHigh*nonASCII + o200kWide*p.wide
	return p
}

// refTextTokens prices decoded text by refPieces.
func refTextTokens(t *tokenizer, text string) int64 {
	p := refPieces([]byte(text))
	return (t.milli(&p) + 999) / 1000
}

func TestPiecesMatchReference(t *testing.T) {
	alphabet := []string{"a", "Z", "q", "B", "7", "0", " ", " ", "\n", "\r", ".", "{", "\"", "_", "é", "日", "😀", "\x7f", "\x01"}
	r := rand.New(rand.NewPCG(1, 2))
	cases := []string{"", "a", "aB", "camelCaseWord", "  x", "   ", "12345 678", "a\n\n\nb", "{\"k\": [1, 2]}", "日本語 text", strings.Repeat("ab ", 30)}
	for range 2000 {
		var b strings.Builder
		for range r.IntN(40) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for _, tc := range cases {
		var got pieces
		var c carry
		got.text([]byte(tc), &c)
		require.Equal(t, refPieces([]byte(tc)), got, "%q", tc)
		// Split anywhere, the carry continues the runs.
		if len(tc) > 1 {
			cut := r.IntN(len(tc))
			var split pieces
			var c carry
			split.text([]byte(tc[:cut]), &c)
			split.text([]byte(tc[cut:]), &c)
			require.Equal(t, got, split, "%q cut at %d", tc, cut)
		}
	}
}

// TestTextTokens checks that ParseRequest prices the text it counts by
// its pieces, escapes decoded, for each vendor family.
func TestTextTokens(t *testing.T) {
	texts := []string{
		"Hello, world! How are you today?",
		`{"order_id": 12345, "items": [{"sku": "A-1", "qty": 2}]}`,
		"func parseRequest(ctx context.Context) error {\n\treturn nil\n}",
		"Grüße aus München, ça va? Привет мир",
		"日本語のテキストと中文",
		"emoji 😀👍🏽 and numbers 3.14159",
		"line\r\nbreaks\n\n\nand    spaces",
	}
	for _, text := range texts {
		quoted := jsonQuote(text)
		require.True(t, utf8.ValidString(text))
		t.Run(text, func(t *testing.T) {
			openai := OpenAI{}.ParseRequest(Request{Path: "/v1/chat/completions", Body: []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":` + quoted + `}]}`)})
			require.Equal(t, refTextTokens(&o200kTokenizer, text), openai.TextTokens)
			anthropic := Anthropic{}.ParseRequest(Request{Path: "/v1/messages", Body: []byte(`{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":` + quoted + `}]}`)})
			require.Equal(t, refTextTokens(&claudeTokenizer, text), anthropic.TextTokens)
			gemini := Gemini{}.ParseRequest(Request{Path: "/v1beta/models/gemini-2.5-flash:generateContent", Body: []byte(`{"contents":[{"role":"user","parts":[{"text":` + quoted + `}]}]}`)})
			require.Equal(t, refTextTokens(&geminiTokenizer, text), gemini.TextTokens)
		})
	}
}

// TestPricedPrefix: past pricedPrefix bytes a text is priced at its
// prefix's rate, so a long homogeneous text costs what its parts do.
func TestPricedPrefix(t *testing.T) {
	part := "The quick brown fox jumps over the lazy dog, 42 times. "
	long := strings.Repeat(part, 40)
	require.Greater(t, len(long), 4*pricedPrefix)
	price := func(s string) int64 {
		return OpenAI{}.ParseRequest(Request{Path: "/v1/chat/completions", Body: []byte(`{"messages":[{"role":"user","content":` + jsonQuote(s) + `}]}`)}).TextTokens
	}
	whole := 40 * refTextTokens(&o200kTokenizer, part)
	require.InDelta(t, whole, price(long), float64(whole)/20)
	info := OpenAI{}.ParseRequest(Request{Path: "/v1/chat/completions", Body: []byte(`{"messages":[{"role":"user","content":` + jsonQuote(long) + `}]}`)})
	require.EqualValues(t, len(long), info.TextRunes, "code points stay exact past the prefix")
}

// TestTextTokensDenserThanProse: the point of counting pieces. Per
// character, JSON and digits cost more tokens than English prose.
func TestTextTokensDenserThanProse(t *testing.T) {
	prose := "The quick brown fox jumps over the lazy dog and runs away."
	data := `{"a":1,"b":[2,3],"c":{"d":"e"},"f":[4,5,6],"g":7,"h":8}`
	digits := "4815162342 1234567890 9876543210 5551234567 3141592653 27"
	price := func(s string) int64 {
		return OpenAI{}.ParseRequest(Request{Path: "/v1/chat/completions", Body: []byte(`{"messages":[{"role":"user","content":` + jsonQuote(s) + `}]}`)}).TextTokens
	}
	perChar := func(s string) float64 { return float64(price(s)) / float64(len(s)) }
	require.Greater(t, perChar(data), 1.5*perChar(prose))
	require.Greater(t, perChar(digits), 1.5*perChar(prose))
}

func jsonQuote(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// BenchmarkTextScan compares the string walk with and without counting
// pieces, on prose and on JSON held in one JSON string.
func BenchmarkTextScan(b *testing.B) {
	prose := strings.Repeat("The quick brown fox jumps over the lazy dog; then it naps. ", 40)
	data := strings.Repeat(`{"id": 12345, "name": "widget", "tags": ["a", "b"]}, `, 40)
	for _, tc := range []struct{ name, text string }{{"prose", prose}, {"json", data}} {
		body := []byte(jsonQuote(tc.text))
		b.Run(tc.name+"/span", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				i := 1
				for i < len(body)-1 {
					i, _ = span(body, i)
					i += 2 // past an escape or the quote
				}
			}
		})
		b.Run(tc.name+"/pieces", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				var p pieces
				var c carry
				i := 1
				for i < len(body)-1 {
					i = p.count(body, i, true, &c)
					i += 2
				}
			}
		})
	}
}

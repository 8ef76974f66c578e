package fakevendor

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteCutsAvoidBoundaries(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 500 {
		n := 1 + rng.IntN(12)
		ends := make([]int, n)
		pos := 0
		for i := range ends {
			pos += 1 + rng.IntN(40)
			ends[i] = pos
		}
		maxWrite := []int{0, 1, 2, 5, 64}[trial%5]
		cuts := writeCuts(ends, true, maxWrite, rng.IntN)
		require.True(t, slices.IsSorted(cuts))
		for _, c := range cuts {
			require.Greater(t, c, 0)
			require.Less(t, c, pos)
			require.NotContains(t, ends, c, "cut %d on a boundary of %v", c, ends)
		}
		require.Equal(t, len(cuts), len(slices.Compact(slices.Clone(cuts))))
		for _, e := range ends {
			start := 0
			if i := slices.Index(ends, e); i > 0 {
				start = ends[i-1]
			}
			if e-start >= 2 {
				inside := slices.ContainsFunc(cuts, func(c int) bool { return c > start && c < e })
				require.True(t, inside, "segment [%d,%d) not split", start, e)
			}
		}
	}
	require.Empty(t, writeCuts([]int{10}, false, 0, rand.IntN), "JSON bodies are one write")
	require.Empty(t, writeCuts(nil, true, 4, rand.IntN))
}

func TestSplitHeaderItems(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    [][2]string
		wantErr bool
	}{
		{name: "one", in: "retry-after: 2", want: [][2]string{{"retry-after", "2"}}},
		{name: "joined", in: "a: 1, b: 2,c:3", want: [][2]string{{"a", "1"}, {"b", "2"}, {"c", "3"}}},
		{name: "date", in: "retry-after: Wed, 21 Oct 2015 07:28:00 GMT", want: [][2]string{{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}}},
		{name: "value with colon", in: "x-t: 12:30", want: [][2]string{{"x-t", "12:30"}}},
		{name: "empty value", in: "x-e:", want: [][2]string{{"x-e", ""}}},
		{name: "no colon", in: "broken", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := splitHeaderItems(tc.in)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseDirectives(t *testing.T) {
	tests := []struct {
		name    string
		h       http.Header
		check   func(t *testing.T, d directives)
		wantErr string
	}{
		{name: "defaults", h: http.Header{}, check: func(t *testing.T, d directives) {
			require.Equal(t, int64(-1), d.resetAfterBytes)
			require.Equal(t, -1, d.failTimes)
			require.Equal(t, int64(-1), d.outputTokens)
			require.Nil(t, d.seed)
		}},
		{name: "all", h: http.Header{
			"X-Fake-Status": {"529"}, "X-Fake-Latency-Ms": {"5"}, "X-Fake-Fail-Times": {"2"}, "X-Fake-Fail-Key": {" k "},
			"X-Fake-Gzip": {"true"}, "X-Fake-Seed": {"-3"}, "X-Fake-Reset-After-Bytes": {"0"},
		}, check: func(t *testing.T, d directives) {
			require.Equal(t, 529, d.status)
			require.Equal(t, 2, d.failTimes)
			require.Equal(t, "k", d.failKey)
			require.True(t, d.gzip)
			require.Equal(t, int64(-3), *d.seed)
			require.Equal(t, int64(0), d.resetAfterBytes)
		}},
		{name: "status too low", h: http.Header{"X-Fake-Status": {"302"}}, wantErr: "x-fake-status"},
		{name: "delay too long", h: http.Header{"X-Fake-Ttfb-Ms": {"999999999"}}, wantErr: "x-fake-ttfb-ms"},
		{name: "bad seed", h: http.Header{"X-Fake-Seed": {"x"}}, wantErr: "x-fake-seed"},
		{name: "bad count", h: http.Header{"X-Fake-Cached-Tokens": {"1.5"}}, wantErr: "x-fake-cached-tokens"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := parseDirectives(tc.h)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.check(t, d)
		})
	}
}

func TestPlanUsage(t *testing.T) {
	unset := directives{inputTokens: -1, outputTokens: -1, cachedTokens: -1, cacheWriteTokens: -1, reasoningTokens: -1}
	with := func(f func(*directives)) directives { d := unset; f(&d); return d }
	tests := []struct {
		name      string
		style     usageStyle
		prompt    string
		max       int64
		d         directives
		want      Usage
		words     int
		truncated bool
	}{
		{name: "openai default", style: styleOpenAI, prompt: "12345", d: unset, want: Usage{InputTokens: 2, OutputTokens: 10, TotalTokens: 12}, words: 10},
		{name: "empty prompt is one token", style: styleOpenAI, d: unset, want: Usage{InputTokens: 1, OutputTokens: 10, TotalTokens: 11}, words: 10},
		{name: "runes not bytes", style: styleAnthropic, prompt: "ééééé", d: unset, want: Usage{InputTokens: 2, OutputTokens: 10}, words: 10},
		{name: "openai reasoning in output", style: styleOpenAI, prompt: "abcd", d: with(func(d *directives) { d.reasoningTokens = 5 }),
			want: Usage{InputTokens: 1, OutputTokens: 15, TotalTokens: 16, ReasoningTokens: 5}, words: 10},
		{name: "bounded", style: styleOpenAI, prompt: "abcd", max: 8, d: with(func(d *directives) { d.reasoningTokens = 5 }),
			want: Usage{InputTokens: 1, OutputTokens: 8, TotalTokens: 9, ReasoningTokens: 5}, words: 3, truncated: true},
		{name: "anthropic cache additive", style: styleAnthropic, prompt: "abcdefgh", d: with(func(d *directives) { d.cachedTokens = 100; d.cacheWriteTokens = 7 }),
			want: Usage{InputTokens: 2, OutputTokens: 10, CacheReadTokens: 100, CacheWriteTokens: 7}, words: 10},
		{name: "gemini thoughts beside output", style: styleGemini, prompt: "abcdefgh", d: with(func(d *directives) { d.reasoningTokens = 4; d.cachedTokens = 9 }),
			want: Usage{InputTokens: 9, OutputTokens: 10, TotalTokens: 23, CacheReadTokens: 9, ReasoningTokens: 4}, words: 10},
		{name: "forced verbatim", style: styleOpenAI, max: 3, d: with(func(d *directives) { d.inputTokens = 0; d.outputTokens = 3; d.reasoningTokens = 1 }),
			want: Usage{InputTokens: 0, OutputTokens: 3, TotalTokens: 3, ReasoningTokens: 1}, words: 2, truncated: true},
		{name: "huge output caps text only", style: styleGemini, d: with(func(d *directives) { d.outputTokens = 1 << 30 }),
			want: Usage{InputTokens: 1, OutputTokens: 1 << 30, TotalTokens: 1<<30 + 1}, words: maxTextWords},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := planUsage(tc.style, tc.prompt, tc.max, tc.d, 10)
			require.Equal(t, tc.want, p.usage)
			require.Equal(t, tc.words, p.words)
			require.Equal(t, tc.truncated, p.truncated)
		})
	}
}

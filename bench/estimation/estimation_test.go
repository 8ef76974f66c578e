package estimation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/correction"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// charsEstimate is the former estimate: the billable code points at cpt
// characters per token (CJK, kana, hangul and emoji at formerWideCPT),
// rounded up, plus the image and overhead tokens.
func charsEstimate(info providers.RequestInfo, cpt float64) int64 {
	narrow := float64(info.TextRunes - info.WideRunes)
	return int64(math.Ceil(narrow/cpt+float64(info.WideRunes)/formerWideCPT)) + info.ImageTokens + info.OverheadTokens
}

// The estimator before 2026-12-03 counted text by characters per token
// (configs/base.yml then: openai 4, anthropic 3.5, gemini 4; CJK, kana,
// hangul and emoji 1.5); kept here as the "chars" comparison.
var formerCPT = map[string]float64{"openai": 4, "anthropic": 3.5, "gemini": 4}

const formerWideCPT = 1.5

// fixture is the corpus with the shipped estimation settings.
type fixture struct {
	corpus []*conversation
	est    config.Estimation
	// bodies[v][i] is request i rendered for vendors[v].
	bodies [][][]byte
}

// loadFixture builds the corpus from the repository at the working
// directory's module root and reads configs/base.yml for chars_per_token.
func loadFixture(tb testing.TB) *fixture {
	tb.Helper()
	root, err := repoRoot()
	require.NoError(tb, err)
	src, err := loadSources(root)
	require.NoError(tb, err)
	cfg, err := config.Load([]string{filepath.Join(root, "configs", "base.yml")}, func(string) string { return "" })
	require.NoError(tb, err)
	f := &fixture{corpus: buildCorpus(src), est: cfg.Features.RateLimiting.Estimation}
	f.bodies = make([][][]byte, len(vendors))
	for vi, v := range vendors {
		f.bodies[vi] = make([][]byte, len(f.corpus))
		for i, c := range f.corpus {
			b, err := v.body(c)
			require.NoError(tb, err)
			f.bodies[vi][i] = b
		}
	}
	return f
}

func (f *fixture) request(vi, i int) providers.Request {
	return providers.Request{Method: "POST", Path: vendors[vi].path, ContentType: "application/json", Body: f.bodies[vi][i]}
}

// sample is one request with what each provider read and its exact o200k
// prompt count.
type sample struct {
	c      *conversation
	runes  []int64 // TextRunes per vendor
	est    []int64 // raw estimate per vendor, the shipped estimator
	chars  []int64 // the former characters-per-token estimate per vendor
	actual int64   // o200k prompt tokens of the OpenAI request
}

// measure parses every request with every provider, checks that they read
// what the corpus holds, and counts the OpenAI prompt tokens.
func measure(t *testing.T, f *fixture) []sample {
	t.Helper()
	tok, err := newO200k()
	require.NoError(t, err)
	reg := providers.Default()
	wantEndpoint := map[string]providers.Endpoint{
		"openai":    providers.EndpointChatCompletions,
		"anthropic": providers.EndpointMessages,
		"gemini":    providers.EndpointGenerateContent,
	}
	wantModel := map[string]string{"openai": openAIModel, "anthropic": anthropicModel, "gemini": geminiModel}
	out := make([]sample, len(f.corpus))
	for i, c := range f.corpus {
		s := sample{c: c, runes: make([]int64, len(vendors)), est: make([]int64, len(vendors)), chars: make([]int64, len(vendors))}
		text := textRunes(c)
		for vi, v := range vendors {
			p, ok := reg[v.name]
			require.True(t, ok, v.name)
			info := p.ParseRequest(f.request(vi, i))
			require.False(t, info.Malformed, "%s request %d", v.name, i)
			require.Equal(t, wantEndpoint[v.name], info.Endpoint, "%s request %d", v.name, i)
			require.Equal(t, wantModel[v.name], info.Model, "%s request %d", v.name, i)
			require.Equal(t, c.MaxTokens, info.MaxOutputTokens, "%s request %d", v.name, i)
			require.Zero(t, info.ImageTokens, "%s request %d: the corpus has no images", v.name, i)
			if len(c.Tools) == 0 {
				require.Equal(t, text, info.TextRunes, "%s request %d: TextRunes is the text of the corpus", v.name, i)
			} else {
				require.Greater(t, info.TextRunes, text, "%s request %d: tool definitions count", v.name, i)
			}
			s.runes[vi] = info.TextRunes
			s.est[vi] = f.est.InputTokens(v.name, info)
			s.chars[vi] = charsEstimate(info, formerCPT[v.name])
		}
		// OpenAI counts tools in the layout it renders them in: names,
		// descriptions, types and enum values, not the JSON.
		layout, err := openAILayoutRunes(c.Tools)
		require.NoError(t, err)
		require.Equal(t, text+layout, s.runes[0], "openai request %d", i)

		n, err := tok.chat(c.System, c.Messages, c.Tools)
		require.NoError(t, err)
		require.Positive(t, n)
		s.actual = int64(n)
		out[i] = s
	}
	return out
}

// group selects samples.
type group struct {
	name string
	keep func(sample) bool
}

func byKind() []group {
	var gs []group
	for _, k := range corpusKinds() {
		gs = append(gs, group{k, func(s sample) bool { return s.c.Kind == k }})
	}
	return append(gs, group{"all", func(sample) bool { return true }})
}

func byLang() []group {
	var gs []group
	for _, l := range corpusLangs() {
		gs = append(gs, group{l, func(s sample) bool { return s.c.Lang == l }})
	}
	return append(gs, group{"all", func(sample) bool { return true }})
}

func filter(ss []sample, keep func(sample) bool) []sample {
	var out []sample
	for _, s := range ss {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// pairs returns est(s)/actual pairs.
func pairs(ss []sample, est func(sample) int64) []pair {
	ps := make([]pair, len(ss))
	for i, s := range ss {
		ps[i] = pair{est: float64(est(s)), actual: float64(s.actual)}
	}
	return ps
}

// points returns the OpenAI chars_per_token inputs of ss.
func points(ss []sample) []point {
	pts := make([]point, len(ss))
	for i, s := range ss {
		pts[i] = point{runes: float64(s.runes[0]), actual: float64(s.actual)}
	}
	return pts
}

func runesPerToken(ss []sample) float64 {
	var r, a int64
	for _, s := range ss {
		r += s.runes[0]
		a += s.actual
	}
	return float64(r) / float64(a)
}

// checked summarises ps and fails the test on a non-finite or non-positive
// ratio.
func checked(t *testing.T, what string, ps []pair) summary {
	t.Helper()
	s := summarize(ps)
	require.True(t, s.finite, "%s: a ratio is not finite", what)
	require.True(t, s.positivity, "%s: a ratio is not positive", what)
	return s
}

// TestEstimationError reports how far the gateway's input-token estimate is
// from the exact o200k prompt count, before and after the learned
// correction, and asserts only sanity properties. The tables are printed
// with t.Log (run with -v); README.md records a run.
func TestEstimationError(t *testing.T) {
	start := time.Now()
	f := loadFixture(t)
	require.GreaterOrEqual(t, len(f.corpus), 200)
	samples := measure(t, f)

	var train, held []sample
	for _, s := range samples {
		if s.c.Train {
			train = append(train, s)
		} else {
			held = append(held, s)
		}
	}

	// The corrector learns from the training half in corpus order, as it
	// would from reconciled usage, and corrects the held-out half. It keys
	// its factor by provider and model, so two deployments are simulated:
	//   - shared: every request names one model, so one factor learns from
	//     all content types and languages at once;
	//   - per workload: each content type names its own model (as when a
	//     team runs one application per model or deployment), so each
	//     workload learns its own factor.
	corr := correction.New(correction.Config{})
	workloadModel := func(s sample) string { return openAIModel + "/" + s.c.Kind }
	for _, s := range train {
		corr.Observe("openai", openAIModel, s.est[0], s.actual)
		corr.Observe("openai", workloadModel(s), s.est[0], s.actual)
	}
	factor := corr.Factor("openai", openAIModel)
	require.False(t, math.IsNaN(factor) || math.IsInf(factor, 0))
	require.NotEqual(t, 1.0, factor, "the training half has enough observations to learn a factor")
	var workloadFactors []string
	for _, k := range corpusKinds() {
		f := corr.Factor("openai", openAIModel+"/"+k)
		require.False(t, math.IsNaN(f) || math.IsInf(f, 0))
		workloadFactors = append(workloadFactors, fmt.Sprintf("%s %.3f", k, f))
	}
	raw := func(s sample) int64 { return s.est[0] }
	shared := func(s sample) int64 { return corr.Correct("openai", openAIModel, s.est[0]) }
	perWorkload := func(s sample) int64 { return corr.Correct("openai", workloadModel(s), s.est[0]) }
	// The static alternative: one chars_per_token fitted on the training half.
	tunedCPT, _ := bestCharsPerToken(points(train))
	tuned := func(s sample) int64 { return int64(estimateWith(float64(s.runes[0]), 0, tunedCPT)) }
	// Not shipped, for comparison: the same moving average taken over
	// log(actual/estimated), i.e. a geometric rather than arithmetic mean.
	geoFactor := ewmaLogFactor(train, 0.1)
	geo := func(s sample) int64 { return int64(math.Ceil(float64(s.est[0]) * geoFactor)) }

	bodyBytes := 0
	for _, b := range f.bodies[0] {
		bodyBytes += len(b)
	}
	t.Logf("corpus: %d requests (%d training, %d held out), %d KiB of OpenAI bodies, %d o200k prompt tokens in all",
		len(samples), len(train), len(held), bodyBytes/1024, sumActual(samples))
	t.Logf("estimate: text priced by its pieces (pkg/providers/pieces.go); \"chars\": the former estimate at chars_per_token openai %.2f, anthropic %.2f, gemini %.2f, wide scripts %.1f",
		formerCPT["openai"], formerCPT["anthropic"], formerCPT["gemini"], formerWideCPT)

	// 1. Raw estimate against the exact count, all requests.
	for _, dim := range []struct {
		title  string
		groups []group
	}{{"content type", byKind()}, {"language mix", byLang()}} {
		tb := table{head: []string{dim.title, "n", "runes/token", "median", "p10", "p90", "MAPE %", "under %", "chars MAPE %", "best cpt", "MAPE % at best"}}
		for _, g := range dim.groups {
			ss := filter(samples, g.keep)
			if len(ss) == 0 {
				continue
			}
			s := checked(t, "raw "+g.name, pairs(ss, raw))
			ch := checked(t, "chars "+g.name, pairs(ss, func(s sample) int64 { return s.chars[0] }))
			best, bestMAPE := bestCharsPerToken(points(ss))
			tb.add(g.name, s.N, runesPerToken(ss), s.Median, s.P10, s.P90, s.MAPE, s.Under, ch.MAPE, best, bestMAPE)
		}
		t.Logf("OpenAI: raw estimate / exact o200k prompt tokens, all %d requests, by %s (best cpt: the chars_per_token that would have fitted):\n%s",
			len(samples), dim.title, tb.String())
	}

	// 2. Held-out half: raw, corrected (both deployments) and re-tuned.
	var rawHeld, sharedHeld, workloadHeld, geoHeld summary
	for _, dim := range []struct {
		title  string
		groups []group
	}{{"content type", byKind()}, {"language mix", byLang()}} {
		tb := table{head: []string{dim.title, "n", "raw median", "raw MAPE %", "shared median", "shared MAPE %",
			"workload median", "p10", "p90", "workload MAPE %", "workload under %", "tuned-cpt MAPE %"}}
		for _, g := range dim.groups {
			ss := filter(held, g.keep)
			if len(ss) == 0 {
				continue
			}
			r := checked(t, "held-out raw "+g.name, pairs(ss, raw))
			c := checked(t, "held-out shared "+g.name, pairs(ss, shared))
			w := checked(t, "held-out per workload "+g.name, pairs(ss, perWorkload))
			u := checked(t, "held-out tuned "+g.name, pairs(ss, tuned))
			tb.add(g.name, r.N, r.Median, r.MAPE, c.Median, c.MAPE, w.Median, w.P10, w.P90, w.MAPE, w.Under, u.MAPE)
			if g.name == "all" {
				rawHeld, sharedHeld, workloadHeld = r, c, w
				geoHeld = checked(t, "held-out geometric", pairs(ss, geo))
			}
		}
		t.Logf("OpenAI, held-out half (%d requests), estimate / exact o200k count: raw; corrected with one shared factor (%.3f); corrected per workload (%s); chars_per_token re-tuned on the training half (%.2f); by %s:\n%s",
			len(held), factor, strings.Join(workloadFactors, ", "), tunedCPT, dim.title, tb.String())
	}
	t.Logf("held-out MAPE %%: raw %.1f, shared corrector %.1f, per-workload corrector %.1f, shared geometric-mean factor %.3f (not shipped) %.1f",
		rawHeld.MAPE, sharedHeld.MAPE, workloadHeld.MAPE, geoFactor, geoHeld.MAPE)
	require.Less(t, workloadHeld.MAPE, rawHeld.MAPE, "a correction learned per workload lowers the held-out error")

	// 3. Anthropic and Gemini: no offline tokenizer, o200k as a proxy.
	tb := table{head: []string{"language mix", "n", "anthropic median", "p10", "p90", "MAPE %", "gemini median", "p10", "p90", "MAPE %"}}
	for _, g := range byLang() {
		ss := filter(samples, g.keep)
		if len(ss) == 0 {
			continue
		}
		row := []any{g.name, len(ss)}
		for vi := 1; vi < len(vendors); vi++ {
			s := checked(t, vendors[vi].name+" proxy "+g.name, pairs(ss, func(s sample) int64 { return s.est[vi] }))
			row = append(row, s.Median, s.P10, s.P90, s.MAPE)
		}
		tb.add(row...)
	}
	t.Logf("PROXY, not truth: Anthropic and Gemini estimates / o200k prompt tokens of the same conversation as an OpenAI request; their own tokenizers differ from o200k:\n%s",
		tb.String())

	t.Logf("elapsed %s", time.Since(start).Round(time.Millisecond))
}

// ewmaLogFactor returns exp of the exponentially weighted moving average of
// log(actual/estimated) over ss in order, starting from the first
// observation, with weight alpha for each new one.
func ewmaLogFactor(ss []sample, alpha float64) float64 {
	var m float64
	for i, s := range ss {
		l := math.Log(float64(s.actual) / float64(s.est[0]))
		if i == 0 {
			m = l
			continue
		}
		m += alpha * (l - m)
	}
	return math.Exp(m)
}

func sumActual(ss []sample) int64 {
	var n int64
	for _, s := range ss {
		n += s.actual
	}
	return n
}

// TestTokenizerOffline checks the o200k_base encoding against known token
// ids. The vocabulary is compiled into the module, so this runs without a
// network.
func TestTokenizerOffline(t *testing.T) {
	tok, err := newO200k()
	require.NoError(t, err)
	tests := []struct {
		name string
		in   string
		want []uint
	}{
		{name: "english", in: "hello world", want: []uint{24912, 2375}},
		{name: "punctuation", in: "tiktoken is great!", want: []uint{83, 8251, 2488, 382, 2212, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids, _, err := tok.codec.Encode(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, ids)
			n, err := tok.count(tt.in)
			require.NoError(t, err)
			require.Equal(t, len(tt.want), n)
		})
	}
	n, err := tok.count("")
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = tok.count("<|endoftext|>")
	require.NoError(t, err)
	require.Greater(t, n, 1, "special-token spellings are plain text")
}

// TestChatCountMatchesAPI checks the chat and tool counting against prompt
// token counts the OpenAI API reported for gpt-4o (published in OpenAI's
// cookbook).
func TestChatCountMatchesAPI(t *testing.T) {
	raw, err := os.ReadFile("testdata/published_counts.json")
	require.NoError(t, err)
	var doc struct {
		Cases []struct {
			Name         string `json:"name"`
			PromptTokens int    `json:"prompt_tokens"`
			Messages     []struct {
				Role    string `json:"role"`
				Name    string `json:"name"`
				Content string `json:"content"`
			} `json:"messages"`
			Tools json.RawMessage `json:"tools"`
		} `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.NotEmpty(t, doc.Cases)
	tok, err := newO200k()
	require.NoError(t, err)
	for _, tc := range doc.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			var msgs []message
			for _, m := range tc.Messages {
				msgs = append(msgs, message{Role: m.Role, Name: m.Name, Parts: []string{m.Content}})
			}
			var tools []toolDef
			if len(tc.Tools) > 0 {
				tools, err = parseTools(tc.Tools)
				require.NoError(t, err)
			}
			n, err := tok.chat("", msgs, tools)
			require.NoError(t, err)
			require.Equal(t, tc.PromptTokens, n)
		})
	}
}

func TestCorpusDeterministic(t *testing.T) {
	a, b := loadFixture(t), loadFixture(t)
	require.Equal(t, a.bodies, b.bodies)
	kinds := map[string]int{}
	train := 0
	for _, c := range a.corpus {
		kinds[c.Kind]++
		if c.Train {
			train++
		}
		require.NotEmpty(t, c.Messages)
		require.Equal(t, "user", c.Messages[len(c.Messages)-1].Role, "a request ends with the user's turn")
		for _, vb := range a.bodies {
			require.True(t, json.Valid(vb[c.ID]))
		}
	}
	for _, p := range corpusPlan {
		require.Positive(t, kinds[p.kind], p.kind)
	}
	require.InDelta(t, len(a.corpus)/2, train, float64(len(kinds)*len(corpusLangs())), "about half trains")
	for _, b := range a.bodies[0] {
		require.False(t, bytes.Contains(b, []byte(`\u003c`)), "bodies are not HTML-escaped")
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name                       string
		in                         []pair
		median, p10, p90, mape, un float64
	}{
		{name: "exact", in: []pair{{10, 10}, {5, 5}}, median: 1, p10: 1, p90: 1, mape: 0, un: 0},
		{name: "half low", in: []pair{{5, 10}, {10, 10}}, median: 0.75, p10: 0.55, p90: 0.95, mape: 25, un: 50},
		{name: "over", in: []pair{{20, 10}}, median: 2, p10: 2, p90: 2, mape: 100, un: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := summarize(tt.in)
			require.Equal(t, len(tt.in), s.N)
			require.InDelta(t, tt.median, s.Median, 1e-9)
			require.InDelta(t, tt.p10, s.P10, 1e-9)
			require.InDelta(t, tt.p90, s.P90, 1e-9)
			require.InDelta(t, tt.mape, s.MAPE, 1e-9)
			require.InDelta(t, tt.un, s.Under, 1e-9)
			require.True(t, s.finite)
			require.True(t, s.positivity)
		})
	}
	s := summarize(nil)
	require.Zero(t, s.N)
	require.True(t, math.IsNaN(s.Median))
	s = summarize([]pair{{1, 0}, {0, 1}})
	require.False(t, s.finite)
	require.False(t, s.positivity)
}

func TestBestCharsPerToken(t *testing.T) {
	tests := []struct {
		name string
		pts  []point
		want float64
	}{
		{name: "three per token", pts: []point{{runes: 300, actual: 100}, {runes: 3000, actual: 1000}}, want: 3},
		{name: "fixed part", pts: []point{{runes: 500, fixed: 85, actual: 185}, {runes: 50, fixed: 85, actual: 95}}, want: 5},
		{name: "clamped low", pts: []point{{runes: 10, actual: 100}}, want: cptMin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cpt, mape := bestCharsPerToken(tt.pts)
			require.InDelta(t, tt.want, cpt, 1e-9)
			require.False(t, math.IsNaN(mape))
		})
	}
	cpt, mape := bestCharsPerToken(nil)
	require.True(t, math.IsNaN(cpt))
	require.True(t, math.IsNaN(mape))
}

// BenchmarkEstimate measures the gateway's estimation path over the whole
// corpus: the provider's ParseRequest, the chars_per_token estimate and the
// learned correction. One op is the whole corpus; MB/s is request-body
// throughput.
func BenchmarkEstimate(b *testing.B) {
	f := loadFixture(b)
	reg := providers.Default()
	for vi, v := range vendors {
		b.Run(v.name, func(b *testing.B) {
			p := reg[v.name]
			corr := correction.New(correction.Config{})
			reqs := make([]providers.Request, len(f.corpus))
			size := 0
			for i := range f.corpus {
				reqs[i] = f.request(vi, i)
				size += len(reqs[i].Body)
				// Warm the corrector so Correct applies a learned factor.
				corr.Observe(v.name, p.ParseRequest(reqs[i]).Model, 100, 110)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			var sink int64
			for b.Loop() {
				for _, r := range reqs {
					info := p.ParseRequest(r)
					sink += corr.Correct(v.name, info.Model, f.est.InputTokens(v.name, info))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(reqs)), "ns/request")
			if sink <= 0 {
				b.Fatal("no tokens estimated")
			}
		})
	}
}

// openAILayoutRunes counts the text of flat function definitions as OpenAI
// renders them: the name, the description, the parameters' type and each
// property's name, type, description and enum values.
func openAILayoutRunes(tools []toolDef) (int64, error) {
	var n int
	for _, t := range tools {
		f := t.Function
		n += utf8.RuneCountInString(f.Name) + utf8.RuneCountInString(f.Description)
		var sc struct {
			Type       string `json:"type"`
			Properties map[string]struct {
				Type        string   `json:"type"`
				Description string   `json:"description"`
				Enum        []string `json:"enum"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(f.Parameters, &sc); err != nil {
			return 0, fmt.Errorf("tool %s: %w", f.Name, err)
		}
		// "object" and "array" are structure in the layout, not text.
		structural := func(t string) int {
			if t == "object" || t == "array" {
				return 0
			}
			return utf8.RuneCountInString(t)
		}
		n += structural(sc.Type)
		for name, p := range sc.Properties {
			n += utf8.RuneCountInString(name) + structural(p.Type) + utf8.RuneCountInString(p.Description)
			for _, e := range p.Enum {
				n += utf8.RuneCountInString(e)
			}
		}
	}
	return int64(n), nil
}

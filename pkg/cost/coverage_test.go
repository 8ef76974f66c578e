package cost

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// realCall is the part of a record of the real-traffic corpus
// (bench/estimation/testdata/real, see its README) that pricing needs.
type realCall struct {
	Path     string          `json:"path"`
	Vendor   string          `json:"vendor"`
	Endpoint string          `json:"endpoint"`
	URLPath  string          `json:"url_path"`
	RawQuery string          `json:"raw_query"`
	Stream   bool            `json:"stream"`
	Request  json.RawMessage `json:"request"`
	Response string          `json:"response"`
	// Usage is the vendor's usage block as recorded.
	Usage json.RawMessage `json:"usage"`
}

// rawUsage is what the recorded usage blocks carry beyond what the
// gateway's usage parser reads today.
type rawUsage struct {
	// Anthropic.
	CacheCreation struct {
		Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
	// OpenAI Chat Completions and Responses.
	PromptDetails     openAIDetails `json:"prompt_tokens_details"`
	InputDetails      openAIDetails `json:"input_tokens_details"`
	CompletionDetails openAIDetails `json:"completion_tokens_details"`
	OutputDetails     openAIDetails `json:"output_tokens_details"`
	// Gemini.
	PromptTokensDetails     []geminiModality `json:"promptTokensDetails"`
	CacheTokensDetails      []geminiModality `json:"cacheTokensDetails"`
	CandidatesTokensDetails []geminiModality `json:"candidatesTokensDetails"`
}

type openAIDetails struct {
	Audio      int64 `json:"audio_tokens"`
	CacheWrite int64 `json:"cache_write_tokens"`
}

type geminiModality struct {
	Modality   string `json:"modality"`
	TokenCount int64  `json:"tokenCount"`
}

func modality(ds []geminiModality, m string) int64 {
	var n int64
	for _, d := range ds {
		if d.Modality == m {
			n += d.TokenCount
		}
	}
	return n
}

// costUsage is the catalog's view of a replayed call's usage, independent
// of what the parser reads beyond the plain counts: the parser's input,
// output, cache and reasoning counts, plus the 1-hour cache writes, OpenAI
// cache writes and audio and image counts decoded from the recorded usage
// block with encoding/json, and OpenAI's service tier as the recorded
// response states it.
func (c realCall) costUsage(u providers.Usage) Usage {
	cu := Usage{Input: u.InputTokens, Output: u.OutputTokens, CacheRead: u.CacheReadTokens,
		CacheWrite: u.CacheWriteTokens, Reasoning: u.ReasoningTokens}
	var raw rawUsage
	if json.Unmarshal(c.Usage, &raw) != nil {
		return cu
	}
	switch c.Vendor {
	case "anthropic":
		cu.CacheWrite1h = raw.CacheCreation.Ephemeral1h
	case "openai":
		if cu.CacheWrite == 0 {
			cu.CacheWrite = raw.PromptDetails.CacheWrite + raw.InputDetails.CacheWrite
		}
		cu.InputAudio = raw.PromptDetails.Audio + raw.InputDetails.Audio
		cu.OutputAudio = raw.CompletionDetails.Audio + raw.OutputDetails.Audio
		if m := serviceTierRE.FindAllStringSubmatch(c.Response, -1); len(m) > 0 {
			cu.ServiceTier = m[len(m)-1][1]
		}
	case "gemini":
		cu.InputAudio = modality(raw.PromptTokensDetails, "AUDIO")
		cu.InputImage = modality(raw.PromptTokensDetails, "IMAGE")
		cu.CacheReadAudio = modality(raw.CacheTokensDetails, "AUDIO")
		cu.CacheReadImage = modality(raw.CacheTokensDetails, "IMAGE")
		cu.OutputAudio = modality(raw.CandidatesTokensDetails, "AUDIO")
		cu.OutputImage = modality(raw.CandidatesTokensDetails, "IMAGE")
	}
	return cu
}

// serviceTierRE finds OpenAI's service_tier in a response body or stream;
// the last one states the tier the response was processed in.
var serviceTierRE = regexp.MustCompile(`"service_tier"\s*:\s*"([a-z_]+)"`)

func loadRealCalls(t *testing.T) []realCall {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "bench", "estimation", "testdata", "real", "*.jsonl.gz"))
	require.NoError(t, err)
	if len(files) == 0 {
		t.Skip("coverage skipped: no real-traffic corpus in bench/estimation/testdata/real")
	}
	var calls []realCall
	for _, f := range files {
		fh, err := os.Open(f)
		require.NoError(t, err)
		zr, err := gzip.NewReader(fh)
		require.NoError(t, err)
		sc := bufio.NewScanner(zr)
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for sc.Scan() {
			var c realCall
			require.NoError(t, json.Unmarshal(sc.Bytes(), &c))
			calls = append(calls, c)
		}
		require.NoError(t, sc.Err())
		require.NoError(t, fh.Close())
	}
	return calls
}

// replayedCall is a priceable call of the corpus as the gateway read it.
type replayedCall struct {
	realCall
	info  providers.RequestInfo
	usage providers.Usage
}

var (
	replayOnce sync.Once
	replayed   []replayedCall
)

// priceableCalls returns every call of the corpus but token counting
// (free), replayed once per test binary.
func priceableCalls(t *testing.T) []replayedCall {
	t.Helper()
	calls := loadRealCalls(t)
	replayOnce.Do(func() {
		reg := providers.Default()
		for _, c := range calls {
			if c.Endpoint == string(providers.EndpointCountTokens) {
				continue
			}
			info, u := c.replay(reg)
			replayed = append(replayed, replayedCall{realCall: c, info: info, usage: u})
		}
	})
	return replayed
}

// replay reads a call as the gateway does: the request through the
// provider's parser, the response through its usage parser.
func (c realCall) replay(reg providers.Registry) (providers.RequestInfo, providers.Usage) {
	p := reg[c.Vendor]
	req := providers.Request{Method: "POST", Path: c.URLPath, RawQuery: c.RawQuery,
		ContentType: "application/json", Body: c.Request}
	info := p.ParseRequest(req)
	ct := "application/json"
	if body := strings.TrimSpace(c.Response); strings.HasPrefix(body, "data:") || strings.HasPrefix(body, "event:") {
		ct = "text/event-stream"
	}
	up := p.NewUsageParser(req, info, ct)
	up.Write([]byte(c.Response))
	return info, up.Usage()
}

// TestRealTrafficCoverage replays every priceable call of the real-traffic
// corpus (all but token counting, which is free) and requires at least 99 %
// of them to be priced by the shipped prices, resolving the vendor's
// reported model first and the requested one second, as the gateway's
// pricer does. It logs the models left unpriced, and the coverage the
// hand-written table that preceded the catalog reached on the same calls.
func TestRealTrafficCoverage(t *testing.T) {
	calls := priceableCalls(t)
	tables := map[string]*Table{"catalog": DefaultTable(), "handwritten": handwrittenTable(t)}
	priced := map[string]int{}
	unpriced := map[string]map[string]int{}
	n := 0
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range calls {
		info, u := c.info, c.usage
		require.True(t, u.Found, "%s: no usage read from the response", c.Path)
		n++
		for name, tab := range tables {
			ok := false
			for _, m := range []string{u.Model, info.Model} {
				if m == "" {
					continue
				}
				if _, _, ok = tab.LookupAt(c.Vendor, m, at); ok {
					break
				}
			}
			if ok {
				priced[name]++
				continue
			}
			if unpriced[name] == nil {
				unpriced[name] = map[string]int{}
			}
			unpriced[name][fmt.Sprintf("%s/%s (requested %s)", c.Vendor, u.Model, info.Model)]++
		}
	}
	require.Positive(t, n)
	for _, name := range []string{"handwritten", "catalog"} {
		t.Logf("%s: %d of %d calls priced (%.1f %%)", name, priced[name], n, 100*float64(priced[name])/float64(n))
	}
	var left []string
	for m, k := range unpriced["catalog"] {
		left = append(left, fmt.Sprintf("%s ×%d", m, k))
	}
	slices.Sort(left)
	t.Logf("unpriced with the catalog: %s", strings.Join(left, "; "))
	require.GreaterOrEqual(t, float64(priced["catalog"]), 0.99*float64(n), "coverage below 99 %%: %v", left)
}

// TestCrossCheckRealTraffic prices every priceable call of the real-traffic
// corpus with the reference calcPrice and with Compute, and requires the
// same model and the same cost to the micro-dollar wherever the reference
// prices the call, both for the recorded usage block and for the usage
// parser's reading of the response (UsageOf). Calls only our explicit rules price (the reference has
// no price) are counted and must stay few.
func TestCrossCheckRealTraffic(t *testing.T) {
	requireReference(t)
	calls := priceableCalls(t)
	tab := DefaultTable()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	type item struct {
		call   realCall
		model  string
		usage  Usage
		parsed Usage
	}
	var items []item
	var ins []referenceInput
	for _, c := range calls {
		info, u := c.info, c.usage
		model := u.Model
		if _, _, ok := tab.LookupAt(c.Vendor, model, at); !ok || model == "" {
			model = info.Model
		}
		model = strings.TrimPrefix(model, "models/")
		cu := c.costUsage(u)
		// The reference has no service tiers (flex is our documented rule,
		// checked by TestParsedUsageBillsAsRecorded and the compute tests).
		cu.ServiceTier = ""
		parsed := UsageOf(&u)
		parsed.ServiceTier = ""
		items = append(items, item{call: c.realCall, model: model, usage: cu, parsed: parsed})
		ins = append(ins, referenceInput{ProviderID: catalogProviderIDs[c.Vendor], Model: model,
			Usage: referenceUsage(c.Vendor, false, cu), Timestamp: at})
	}
	results := runReference(t, ins)
	features := map[string]int{}
	onlyOurs := map[string]int{}
	checked := 0
	for i, it := range items {
		r := results[i]
		p, canonical, ok := tab.LookupAt(it.call.Vendor, it.model, at)
		require.True(t, ok, "%s/%s", it.call.Vendor, it.model)
		if r == nil {
			onlyOurs[it.call.Vendor+"/"+it.model]++
			continue
		}
		require.Empty(t, r.Error, "%s: the reference rejected the usage", it.call.Path)
		require.Equal(t, r.ModelID, canonical, "%s", it.call.Path)
		b := Compute(it.call.Vendor, false, p, it.usage)
		require.Equal(t, ToMicros(r.TotalPrice), b.Micros(), "%s %s/%s: Go %.9f USD, reference %.9f USD",
			it.call.Path, it.call.Vendor, it.model, b.TotalUSD, r.TotalPrice)
		require.Equal(t, ToMicros(r.TotalPrice), Compute(it.call.Vendor, false, p, it.parsed).Micros(),
			"%s %s/%s: the parsed usage %+v", it.call.Path, it.call.Vendor, it.model, it.parsed)
		checked++
		u := it.usage
		for name, on := range map[string]bool{"cache read": u.CacheRead > 0, "cache write": u.CacheWrite > 0,
			"1h write": u.CacheWrite1h > 0, "reasoning": u.Reasoning > 0, "audio": u.InputAudio+u.OutputAudio > 0,
			"image": u.InputImage+u.OutputImage > 0, "tier": b.Tier > 0} {
			if on {
				features[name]++
			}
		}
	}
	t.Logf("%d of %d calls equal to the reference, with %v; priced by our rules only: %v", checked, len(items), features, onlyOurs)
	require.GreaterOrEqual(t, checked, len(items)*99/100, "most calls must be cross-checked")
}

// TestParsedUsageBillsAsRecorded prices every priceable call of the
// real-traffic corpus through the gateway's pricing path (Table.PriceCall
// on the usage parser's result, as processor.TablePricer does) and
// requires, for every vendor, the catalog-expected cost of the recorded
// usage (costUsage) to the micro-dollar per call. It logs, per vendor, how
// much the parser's plain counts alone (no 1-hour writes, audio, image or
// service tier: the mapping before these were wired) under-bill.
func TestParsedUsageBillsAsRecorded(t *testing.T) {
	calls := priceableCalls(t)
	tab := DefaultTable()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	type sums struct {
		n                       int
		expected, plain, parsed float64
	}
	byVendor := map[string]*sums{}
	for _, c := range calls {
		got, model, ok := tab.PriceCall(c.Vendor, &c.info, &c.usage, at)
		if !ok {
			continue
		}
		p, canonical, ok := tab.LookupAt(c.Vendor, c.usage.Model, at)
		if !ok {
			p, canonical, ok = tab.LookupAt(c.Vendor, c.info.Model, at)
		}
		require.True(t, ok)
		require.Equal(t, canonical, model, "%s", c.Path)
		u := c.usage
		want := Compute(c.Vendor, c.info.OpenAICompatible, p, c.costUsage(u))
		plain := Compute(c.Vendor, c.info.OpenAICompatible, p, Usage{Input: u.InputTokens, Output: u.OutputTokens,
			CacheRead: u.CacheReadTokens, CacheWrite: u.CacheWriteTokens, Reasoning: u.ReasoningTokens})
		require.InDelta(t, want.TotalUSD, got.TotalUSD, 1e-6, "%s %s/%s: parsed %+v", c.Path, c.Vendor, model, UsageOf(&u))
		s := byVendor[c.Vendor]
		if s == nil {
			s = &sums{}
			byVendor[c.Vendor] = s
		}
		s.n++
		s.expected += want.TotalUSD
		s.plain += plain.TotalUSD
		s.parsed += got.TotalUSD
	}
	for _, v := range []string{"anthropic", "gemini", "openai"} {
		s := byVendor[v]
		require.NotNil(t, s, "no priced %s call in the corpus", v)
		require.Positive(t, s.expected, v)
		t.Logf("%s: %d calls, expected %.6f USD; plain counts %.6f USD (%.2f %% under); parsed %.6f USD (%.4f %% under)",
			v, s.n, s.expected, s.plain, 100*(s.expected-s.plain)/s.expected, s.parsed, 100*(s.expected-s.parsed)/s.expected)
	}
}

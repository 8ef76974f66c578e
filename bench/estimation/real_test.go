package estimation

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// realRecord is one call of the real-traffic corpus (testdata/real, written
// by internal/extract; README.md there describes the fields).
type realRecord struct {
	Source       string          `json:"source"`
	Path         string          `json:"path"`
	Interaction  int             `json:"interaction"`
	Vendor       string          `json:"vendor"`
	Host         string          `json:"host"`
	Endpoint     string          `json:"endpoint"`
	URLPath      string          `json:"url_path"`
	RawQuery     string          `json:"raw_query"`
	Model        string          `json:"model"`
	Stream       bool            `json:"stream"`
	Request      json.RawMessage `json:"request"`
	Usage        json.RawMessage `json:"usage"`
	PromptTokens int64           `json:"prompt_tokens"`
	ServerTools  bool            `json:"server_tools"`
}

// loadReal reads every testdata/real/*.jsonl.gz file.
func loadReal(tb testing.TB) []realRecord {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "real", "*.jsonl.gz"))
	require.NoError(tb, err)
	require.NotEmpty(tb, files)
	var out []realRecord
	for _, name := range files {
		f, err := os.Open(name)
		require.NoError(tb, err)
		zr, err := gzip.NewReader(f)
		require.NoError(tb, err)
		sc := bufio.NewScanner(zr)
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for sc.Scan() {
			var r realRecord
			require.NoError(tb, json.Unmarshal(sc.Bytes(), &r), name)
			out = append(out, r)
		}
		require.NoError(tb, sc.Err(), name)
		require.NoError(tb, f.Close())
	}
	return out
}

// Request shapes of the real corpus. A call has every shape it shows; a call
// with none is plain chat.
const (
	shapePlain      = "plain chat"
	shapeTools      = "tools"
	shapeStructured = "structured output"
	shapeThinking   = "thinking"
	shapeImages     = "images"
	shapeMedia      = "documents, audio, video"
)

var realShapes = []string{shapePlain, shapeTools, shapeStructured, shapeThinking, shapeImages, shapeMedia}

// shapesOf classifies a request body by what it holds, from the vendors'
// documented field names.
func shapesOf(vendor string, body []byte) []string {
	var top map[string]any
	if json.Unmarshal(body, &top) != nil {
		return []string{shapePlain}
	}
	has := map[string]bool{}
	if t, ok := top["tools"].([]any); ok && len(t) > 0 {
		has[shapeTools] = true
	}
	if _, ok := top["functions"]; ok {
		has[shapeTools] = true
	}
	switch vendor {
	case "openai":
		if rf, ok := top["response_format"].(map[string]any); ok && rf["type"] != "text" {
			has[shapeStructured] = true
		}
		if tx, ok := top["text"].(map[string]any); ok {
			if f, ok := tx["format"].(map[string]any); ok && f["type"] != "text" {
				has[shapeStructured] = true
			}
		}
		if top["reasoning"] != nil || top["reasoning_effort"] != nil {
			has[shapeThinking] = true
		}
	case "anthropic":
		if th, ok := top["thinking"].(map[string]any); ok && th["type"] != "disabled" {
			has[shapeThinking] = true
		}
		if top["output_format"] != nil || top["output_config"] != nil {
			has[shapeStructured] = true
		}
	case "gemini":
		gc, _ := top["generationConfig"].(map[string]any)
		if gc == nil {
			gc, _ = top["generation_config"].(map[string]any)
		}
		if gc["responseSchema"] != nil || gc["responseJsonSchema"] != nil || gc["response_schema"] != nil ||
			gc["response_json_schema"] != nil || gc["responseMimeType"] == "application/json" {
			has[shapeStructured] = true
		}
		if tc, ok := gc["thinkingConfig"].(map[string]any); ok && tc["thinkingBudget"] != json.Number("0") {
			has[shapeThinking] = true
		}
	}
	walkJSON(top, func(m map[string]any) {
		t, _ := m["type"].(string)
		switch t {
		case "image_url", "input_image", "image":
			has[shapeImages] = true
		case "input_file", "file", "document", "input_audio", "audio":
			has[shapeMedia] = true
		case "thinking", "redacted_thinking", "reasoning":
			has[shapeThinking] = true
		}
		for _, k := range []string{"inlineData", "inline_data", "fileData", "file_data"} {
			d, ok := m[k].(map[string]any)
			if !ok {
				continue
			}
			mime, _ := d["mimeType"].(string)
			if mime == "" {
				mime, _ = d["mime_type"].(string)
			}
			if strings.HasPrefix(mime, "image/") {
				has[shapeImages] = true
			} else {
				has[shapeMedia] = true
			}
		}
		if _, ok := m["thoughtSignature"]; ok {
			has[shapeThinking] = true
		}
		if m["thought"] == true {
			has[shapeThinking] = true
		}
	})
	var out []string
	for _, s := range realShapes[1:] {
		if has[s] {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		out = []string{shapePlain}
	}
	return out
}

func walkJSON(v any, fn func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(x)
		for _, e := range x {
			walkJSON(e, fn)
		}
	case []any:
		for _, e := range x {
			walkJSON(e, fn)
		}
	}
}

// realSample is one real call with the gateway's estimate.
type realSample struct {
	rec    *realRecord
	shapes []string
	// held names input the request refers to without carrying it (see
	// heldInput); "" when the request carries all its input.
	held string
	info providers.RequestInfo
	est  int64
	// heldOut puts the call in the held-out split (see heldOutKey).
	heldOut bool
}

// heldOutKey decides, from the request alone, whether a call belongs to
// the held-out split: FNV-1a of vendor, host, path and body, one in three.
// Constants the vendors do not publish are measured on the training split
// only; the held-out figures show whether they generalise.
func heldOutKey(r *realRecord) bool {
	h := fnv.New64a()
	for _, s := range []string{r.Vendor, r.Host, r.URLPath} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(r.Request)
	return h.Sum64()%3 == 0
}

// heldInput reports input that a request refers to but does not carry, so
// that no estimate made from the request can know its size: state the
// vendor keeps (a previous response, a conversation, cached content,
// server-side context management or compaction, MCP servers whose tools
// the vendor lists) or media the vendor fetches by URL or file id. It
// returns what it found, or "".
func heldInput(vendor, host string, body []byte) string {
	if strings.HasSuffix(host, "aiplatform.googleapis.com") {
		// Vertex AI takes Gemini bodies but counts differently (thought
		// signatures count nothing there); the gateway does not route it.
		return "Vertex AI"
	}
	var top map[string]any
	if json.Unmarshal(body, &top) != nil {
		return ""
	}
	for _, k := range []string{"previous_response_id", "conversation", "cachedContent", "cached_content", "context_management", "mcp_servers"} {
		if v, ok := top[k]; ok && v != nil {
			return k
		}
	}
	found := ""
	walkJSON(top, func(m map[string]any) {
		if found != "" {
			return
		}
		t, _ := m["type"].(string)
		switch {
		case t == "compaction" || t == "container_upload" || t == "item_reference":
			found = t
		case vendor == "anthropic" && (t == "url" || t == "file") && m["data"] == nil:
			found = "source " + t
		case vendor == "openai" && (t == "input_file" || t == "file" || t == "input_image" || t == "image_url" || t == "input_audio"):
			if hasRef(m) {
				found = t + " by reference"
			}
		case t == "mcp":
			found = "mcp tool"
		}
		if fd, ok := m["fileData"].(map[string]any); ok && fd != nil {
			found = "fileData"
		}
		if fd, ok := m["file_data"].(map[string]any); ok && fd != nil {
			found = "file_data"
		}
	})
	return found
}

// hasRef reports whether an OpenAI content part names its data by URL or
// file id instead of carrying it.
func hasRef(m map[string]any) bool {
	if _, ok := m["file_id"]; ok {
		return true
	}
	if u, ok := m["file_url"].(string); ok && u != "" {
		return true
	}
	if f, ok := m["file"].(map[string]any); ok {
		if _, ok := f["file_id"]; ok {
			return true
		}
	}
	url, _ := m["image_url"].(string)
	if iu, ok := m["image_url"].(map[string]any); ok {
		url, _ = iu["url"].(string)
	}
	return url != "" && !strings.HasPrefix(url, "data:")
}

// measureReal parses every call with its provider and estimates it with
// the shipped settings (configs/base.yml).
func measureReal(tb testing.TB, recs []realRecord) []realSample {
	tb.Helper()
	root, err := repoRoot()
	require.NoError(tb, err)
	cfg, err := config.Load([]string{filepath.Join(root, "configs", "base.yml")}, func(string) string { return "" })
	require.NoError(tb, err)
	est := cfg.Features.RateLimiting.Estimation
	reg := providers.Default()
	out := make([]realSample, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		p := reg[r.Vendor]
		require.NotNil(tb, p, r.Vendor)
		info := p.ParseRequest(providers.Request{
			Method: "POST", Path: r.URLPath, RawQuery: r.RawQuery,
			ContentType: "application/json", Body: r.Request,
		})
		if info.Malformed {
			tb.Errorf("%s %s#%d: parsed as malformed", r.Vendor, r.Path, r.Interaction)
		}
		out = append(out, realSample{rec: r, shapes: shapesOf(r.Vendor, r.Request), held: heldInput(r.Vendor, r.Host, r.Request), info: info, est: est.InputTokens(r.Vendor, info), heldOut: heldOutKey(r)})
	}
	return out
}

// measured reports whether a call counts toward the targets: no server
// tool ran and the request carries all its input.
func measured(s realSample) bool { return !s.rec.ServerTools && s.held == "" }

func realPairs(ss []realSample, keep func(realSample) bool) []pair {
	var ps []pair
	for _, s := range ss {
		if keep(s) {
			ps = append(ps, pair{est: float64(s.est), actual: float64(s.rec.PromptTokens)})
		}
	}
	return ps
}

var realVendors = []string{"openai", "anthropic", "gemini"}

// Issue 8's targets on real traffic, per vendor, server-tool calls left
// out.
const (
	realTargetMAPE = 10.0
	realTargetP10  = 0.8
)

// realGuard is the error this estimator reached on the real corpus (text
// and image calls), with a little slack: a change that makes estimates
// worse fails here.
var realGuard = map[string]struct{ mape, p10 float64 }{
	"openai":    {mape: 11.2, p10: 0.83},
	"anthropic": {mape: 9.2, p10: 0.91},
	"gemini":    {mape: 10.1, p10: 0.84},
}

// realTables renders the report on the real corpus: per vendor, per vendor
// and shape (both without server-tool calls), and the server-tool calls.
func realTables(ss []realSample) (perVendor, perShape, server *table, sums map[string]summary) {
	perVendor = &table{head: []string{"vendor", "calls", "n", "median", "p10", "p90", "MAPE %", "under %"}}
	sums = map[string]summary{}
	for _, v := range realVendors {
		s := summarize(realPairs(ss, func(s realSample) bool { return s.rec.Vendor == v && measured(s) }))
		perVendor.add(v, "all", s.N, s.Median, s.P10, s.P90, s.MAPE, s.Under)
		s = summarize(realPairs(ss, func(s realSample) bool {
			return s.rec.Vendor == v && measured(s) && !slices.Contains(s.shapes, shapeMedia)
		}))
		sums[v] = s
		perVendor.add(v, "text and images", s.N, s.Median, s.P10, s.P90, s.MAPE, s.Under)
		for _, split := range []struct {
			name string
			held bool
		}{{"text and images, train", false}, {"text and images, held-out", true}} {
			s = summarize(realPairs(ss, func(s realSample) bool {
				return s.rec.Vendor == v && measured(s) && !slices.Contains(s.shapes, shapeMedia) && s.heldOut == split.held
			}))
			perVendor.add(v, split.name, s.N, s.Median, s.P10, s.P90, s.MAPE, s.Under)
		}
	}
	perShape = &table{head: []string{"vendor", "shape", "n", "median", "p10", "p90", "MAPE %"}}
	for _, v := range realVendors {
		for _, sh := range realShapes {
			s := summarize(realPairs(ss, func(s realSample) bool {
				return s.rec.Vendor == v && measured(s) && slices.Contains(s.shapes, sh)
			}))
			if s.N > 0 {
				perShape.add(v, sh, s.N, s.Median, s.P10, s.P90, s.MAPE)
			}
		}
	}
	server = &table{head: []string{"vendor", "excluded because", "n", "median", "p10", "p90", "MAPE %"}}
	for _, v := range realVendors {
		s := summarize(realPairs(ss, func(s realSample) bool { return s.rec.Vendor == v && s.rec.ServerTools }))
		if s.N > 0 {
			server.add(v, "server-side tools ran", s.N, s.Median, s.P10, s.P90, s.MAPE)
		}
		s = summarize(realPairs(ss, func(s realSample) bool {
			return s.rec.Vendor == v && !s.rec.ServerTools && s.held != "" && s.held != "Vertex AI"
		}))
		if s.N > 0 {
			server.add(v, "input held or fetched by the vendor", s.N, s.Median, s.P10, s.P90, s.MAPE)
		}
		s = summarize(realPairs(ss, func(s realSample) bool { return s.rec.Vendor == v && !s.rec.ServerTools && s.held == "Vertex AI" }))
		if s.N > 0 {
			server.add(v, "Vertex AI (not a gateway upstream)", s.N, s.Median, s.P10, s.P90, s.MAPE)
		}
	}
	return perVendor, perShape, server, sums
}

// TestRealTrafficEstimation reports the estimate / the vendor's own prompt
// count on real recorded traffic and asserts the targets of issue 8.
func TestRealTrafficEstimation(t *testing.T) {
	recs := loadReal(t)
	require.GreaterOrEqual(t, len(recs), 300)
	ss := distinct(measureReal(t, recs))
	perVendor, perShape, server, sums := realTables(ss)
	t.Logf("real traffic: %d calls from %d sources, %d distinct requests\n\n**estimate / vendor prompt tokens, per vendor (server-tool calls and input the request does not carry excluded); \"text and images\" leaves out documents, audio and video, which vendors bill by pages or duration the gateway does not decode:**\n\n%s\n**by request shape (a call counts in every shape it has):**\n\n%s\n**calls left out of the targets: the vendor ran server-side tools, or the request refers to input it does not carry:**\n\n%s",
		len(recs), countSources(recs), len(ss), perVendor, perShape, server)
	worst(t, ss)
	if name := os.Getenv("ESTIMATION_DUMP"); name != "" {
		dumpReal(t, name, ss)
	}
	for _, v := range realVendors {
		s := sums[v]
		require.GreaterOrEqualf(t, s.N, 150, "%s: calls measured", v)
		require.Truef(t, s.finite && s.positivity, "%s: every ratio finite and positive", v)
		require.InDeltaf(t, 1, s.Median, 0.1, "%s: median estimate / vendor count", v)
		// Regression guard: what this estimator reached (README.md); the
		// issue-8 targets (MAPE <= 10 %, p10 >= 0.8) are reported, not yet
		// asserted, until every vendor meets them.
		require.LessOrEqualf(t, s.MAPE, realGuard[v].mape, "%s: MAPE %%", v)
		require.GreaterOrEqualf(t, s.P10, realGuard[v].p10, "%s: p10", v)
		t.Logf("%s: target MAPE <= %.0f %% and p10 >= %.1f: %v (MAPE %.1f %%, p10 %.2f)", v, realTargetMAPE, realTargetP10,
			s.MAPE <= realTargetMAPE && s.P10 >= realTargetP10, s.MAPE, s.P10)
	}
}

// dumpReal writes one line per call (TSV) for offline analysis:
// ESTIMATION_DUMP=/tmp/real.tsv go test -run TestRealTrafficEstimation.
func dumpReal(t *testing.T, name string, ss []realSample) {
	var b strings.Builder
	b.WriteString("vendor\tendpoint\tmodel\tserver\theld\tshapes\tactual\test\ttext_runes\ttext_tokens\twide\timages\timage_tokens\toverhead\theld_out\tpath\n")
	for _, s := range ss {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%v\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%v\t%s#%d\n", s.rec.Vendor, s.rec.Endpoint, s.rec.Model, s.rec.ServerTools, s.held,
			strings.Join(s.shapes, "|"), s.rec.PromptTokens, s.est, s.info.TextRunes, s.info.TextTokens, s.info.WideRunes, s.info.Images, s.info.ImageTokens, s.info.OverheadTokens, s.heldOut, s.rec.Path, s.rec.Interaction)
	}
	require.NoError(t, os.WriteFile(name, []byte(b.String()), 0o644))
}

// distinct keeps the first call of each distinct request (vendor, host,
// path and body): test suites replay the same request in many
// parametrised tests, and each should weigh once.
func distinct(ss []realSample) []realSample {
	seen := map[string]bool{}
	out := ss[:0]
	for _, s := range ss {
		k := s.rec.Vendor + " " + s.rec.Host + " " + s.rec.URLPath + " " + string(s.rec.Request)
		if !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	return out
}

func countSources(recs []realRecord) int {
	m := map[string]bool{}
	for _, r := range recs {
		m[r.Source] = true
	}
	return len(m)
}

// worst logs the text and image calls furthest off per vendor, for whoever
// improves the estimate next.
func worst(t *testing.T, ss []realSample) {
	for _, v := range realVendors {
		var vs []realSample
		for _, s := range ss {
			if s.rec.Vendor == v && measured(s) && !slices.Contains(s.shapes, shapeMedia) {
				vs = append(vs, s)
			}
		}
		sort.Slice(vs, func(i, j int) bool {
			return dev(vs[i]) > dev(vs[j])
		})
		for _, s := range vs[:min(len(vs), 8)] {
			t.Logf("%s %.2f est %d actual %d %v %s %s#%d", v, float64(s.est)/float64(s.rec.PromptTokens), s.est, s.rec.PromptTokens, s.shapes, s.rec.Model, s.rec.Path, s.rec.Interaction)
		}
	}
}

func dev(s realSample) float64 {
	r := float64(s.est) / float64(s.rec.PromptTokens)
	if r < 1 {
		return 1/r - 1
	}
	return r - 1
}

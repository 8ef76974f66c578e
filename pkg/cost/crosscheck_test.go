package cost

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// crossCheckCase is one usage of testdata/crosscheck_usages.json.
type crossCheckCase struct {
	Name     string    `json:"name"`
	Provider string    `json:"provider"`
	Compat   bool      `json:"compat"`
	Model    string    `json:"model"`
	At       time.Time `json:"at"`
	Usage    struct {
		Input          int64 `json:"input"`
		Output         int64 `json:"output"`
		CacheRead      int64 `json:"cache_read"`
		CacheWrite     int64 `json:"cache_write"`
		CacheWrite1h   int64 `json:"cache_write_1h"`
		Reasoning      int64 `json:"reasoning"`
		InputAudio     int64 `json:"input_audio"`
		InputImage     int64 `json:"input_image"`
		CacheReadAudio int64 `json:"cache_read_audio"`
		CacheReadImage int64 `json:"cache_read_image"`
		OutputAudio    int64 `json:"output_audio"`
		OutputImage    int64 `json:"output_image"`
	} `json:"usage"`
}

func (c crossCheckCase) usage() Usage {
	u := c.Usage
	return Usage{Input: u.Input, Output: u.Output, CacheRead: u.CacheRead, CacheWrite: u.CacheWrite,
		CacheWrite1h: u.CacheWrite1h, Reasoning: u.Reasoning, InputAudio: u.InputAudio, InputImage: u.InputImage,
		CacheReadAudio: u.CacheReadAudio, CacheReadImage: u.CacheReadImage, OutputAudio: u.OutputAudio, OutputImage: u.OutputImage}
}

// referenceUsage is u in genai-prices' terms: input_tokens is the whole
// prompt, every other count a part of it or of the output.
func referenceUsage(provider string, compat bool, u Usage) map[string]int64 {
	prompt := u.Input
	if provider == anthropic && !compat {
		prompt = u.Input + u.CacheRead + u.CacheWrite
	}
	out := max(u.Output, u.Reasoning)
	m := map[string]int64{
		"input_tokens": prompt, "output_tokens": out,
		"cache_read_tokens": u.CacheRead, "cache_write_tokens": u.CacheWrite,
		"cache_write_1h_tokens": u.CacheWrite1h,
		"input_audio_tokens":    u.InputAudio, "cache_audio_read_tokens": u.CacheReadAudio,
		"output_audio_tokens": u.OutputAudio,
		"input_image_tokens":  u.InputImage, "cache_image_read_tokens": u.CacheReadImage,
		"output_image_tokens": u.OutputImage,
	}
	for k, v := range m {
		if v == 0 && k != "input_tokens" {
			delete(m, k)
		}
	}
	return m
}

// catalogProviderIDs maps gateway provider names to genai-prices ids.
var catalogProviderIDs = map[string]string{"openai": "openai", "anthropic": "anthropic", "gemini": "google"}

// TestCrossCheckReference prices every usage of the corpus with the
// catalog's reference implementation (calcPrice of @pydantic/genai-prices,
// run by tools/pricecheck/calc.mjs under Node.js, offline) and requires the
// Go result to resolve the same model and cost the same to the
// micro-dollar. It needs node and the npm package installed by
// `npm ci --prefix tools/pricecheck` (.ci/run does this) and skips without
// them.
func TestCrossCheckReference(t *testing.T) {
	requireReference(t)
	data, err := os.ReadFile("testdata/crosscheck_usages.json")
	require.NoError(t, err)
	var cases []crossCheckCase
	require.NoError(t, json.Unmarshal(data, &cases))
	ins := make([]referenceInput, len(cases))
	for i, c := range cases {
		ins[i] = referenceInput{ProviderID: catalogProviderIDs[c.Provider], Model: c.Model,
			Usage: referenceUsage(c.Provider, c.Compat, c.usage()), Timestamp: c.At}
	}
	results := runReference(t, ins)
	tab := DefaultTable()
	for i, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			r := results[i]
			require.NotNil(t, r, "the reference has no price for %s/%s", c.Provider, c.Model)
			require.Empty(t, r.Error, "the reference rejected the usage")
			p, canonical, ok := tab.LookupAt(c.Provider, c.Model, c.At)
			require.True(t, ok)
			require.Equal(t, r.ModelID, canonical)
			b := Compute(c.Provider, c.Compat, p, c.usage())
			require.Equal(t, ToMicros(r.TotalPrice), b.Micros(), "Go %.9f USD, reference %.9f USD", b.TotalUSD, r.TotalPrice)
			require.InDelta(t, r.TotalPrice, b.TotalUSD, 1e-9*max(1, r.TotalPrice))
		})
	}
}

type referenceInput struct {
	ProviderID string           `json:"provider_id"`
	Model      string           `json:"model"`
	Usage      map[string]int64 `json:"usage"`
	Timestamp  time.Time        `json:"timestamp"`
}

type referenceResult struct {
	ModelID    string  `json:"model_id"`
	TotalPrice float64 `json:"total_price"`
	Error      string  `json:"error"`
}

func pricecheckDir(t *testing.T) string {
	dir, err := filepath.Abs(filepath.Join("..", "..", "tools", "pricecheck"))
	require.NoError(t, err)
	return dir
}

// requireReference skips the test unless node and the catalog's npm
// package are installed.
func requireReference(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("cross-check skipped: node is not installed (the reference implementation runs under Node.js)")
	}
	if _, err := os.Stat(filepath.Join(pricecheckDir(t), "node_modules", "@pydantic", "genai-prices", "package.json")); err != nil {
		t.Skip("cross-check skipped: @pydantic/genai-prices is not installed; run `npm ci --prefix tools/pricecheck`")
	}
}

// runReference prices ins with the reference calcPrice (nil where it has
// no price) and checks that it is the snapshot's version.
func runReference(t *testing.T, ins []referenceInput) []*referenceResult {
	t.Helper()
	stdin, err := json.Marshal(ins)
	require.NoError(t, err)
	cmd := exec.Command("node", filepath.Join(pricecheckDir(t), "calc.mjs"))
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	require.NoError(t, err, "calc.mjs: %s", stderr.String())
	var ref struct {
		Version string             `json:"version"`
		Results []*referenceResult `json:"results"`
	}
	require.NoError(t, json.Unmarshal(stdout, &ref))
	require.Equal(t, DefaultCatalog().Version, ref.Version,
		"tools/pricecheck installs a different genai-prices than the embedded snapshot: run `make update-prices` (or `npm ci --prefix tools/pricecheck`)")
	require.Len(t, ref.Results, len(ins))
	return ref.Results
}

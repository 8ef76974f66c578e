package cost

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCatalog builds a catalog document with the given models of provider
// "openai".
func testCatalog(t *testing.T, models string) []byte {
	t.Helper()
	doc := fmt.Sprintf(`{"source":"test","package":"@pydantic/genai-prices","version":"0.0.0","license":"MIT",
		"snapshot_date":"2026-12-01","providers":{"openai":{"id":"openai","pricing_urls":[],"models":[%s]}}}`, models)
	require.True(t, json.Valid([]byte(doc)), doc)
	return []byte(doc)
}

func TestParseCatalogRejects(t *testing.T) {
	tests := []struct {
		name, models, want string
	}{
		{name: "unknown price key", want: `price key "requests_kcount" cannot be billed`,
			models: `{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":1,"requests_kcount":2}}`},
		{name: "explicit zero cache rate", want: "explicit zero rate for cache_read_mtok",
			models: `{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":1,"cache_read_mtok":0}}`},
		{name: "negative rate", want: "input must be a finite non-negative",
			models: `{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":-1}}`},
		{name: "time of day constraint", want: `constraint type "time_of_date" is not supported`,
			models: `{"id":"m","match":{"equals":"m"},"prices":[{"prices":{"input_mtok":1}},{"constraint":{"type":"time_of_date","start_date":"2026-01-01"},"prices":{"input_mtok":2}}]}`},
		{name: "bad start date", want: `start_date "soon"`,
			models: `{"id":"m","match":{"equals":"m"},"prices":[{"constraint":{"start_date":"soon","type":"start_date"},"prices":{"input_mtok":2}}]}`},
		{name: "tiers out of order", want: "tier starts must be positive and ascending",
			models: `{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":{"base":1,"tiers":[{"start":200,"price":2},{"start":100,"price":3}]}}}`},
		{name: "regex RE2 cannot run", want: "regex",
			models: `{"id":"m","match":{"regex":"^m(?<=x)"},"prices":{"input_mtok":1}}`},
		{name: "unknown rule", want: `unknown rule "glob"`,
			models: `{"id":"m","match":{"glob":"m*"},"prices":{"input_mtok":1}}`},
		{name: "two rules in one", want: "want exactly one rule",
			models: `{"id":"m","match":{"equals":"m","contains":"m"},"prices":{"input_mtok":1}}`},
		{name: "no prices", want: "no prices",
			models: `{"id":"m","match":{"equals":"m"},"prices":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCatalog(testCatalog(t, tt.models))
			require.Nil(t, c)
			require.ErrorContains(t, err, tt.want)
		})
	}
	t.Run("unknown field", func(t *testing.T) {
		_, err := ParseCatalog([]byte(`{"version":"1","package":"p","snapshot_date":"2026-01-01","extra":1}`))
		require.ErrorContains(t, err, "unknown field")
	})
	t.Run("every problem at once", func(t *testing.T) {
		_, err := ParseCatalog(testCatalog(t, `{"id":"a","match":{"equals":"a"},"prices":{"input_mtok":-1}},
			{"id":"b","match":{"equals":"b"},"prices":{"bogus_mtok":1}}`))
		require.ErrorContains(t, err, "(a)")
		require.ErrorContains(t, err, "(b)")
	})
}

func TestCatalogMatchRules(t *testing.T) {
	c, err := ParseCatalog(testCatalog(t, `
		{"id":"mini","match":{"or":[{"equals":"m-mini"},{"starts_with":"m-mini-"}]},"prices":{"input_mtok":1,"output_mtok":1}},
		{"id":"m","match":{"or":[{"equals":"m"},{"regex":"^m-\\d{4}-\\d{2}-\\d{2}$"}]},"prices":{"input_mtok":2,"output_mtok":2}},
		{"id":"both","match":{"and":[{"contains":"x"},{"ends_with":"-y"}]},"prices":{"input_mtok":3}},
		{"id":"not-tts","match":{"and":[{"starts_with":"voice"},{"regex":"^(?!.*-[tT][tT][sS](?:$|-))"}]},"prices":{"input_mtok":4}},
		{"id":"tts","match":{"starts_with":"voice"},"prices":{"input_mtok":5}}`))
	require.NoError(t, err)
	tests := []struct{ name, model, want string }{
		{name: "equals", model: "m", want: "m"},
		{name: "equals ignores case", model: "M-MINI", want: "mini"},
		{name: "first match wins", model: "m-mini-2026-01-01", want: "mini"},
		{name: "regex", model: "m-2026-01-01", want: "m"},
		{name: "regex is case-sensitive", model: "M-2026-01-01", want: ""},
		{name: "and", model: "axb-Y", want: "both"},
		{name: "and needs both", model: "axb", want: ""},
		{name: "negative lookahead passes", model: "voice-pro", want: "not-tts"},
		{name: "negative lookahead rejects", model: "voice-pro-tts", want: "tts"},
		{name: "negative lookahead mid-name", model: "voice-TTS-2", want: "tts"},
		{name: "unknown", model: "other", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Twice: the second resolution comes from the exact map or the memo.
			for range 2 {
				_, id, ok := c.Lookup("openai", tt.model, time.Time{})
				require.Equal(t, tt.want != "", ok)
				require.Equal(t, tt.want, id)
			}
		})
	}
	_, _, ok := c.Lookup("gemini", "m", time.Time{})
	require.False(t, ok, "unknown provider")
	var nilCatalog *Catalog
	_, _, ok = nilCatalog.Lookup("openai", "m", time.Time{})
	require.False(t, ok)
}

func TestCatalogPriceHistory(t *testing.T) {
	c, err := ParseCatalog(testCatalog(t, `
		{"id":"m","match":{"equals":"m"},"prices":[
			{"prices":{"input_mtok":10,"output_mtok":40}},
			{"constraint":{"start_date":"2025-06-10","type":"start_date"},"prices":{"input_mtok":2,"output_mtok":8}},
			{"constraint":{"start_date":"2099-01-01","type":"start_date"},"prices":{"input_mtok":1,"output_mtok":4}}]},
		{"id":"dated-only","match":{"equals":"d"},"prices":[
			{"constraint":{"start_date":"2026-01-01","type":"start_date"},"prices":{"input_mtok":3,"output_mtok":3}}]}`))
	require.NoError(t, err)
	day := func(s string) time.Time {
		d, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return d
	}
	tests := []struct {
		model string
		at    time.Time
		want  float64
	}{
		{model: "m", at: day("2025-06-09T23:59:59Z"), want: 10},
		{model: "m", at: day("2025-06-10T00:00:00Z"), want: 2},
		{model: "m", at: day("2098-12-31T23:59:59Z"), want: 2},
		{model: "m", at: day("2099-01-01T00:00:00Z"), want: 1},
		{model: "m", at: time.Time{}, want: 2},                 // now
		{model: "d", at: day("2025-01-01T00:00:00Z"), want: 3}, // before every date: the first entry
	}
	for _, tt := range tests {
		p, _, ok := c.Lookup("openai", tt.model, tt.at)
		require.True(t, ok)
		require.Equal(t, tt.want, p.Input, "%s at %v", tt.model, tt.at)
	}
}

func TestCatalogTiersPerKey(t *testing.T) {
	// Input tiers at 100 and 200, output at 150 only, cache read flat: the
	// Price carries every threshold with every key's rate above it.
	c, err := ParseCatalog(testCatalog(t, `{"id":"m","match":{"equals":"m"},"prices":{
		"input_mtok":{"base":1,"tiers":[{"start":100,"price":2},{"start":200,"price":3}]},
		"output_mtok":{"base":10,"tiers":[{"start":150,"price":20}]},
		"cache_read_mtok":0.5}}`))
	require.NoError(t, err)
	p, _, ok := c.Lookup("openai", "m", time.Time{})
	require.True(t, ok)
	require.Equal(t, Price{Input: 1, Output: 10, CacheRead: 0.5, Tiers: []Tier{
		{AbovePromptTokens: 100, Input: 2, Output: 10, CacheRead: 0.5},
		{AbovePromptTokens: 150, Input: 2, Output: 20, CacheRead: 0.5},
		{AbovePromptTokens: 200, Input: 3, Output: 20, CacheRead: 0.5},
	}}, p)
}

func TestCatalogMemoIsBounded(t *testing.T) {
	c, err := ParseCatalog(testCatalog(t, `{"id":"m","match":{"starts_with":"m-"},"prices":{"input_mtok":1}}`))
	require.NoError(t, err)
	for i := range memoLimit + 50 {
		_, _, ok := c.Lookup("openai", fmt.Sprintf("m-%d", i), time.Time{})
		require.True(t, ok)
		_, _, ok = c.Lookup("openai", fmt.Sprintf("x-%d", i), time.Time{})
		require.False(t, ok)
	}
	require.Len(t, *c.providers["openai"].memo.Load(), memoLimit)
	_, id, ok := c.Lookup("openai", "m-past-the-bound", time.Time{})
	require.True(t, ok, "names past the bound are still matched")
	require.Equal(t, "m", id)
}

func TestEmbeddedCatalog(t *testing.T) {
	c := DefaultCatalog()
	require.Equal(t, "@pydantic/genai-prices", c.Package)
	require.NotEmpty(t, c.Version)
	require.Contains(t, c.License, "MIT")
	require.Equal(t, []string{"anthropic", "gemini", "openai"}, c.Providers())
	_, err := time.Parse(time.DateOnly, c.SnapshotDate)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(CatalogLicense, "The MIT License"))
}

func TestLookupLayers(t *testing.T) {
	tab, err := NewTableWithDefaults(map[string]map[string]Model{
		"openai":    {"gpt-4o": {Pricing: Price{Input: 3, Output: 12}}},
		"anthropic": {"claude-next": {Pricing: Price{Input: 1, Output: 2}}},
	})
	require.NoError(t, err)
	tests := []struct {
		name, provider, model, want string
		wantInput                   float64
	}{
		{name: "configured wins over the catalog, with its snapshot rule", provider: "openai", model: "gpt-4o-2024-11-20", want: "gpt-4o", wantInput: 3},
		{name: "catalog", provider: "openai", model: "gpt-5.2-2025-12-11", want: "gpt-5.2", wantInput: 1.75},
		{name: "catalog through the snapshot rule", provider: "anthropic", model: "claude-sonnet-4-6-20260217", want: "claude-sonnet-4-6", wantInput: 3},
		{name: "models prefix removed before the catalog", provider: "gemini", model: "models/gemini-3-flash-preview", want: "gemini-3-flash-preview", wantInput: 0.5},
		{name: "supplement after the catalog", provider: "openai", model: "ft:gpt-4.1-mini-2025-04-14:acme::x", want: "ft:gpt-4.1-mini", wantInput: 0.8},
		{name: "configured new model", provider: "anthropic", model: "claude-next", want: "claude-next", wantInput: 1},
		{name: "fine-tune never priced as its base", provider: "openai", model: "ft:o4-mini-2025-04-16:acme::x"},
		{name: "unknown", provider: "openai", model: "gpt-99"},
		{name: "unknown provider", provider: "bedrock", model: "gpt-4o"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, c, ok := tab.Lookup(tt.provider, tt.model)
			require.Equal(t, tt.want != "", ok, "resolved to %q", c)
			require.Equal(t, tt.want, c)
			require.Equal(t, tt.wantInput, p.Input)
		})
	}
}

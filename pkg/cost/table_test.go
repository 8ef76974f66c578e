package cost

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// handwrittenTable is the hand-written price list that shipped before the
// catalog (testdata/handwritten_2025.yml), as an explicit-only table: the
// fixture for the explicit resolution rules, and the baseline of the
// benchmark.
func handwrittenTable(tb testing.TB) *Table {
	tb.Helper()
	data, err := os.ReadFile("testdata/handwritten_2025.yml")
	require.NoError(tb, err)
	m, err := ParseYAML(data)
	require.NoError(tb, err)
	tab, err := NewTable(m)
	require.NoError(tb, err)
	return tab
}

func TestLookupExplicitRules(t *testing.T) {
	tests := []struct {
		name     string
		provider string
		model    string
		want     string // canonical; "" = unknown
	}{
		// OpenAI.
		{name: "exact", provider: "openai", model: "gpt-4o", want: "gpt-4o"},
		{name: "openai dated", provider: "openai", model: "gpt-4o-2024-08-06", want: "gpt-4o"},
		{name: "openai dated 11-20", provider: "openai", model: "gpt-4o-2024-11-20", want: "gpt-4o"},
		{name: "exact snapshot entry wins", provider: "openai", model: "gpt-4o-2024-05-13", want: "gpt-4o-2024-05-13"},
		{name: "mini exact", provider: "openai", model: "gpt-4o-mini", want: "gpt-4o-mini"},
		{name: "mini dated is not gpt-4o", provider: "openai", model: "gpt-4o-mini-2024-07-18", want: "gpt-4o-mini"},
		{name: "gpt-4.1-mini dated", provider: "openai", model: "gpt-4.1-mini-2025-04-14", want: "gpt-4.1-mini"},
		{name: "gpt-5 dated", provider: "openai", model: "gpt-5-2025-08-07", want: "gpt-5"},
		{name: "gpt-5-nano dated is not gpt-5", provider: "openai", model: "gpt-5-nano-2025-08-07", want: "gpt-5-nano"},
		{name: "alias", provider: "openai", model: "gpt-5-chat-latest", want: "gpt-5"},
		{name: "o3 dated", provider: "openai", model: "o3-2025-04-16", want: "o3"},
		{name: "o3-mini dated is not o3", provider: "openai", model: "o3-mini-2025-01-31", want: "o3-mini"},
		{name: "embedding", provider: "openai", model: "text-embedding-3-small", want: "text-embedding-3-small"},
		{name: "fine-tune dated base", provider: "openai", model: "ft:gpt-4o-mini-2024-07-18:acme:support:9xYz", want: "ft:gpt-4o-mini"},
		{name: "fine-tune gpt-4o", provider: "openai", model: "ft:gpt-4o-2024-08-06:acme::abc", want: "ft:gpt-4o"},
		{name: "fine-tune undated base", provider: "openai", model: "ft:gpt-4.1-nano:acme::abc", want: "ft:gpt-4.1-nano"},
		{name: "fine-tune family exact", provider: "openai", model: "ft:gpt-4.1", want: "ft:gpt-4.1"},
		{name: "fine-tune of unpriced base", provider: "openai", model: "ft:gpt-3.5-turbo-0125:acme::abc", want: ""},
		{name: "fine-tune never priced as base", provider: "openai", model: "ft:o4-mini-2025-04-16:acme::abc", want: ""},
		{name: "empty fine-tune", provider: "openai", model: "ft:", want: ""},
		{name: "fine-tune empty base", provider: "openai", model: "ft::acme", want: ""},
		{name: "near miss prefix", provider: "openai", model: "gpt-4o-min", want: ""},
		{name: "family not model", provider: "openai", model: "gpt-4", want: ""},
		{name: "audio variant unknown", provider: "openai", model: "gpt-4o-audio-preview", want: ""},
		{name: "search variant dated unknown", provider: "openai", model: "gpt-4o-search-preview-2025-03-11", want: ""},
		{name: "legacy MMDD not a snapshot", provider: "openai", model: "gpt-3.5-turbo-0613", want: ""},
		{name: "bad month", provider: "openai", model: "gpt-4o-2024-13-01", want: ""},
		{name: "bad day", provider: "openai", model: "gpt-4o-2024-08-32", want: ""},
		{name: "two suffixes", provider: "openai", model: "gpt-4o-2024-08-06-2024-08-06", want: ""},
		{name: "missing dash", provider: "openai", model: "gpt-4o2024-08-06", want: ""},
		{name: "case sensitive", provider: "openai", model: "GPT-4o", want: ""},
		{name: "trailing dash", provider: "openai", model: "gpt-4o-", want: ""},
		{name: "empty", provider: "openai", model: "", want: ""},
		{name: "other provider's model", provider: "anthropic", model: "gpt-4o", want: ""},
		{name: "unknown provider", provider: "bedrock", model: "gpt-4o", want: ""},

		// Anthropic.
		{name: "anthropic dated", provider: "anthropic", model: "claude-sonnet-4-20250514", want: "claude-sonnet-4"},
		{name: "sonnet 4.5 dated is not sonnet 4", provider: "anthropic", model: "claude-sonnet-4-5-20250929", want: "claude-sonnet-4-5"},
		{name: "vertex at-date", provider: "anthropic", model: "claude-sonnet-4@20250514", want: "claude-sonnet-4"},
		{name: "vertex opus 4.1", provider: "anthropic", model: "claude-opus-4-1@20250805", want: "claude-opus-4-1"},
		{name: "opus 4.1 dated", provider: "anthropic", model: "claude-opus-4-1-20250805", want: "claude-opus-4-1"},
		{name: "opus 4 dated", provider: "anthropic", model: "claude-opus-4-20250514", want: "claude-opus-4"},
		{name: "opus 4 alias", provider: "anthropic", model: "claude-opus-4-0", want: "claude-opus-4"},
		{name: "haiku 4.5 dated", provider: "anthropic", model: "claude-haiku-4-5-20251001", want: "claude-haiku-4-5"},
		{name: "3.7 dated", provider: "anthropic", model: "claude-3-7-sonnet-20250219", want: "claude-3-7-sonnet"},
		{name: "latest alias", provider: "anthropic", model: "claude-3-5-haiku-latest", want: "claude-3-5-haiku"},
		{name: "retired sonnet 3.5 unknown", provider: "anthropic", model: "claude-3-5-sonnet-20241022", want: ""},
		{name: "bad yyyymmdd", provider: "anthropic", model: "claude-sonnet-4-20251301", want: ""},
		{name: "bedrock id unknown", provider: "anthropic", model: "anthropic.claude-sonnet-4-20250514-v1:0", want: ""},

		// Gemini.
		{name: "gemini exact", provider: "gemini", model: "gemini-2.5-pro", want: "gemini-2.5-pro"},
		{name: "models prefix", provider: "gemini", model: "models/gemini-2.5-flash", want: "gemini-2.5-flash"},
		{name: "one models prefix only", provider: "gemini", model: "models/models/gemini-2.5-flash", want: ""},
		{name: "stable version", provider: "gemini", model: "gemini-2.0-flash-001", want: "gemini-2.0-flash"},
		{name: "lite version is not flash", provider: "gemini", model: "gemini-2.0-flash-lite-001", want: "gemini-2.0-flash-lite"},
		{name: "prefix and version", provider: "gemini", model: "models/gemini-2.0-flash-001", want: "gemini-2.0-flash"},
		{name: "flash-lite is not flash", provider: "gemini", model: "gemini-2.5-flash-lite", want: "gemini-2.5-flash-lite"},
		{name: "preview alias", provider: "gemini", model: "gemini-2.5-pro-preview-06-05", want: "gemini-2.5-pro"},
		{name: "preview not aliased", provider: "gemini", model: "gemini-2.5-flash-preview-05-20", want: ""},
		{name: "two digit version", provider: "gemini", model: "gemini-2.0-flash-01", want: ""},
		{name: "exp unknown", provider: "gemini", model: "gemini-2.0-flash-exp", want: ""},
	}
	tab := handwrittenTable(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, canonical, ok := tab.Lookup(tt.provider, tt.model)
			if tt.want == "" {
				require.False(t, ok, "resolved to %q", canonical)
				require.Empty(t, canonical)
				require.Equal(t, Price{}, p)
				return
			}
			require.True(t, ok)
			require.Equal(t, tt.want, canonical)
			want, _, _ := tab.Lookup(tt.provider, tt.want)
			require.Equal(t, want, p)
		})
	}
}

func TestLookupPrices(t *testing.T) {
	tab := handwrittenTable(t)
	p, _, ok := tab.Lookup("openai", "gpt-4o-2024-05-13")
	require.True(t, ok)
	require.Equal(t, Price{Input: 5, Output: 15}, p)
	p, _, ok = tab.Lookup("openai", "gpt-4o-2024-08-06")
	require.True(t, ok)
	require.Equal(t, Price{Input: 2.5, Output: 10, CacheRead: 1.25}, p)
	p, _, ok = tab.Lookup("openai", "gpt-4o-mini")
	require.True(t, ok)
	require.Equal(t, 0.15, p.Input)
}

func TestNilTable(t *testing.T) {
	var tab *Table
	_, _, ok := tab.Lookup("openai", "gpt-4o")
	require.False(t, ok)
}

func TestSnapshotBase(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "iso date", in: "m-2024-08-06", want: "m"},
		{name: "compact date", in: "m-20250514", want: "m"},
		{name: "vertex date", in: "m@20250514", want: "m"},
		{name: "three digits", in: "m-001", want: "m"},
		{name: "month 12 day 31", in: "m-1999-12-31", want: "m"},
		{name: "month 00", in: "m-2024-00-10", want: ""},
		{name: "day 00", in: "m-20240100", want: ""},
		{name: "four digits", in: "m-0613", want: ""},
		{name: "two digits", in: "m-01", want: ""},
		{name: "five digits", in: "m-00001", want: ""},
		{name: "letters", in: "m-2024-aa-10", want: ""},
		{name: "nothing left iso", in: "-2024-08-06", want: ""},
		{name: "nothing left compact", in: "@20250514", want: ""},
		{name: "nothing left version", in: "-001", want: ""},
		{name: "preview date", in: "m-preview-05-20", want: ""},
		{name: "at iso", in: "m@2024-08-06", want: ""},
		{name: "empty", in: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := snapshotBase(tt.in)
			require.Equal(t, tt.want != "", ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestNewTableCustom(t *testing.T) {
	tab, err := NewTable(map[string]map[string]Model{
		"openai": {
			"base":                      {Pricing: Price{Input: 1, Output: 2}, Aliases: []string{"base-latest"}},
			"base-2024-01-01":           {Pricing: Price{Input: 9, Output: 9}},
			"ft:base":                   {Pricing: Price{Input: 3, Output: 4}},
			"ft:base-2024-02-02:org::x": {Pricing: Price{Input: 7, Output: 7}},
		},
		"empty": {},
	})
	require.NoError(t, err)
	tests := []struct {
		model, want string
	}{
		{model: "base", want: "base"},
		{model: "base-latest", want: "base"},
		{model: "base-2024-03-03", want: "base"},
		{model: "base-2024-01-01", want: "base-2024-01-01"},
		{model: "base-latest-2024-03-03", want: "base"}, // alias + snapshot
		{model: "ft:base-2024-03-03:org::y", want: "ft:base"},
		{model: "ft:base-2024-02-02:org::x", want: "ft:base-2024-02-02:org::x"},
		{model: "ft:base:org::y", want: "ft:base"},
		{model: "ft:other:org::y", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			_, got, ok := tab.Lookup("openai", tt.model)
			require.Equal(t, tt.want != "", ok)
			require.Equal(t, tt.want, got)
		})
	}
	_, _, ok := tab.Lookup("empty", "base")
	require.False(t, ok)
}

func TestNewTableValidation(t *testing.T) {
	tests := []struct {
		name   string
		models map[string]map[string]Model
		want   []string
	}{
		{
			name: "negative and non-finite prices",
			models: map[string]map[string]Model{"p": {"m": {Pricing: Price{
				Input: -1, Output: math.NaN(), CacheRead: math.Inf(1), CacheWrite: -0.5,
			}}}},
			want: []string{
				"providers.p.models.m.pricing: input must be a finite non-negative",
				"providers.p.models.m.pricing: output must be",
				"providers.p.models.m.pricing: cache_read must be",
				"providers.p.models.m.pricing: cache_write must be",
			},
		},
		{
			name: "tiers",
			models: map[string]map[string]Model{"p": {"m": {Pricing: Price{Input: 1, Output: 1, Tiers: []Tier{
				{AbovePromptTokens: 0, Input: 1, Output: 1},
				{AbovePromptTokens: 300, Input: 1, Output: 1},
				{AbovePromptTokens: 200, Input: -2, Output: 1},
				{AbovePromptTokens: 200, Input: 1, Output: 1, CacheRead: -1},
			}}}}},
			want: []string{
				"tiers[0]: above_prompt_tokens must be positive, got 0",
				"tiers[2]: above_prompt_tokens 200 must be greater than the previous tier's 300",
				"tiers[2]: input must be",
				"tiers[3]: above_prompt_tokens 200 must be greater than the previous tier's 200",
				"tiers[3]: cache_read must be",
			},
		},
		{
			name: "aliases",
			models: map[string]map[string]Model{"p": {
				"a": {Aliases: []string{"x", "x", "b", ""}},
				"b": {Aliases: []string{"x", "models/y", "has space"}},
			}},
			want: []string{
				`providers.p.models.a: alias "x" is listed twice`,
				`providers.p.models.a: alias "b" is already a model name`,
				`providers.p.models.a: alias "": name must not be empty`,
				`providers.p.models.b: alias "x" is already an alias of a`,
				`providers.p.models.b: alias "models/y": name must not start with "models/"`,
				`providers.p.models.b: alias "has space": name must not contain spaces`,
			},
		},
		{
			name: "names",
			models: map[string]map[string]Model{
				"":    {"m": {}},
				" p":  {"m": {}},
				"ok":  {"": {}, "models/gemini": {}, "ft:": {}, "ft::x": {}, "bad name": {}},
				"ok2": {"m": {Pricing: Price{Input: -1}}},
			},
			want: []string{
				`provider "": name must be non-empty`,
				`provider " p": name must be non-empty`,
				"providers.ok.models.: name must not be empty",
				`providers.ok.models.models/gemini: name must not start with "models/"`,
				`providers.ok.models.ft:: a fine-tune entry must be`,
				`providers.ok.models.ft::x: a fine-tune entry must be`,
				"providers.ok.models.bad name: name must not contain spaces",
				"providers.ok2.models.m.pricing: input must be",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := NewTable(tt.models)
			require.Error(t, err)
			require.Nil(t, tab)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			require.Len(t, strings.Split(err.Error(), "\n"), len(tt.want), err.Error())
		})
	}
}

func TestParseYAML(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    map[string]map[string]Model
		wantErr string
	}{
		{
			name: "full",
			doc: `
providers:
  openai:
    models:
      m:
        pricing:
          input: 1.5
          output: 6
          cache_read: 0.5
          cache_write: 2
          tiers:
            - {above_prompt_tokens: 1000, input: 3, output: 9}
        aliases: [m-latest]
  gemini: {}
`,
			want: map[string]map[string]Model{
				"openai": {"m": {
					Pricing: Price{Input: 1.5, Output: 6, CacheRead: 0.5, CacheWrite: 2, Tiers: []Tier{{AbovePromptTokens: 1000, Input: 3, Output: 9}}},
					Aliases: []string{"m-latest"},
				}},
				"gemini": {},
			},
		},
		{name: "empty", doc: "", want: map[string]map[string]Model{}},
		{name: "unknown key", doc: "providers: {openai: {models: {m: {pricing: {inptu: 1}}}}}", wantErr: `unknown field "inptu"`},
		{name: "wrong type", doc: "providers: {openai: {models: {m: {pricing: {input: cheap}}}}}", wantErr: "parse pricing"},
		{name: "not yaml", doc: "providers: [", wantErr: "parse pricing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseYAML([]byte(tt.doc))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestMerge(t *testing.T) {
	base := map[string]map[string]Model{
		"openai": {
			"gpt-4o": {Pricing: Price{Input: 2.5, Output: 10}, Aliases: []string{"gpt-4o-latest", "four-o"}},
			"gpt-5":  {Pricing: Price{Input: 1.25, Output: 10}, Aliases: []string{"gpt-5-chat-latest"}},
		},
		"gemini": {"gemini-2.5-pro": {Pricing: Price{Input: 1.25, Output: 10}}},
	}
	over := map[string]map[string]Model{
		"openai": {
			"gpt-5":  {Pricing: Price{Input: 1, Output: 8}},
			"custom": {Pricing: Price{Input: 0.5, Output: 1}, Aliases: []string{"four-o"}},
		},
		"azure": {"gpt-4o": {Pricing: Price{Input: 2.75, Output: 11}}},
	}
	got := Merge(base, over)
	require.Equal(t, map[string]map[string]Model{
		"openai": {
			"gpt-4o": {Pricing: Price{Input: 2.5, Output: 10}, Aliases: []string{"gpt-4o-latest"}},
			"gpt-5":  {Pricing: Price{Input: 1, Output: 8}},
			"custom": {Pricing: Price{Input: 0.5, Output: 1}, Aliases: []string{"four-o"}},
		},
		"gemini": {"gemini-2.5-pro": {Pricing: Price{Input: 1.25, Output: 10}}},
		"azure":  {"gpt-4o": {Pricing: Price{Input: 2.75, Output: 11}}},
	}, got)
	// Inputs untouched.
	require.Equal(t, []string{"gpt-4o-latest", "four-o"}, base["openai"]["gpt-4o"].Aliases)
	require.Equal(t, []string{"gpt-5-chat-latest"}, base["openai"]["gpt-5"].Aliases)

	tab, err := NewTable(got)
	require.NoError(t, err)
	_, c, ok := tab.Lookup("openai", "four-o")
	require.True(t, ok)
	require.Equal(t, "custom", c)
	_, _, ok = tab.Lookup("openai", "gpt-5-chat-latest")
	require.False(t, ok, "replaced model keeps only the configured aliases")
}

func TestNewTableWithDefaults(t *testing.T) {
	tab, err := NewTableWithDefaults(map[string]map[string]Model{
		"openai": {
			"gpt-4o":          {Pricing: Price{Input: 3, Output: 12}},
			"my-model":        {Pricing: Price{Input: 1, Output: 1}, Aliases: []string{"gpt-5-chat-latest"}},
			"ft:o4-mini":      {Pricing: Price{Input: 4, Output: 16, CacheRead: 1}},
			"gpt-4o-realtime": {Pricing: Price{Input: 5, Output: 20}},
		},
	})
	require.NoError(t, err)
	p, c, ok := tab.Lookup("openai", "gpt-4o-2024-11-20")
	require.True(t, ok)
	require.Equal(t, "gpt-4o", c)
	require.Equal(t, Price{Input: 3, Output: 12}, p)
	_, c, _ = tab.Lookup("openai", "gpt-5-chat-latest")
	require.Equal(t, "my-model", c)
	_, c, _ = tab.Lookup("openai", "ft:o4-mini-2025-04-16:acme::x")
	require.Equal(t, "ft:o4-mini", c)
	_, c, _ = tab.Lookup("openai", "gpt-5")
	require.Equal(t, "gpt-5", c, "defaults kept")

	_, err = NewTableWithDefaults(map[string]map[string]Model{"openai": {"gpt-4o": {Pricing: Price{Input: -1}}}})
	require.ErrorContains(t, err, "providers.openai.models.gpt-4o.pricing: input must be")
}

func TestDefaultTable(t *testing.T) {
	models := DefaultModels()
	_, err := NewTable(models)
	require.NoError(t, err)
	require.Same(t, DefaultTable(), DefaultTable())

	// Every model of the hand-written table that preceded the catalog is
	// still priced, at a price the catalog or a supplement gives.
	// Fine-tune entries are families; real ids name a snapshot.
	fineTunes := map[string]string{
		"ft:gpt-4o": "ft:gpt-4o-2024-08-06:acme::x", "ft:gpt-4o-mini": "ft:gpt-4o-mini-2024-07-18:acme::x",
		"ft:gpt-4.1": "ft:gpt-4.1-2025-04-14:acme::x", "ft:gpt-4.1-mini": "ft:gpt-4.1-mini-2025-04-14:acme::x",
		"ft:gpt-4.1-nano": "ft:gpt-4.1-nano-2025-04-14:acme::x",
	}
	old := handwrittenTable(t)
	for prov, pt := range old.providers {
		for name := range pt.keys {
			if id, ok := fineTunes[name]; ok {
				name = id
			}
			_, c, ok := DefaultTable().Lookup(prov, name)
			require.True(t, ok, "%s/%s", prov, name)
			require.NotEmpty(t, c)
		}
	}
	// Supplements are only for models the catalog lacks.
	for prov, ms := range models {
		for name := range ms {
			_, _, ok := DefaultCatalog().Lookup(prov, name, time.Time{})
			require.False(t, ok, "%s/%s is in the catalog now: remove the supplement", prov, name)
		}
	}
}

func TestDefaultModelsIsACopy(t *testing.T) {
	m := DefaultModels()
	m["openai"]["ft:gpt-4.1"] = Model{Pricing: Price{Input: 99}}
	require.NotEqual(t, 99.0, DefaultModels()["openai"]["ft:gpt-4.1"].Pricing.Input)
	p, _, _ := DefaultTable().Lookup("openai", "ft:gpt-4.1")
	require.Equal(t, 3.0, p.Input)
}

func TestServiceTiersYAML(t *testing.T) {
	m, err := ParseYAML([]byte(`
providers:
  openai:
    models:
      gpt-5:
        pricing:
          input: 1.25
          cache_read: 0.125
          output: 10
          service_tiers:
            priority: {input: 2.5, cache_read: 0.25, output: 20}
`))
	require.NoError(t, err)
	tab, err := NewTableWithDefaults(m)
	require.NoError(t, err)
	p, c, ok := tab.Lookup("openai", "gpt-5-2025-08-07")
	require.True(t, ok)
	require.Equal(t, "gpt-5", c)
	require.Equal(t, Price{Input: 2.5, CacheRead: 0.25, Output: 20}, p.ServiceTiers["priority"])

	_, err = NewTable(map[string]map[string]Model{"openai": {"m": {Pricing: Price{Input: 1, ServiceTiers: map[string]Price{
		"priority": {Input: -1, ServiceTiers: map[string]Price{"x": {}}},
	}}}}})
	require.ErrorContains(t, err, "service_tiers.priority: service tiers cannot nest")
	require.ErrorContains(t, err, "service_tiers.priority: input must be")
}

func TestSupplementsNameTheirSource(t *testing.T) {
	require.Contains(t, string(defaultPricing), "https://platform.openai.com/docs/pricing")
}

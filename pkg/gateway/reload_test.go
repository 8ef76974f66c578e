package gateway

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

func pricedRules(t *testing.T, input string) config.Config {
	t.Helper()
	cfg, err := config.Parse(nil, []byte(`
providers:
  openai:
    models:
      gpt-reload-test: {pricing: {input: `+input+`, output: 0}}
`))
	require.NoError(t, err)
	return cfg
}

// TestReloadSwapsPricesOrKeepsThem: a reload puts new prices in force; a
// catalog file that no longer parses makes the reload fail whole and
// keeps the running prices, shown on /health.
func TestReloadSwapsPricesOrKeepsThem(t *testing.T) {
	embedded, err := os.ReadFile("../cost/catalog/genai-prices.json")
	require.NoError(t, err)
	catalog := filepath.Join(t.TempDir(), "prices.json")
	require.NoError(t, os.WriteFile(catalog, embedded, 0o600))

	g, err := New(t.Context(), pricedRules(t, "1"), Options{Logger: quiet(), PriceCatalog: catalog})
	require.NoError(t, err)
	defer g.Close()
	usd := func(model string) float64 {
		t.Helper()
		v, ok := g.reload.pricer.Estimate("openai", model, 1_000_000, 0)
		require.True(t, ok, "%s is priced", model)
		return v
	}
	require.InDelta(t, 1, usd("gpt-reload-test"), 1e-9)
	catalogPrice := usd("gpt-4o-mini") // from the catalog file

	res, err := g.Reload(pricedRules(t, "3"))
	require.NoError(t, err)
	require.EqualValues(t, 2, res.Version)
	require.InDelta(t, 3, usd("gpt-reload-test"), 1e-9, "the reloaded price is in force")
	require.InDelta(t, catalogPrice, usd("gpt-4o-mini"), 1e-9)

	require.NoError(t, os.WriteFile(catalog, embedded[:len(embedded)/2], 0o600))
	_, err = g.Reload(pricedRules(t, "5"))
	require.Error(t, err)
	require.InDelta(t, 3, usd("gpt-reload-test"), 1e-9, "a failed reload changes nothing")
	require.InDelta(t, catalogPrice, usd("gpt-4o-mini"), 1e-9)
	status := healthOf(t, g)["config_reload"].(map[string]any)
	require.Equal(t, "error", status["last_result"])
	require.EqualValues(t, 2, status["version"])
	require.Contains(t, status["last_error"], "price catalog")
}

package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func healthOf(t *testing.T, g *Gateway) map[string]any {
	t.Helper()
	rec := httptest.NewRecorder()
	g.Admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	require.Equal(t, 200, rec.Code)
	var h map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &h))
	return h
}

func TestDefaultsHaveNoGuards(t *testing.T) {
	g, err := New(t.Context(), config.Defaults(), Options{Logger: quiet()})
	require.NoError(t, err)
	defer g.Close()
	require.Nil(t, g.Breaker)
	require.IsType(t, ratelimit.Nop{}, g.Limiter)
	h := healthOf(t, g)
	require.Equal(t, map[string]any{"enabled": false}, h["rate_limiting"])
	require.Equal(t, map[string]any{"enabled": false}, h["circuit_breaker"])
}

func TestGuardsOnMemoryAndRedis(t *testing.T) {
	rdb := redistest.Start(t)
	tests := []struct {
		name    string
		backend string
	}{
		{"memory", "memory"},
		{"redis", "redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Defaults()
			cfg.Features.RateLimiting.Enabled = true
			cfg.Features.RateLimiting.Backend = tt.backend
			cfg.Features.RateLimiting.Redis.Address = rdb.Addr
			cfg.Features.CircuitBreaker.Enabled = true
			cfg.Features.CircuitBreaker.Backend = tt.backend
			cfg.Features.CircuitBreaker.Redis.Address = rdb.Addr
			require.NoError(t, cfg.Validate())
			g, err := New(t.Context(), cfg, Options{Logger: quiet(), Getenv: func(string) string { return "" }})
			require.NoError(t, err)
			h := healthOf(t, g)
			rl := h["rate_limiting"].(map[string]any)
			require.Equal(t, tt.backend, rl["backend"])
			require.Equal(t, true, rl["healthy"])
			cb := h["circuit_breaker"].(map[string]any)
			require.Equal(t, tt.backend, cb["backend"])
			require.Equal(t, false, cb["redis_fallback"])
			p := h["providers"].(map[string]any)["openai"].(map[string]any)
			require.Equal(t, "closed", p["circuit_state"])
			require.NoError(t, g.Close())
			require.NoError(t, g.Close(), "Close is idempotent")
		})
	}
}

// trip opens provider:model's circuit with the breaker's threshold of
// degraded responses at now.
func trip(t *testing.T, g *Gateway, provider, model string, now time.Time) {
	t.Helper()
	for range g.Breaker.Config().FailureThreshold {
		adm, err := g.Breaker.Allow(t.Context(), provider, model, now)
		require.NoError(t, err)
		require.True(t, adm.Allowed)
		_, err = g.Breaker.Report(t.Context(), adm, breaker.Outcome{Class: breaker.Degraded, Terminal: true}, now)
		require.NoError(t, err)
	}
}

func TestHealthFailoverChains(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cfg := config.Defaults()
	cfg.Features.CircuitBreaker.Enabled = true
	cfg.Features.CircuitBreaker.Backend = "memory"
	cfg.Features.Failover = failover.Config{Enabled: true, Chains: map[string][]string{
		"openai:gpt-4o": {"openai:gpt-4o-mini", "openai:gpt-4.1"},
		"openai:o*":     {"openai:gpt-4o-mini"},
	}}
	require.NoError(t, cfg.Validate())
	g, err := New(t.Context(), cfg, Options{Logger: quiet(), Getenv: func(string) string { return "" }, Now: func() time.Time { return now }})
	require.NoError(t, err)
	defer g.Close()
	chain := func(key string) map[string]any {
		t.Helper()
		fo := healthOf(t, g)["failover"].(map[string]any)
		require.Equal(t, true, fo["enabled"])
		require.Equal(t, true, fo["circuit_breaker"])
		for _, c := range fo["chains"].([]any) {
			if c := c.(map[string]any); c["chain"] == key {
				return c
			}
		}
		t.Fatalf("no chain %s", key)
		return nil
	}

	c := chain("openai:gpt-4o")
	require.Equal(t, "openai:gpt-4o", c["serving"], "every circuit closed: the requested target")
	require.Equal(t, "openai:gpt-4o-mini", c["on_circuit_open"])
	trip(t, g, "openai", "gpt-4o", now)
	trip(t, g, "openai", "gpt-4o-mini", now)
	c = chain("openai:gpt-4o")
	require.Equal(t, "openai:gpt-4.1", c["serving"], "the first target whose circuit admits")
	targets := c["targets"].([]any)
	require.Len(t, targets, 3)
	first := targets[0].(map[string]any)
	require.Equal(t, "openai:gpt-4o", first["target"])
	require.Equal(t, true, first["requested"])
	require.Equal(t, "open", first["circuit"])
	require.Equal(t, false, first["admits"])
	require.Equal(t, now.Add(time.Duration(g.Breaker.Config().CooldownSeconds)*time.Second).Unix(), int64(first["cooldown_until"].(float64)))
	pattern := chain("openai:o*")
	_, has := pattern["serving"]
	require.False(t, has, "a pattern key has no single requested circuit")
	require.Equal(t, "", pattern["on_circuit_open"], "its only target is open: the degraded 503")

	// Reading /health never takes the probe slot: after the cooldown, many
	// reads later, the first call is still the half-open probe.
	now = now.Add(time.Duration(g.Breaker.Config().CooldownSeconds) * time.Second)
	for range 3 {
		c = chain("openai:gpt-4o")
		require.Equal(t, "openai:gpt-4o", c["serving"], "half-open with a free probe slot admits")
		require.Equal(t, "half_open", c["targets"].([]any)[0].(map[string]any)["circuit"])
	}
	adm, err := g.Breaker.Allow(t.Context(), "openai", "gpt-4o", now)
	require.NoError(t, err)
	require.True(t, adm.Probe)
	c = chain("openai:gpt-4o")
	require.Equal(t, "openai:gpt-4o-mini", c["serving"], "the probe is in flight: the next target that admits")
}

func TestHealthFailoverDisabled(t *testing.T) {
	g, err := New(t.Context(), config.Defaults(), Options{Logger: quiet()})
	require.NoError(t, err)
	defer g.Close()
	require.Equal(t, map[string]any{"enabled": false}, healthOf(t, g)["failover"])
}

package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
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

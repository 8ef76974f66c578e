package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

func TestEndpoints(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "admin_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	h := New(Options{Providers: providers.Default(), Ready: ready.Load, Gatherer: reg, Version: "v9",
		Now: func() time.Time { return time.Unix(1_800_000_000, 0) }})

	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	tests := []struct {
		name       string
		path       string
		ready      bool
		wantStatus int
		check      func(t *testing.T, rec *httptest.ResponseRecorder)
	}{
		{"health lists providers", "/health", true, 200, func(t *testing.T, rec *httptest.ResponseRecorder) {
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			var body Health
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			require.Equal(t, Health{Status: "healthy", Timestamp: 1_800_000_000, Version: "v9", Providers: map[string]ProviderHealth{
				"anthropic": {Provider: "anthropic", Status: "healthy", BaseURL: "https://api.anthropic.com", StreamingSupport: true, BodyParsing: true},
				"gemini":    {Provider: "gemini", Status: "healthy", BaseURL: "https://generativelanguage.googleapis.com", StreamingSupport: true, BodyParsing: true},
				"openai":    {Provider: "openai", Status: "healthy", BaseURL: "https://api.openai.com", StreamingSupport: true, BodyParsing: true},
			}}, body)
		}},
		{"health while draining stays 200", "/health", false, 200, func(t *testing.T, rec *httptest.ResponseRecorder) {
			require.Contains(t, rec.Body.String(), `"status":"shutting_down"`)
		}},
		{"ready", "/ready", true, 200, nil},
		{"not ready while draining", "/ready", false, 503, nil},
		{"metrics", "/metrics", true, 200, func(t *testing.T, rec *httptest.ResponseRecorder) {
			require.Contains(t, rec.Body.String(), "admin_test_total 1")
		}},
		{"unknown path", "/nope", true, 404, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			rec := get(tt.path)
			require.Equal(t, tt.wantStatus, rec.Code)
			if tt.check != nil {
				tt.check(t, rec)
			}
		})
	}
}

func TestHealthListsUnpricedModels(t *testing.T) {
	type unpriced struct {
		Provider string `json:"provider"`
		Model    string `json:"model"`
	}
	list := []unpriced{{Provider: "openai", Model: "gpt-7"}}
	health := func(o Options) map[string]json.RawMessage {
		rec := httptest.NewRecorder()
		New(o).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
		require.Equal(t, 200, rec.Code)
		var body map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		return body
	}
	ready := func() bool { return true }

	body := health(Options{Ready: ready, UnpricedModels: func(context.Context) any { return list }})
	var got []unpriced
	require.NoError(t, json.Unmarshal(body["unpriced_models"], &got))
	require.Equal(t, list, got)

	body = health(Options{Ready: ready, UnpricedModels: func(context.Context) any { return []unpriced{} }})
	require.JSONEq(t, `[]`, string(body["unpriced_models"]), "an empty list is reported, not omitted")

	body = health(Options{Ready: ready})
	require.NotContains(t, body, "unpriced_models")
}

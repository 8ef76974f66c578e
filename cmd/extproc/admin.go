package main

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// providerHealth is one provider's entry in GET /health.
type providerHealth struct {
	Provider         string `json:"provider"`
	Status           string `json:"status"`
	BaseURL          string `json:"baseURL"`
	StreamingSupport bool   `json:"streaming_support"`
	BodyParsing      bool   `json:"body_parsing"`
}

type healthBody struct {
	Status    string                    `json:"status"`
	Timestamp int64                     `json:"timestamp"`
	Version   string                    `json:"version"`
	Providers map[string]providerHealth `json:"providers"`
}

func newAdmin(a *app, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		body := healthBody{Status: "healthy", Timestamp: time.Now().Unix(), Version: version,
			Providers: map[string]providerHealth{}}
		if !a.ready.Load() {
			body.Status = "shutting_down"
		}
		names := make([]string, 0)
		for name := range a.processor.Providers() {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			p := a.processor.Providers()[name]
			body.Providers[name] = providerHealth{Provider: name, Status: "healthy", BaseURL: p.UpstreamURL(),
				StreamingSupport: true, BodyParsing: true}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// Package admin serves the operator endpoints of the ext_proc server:
// GET /health (provider status and the models seen without a price, as
// JSON), GET /ready (readiness for load balancers and Kubernetes), GET
// /metrics (Prometheus) and, with a [Console], the web console at / and
// its JSON API under /api/v1/.
package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// Options configures the admin handler.
type Options struct {
	// Providers are the enabled providers, reported by /health.
	Providers providers.Registry
	// Ready reports whether the server accepts new streams. Required.
	Ready func() bool
	// Gatherer serves /metrics. Default: no metrics endpoint.
	Gatherer prometheus.Gatherer
	// Version is reported by /health.
	Version string
	// Now is the clock for /health's timestamp. Default time.Now.
	Now func() time.Time
	// Sections add top-level keys to /health (for example "rate_limiting");
	// each func is called per request and must be cheap.
	Sections map[string]func(ctx context.Context) any
	// ProviderExtra adds fields to each provider's /health entry (for
	// example circuit_state); nil adds none.
	ProviderExtra func(ctx context.Context, provider string) map[string]any
	// UnpricedModels lists the models seen without a price in the last
	// day (telemetry.UnpricedModels.Health); /health reports it as
	// "unpriced_models". Nil omits the key. Called per request; must be
	// cheap.
	UnpricedModels func(ctx context.Context) any
	// Handlers are extra GET endpoints by path (for example "/usage");
	// they require Token when it is set.
	Handlers map[string]http.Handler
	// Mounts are extra handlers by ServeMux pattern (any method, for
	// example "/admin/" for the gateway-key API). Each does its own
	// authorization: Token is not applied to them.
	Mounts map[string]http.Handler
	// Console, when set, serves the web console at / and its JSON API under
	// /api/v1/ (see console.go).
	Console *Console
	// Token, when not empty, is required by the console, the API and
	// Handlers (see requireToken); /health, /ready and /metrics stay open
	// for probes and scrapers.
	Token string
}

// ProviderHealth is one provider's entry in GET /health.
type ProviderHealth struct {
	Provider         string `json:"provider"`
	Status           string `json:"status"`
	BaseURL          string `json:"baseURL"`
	StreamingSupport bool   `json:"streaming_support"`
	BodyParsing      bool   `json:"body_parsing"`
}

// Health is the body of GET /health. Status is "healthy", or
// "shutting_down" once the server stopped accepting streams. The
// Options.Sections appear beside these fields.
type Health struct {
	Status    string                    `json:"status"`
	Timestamp int64                     `json:"timestamp"`
	Version   string                    `json:"version"`
	Providers map[string]ProviderHealth `json:"providers"`
}

// New returns the admin handler. It is safe for concurrent use.
func New(o Options) http.Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	names := make([]string, 0, len(o.Providers))
	for name := range o.Providers {
		names = append(names, name)
	}
	sort.Strings(names)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		body := Health{Status: "healthy", Timestamp: o.Now().Unix(), Version: o.Version,
			Providers: make(map[string]ProviderHealth, len(names))}
		if !o.Ready() {
			body.Status = "shutting_down"
		}
		for _, name := range names {
			body.Providers[name] = ProviderHealth{Provider: name, Status: "healthy",
				BaseURL: o.Providers[name].UpstreamURL(), StreamingSupport: true, BodyParsing: true}
		}
		provs := make(map[string]any, len(body.Providers))
		for name, ph := range body.Providers {
			entry := map[string]any{"provider": ph.Provider, "status": ph.Status, "baseURL": ph.BaseURL,
				"streaming_support": ph.StreamingSupport, "body_parsing": ph.BodyParsing}
			if o.ProviderExtra != nil {
				for k, v := range o.ProviderExtra(r.Context(), name) {
					entry[k] = v
				}
			}
			provs[name] = entry
		}
		out := map[string]any{"status": body.Status, "timestamp": body.Timestamp, "version": body.Version,
			"providers": provs}
		for name, f := range o.Sections {
			out[name] = f(r.Context())
		}
		if o.UnpricedModels != nil {
			out["unpriced_models"] = o.UnpricedModels(r.Context())
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if !o.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	for path, h := range o.Handlers {
		mux.Handle("GET "+path, requireToken(o.Token, h))
	}
	for pattern, h := range o.Mounts {
		mux.Handle(pattern, h)
	}
	if o.Console != nil {
		o.Console.register(mux, o.Token, o.Now)
	}
	return mux
}

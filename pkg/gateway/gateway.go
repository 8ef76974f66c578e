// Package gateway assembles the ext_proc server from the rules: providers,
// the guards the configuration enables (rate limits), telemetry, and the
// admin handler. cmd/extproc serves what it builds; the end-to-end tests and
// benchmarks build the very same thing in-process.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/backendhealth"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/admin"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/correction"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/costlog"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/gatewayauth"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/telemetry"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/tracing"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/usage"
)

// Options configures New. Zero values are documented per field.
type Options struct {
	// Logger receives the request log and state transitions. Default
	// slog.Default().
	Logger *slog.Logger
	// Registry receives the metrics and serves /metrics. Default a new
	// registry.
	Registry *prometheus.Registry
	// Now is the clock for every time-based decision. Default time.Now.
	Now func() time.Time
	// Ready reports readiness for /ready and /health. Default always ready.
	Ready func() bool
	// Version is reported by /health.
	Version string
	// Observers receive each Record besides the metrics and the log line.
	Observers []processor.Observer
	// Providers overrides the provider registry (tests). Default
	// providers.Default().
	Providers providers.Registry
	// PriceCatalog is a price catalog file (the format of
	// pkg/cost/catalog/genai-prices.json) used instead of the embedded
	// snapshot, re-read by Reload. Default "" (the embedded snapshot).
	PriceCatalog string
	// Getenv reads the environment (LLM_PROXY_ALLOW_TEST_MODE,
	// LLM_PROXY_ADMIN_TOKEN). Default os.Getenv.
	Getenv func(string) string
}

// Gateway is an assembled server. Close releases its backends.
type Gateway struct {
	// Processor serves envoy.service.ext_proc.v3.ExternalProcessor.
	Processor *processor.Server
	// Admin serves /health, /ready and /metrics.
	Admin http.Handler
	// Limiter is the rate limiter in use (ratelimit.Nop when disabled).
	Limiter ratelimit.Limiter
	// Breaker is the circuit breaker; nil when disabled.
	Breaker *breaker.Breaker

	closers  []io.Closer
	log      *slog.Logger
	records  *costlog.Writer
	circuits *circuitTracker // the console's view of the breaker; nil when disabled
	reload   *reloader
}

// New builds the gateway for cfg. It fails only on configuration problems;
// an unreachable Redis is not an error (the backend starts unhealthy and
// recovers on its own).
func New(ctx context.Context, cfg config.Config, o Options) (_ *Gateway, err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Ready == nil {
		o.Ready = func() bool { return true }
	}
	if o.Providers == nil {
		o.Providers = providers.Default()
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	g := &Gateway{Limiter: ratelimit.Nop{}, log: o.Logger,
		reload: &reloader{cfg: cfg, now: o.Now, catalog: o.PriceCatalog, pricer: &livePricer{}, status: reloadStatus{Version: 1, LoadedAt: o.Now()}}}
	defer func() {
		if err != nil {
			_ = g.Close() // release whatever was built before the failure
		}
	}()
	sections := map[string]func(context.Context) any{}
	var guards []processor.Guard
	console := &admin.Console{Series: admin.NewSeries(admin.SeriesOptions{})}
	hr := &headroom{series: console.Series}
	console.Headroom = hr

	var attempts processor.AttemptClassifier
	var providerExtra func(context.Context, string) map[string]any
	cb := cfg.Features.CircuitBreaker
	if cb.Enabled {
		g.circuits = newCircuitTracker(o.Now)
		b, err := g.newBreaker(ctx, cb, o)
		if err != nil {
			return nil, err
		}
		g.circuits.b, g.circuits.cooldown = b, time.Duration(b.Config().CooldownSeconds)*time.Second
		console.Circuits = g.circuits
		testMode := cb.TestModeEnabled && o.Getenv("LLM_PROXY_ALLOW_TEST_MODE") == "1"
		if cb.TestModeEnabled && !testMode {
			o.Logger.Warn("circuit_breaker.test_mode_enabled is set but LLM_PROXY_ALLOW_TEST_MODE=1 is not; test mode stays off")
		}
		// The breaker goes first: an open circuit answers before any rate
		// limit budget is spent.
		guards = append(guards, processor.NewCircuit(b, testMode, o.Now))
		attempts = processor.AttemptClass
		sections["circuit_breaker"] = func(context.Context) any {
			st := b.Status()
			return map[string]any{"enabled": true, "mode": cb.Mode, "backend": st.Backend,
				"redis_fallback": st.Fallback, "last_error": st.LastError, "degraded_signal": b.Signal(),
				"retry_contribution_mode": cb.RetryContributionMode}
		}
		providerExtra = func(ctx context.Context, provider string) map[string]any {
			ps, err := b.Stats(ctx, provider, o.Now())
			if err != nil {
				return map[string]any{"circuit_error": "stats_unavailable"}
			}
			out := map[string]any{"circuit_state": ps.State.String(), "circuit_failures": ps.Failures}
			if !ps.CooldownUntil.IsZero() {
				out["circuit_cooldown_until"] = ps.CooldownUntil.Unix()
			}
			return out
		}
	} else {
		sections["circuit_breaker"] = func(context.Context) any { return map[string]any{"enabled": false} }
	}

	qm := newQuotaMetrics(o.Registry)
	rl := cfg.Features.RateLimiting.Config
	if rl.Enabled {
		m := telemetry.NewRateLimitMetrics(o.Registry)
		logTransition := qm.observe("rate_limiting", failModeOf(rl.FailMode), g.backendLog("rate limiter backend", rl.FailMode))
		lim, err := ratelimit.New(ctx, rl, quota.Hooks{OnStateChange: func(st quota.Status) {
			m.SetBackendHealthy(st.Healthy)
			logTransition(st)
		}})
		if err != nil {
			return nil, fmt.Errorf("rate limiter: %w", err)
		}
		g.Limiter = lim
		g.reload.limiter, _ = lim.(*ratelimit.Quota)
		hr.limiter = g.reload.limiter
		g.closers = append(g.closers, lim)
		guards = append(guards, processor.NewRateLimit(processor.RateLimitOptions{
			Limiter: lim, Config: rl, Providers: o.Providers, Hooks: m.Hooks(), Now: o.Now,
			Corrector: correction.New(correction.Config{}),
		}))
		sections["rate_limiting"] = storeSection(lim.Status, rl.FailMode)
	} else {
		sections["rate_limiting"] = func(context.Context) any { return map[string]any{"enabled": false} }
	}

	table, err := g.reload.priceTable(cfg)
	if err != nil {
		return nil, fmt.Errorf("pricing: %w", err)
	}
	pricer := g.reload.pricer
	pricer.t.Store(table)

	sections["config_reload"] = func(context.Context) any { return g.reload.health() }
	handlers := map[string]http.Handler{}
	if o.Getenv("LLM_PROXY_PPROF") == "1" {
		maps.Copy(handlers, pprofHandlers())
	}
	ct := cfg.Features.CostTracking
	if ct.Budgets.Enabled {
		lim, err := budget.New(ctx, ct.Budgets, quota.Hooks{OnStateChange: qm.observe("budgets", failModeOf(ct.Budgets.FailMode),
			g.backendLog("budget store", ct.Budgets.FailMode))})
		if err != nil {
			return nil, fmt.Errorf("budgets: %w", err)
		}
		g.closers = append(g.closers, lim)
		g.reload.budgets, _ = lim.(*budget.Quota)
		hr.budgets = g.reload.budgets
		guards = append(guards, processor.NewBudget(lim, ct.Budgets, pricer, o.Providers, processor.BudgetHooks{}, o.Now))
		sections["budgets"] = storeSection(lim.Status, ct.Budgets.FailMode)
	}
	var extra []processor.Observer
	if ct.Enabled {
		errs, dropped, written := newCostMetrics(o.Registry)
		w, err := costlog.New(ctx, ct.Config, costlog.Hooks{
			OnDrop:    func(string) { dropped.Inc() },
			OnWritten: func(n int) { written.Add(float64(n)) },
			OnWriteError: func(err error) {
				o.Logger.Warn("cost record sink write failed", "error", err)
			},
		})
		if err != nil {
			return nil, fmt.Errorf("cost records: %w", err)
		}
		g.records = w
		g.closers = append(g.closers, closerFunc(func() error {
			// Flush everything queued; the records are acknowledged writes.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			return w.Close(ctx)
		}))
		led, err := usage.New(ctx, ct.Budgets.Ledger(), usage.Hooks{OnStateChange: g.backendLog("usage ledger", "open")})
		if err != nil {
			return nil, fmt.Errorf("usage ledger: %w", err)
		}
		g.closers = append(g.closers, led)
		handlers["/usage"] = usageHandler(led, o.Now)
		hr.ledger = led
		extra = append(extra, &costRecorder{w: w, ledger: led, now: o.Now, errors: errs})
		sections["cost_tracking"] = func(context.Context) any {
			st := w.Stats()
			return map[string]any{"enabled": true, "queued": st.Queued, "written": st.Written,
				"dropped": st.Dropped, "failed": st.Failed}
		}
	}

	// OTLP traces when the standard OTEL_* environment names an endpoint.
	tracer, stopTracing, err := tracing.Start(ctx, tracing.Options{ServiceVersion: o.Version, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	g.closers = append(g.closers, closerFunc(func() error { return flushWithin(stopTracing, 5*time.Second) }))
	if tracer != nil {
		extra = append(extra, tracer)
	}
	gk, err := g.newGatewayKeys(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	sections["gateway_keys"] = gk.section
	var admission *gatewayauth.Admission
	mounts := map[string]http.Handler{}
	if gk != nil {
		admission = gk.admission
		hr.keys = gk.auth
		if gk.api != nil {
			mounts["/admin/"] = gk.api
		}
	}
	chains, err := cfg.FailoverChains()
	if err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	for _, c := range chains.Chains() {
		console.FailoverChains = append(console.FailoverChains, c.Key)
	}
	if chains.Enabled() && !cb.Enabled {
		// Admission failover follows the breaker's open circuits.
		o.Logger.Warn("features.failover is enabled but features.circuit_breaker is not: no call fails over")
	}
	sections["failover"] = failoverSection(chains, g.Breaker, func(provider string) bool {
		_, ok := g.Processor.Providers()[provider]
		return ok
	}, o.Now)
	reqLog := telemetry.NewAsyncLogger(o.Logger)
	unpriced := telemetry.NewUnpricedModels(o.Now)
	observers := telemetry.Observers{telemetry.NewMetrics(o.Registry), reqLog, seriesObserver{console.Series, o.Now}, unpriced}
	observers = append(observers, extra...)
	observers = append(observers, o.Observers...)
	g.Processor = processor.New(processor.Options{
		Config:    cfg,
		Providers: o.Providers,
		Guards:    guards,
		Observer:  observers,
		Logger:    o.Logger,
		Now:       o.Now,
		Attempts:  attempts,
		Pricer:    pricer,

		GatewayKeys: admission,
		Failover:    chains,
	})
	// Closed last, after the cost writer: shutdown logs still get written.
	g.closers = append(g.closers, reqLog)
	if g.circuits != nil {
		for name := range g.Processor.Providers() {
			g.circuits.providers = append(g.circuits.providers, name)
		}
		sort.Strings(g.circuits.providers)
	}
	g.Admin = admin.New(admin.Options{Providers: g.Processor.Providers(), Ready: o.Ready, Gatherer: o.Registry,
		Version: o.Version, Now: o.Now, Sections: sections, ProviderExtra: providerExtra, Handlers: handlers, Mounts: mounts,
		UnpricedModels: unpriced.Health, Console: console, Token: o.Getenv("LLM_PROXY_ADMIN_TOKEN")})
	return g, nil
}

// storeSection reports a shared store (rate limits, budgets) on /health.
func storeSection(status func(context.Context) backendhealth.Status, failMode string) func(context.Context) any {
	return func(ctx context.Context) any {
		st := status(ctx)
		out := map[string]any{"enabled": true, "backend": st.Backend, "healthy": st.Healthy,
			"last_error": st.LastError, "fail_mode": failModeOf(failMode),
			"pending_adjustments": st.PendingAdjustments, "dropped_adjustments": st.DroppedAdjustments}
		if st.Fallback != "" {
			out["fallback"] = st.Fallback // counting in process while the store is down
		}
		return out
	}
}

// failModeOf names an unset fail mode by its default.
func failModeOf(m string) string {
	if m == "" {
		return "open"
	}
	return m
}

// backendLog logs a store's health transitions, once each.
func (g *Gateway) backendLog(what, failMode string) func(backendhealth.Status) {
	return func(st backendhealth.Status) {
		if st.Healthy {
			g.log.Info(what+" recovered", "backend", st.Backend)
			return
		}
		g.log.Warn(what+" unavailable", "backend", st.Backend, "error", st.LastError, "fail_mode", failMode)
	}
}

// newBreaker builds the circuit breaker with metrics and state-change logs.
func (g *Gateway) newBreaker(ctx context.Context, cb breaker.Config, o Options) (*breaker.Breaker, error) {
	m := telemetry.NewBreakerMetrics(o.Registry)
	log := o.Logger
	hooks := m.Hooks(cb.Mode, breaker.Hooks{
		OnStateChange: func(k breaker.Key, from, to breaker.State, reason breaker.Reason) {
			log.Warn("circuit state change", "provider", k.Provider, "model", k.Model, "from", from.String(),
				"to", to.String(), "reason", reason.String())
			if g.circuits != nil {
				g.circuits.changed(k, to, reason)
			}
		},
		OnBackendChange: func(s breaker.Status) {
			if s.Fallback {
				log.Warn("circuit breaker store unavailable; using memory", "backend", s.Backend, "error", s.LastError)
				return
			}
			log.Info("circuit breaker store recovered", "backend", s.Backend)
		},
	})
	b, err := breaker.New(ctx, cb, breaker.Options{Hooks: hooks})
	if err != nil {
		return nil, fmt.Errorf("circuit breaker: %w", err)
	}
	g.Breaker = b
	g.closers = append(g.closers, b)
	return b, nil
}

// flushWithin runs a flushing shutdown bounded by d.
func flushWithin(shutdown func(context.Context) error, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return shutdown(ctx)
}

// Reopen reopens the cost-record files (after logrotate moved them); a
// no-op without cost tracking.
func (g *Gateway) Reopen() error {
	if g.records == nil {
		return nil
	}
	return g.records.Reopen()
}

// Close releases the backends (Redis connections). It is safe to call twice.
func (g *Gateway) Close() error {
	var errs []error
	for _, c := range g.closers {
		errs = append(errs, c.Close())
	}
	g.closers = nil
	return errors.Join(errs...)
}

package gateway

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/cost"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
)

// ReloadResult is the outcome of a successful [Gateway.Reload].
type ReloadResult struct {
	// Version counts the rule sets put in force: 1 at start, +1 per reload.
	Version int64
	// RestartRequired lists the settings that changed in the files but keep
	// their running value until a restart (see [config.RestartRequired]).
	RestartRequired []string
}

// reloadStatus is the last reload's outcome, reported on /health.
type reloadStatus struct {
	Version         int64     `json:"version"`
	LoadedAt        time.Time `json:"loaded_at"`
	LastAttempt     time.Time `json:"last_attempt,omitzero"`
	LastResult      string    `json:"last_result,omitempty"` // "ok" or "error"
	LastError       string    `json:"last_error,omitempty"`
	RestartRequired []string  `json:"restart_required,omitempty"`
}

// reloader is the live-reloadable part of a Gateway.
type reloader struct {
	mu      sync.Mutex // serialises reloads and guards cfg and status
	cfg     config.Config
	status  reloadStatus
	limiter *ratelimit.Quota // nil when rate limiting is off
	budgets *budget.Quota    // nil when budgets are off
	pricer  *livePricer
	catalog string // price catalog file; "" for the embedded snapshot
	now     func() time.Time
}

func (r *reloader) health() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Reload puts the live-reloadable rules of next (see [config.Reloadable])
// in force atomically: each later admission uses the new limits, each
// later priced call the new prices; calls admitted before keep their
// reservations and settle against them. next must come from [config.Load]
// (validated). If any part of next is refused, nothing changes and the
// error says why. Settings that need a restart are left as they run and
// listed in the result. Safe for concurrent use.
func (g *Gateway) Reload(next config.Config) (ReloadResult, error) {
	r := g.reload
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.status.LastAttempt = now
	res, err := r.apply(next)
	if err != nil {
		r.status.LastResult, r.status.LastError = "error", err.Error()
		return ReloadResult{}, err
	}
	r.status.Version++
	r.status.LoadedAt, r.status.LastResult, r.status.LastError = now, "ok", ""
	r.status.RestartRequired = res.RestartRequired
	res.Version = r.status.Version
	return res, nil
}

// ReloadFailed records, for /health, a reload that failed before reaching
// [Gateway.Reload] (the files did not load); the running rules stay.
func (g *Gateway) ReloadFailed(err error) {
	r := g.reload
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.LastAttempt = r.now()
	r.status.LastResult, r.status.LastError = "error", err.Error()
}

// apply validates every part before swapping any. Callers hold r.mu.
func (r *reloader) apply(next config.Config) (ReloadResult, error) {
	merged := config.Reloadable(r.cfg, next)
	table, err := r.priceTable(merged)
	if err != nil {
		return ReloadResult{}, fmt.Errorf("pricing: %w", err)
	}
	rl := merged.Features.RateLimiting.Config
	if err := rl.Validate(); err != nil {
		return ReloadResult{}, err
	}
	bu := merged.Features.CostTracking.Budgets
	if err := bu.Validate(); err != nil {
		return ReloadResult{}, err
	}
	// Validated above, so neither SetRules can fail now.
	if r.limiter != nil {
		if err := r.limiter.SetRules(rl); err != nil {
			return ReloadResult{}, err
		}
	}
	if r.budgets != nil {
		if err := r.budgets.SetRules(bu); err != nil {
			return ReloadResult{}, err
		}
	}
	r.pricer.t.Store(table)
	res := ReloadResult{RestartRequired: config.RestartRequired(r.cfg, next)}
	r.cfg = merged
	return res, nil
}

// priceTable builds the price table of cfg's configured models over the
// catalog file (read now, validated whole) or the embedded snapshot.
func (r *reloader) priceTable(cfg config.Config) (*cost.Table, error) {
	if r.catalog == "" {
		return cfg.PriceTable()
	}
	l, err := cost.NewLive(cfg.ConfiguredPrices(), r.catalog, nil)
	if err != nil {
		return nil, fmt.Errorf("price catalog %s: %w", r.catalog, err)
	}
	return l.Table(), nil
}

// livePricer prices with the current table; Reload swaps it. A call is
// priced by the table in force when it is priced (at its end), for the
// model and time of its start.
type livePricer struct{ t atomic.Pointer[cost.Table] }

var _ processor.Pricer = (*livePricer)(nil)

func (p *livePricer) table() processor.TablePricer { return processor.TablePricer{Table: p.t.Load()} }

// Price implements [processor.Pricer].
func (p *livePricer) Price(provider string, info providers.RequestInfo, u providers.Usage, at time.Time) processor.Cost {
	return p.table().Price(provider, info, u, at)
}

// Estimate implements [processor.Estimator].
func (p *livePricer) Estimate(provider, model string, input, output int64) (float64, bool) {
	return p.table().Estimate(provider, model, input, output)
}

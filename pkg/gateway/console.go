package gateway

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/admin"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/usage"
)

// seriesObserver counts every finished call in the console's series.
type seriesObserver struct {
	series *admin.Series
	now    func() time.Time
}

var _ processor.Observer = seriesObserver{}

// Observe implements [processor.Observer].
func (o seriesObserver) Observe(r *processor.Record) {
	model := r.Info.Model
	if model == "" {
		model = r.Usage.Model
	}
	o.series.Add(admin.Sample{Time: o.now(), Provider: r.Provider, Model: model, User: r.Identity.User,
		KeyID: r.Identity.KeyID, Class: outcomeClass(r), CostNanos: budget.Nanos(r.Cost.TotalUSD),
		InputTokens: r.Usage.InputTokens, OutputTokens: r.Usage.OutputTokens, Duration: r.Duration})
}

// outcomeClass sorts a call into one of admin's outcome classes: the guard
// that answered it, else how it ended, else the status's class.
func outcomeClass(r *processor.Record) string {
	switch details := cmp.Or(r.RefusedBy, r.ReplacedBy); details {
	case processor.RateLimitDetails:
		return admin.ClassRateLimited
	case processor.BudgetDetails:
		return admin.ClassBudget
	case processor.CircuitOpenDetails, processor.CircuitDegradedDetails:
		return admin.ClassCircuitOpen
	}
	if r.Outcome == processor.OutcomeAborted {
		return admin.ClassAborted
	}
	switch {
	case r.Status == 429:
		return admin.ClassVendorLimited
	case r.Status >= 500 && r.Status <= 599:
		return admin.ClassUpstreamError
	case r.Status >= 400:
		return admin.ClassClientError
	case r.Status >= 100:
		return admin.ClassOK
	}
	return admin.ClassOther
}

// maxTrackedCircuits bounds the circuits the console remembers; beyond it
// the closed circuit that changed longest ago is forgotten.
const maxTrackedCircuits = 1000

// circuitTracker is the console's [admin.CircuitSource]: per-provider
// roll-ups from the breaker's store plus the provider:model circuits whose
// changes this instance observed (the breaker's OnStateChange hook).
type circuitTracker struct {
	b         *breaker.Breaker
	providers []string
	cooldown  time.Duration
	now       func() time.Time

	mu    sync.Mutex
	byKey map[breaker.Key]admin.Circuit
}

// newCircuitTracker returns an empty tracker; New sets the breaker, its
// cooldown and the provider names once they are built.
func newCircuitTracker(now func() time.Time) *circuitTracker {
	return &circuitTracker{now: now, byKey: map[breaker.Key]admin.Circuit{}}
}

// changed records a state change; it runs on the request path, so it only
// updates a map.
func (t *circuitTracker) changed(k breaker.Key, to breaker.State, reason breaker.Reason) {
	now := t.now().UTC()
	c := admin.Circuit{Provider: k.Provider, Model: k.Model, State: to.String(), Reason: reason.String(), Since: now}
	if to == breaker.StateOpen {
		until := now.Add(t.cooldown)
		c.CooldownUntil = &until
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byKey[k]; !ok && len(t.byKey) >= maxTrackedCircuits {
		t.evictLocked()
	}
	t.byKey[k] = c
}

func (t *circuitTracker) evictLocked() {
	var oldest breaker.Key
	found := false
	for k, c := range t.byKey {
		if c.State == breaker.StateClosed.String() && (!found || c.Since.Before(t.byKey[oldest].Since)) {
			oldest, found = k, true
		}
	}
	if !found { // every circuit is open or half-open: drop the oldest change
		for k, c := range t.byKey {
			if !found || c.Since.Before(t.byKey[oldest].Since) {
				oldest, found = k, true
			}
		}
	}
	delete(t.byKey, oldest)
}

// Circuits implements [admin.CircuitSource].
func (t *circuitTracker) Circuits(ctx context.Context, now time.Time) (admin.CircuitReport, error) {
	rep := admin.CircuitReport{Enabled: true, CooldownSeconds: int64(t.cooldown / time.Second),
		Providers: []admin.ProviderCircuit{}, Circuits: []admin.Circuit{}}
	for _, p := range t.providers {
		pc := admin.ProviderCircuit{Provider: p, State: "unknown"}
		if st, err := t.b.Stats(ctx, p, now); err == nil {
			pc.State, pc.Failures = st.State.String(), st.Failures
			if !st.CooldownUntil.IsZero() {
				until := st.CooldownUntil.UTC()
				pc.CooldownUntil = &until
			}
		}
		rep.Providers = append(rep.Providers, pc)
	}
	t.mu.Lock()
	for _, c := range t.byKey {
		if c.CooldownUntil != nil {
			c.RemainingSeconds = max(int64(c.CooldownUntil.Sub(now).Round(time.Second)/time.Second), 0)
		}
		rep.Circuits = append(rep.Circuits, c)
	}
	t.mu.Unlock()
	slices.SortFunc(rep.Circuits, func(a, b admin.Circuit) int {
		if c := b.Since.Compare(a.Since); c != 0 {
			return c
		}
		return cmp.Compare(a.Provider+":"+a.Model, b.Provider+":"+b.Model)
	})
	return rep, nil
}

// budgetHeadroom is the console's [admin.HeadroomSource]: the heaviest
// users and keys of today by the usage ledger, with their daily and monthly
// budgets. Used is the ledger's settled spend (calls still in flight are not
// in it).
type budgetHeadroom struct {
	ledger usage.Ledger
	cfg    budget.Config // Enabled: report the budgets
}

// Headroom implements [admin.HeadroomSource].
func (h budgetHeadroom) Headroom(ctx context.Context, top int, now time.Time) (admin.HeadroomReport, error) {
	rep, err := h.ledger.Report(ctx, now)
	if err != nil {
		return admin.HeadroomReport{}, fmt.Errorf("usage ledger: %w", err)
	}
	out := admin.HeadroomReport{Guards: []string{}, Subjects: []admin.SubjectHeadroom{}}
	if h.cfg.Enabled {
		out.Guards = append(out.Guards, "budget")
	}
	for _, d := range []struct {
		kind         string
		today, month usage.Breakdown
		policy       budget.Policy
	}{
		{"user", rep.Today.ByUser, rep.Month.ByUser, h.cfg.PerUser},
		{"key", rep.Today.ByKey, rep.Month.ByKey, h.cfg.PerKey},
	} {
		monthly := make(map[string]int64, len(d.month.Rows))
		for _, r := range d.month.Rows {
			monthly[r.Name] = r.CostNanos
		}
		for i, r := range d.today.Rows {
			if i == top {
				break
			}
			s := admin.SubjectHeadroom{Kind: d.kind, ID: r.Name, SpendTodayUSD: usage.USD(r.CostNanos),
				Limits: []admin.LimitHeadroom{}}
			if h.cfg.Enabled && r.Name != usage.OtherName {
				lim, ok := d.policy.Overrides[r.Name]
				if !ok {
					lim = d.policy.Default
				}
				if lim.DailyUSD > 0 {
					s.Limits = append(s.Limits, admin.NewLimitHeadroom("budget", "usd", "day", lim.DailyUSD, usage.USD(r.CostNanos)))
				}
				if lim.MonthlyUSD > 0 {
					s.Limits = append(s.Limits, admin.NewLimitHeadroom("budget", "usd", "month", lim.MonthlyUSD, usage.USD(monthly[r.Name])))
				}
			}
			out.Subjects = append(out.Subjects, s)
		}
	}
	return out, nil
}

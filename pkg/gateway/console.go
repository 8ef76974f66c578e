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
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
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
	sm := admin.Sample{Time: o.now(), Provider: r.Provider, Model: model, User: r.Identity.User,
		KeyID: r.Identity.KeyID, Class: outcomeClass(r), CostNanos: budget.Nanos(r.Cost.TotalUSD),
		InputTokens: r.Usage.InputTokens, OutputTokens: r.Usage.OutputTokens, Duration: r.Duration}
	if fo := r.Failover; fo != nil {
		sm.FailoverFrom, sm.FailoverReason = fo.Requested.String(), fo.Reason
	}
	o.series.Add(sm)
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

// headroom is the console's [admin.HeadroomSource]: today's heaviest
// users, keys and teams, with what the current windows of the rate limiter
// and of the budgets hold against their limits. The ranking is the usage
// ledger's (today's spend, shared by every instance on Redis) or, without
// cost tracking, this instance's series (users and keys only). The figures
// are the stores' own, calls in flight included, read without charging;
// the limits are those in force (after a reload, the new ones), a gateway
// key's or team's own when it sets them. Safe for concurrent use.
type headroom struct {
	ledger  usage.Ledger        // ranks; nil: series ranks
	series  *admin.Series       // ranks when ledger is nil
	limiter *ratelimit.Quota    // nil when rate limiting is off
	budgets *budget.Quota       // nil when budgets are off
	keys    *keys.Authenticator // gateway keys and teams; nil without
}

// Subject kinds of the headroom report; with ":" they prefix the limiters'
// scopes.
const (
	kindUser = "user"
	kindKey  = "key"
	kindTeam = "team"
)

// subject is one ranked identity.
type subject struct {
	kind, id   string
	spendNanos int64
	requests   int64
}

// scope is the limiters' counter of s.
func (s subject) scope() string { return quota.ScopeName(s.kind+":", s.id) }

// scopeLimits is one scope's limits as a guard reports them.
type scopeLimits struct {
	scope string
	limit admin.LimitHeadroom
}

// Headroom implements [admin.HeadroomSource].
func (h *headroom) Headroom(ctx context.Context, top int, now time.Time) (admin.HeadroomReport, error) {
	subs, rankedBy, err := h.rank(ctx, top, now)
	if err != nil {
		return admin.HeadroomReport{}, err
	}
	out := admin.HeadroomReport{Guards: []string{}, RankedBy: rankedBy, Subjects: make([]admin.SubjectHeadroom, len(subs))}
	rateReqs, budgetReqs := make([]ratelimit.Request, len(subs)), make([]budget.Request, len(subs))
	for i, s := range subs {
		out.Subjects[i] = admin.SubjectHeadroom{Kind: s.kind, ID: s.id, SpendTodayUSD: usage.USD(s.spendNanos),
			RequestsToday: s.requests, Limits: []admin.LimitHeadroom{}}
		rateReqs[i], budgetReqs[i] = h.requests(s)
	}
	// report adds a guard's limits to the subjects they belong to, or the
	// reason its store gave none.
	report := func(guard string, read func() ([]scopeLimits, error)) {
		out.Guards = append(out.Guards, guard)
		ls, err := read()
		if err != nil {
			if out.Errors == nil {
				out.Errors = map[string]string{}
			}
			out.Errors[guard] = err.Error()
			return
		}
		for i, s := range subs {
			for _, l := range ls {
				if l.scope == s.scope() {
					out.Subjects[i].Limits = append(out.Subjects[i].Limits, l.limit)
				}
			}
		}
	}
	if h.limiter != nil {
		report("rate_limit", func() ([]scopeLimits, error) {
			ws, err := h.limiter.Usage(ctx, rateReqs, now)
			var ls []scopeLimits
			for _, w := range ws {
				if w.RequestLimit > 0 {
					ls = append(ls, scopeLimits{w.Scope, admin.NewLimitHeadroom("rate_limit", "requests", string(w.Window),
						float64(w.RequestLimit), float64(w.Requests), w.Reset)})
				}
				if w.TokenLimit > 0 {
					ls = append(ls, scopeLimits{w.Scope, admin.NewLimitHeadroom("rate_limit", "tokens", string(w.Window),
						float64(w.TokenLimit), float64(w.Tokens), w.Reset)})
				}
			}
			return ls, err
		})
	}
	if h.budgets != nil {
		report("budget", func() ([]scopeLimits, error) {
			ws, err := h.budgets.Usage(ctx, budgetReqs, now)
			ls := make([]scopeLimits, len(ws))
			for i, w := range ws {
				ls[i] = scopeLimits{w.Scope, admin.NewLimitHeadroom("budget", "usd", string(w.Window),
					budget.USD(w.LimitNanos), budget.USD(w.SpendNanos), w.Reset)}
			}
			return ls, err
		})
	}
	return out, nil
}

// rank returns up to top users, keys and teams, heaviest first per kind,
// and names the ranking's source. The "(other)" rows are no identity and
// are left out.
func (h *headroom) rank(ctx context.Context, top int, now time.Time) ([]subject, string, error) {
	var out []subject
	if h.ledger == nil {
		for _, kind := range []string{kindUser, kindKey} {
			n := 0
			for _, s := range h.series.Usage(admin.RangeToday, kind, top, now).Series {
				if s.Name != admin.OtherName && n < top {
					out = append(out, subject{kind: kind, id: s.Name, spendNanos: s.Total.CostNanos, requests: s.Total.Requests})
					n++
				}
			}
		}
		return out, "this_instance", nil
	}
	rep, err := h.ledger.Report(ctx, now)
	if err != nil {
		return nil, "", fmt.Errorf("usage ledger: %w", err)
	}
	for _, d := range []struct {
		kind string
		rows []usage.Row
	}{{kindUser, rep.Today.ByUser.Rows}, {kindKey, rep.Today.ByKey.Rows}, {kindTeam, rep.Today.ByTeam.Rows}} {
		n := 0
		for _, r := range d.rows {
			if r.Name != usage.OtherName && n < top {
				out = append(out, subject{kind: d.kind, id: r.Name, spendNanos: r.CostNanos, requests: r.Requests})
				n++
			}
		}
	}
	return out, "usage_ledger", nil
}

// requests returns the rate-limit and the budget request whose plans hold
// s's own windows: a user's, a key's (with a gateway key's own limits) or a
// team's (a gateway-key team's shared limits; none for an unknown team).
func (h *headroom) requests(s subject) (ratelimit.Request, budget.Request) {
	var rr ratelimit.Request
	var br budget.Request
	var id *keys.Identity // carries a gateway key's or team's own limits
	if h.keys != nil {
		switch s.kind {
		case kindKey:
			if k := h.keys.Lookup(s.id); k != nil {
				id = &keys.Identity{Key: k.Key}
			}
		case kindTeam:
			if t := h.keys.Team(s.id); t != nil {
				id = &keys.Identity{Team: t}
			}
		}
	}
	switch s.kind {
	case kindUser:
		rr.User, br.User = s.id, s.id
	case kindKey:
		rr.KeyID, br.KeyID = s.id, s.id
		rr.KeyLimits, _, _ = processor.GatewayKeyLimits(id)
		br.KeyBudget, _, _ = processor.GatewayKeyBudgets(id)
	case kindTeam:
		_, rr.Team, rr.TeamLimits = processor.GatewayKeyLimits(id)
		_, br.Team, br.TeamBudget = processor.GatewayKeyBudgets(id)
	}
	return rr, br
}

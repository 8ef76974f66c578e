package budget

import (
	"context"
	"errors"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// ErrBackendUnavailable is wrapped by every error a [Limiter] returns when
// its backend cannot answer (Redis down, memory table full). The caller
// then admits or refuses the request according to [Config.FailClosed].
var ErrBackendUnavailable = errors.New("budget backend unavailable")

// Request is what the limiter knows about a request at admission.
type Request struct {
	// User is the user id; empty when the request has none.
	User string
	// KeyID identifies the API key. It must already be a hash of the key:
	// the limiter stores it in counters and Redis keys and reports it in
	// [Decision.Scope]. Empty when the request has no key.
	KeyID string
	// KeyBudget is the gateway key's own budget; nil or zero uses the
	// configured per_key budget.
	KeyBudget *Limits
	// Team is the gateway key's team, and TeamBudget the budget every key
	// of the team draws from (scope "team:<id>"); nil or zero for none.
	Team       string
	TeamBudget *Limits
	// EstimatedUSD is the expected cost of the call, in USD: the estimated
	// input plus the expected output at the model's price. It is reserved
	// in every applicable budget until [Limiter.Settle] replaces it with the
	// actual cost. Negative and NaN count as 0.
	EstimatedUSD float64
}

// Decision is the answer to [Limiter.Reserve]. When Allowed, Reservation must
// be settled or cancelled; otherwise the other fields describe the first
// budget that refused the request.
type Decision struct {
	// Degraded is set when the answer came from the in-process fallback of
	// fail mode local, the shared store being unreachable.
	Degraded bool
	// Allowed reports whether the request was admitted and its estimate
	// reserved.
	Allowed bool
	// Reservation records what was reserved. Zero when not Allowed, and
	// without charges when no budget applied.
	Reservation Reservation

	// Scope names the refusing budget: "key:<key id>", "team:<id>" or
	// "user:<id>".
	Scope string
	// Window is the refusing budget's window.
	Window Window
	// LimitNanos is the refusing limit, in nano-dollars per Window.
	LimitNanos int64
	// SpendNanos is what the window held at the refusal: settled spend
	// plus outstanding reservations, in nano-dollars. It can exceed
	// LimitNanos when actual costs came out above their estimates.
	SpendNanos int64
	// EstimateNanos is the refused request's estimate, in nano-dollars.
	EstimateNanos int64
	// Reset is when the refusing window ends and its budget is new again.
	Reset time.Time
}

// Reason is the machine-readable cause of a refusal, for the
// X-Cost-Limit-Reason header: "daily_cost_limit_exceeded" or
// "monthly_cost_limit_exceeded". Empty when Allowed.
func (d Decision) Reason() string {
	switch {
	case d.Allowed:
		return ""
	case d.Window == WindowMonth:
		return "monthly_cost_limit_exceeded"
	default:
		return "daily_cost_limit_exceeded"
	}
}

// Reservation records what [Limiter.Reserve] charged: EstimateNanos in
// each of Charges. It is plain data and can be serialised (JSON) and settled
// by another instance sharing the same backend.
type Reservation struct {
	// ID identifies the reservation; settling or cancelling it twice is
	// harmless because the second call finds the ID gone.
	ID string `json:"id"`
	// EstimateNanos is the amount reserved in every window, in
	// nano-dollars.
	EstimateNanos int64 `json:"estimate_nanos"`
	// Charges are the windows charged. Empty when no budget applied.
	Charges []quota.Charge `json:"charges,omitempty"`
}

// Limiter enforces the daily and monthly USD budgets of [Config]; see
// [Quota] for what it charges and settles.
type Limiter = quota.Limiter[Request, Decision, Reservation, float64]

// New returns the limiter cfg asks for: [Nop] when budgets are disabled,
// else the memory or redis backend. cfg is validated and defaulted first.
func New(ctx context.Context, cfg Config, hooks quota.Hooks) (Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled {
		return Nop{}, nil
	}
	q, err := Open(ctx, cfg, hooks)
	if err != nil {
		return nil, err // not a nil *Quota in a non-nil Limiter
	}
	return q, nil
}

// Open returns the limiter on the store cfg's [quota.Settings] name (see
// [quota.Settings.Open]; call cfg.Validate first). A Redis unreachable at
// start is a state, not an error: calls fail with [ErrBackendUnavailable]
// (or count in process, fail mode local) until it answers.
func Open(ctx context.Context, cfg Config, hooks quota.Hooks) (*Quota, error) {
	p, err := quota.OpenPolicy[Config](ctx, cfg, func(c *Config) *quota.Settings { return &c.Settings }, metrics, hooks,
		ErrBackendUnavailable)
	if err != nil {
		return nil, err
	}
	return &Quota{p}, nil
}

// Quota is the [Limiter] on a [quota.Store]: spend counted in every window
// of [Config.plan]. It is safe for concurrent use.
type Quota struct{ *quota.Policy[Config, *Config] }

var _ Limiter = (*Quota)(nil)

// Reserve implements [Limiter.Reserve]: the request's estimate in every
// window of [Config]'s scopes, checked strictly (see the package doc).
func (q *Quota) Reserve(ctx context.Context, req Request, now time.Time) (Decision, error) {
	cfg := q.Load()
	checks := cfg.plan(make([]quota.Check, 0, 4), req, now)
	if len(checks) == 0 {
		return Decision{Allowed: true}, nil
	}
	charge := Nanos(req.EstimatedUSD)
	r, err := q.Policy.Reserve(ctx, checks, []int64{charge}, now)
	if err != nil {
		return Decision{}, err
	}
	if !r.Allowed {
		return denial(checks, r, charge), nil
	}
	return Decision{Allowed: true, Degraded: r.Degraded, Reservation: Reservation{ID: r.Reservation.ID, EstimateNanos: charge,
		Charges: r.Reservation.Charges}}, nil
}

// WindowUsage is one budget window of one scope with its limit and spend,
// as [Quota.Usage] reports it.
type WindowUsage struct {
	// Scope names the budget like [Decision.Scope] ("key:<key id>", ...).
	Scope string
	// Window is [WindowDay] or [WindowMonth]; Reset is when it ends.
	Window Window
	Reset  time.Time
	// LimitNanos is the limit in force, in nano-dollars per Window.
	LimitNanos int64
	// SpendNanos is settled spend plus outstanding reservations, in
	// nano-dollars; it can exceed LimitNanos (see [Decision.SpendNanos]).
	SpendNanos int64
}

// Usage reports, charging nothing, every budget window that Reserve would
// check at now for any of reqs (each window of each scope once, in plan
// order), with the limit in force and the spend it holds. A scope without
// budget has no window. An error wraps [ErrBackendUnavailable].
func (q *Quota) Usage(ctx context.Context, reqs []Request, now time.Time) ([]WindowUsage, error) {
	return quota.Read(ctx, q.Policy, reqs, q.Load().plan, now, func(c quota.Check, used []int64) WindowUsage {
		return WindowUsage{Scope: c.Scope, Window: c.Window, Reset: c.Window.End(c.Index),
			LimitNanos: c.Limits[0], SpendNanos: used[0]}
	})
}

// Settle implements [Limiter.Settle] with actualUSD, converted by [Nanos].
func (q *Quota) Settle(ctx context.Context, res Reservation, actualUSD float64, now time.Time) error {
	return q.Adjust(ctx, res.ID, res.Charges, []int64{Nanos(actualUSD) - res.EstimateNanos}, now)
}

// Cancel implements [Limiter.Cancel].
func (q *Quota) Cancel(ctx context.Context, res Reservation, now time.Time) error {
	return q.Adjust(ctx, res.ID, res.Charges, []int64{-res.EstimateNanos}, now)
}

// Nop admits everything and charges nothing. Use it when budgets are
// disabled. The zero value is ready to use.
type Nop struct{ quota.Disabled }

var _ Limiter = Nop{}

// Reserve implements [Limiter.Reserve]: it always admits.
func (Nop) Reserve(context.Context, Request, time.Time) (Decision, error) {
	return Decision{Allowed: true}, nil
}

// Settle implements [Limiter.Settle].
func (Nop) Settle(context.Context, Reservation, float64, time.Time) error { return nil }

// Cancel implements [Limiter.Cancel].
func (Nop) Cancel(context.Context, Reservation, time.Time) error { return nil }

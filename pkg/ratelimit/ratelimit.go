package ratelimit

import (
	"context"
	"errors"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// ErrBackendUnavailable is wrapped by every error a [Limiter] returns when
// its backend cannot answer (Redis down, memory table full). The caller then
// admits or refuses the request according to [Config.FailClosed].
var ErrBackendUnavailable = errors.New("rate limit backend unavailable")

// Metric is what a limit counts.
type Metric string

// Metrics.
const (
	MetricRequests Metric = "requests"
	MetricTokens   Metric = "tokens"
)

// Window is the length of a fixed window.
type Window = quota.Window

// Windows, aligned to the UTC clock.
const (
	WindowMinute = quota.Minute
	WindowDay    = quota.Day
)

// Request is what the limiter knows about a request at admission.
type Request struct {
	// Provider is the vendor ("openai", "anthropic", "gemini").
	Provider string
	// Model is the requested model; empty when unknown.
	Model string
	// User is the user id; empty when the request has none.
	User string
	// KeyID identifies the API key. It must already be a hash of the key:
	// the limiter stores it in counters and Redis keys and reports it in
	// [Decision.Scope]. Empty when the request has no key.
	KeyID string
	// KeyLimits are the gateway key's own limits; nil or zero uses the
	// configured per-key limits.
	KeyLimits *Limits
	// Team is the gateway key's team, and TeamLimits the limits every key
	// of the team shares (scope "team:<id>"); nil for none.
	Team       string
	TeamLimits *Limits
	// InputTokens is the estimated input, in tokens.
	InputTokens int64
	// OutputTokens is the request's output cap (max_tokens and the like), in
	// tokens; 0 when it names none. Reserved only with
	// [Config.CountOutputTokens].
	OutputTokens int64
}

// Decision is the answer to [Limiter.Reserve]. When Allowed, Reservation must
// be settled or cancelled; otherwise the Denied fields describe the first
// limit that refused the request.
type Decision struct {
	// Degraded is set when the answer came from the in-process fallback of
	// fail mode local, the shared store being unreachable.
	Degraded bool
	// Allowed reports whether the request was admitted and charged.
	Allowed bool
	// Reservation records what was charged. Zero when not Allowed.
	Reservation Reservation

	// Scope names the refusing counter: "global", "provider:openai",
	// "model:gpt-4o", "key:<key id>", "team:<id>" or "user:<id>".
	Scope string
	// Metric is the refusing metric.
	Metric Metric
	// Window is the refusing window.
	Window Window
	// Limit is the refusing limit (requests or tokens per Window).
	Limit int64
	// Remaining is what is left of Limit in the current window (0 for a
	// request limit; for a token limit it can be positive but smaller than
	// the request's charge).
	Remaining int64
	// Reset is when the refusing window ends.
	Reset time.Time
	// RetryAfter is Reset minus the admission time.
	RetryAfter time.Duration
}

// Reservation records what [Limiter.Reserve] charged: one request and
// Tokens tokens in each of Charges. It is plain data and can be serialised
// (JSON) and settled by another instance sharing the same backend.
type Reservation struct {
	// ID identifies the reservation; settling or cancelling it twice is
	// harmless because the second call finds the ID gone.
	ID string `json:"id"`
	// Tokens is the number of tokens charged in every window.
	Tokens int64 `json:"tokens"`
	// Charges are the windows charged. Empty when no limit applied.
	Charges []quota.Charge `json:"charges,omitempty"`
}

// Limiter admits requests against the request and token limits of
// [Config]; see [Quota] for what it charges and settles.
type Limiter = quota.Limiter[Request, Decision, Reservation, int64]

// New returns the limiter cfg asks for: [Nop] when rate limiting is
// disabled, else the memory or redis backend. cfg is validated and
// defaulted first.
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

// Quota is the [Limiter] on a [quota.Store]: requests and tokens counted in
// every window of [Config.plan]. It is safe for concurrent use.
type Quota struct{ *quota.Policy[Config, *Config] }

var _ Limiter = (*Quota)(nil)

// Reserve implements [Limiter.Reserve]: one request and the request's
// tokens ([Config.CountOutputTokens]) in every window of [Config]'s scopes,
// tokens optimistic (see the package doc).
func (q *Quota) Reserve(ctx context.Context, req Request, now time.Time) (Decision, error) {
	cfg := q.Load()
	checks := cfg.plan(make([]quota.Check, 0, 8), req, now)
	if len(checks) == 0 {
		return Decision{Allowed: true}, nil
	}
	tokens := cfg.charge(req)
	r, err := q.Policy.Reserve(ctx, checks, []int64{1, tokens}, now)
	if err != nil {
		return Decision{}, err
	}
	if !r.Allowed {
		return denial(checks, r, now), nil
	}
	return Decision{Allowed: true, Degraded: r.Degraded, Reservation: Reservation{ID: r.Reservation.ID, Tokens: tokens,
		Charges: r.Reservation.Charges}}, nil
}

// WindowUsage is one window of one scope with its limits and what it holds
// (reserved and settled), as [Quota.Usage] reports it.
type WindowUsage struct {
	// Scope names the counter like [Decision.Scope] ("user:<id>", ...).
	Scope string
	// Window is the window's length; Reset is when it ends.
	Window Window
	Reset  time.Time
	// RequestLimit and TokenLimit are the limits in force (0 unlimited).
	RequestLimit, TokenLimit int64
	// Requests and Tokens are what the window holds.
	Requests, Tokens int64
}

// Usage reports, charging nothing, every window that Reserve would check
// at now for any of reqs (each window of each scope once, in plan order),
// with the limits in force and what the window holds. A scope without
// limits has no window. An error wraps [ErrBackendUnavailable].
func (q *Quota) Usage(ctx context.Context, reqs []Request, now time.Time) ([]WindowUsage, error) {
	return quota.Read(ctx, q.Policy, reqs, q.Load().plan, now, func(c quota.Check, used []int64) WindowUsage {
		return WindowUsage{Scope: c.Scope, Window: c.Window, Reset: c.Window.End(c.Index),
			RequestLimit: c.Limits[0], TokenLimit: c.Limits[1], Requests: used[0], Tokens: used[1]}
	})
}

// Settle implements [Limiter.Settle] with actualTokens from
// [Config.Billable].
func (q *Quota) Settle(ctx context.Context, res Reservation, actualTokens int64, now time.Time) error {
	return q.Adjust(ctx, res.ID, res.Charges, []int64{0, max(actualTokens, 0) - res.Tokens}, now)
}

// Cancel implements [Limiter.Cancel].
func (q *Quota) Cancel(ctx context.Context, res Reservation, now time.Time) error {
	return q.Adjust(ctx, res.ID, res.Charges, []int64{-1, -res.Tokens}, now)
}

// Nop admits everything and charges nothing. Use it when rate limiting is
// disabled. The zero value is ready to use.
type Nop struct{ quota.Disabled }

var _ Limiter = Nop{}

// Reserve implements [Limiter.Reserve]: it always admits.
func (Nop) Reserve(context.Context, Request, time.Time) (Decision, error) {
	return Decision{Allowed: true}, nil
}

// Settle implements [Limiter.Settle].
func (Nop) Settle(context.Context, Reservation, int64, time.Time) error { return nil }

// Cancel implements [Limiter.Cancel].
func (Nop) Cancel(context.Context, Reservation, time.Time) error { return nil }

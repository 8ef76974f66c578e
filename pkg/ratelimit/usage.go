package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

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
	cfg := q.Rules()
	plan := func(dst []quota.Check, r Request) []quota.Check { return cfg.plan(dst, r, now) }
	checks, used, err := quota.Read(ctx, q.Store(), reqs, plan, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBackendUnavailable, err)
	}
	out := make([]WindowUsage, len(checks))
	for i, c := range checks {
		out[i] = WindowUsage{Scope: c.Scope, Window: c.Window, Reset: c.Window.End(c.Index),
			RequestLimit: c.Limits[0], TokenLimit: c.Limits[1], Requests: used[i][0], Tokens: used[i][1]}
	}
	return out, nil
}

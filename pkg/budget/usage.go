package budget

import (
	"context"
	"fmt"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

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
	cfg := q.Rules()
	plan := func(dst []quota.Check, r Request) []quota.Check { return cfg.plan(dst, r, now) }
	checks, used, err := quota.Read(ctx, q.Store(), reqs, plan, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBackendUnavailable, err)
	}
	out := make([]WindowUsage, len(checks))
	for i, c := range checks {
		out[i] = WindowUsage{Scope: c.Scope, Window: c.Window, Reset: c.Window.End(c.Index),
			LimitNanos: c.Limits[0], SpendNanos: used[i][0]}
	}
	return out, nil
}

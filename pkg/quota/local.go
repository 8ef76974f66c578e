package quota

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Fail modes: what a feature does while its shared store is unreachable.
const (
	// FailOpen admits requests unchecked (the store's error reaches the
	// caller, which admits).
	FailOpen = "open"
	// FailClosed refuses them (the caller answers 503).
	FailClosed = "closed"
	// FailLocal counts them in this process at limit / expected instances
	// ([Local]) and returns to the store as soon as it answers again.
	FailLocal = "local"
)

// localPrefix marks the ids of reservations charged by a [Local] fallback,
// so their adjustment goes back to the in-process counters.
const localPrefix = "local:"

// Local is a store that falls back to in-process counters while its
// primary is unreachable: every limit is divided by the number of instances
// expected to share the primary (rounded down, at least 1), so N instances
// together admit about what the shared store would. While the primary is
// unhealthy it is tried once per retry interval; the first answer switches
// back. Reservations taken locally are adjusted locally. Results served by
// the fallback are marked [Result.Degraded]. Local is safe for concurrent
// use.
type Local struct {
	primary   Store
	local     *Memory
	instances int64
}

var _ Store = (*Local)(nil)

// NewLocal wraps primary with an in-process fallback counting metrics, for
// expectedInstances instances (values below 1 count as 1). maxScopes bounds
// the fallback like [MemoryOptions.MaxScopes].
func NewLocal(primary Store, metrics []Metric, expectedInstances, maxScopes int) *Local {
	return &Local{primary: primary, local: NewMemory(metrics, MemoryOptions{MaxScopes: maxScopes}),
		instances: int64(max(expectedInstances, 1))}
}

// Reserve implements [Store.Reserve].
func (l *Local) Reserve(ctx context.Context, checks []Check, amounts []int64, now time.Time) (Result, error) {
	r, err := l.primary.Reserve(ctx, checks, amounts, now)
	if err == nil || !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
		return r, err
	}
	scaled := make([]Check, len(checks))
	for i, c := range checks {
		c.Limits = append([]int64(nil), c.Limits...)
		for j, lim := range c.Limits {
			if lim > 0 {
				c.Limits[j] = max(lim/l.instances, 1)
			}
		}
		scaled[i] = c
	}
	r, lerr := l.local.Reserve(ctx, scaled, amounts, now)
	if lerr != nil {
		return Result{}, errors.Join(err, lerr)
	}
	r.Degraded = true
	if r.Allowed {
		r.Reservation.ID = localPrefix + r.Reservation.ID
	}
	return r, nil
}

// Adjust implements [Store.Adjust].
func (l *Local) Adjust(ctx context.Context, res Reservation, deltas []int64, now time.Time) error {
	if id, ok := strings.CutPrefix(res.ID, localPrefix); ok {
		res.ID = id
		return l.local.Adjust(ctx, res, deltas, now)
	}
	return l.primary.Adjust(ctx, res, deltas, now)
}

// Usage implements [Store.Usage] with the primary's counters only: the
// fallback's are this instance's share, not the shared figure, so while
// the primary is unreachable Usage fails with its error.
func (l *Local) Usage(ctx context.Context, checks []Check, now time.Time) ([][]int64, error) {
	return l.primary.Usage(ctx, checks, now)
}

// Status implements [Store.Status]: the primary's, with Fallback "local"
// while it is unhealthy.
func (l *Local) Status(ctx context.Context) Status {
	st := l.primary.Status(ctx)
	if !st.Healthy {
		st.Fallback = FailLocal
	}
	return st
}

// Close implements [Store.Close].
func (l *Local) Close() error { return l.primary.Close() }

// Primary returns the wrapped store.
func (l *Local) Primary() Store { return l.primary }

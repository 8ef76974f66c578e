package quota

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file is the read-only side of the stores: [Store.Usage], for
// reports such as the console's headroom. It never charges, never creates
// a counter and never extends a key's life.

// Usage implements [Store.Usage]: the counters of this process.
func (m *Memory) Usage(_ context.Context, checks []Check, _ time.Time) ([][]int64, error) {
	out := make([][]int64, len(checks))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, ch := range checks {
		out[i] = make([]int64, len(m.metrics))
		if st := m.scopes[ch.Scope]; st != nil {
			if w := st.find(ch.Window); w != nil && w.index == ch.Index {
				copy(out[i], w.used)
			}
		}
	}
	return out, nil
}

// Usage implements [Store.Usage]: one HMGET per check, pipelined (split by
// node on a cluster client). While Redis is unhealthy it fails at once
// like Reserve, except once per [RetryInterval].
func (r *Redis) Usage(ctx context.Context, checks []Check, _ time.Time) ([][]int64, error) {
	if len(checks) == 0 {
		return [][]int64{}, nil
	}
	if !r.health.Admit() {
		return nil, r.skipped("usage")
	}
	fields := make([]string, len(r.metrics))
	for j, mt := range r.metrics {
		fields[j] = mt.Field
	}
	cmds := make([]*redis.SliceCmd, len(checks))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ch := range checks {
			cmds[i] = p.HMGet(ctx, r.windowKey(ch.Scope, ch.Window, ch.Index), fields...)
		}
		return nil
	})
	if err != nil {
		return nil, r.fail(ctx, "usage", err)
	}
	r.health.Observe(nil)
	out := make([][]int64, len(checks))
	for i, c := range cmds {
		out[i] = make([]int64, len(r.metrics))
		for j, v := range c.Val() {
			if s, ok := v.(string); ok {
				n, err := parseCount(s)
				if err != nil {
					return nil, r.fail(ctx, "usage", err)
				}
				out[i][j] = n
			}
		}
	}
	return out, nil
}

// Usage implements [Store.Usage] with the primary's counters only: the
// fallback's are this instance's share, not the shared figure, so while
// the primary is unreachable Usage fails with its error.
func (l *Local) Usage(ctx context.Context, checks []Check, now time.Time) ([][]int64, error) {
	return l.primary.Usage(ctx, checks, now)
}

// Read plans each of reqs with plan (appending its checks), reads every
// distinct window once with s.Usage, and returns those windows in plan
// order with what they hold: the read-only side of a policy's Reserve. An
// error is the store's.
func Read[R any](ctx context.Context, s Store, reqs []R, plan func([]Check, R) []Check, now time.Time) ([]Check, [][]int64, error) {
	var checks []Check
	for _, r := range reqs {
		checks = plan(checks, r)
	}
	checks = distinct(checks)
	used, err := s.Usage(ctx, checks, now)
	if err != nil {
		return nil, nil, err
	}
	return checks, used, nil
}

// distinct returns checks without repeats of the same window of the same
// scope (the first is kept), in order: the plans of several requests
// share their global scopes.
func distinct(checks []Check) []Check {
	type window struct {
		scope  string
		window Window
		index  int64
	}
	seen := make(map[window]bool, len(checks))
	out := checks[:0:0]
	for _, c := range checks {
		k := window{c.Scope, c.Window, c.Index}
		if !seen[k] {
			seen[k] = true
			out = append(out, c)
		}
	}
	return out
}

// parseCount reads a counter field of a window hash.
func parseCount(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("counter field %q is not an integer: %w", s, err)
	}
	return n, nil
}

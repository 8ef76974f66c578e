package ratelimit

import (
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// newLimiterFunc builds a fresh, empty limiter of one backend for cfg
// (cfg.Enabled is set by the suite).
type newLimiterFunc func(t *testing.T, cfg Config) Limiter

// t0 is 50 s before a minute boundary and 11.5 h before a day boundary.
var t0 = time.Date(2030, 5, 6, 12, 30, 10, 0, time.UTC)

var (
	nextMinute = time.Date(2030, 5, 6, 12, 31, 0, 0, time.UTC)
	nextDay    = time.Date(2030, 5, 7, 0, 0, 0, 0, time.UTC)
)

// step is one call in a scripted scenario.
type step struct {
	req     Request
	at      time.Time
	allowed bool
	// Denial fields checked when !allowed.
	scope     string
	metric    Metric
	window    Window
	limit     int64
	remaining int64
	reset     time.Time
}

func run(t *testing.T, l Limiter, steps []step) []Decision {
	t.Helper()
	out := make([]Decision, 0, len(steps))
	for i, s := range steps {
		d, err := l.Reserve(t.Context(), s.req, s.at)
		require.NoError(t, err, "step %d", i)
		require.Equal(t, s.allowed, d.Allowed, "step %d: %+v", i, d)
		if !s.allowed {
			require.Equal(t, s.scope, d.Scope, "step %d scope", i)
			require.Equal(t, s.metric, d.Metric, "step %d metric", i)
			require.Equal(t, s.window, d.Window, "step %d window", i)
			require.Equal(t, s.limit, d.Limit, "step %d limit", i)
			require.Equal(t, s.remaining, d.Remaining, "step %d remaining", i)
			require.True(t, s.reset.Equal(d.Reset), "step %d reset %v, want %v", i, d.Reset, s.reset)
			require.Equal(t, s.reset.Sub(s.at), d.RetryAfter, "step %d retry-after", i)
			require.Empty(t, d.Reservation.Charges, "step %d: a denial charges nothing", i)
		}
		out = append(out, d)
	}
	return out
}

func alice(in int64) Request {
	return Request{Provider: "openai", Model: "gpt-4o", User: "alice", InputTokens: in}
}

func testLimiter(t *testing.T, newLimiter newLimiterFunc) {
	mk := func(t *testing.T, cfg Config) Limiter {
		cfg.Enabled = true
		return newLimiter(t, cfg)
	}

	t.Run("gateway key limits and a team's shared limits", func(t *testing.T) {
		l := mk(t, Config{Overrides: Overrides{PerKey: map[string]Limits{"key_a": {RequestsPerMinute: 100}}}})
		team := &Limits{RequestsPerMinute: 3}
		keyA := Request{Provider: "openai", KeyID: "key_a", KeyLimits: &Limits{RequestsPerMinute: 2}, Team: "ml", TeamLimits: team}
		keyB := Request{Provider: "openai", KeyID: "key_b", Team: "ml", TeamLimits: team}
		run(t, l, []step{
			{req: keyA, at: t0, allowed: true},
			{req: keyA, at: t0, allowed: true},
			{req: keyA, at: t0, scope: "key:key_a", metric: MetricRequests, window: WindowMinute, limit: 2, reset: nextMinute},
			{req: keyB, at: t0, allowed: true},
			{req: keyB, at: t0, scope: "team:ml", metric: MetricRequests, window: WindowMinute, limit: 3, reset: nextMinute},
			{req: keyB, at: nextMinute, allowed: true},
		})
	})

	t.Run("base limits are per user", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{RequestsPerMinute: 2}})
		bob := Request{Provider: "openai", User: "bob"}
		run(t, l, []step{
			{req: alice(1), at: t0, allowed: true},
			{req: alice(1), at: t0.Add(10 * time.Second), allowed: true},
			{req: alice(1), at: t0.Add(20 * time.Second), scope: "user:alice", metric: MetricRequests,
				window: WindowMinute, limit: 2, remaining: 0, reset: nextMinute},
			{req: bob, at: t0.Add(20 * time.Second), allowed: true},
			{req: bob, at: t0.Add(21 * time.Second), allowed: true},
			{req: bob, at: t0.Add(22 * time.Second), scope: "user:bob", metric: MetricRequests,
				window: WindowMinute, limit: 2, reset: nextMinute},
			// The next window admits again.
			{req: alice(1), at: nextMinute, allowed: true},
		})
	})

	t.Run("base limits are per key and requests without identity skip them", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{RequestsPerMinute: 1}})
		k1 := Request{Provider: "openai", KeyID: "k1"}
		k2 := Request{Provider: "openai", KeyID: "k2"}
		anon := Request{Provider: "openai", Model: "gpt-4o", InputTokens: 10}
		ds := run(t, l, []step{
			{req: k1, at: t0, allowed: true},
			{req: k1, at: t0, scope: "key:k1", metric: MetricRequests, window: WindowMinute, limit: 1, reset: nextMinute},
			{req: k2, at: t0, allowed: true},
			{req: anon, at: t0, allowed: true},
			{req: anon, at: t0, allowed: true},
		})
		require.Empty(t, ds[3].Reservation.Charges, "no scope applies to an anonymous request")
	})

	t.Run("user and key overrides replace base limits", func(t *testing.T) {
		l := mk(t, Config{
			Limits: Limits{RequestsPerMinute: 1, TokensPerMinute: 1000},
			Overrides: Overrides{
				PerUser: map[string]Limits{"alice": {RequestsPerMinute: 3}},
				PerKey:  map[string]Limits{"vip": {}, "tight": {RequestsPerMinute: 1}},
			},
		})
		vip := Request{Provider: "openai", KeyID: "vip"}
		run(t, l, []step{
			{req: alice(5000), at: t0, allowed: true},
			// alice's override has no token limit: it replaces the whole struct.
			{req: alice(5000), at: t0, allowed: true},
			{req: alice(5000), at: t0, allowed: true},
			{req: alice(1), at: t0, scope: "user:alice", metric: MetricRequests, window: WindowMinute, limit: 3, reset: nextMinute},
			{req: vip, at: t0, allowed: true},
			{req: vip, at: t0, allowed: true},
			{req: vip, at: t0, allowed: true},
			// Key and user scopes both apply; bob's base limit binds.
			{req: Request{User: "bob", KeyID: "vip"}, at: t0, allowed: true},
			{req: Request{User: "bob", KeyID: "vip"}, at: t0, scope: "user:bob", metric: MetricRequests,
				window: WindowMinute, limit: 1, reset: nextMinute},
		})
	})

	t.Run("per-model cap is shared by all users", func(t *testing.T) {
		l := mk(t, Config{Overrides: Overrides{PerModel: map[string]Limits{"gpt-4o": {RequestsPerMinute: 2}}}})
		m := func(user, model string) Request { return Request{Provider: "openai", Model: model, User: user} }
		run(t, l, []step{
			{req: m("a", "gpt-4o"), at: t0, allowed: true},
			{req: m("b", "gpt-4o"), at: t0, allowed: true},
			{req: m("c", "gpt-4o"), at: t0, scope: "model:gpt-4o", metric: MetricRequests, window: WindowMinute, limit: 2, reset: nextMinute},
			{req: m("c", "gpt-4o-mini"), at: t0, allowed: true},
			{req: m("c", ""), at: t0, allowed: true},
		})
	})

	t.Run("global and provider caps, all or nothing", func(t *testing.T) {
		l := mk(t, Config{
			Global:      Limits{RequestsPerMinute: 3},
			PerProvider: map[string]Limits{"openai": {RequestsPerMinute: 1}},
		})
		oa := Request{Provider: "openai", User: "u"}
		an := Request{Provider: "anthropic", User: "u"}
		run(t, l, []step{
			{req: oa, at: t0, allowed: true},
			// Refused by the provider cap: the global counter is not charged.
			{req: oa, at: t0, scope: "provider:openai", metric: MetricRequests, window: WindowMinute, limit: 1, reset: nextMinute},
			{req: oa, at: t0, scope: "provider:openai", metric: MetricRequests, window: WindowMinute, limit: 1, reset: nextMinute},
			{req: an, at: t0, allowed: true},
			{req: an, at: t0, allowed: true},
			{req: an, at: t0, scope: "global", metric: MetricRequests, window: WindowMinute, limit: 3, reset: nextMinute},
		})
	})

	t.Run("a refusal in one scope charges no other scope", func(t *testing.T) {
		l := mk(t, Config{
			Limits:    Limits{RequestsPerMinute: 5, TokensPerMinute: 100},
			Overrides: Overrides{PerKey: map[string]Limits{"k1": {RequestsPerMinute: 1}}},
		})
		r := func(key string, in int64) Request { return Request{User: "alice", KeyID: key, InputTokens: in} }
		run(t, l, []step{
			{req: r("k1", 10), at: t0, allowed: true},
			{req: r("k1", 10), at: t0, scope: "key:k1", metric: MetricRequests, window: WindowMinute, limit: 1, reset: nextMinute},
			{req: r("k1", 10), at: t0, scope: "key:k1", metric: MetricRequests, window: WindowMinute, limit: 1, reset: nextMinute},
			// alice holds 1 request and 10 tokens, not 3 and 30.
			{req: r("k2", 30), at: t0, allowed: true},
			{req: r("k2", 30), at: t0, allowed: true},
			{req: r("k2", 30), at: t0, allowed: true},
			// 100 tokens now: the user's token limit refuses (k2's own is 100 too, but user is checked after key).
			{req: r("k3", 1), at: t0, scope: "user:alice", metric: MetricTokens, window: WindowMinute, limit: 100, remaining: 0, reset: nextMinute},
		})
	})

	t.Run("token limit", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{TokensPerMinute: 100}})
		run(t, l, []step{
			{req: alice(60), at: t0, allowed: true},
			{req: alice(30), at: t0, allowed: true},
			{req: alice(20), at: t0, scope: "user:alice", metric: MetricTokens, window: WindowMinute, limit: 100, remaining: 10, reset: nextMinute},
			{req: alice(10), at: t0, allowed: true},
			// Exhausted: even a request estimated at 0 tokens is refused.
			{req: alice(0), at: t0, scope: "user:alice", metric: MetricTokens, window: WindowMinute, limit: 100, remaining: 0, reset: nextMinute},
			{req: alice(100), at: nextMinute, allowed: true},
		})
	})

	t.Run("optimistic first request", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{TokensPerMinute: 100, TokensPerDay: 150}})
		run(t, l, []step{
			{req: alice(0), at: t0, allowed: true}, // no tokens charged: the window is still "empty"
			{req: alice(500), at: t0, allowed: true},
			{req: alice(1), at: t0, scope: "user:alice", metric: MetricTokens, window: WindowMinute, limit: 100, remaining: 0, reset: nextMinute},
			// Next minute: the minute window is empty again, but the day window
			// already holds 500 tokens.
			{req: alice(500), at: nextMinute, scope: "user:alice", metric: MetricTokens, window: WindowDay, limit: 150, remaining: 0, reset: nextDay},
			{req: alice(500), at: nextDay, allowed: true},
		})
	})

	t.Run("day window", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{RequestsPerMinute: 10, RequestsPerDay: 2}})
		run(t, l, []step{
			{req: alice(1), at: t0, allowed: true},
			{req: alice(1), at: t0.Add(time.Hour), allowed: true},
			{req: alice(1), at: t0.Add(2 * time.Hour), scope: "user:alice", metric: MetricRequests, window: WindowDay, limit: 2, reset: nextDay},
			{req: alice(1), at: nextDay.Add(-time.Nanosecond), scope: "user:alice", metric: MetricRequests, window: WindowDay, limit: 2, reset: nextDay},
			{req: alice(1), at: nextDay, allowed: true},
		})
	})

	t.Run("minute checked before day, requests before tokens", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{RequestsPerMinute: 1, TokensPerMinute: 10, RequestsPerDay: 1, TokensPerDay: 10}})
		run(t, l, []step{
			{req: alice(50), at: t0, allowed: true},
			{req: alice(50), at: t0, scope: "user:alice", metric: MetricRequests, window: WindowMinute, limit: 1, reset: nextMinute},
		})
	})

	t.Run("settle down and up", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{TokensPerMinute: 100}})
		ds := run(t, l, []step{{req: alice(80), at: t0, allowed: true}})
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, 10, t0))
		ds = run(t, l, []step{
			{req: alice(85), at: t0, allowed: true}, // 10 + 85 <= 100
			{req: alice(6), at: t0, scope: "user:alice", metric: MetricTokens, window: WindowMinute, limit: 100, remaining: 5, reset: nextMinute},
		})
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, 90, t0)) // 10 + 90 = 100
		run(t, l, []step{
			{req: alice(0), at: t0, scope: "user:alice", metric: MetricTokens, window: WindowMinute, limit: 100, remaining: 0, reset: nextMinute},
		})
	})

	t.Run("settle clamps at zero", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{TokensPerMinute: 100}})
		ds := run(t, l, []step{{req: alice(50), at: t0, allowed: true}})
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, -7, t0))
		ds = run(t, l, []step{{req: alice(100), at: t0, allowed: true}})
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, 100, t0))
		run(t, l, []step{{req: alice(1), at: t0, scope: "user:alice", metric: MetricTokens, window: WindowMinute, limit: 100, reset: nextMinute}})
	})

	t.Run("cancel gives back the request and tokens", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{RequestsPerMinute: 3, TokensPerMinute: 100}})
		ds := run(t, l, []step{
			{req: alice(60), at: t0, allowed: true},
			{req: alice(30), at: t0, allowed: true},
		})
		require.NoError(t, l.Cancel(t.Context(), ds[0].Reservation, t0))
		run(t, l, []step{
			{req: alice(70), at: t0, allowed: true}, // 30 + 70, 2 requests
			{req: alice(0), at: t0, scope: "user:alice", metric: MetricTokens, window: WindowMinute, limit: 100, reset: nextMinute},
		})
	})

	t.Run("second settle or cancel is a no-op", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{RequestsPerMinute: 3, TokensPerMinute: 100}})
		ds := run(t, l, []step{{req: alice(50), at: t0, allowed: true}})
		ctx := t.Context()
		require.NoError(t, l.Settle(ctx, ds[0].Reservation, 10, t0))
		require.NoError(t, l.Settle(ctx, ds[0].Reservation, 10, t0))
		require.NoError(t, l.Cancel(ctx, ds[0].Reservation, t0))
		run(t, l, []step{
			{req: alice(90), at: t0, allowed: true}, // 10 + 90: the first settle held
			{req: alice(0), at: t0, scope: "user:alice", metric: MetricTokens, window: WindowMinute, limit: 100, reset: nextMinute},
		})
	})

	t.Run("settle after rotation touches only current windows", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{TokensPerMinute: 100, TokensPerDay: 1000}})
		ds := run(t, l, []step{{req: alice(80), at: t0, allowed: true}})
		// The minute has rotated, the day has not: the day counter becomes 10.
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, 10, nextMinute))
		run(t, l, []step{
			{req: alice(90), at: nextMinute, allowed: true},                   // day 100
			{req: alice(900), at: nextMinute.Add(time.Minute), allowed: true}, // day 1000
			{req: alice(1), at: nextMinute.Add(2 * time.Minute), scope: "user:alice", metric: MetricTokens, window: WindowDay, limit: 1000, reset: nextDay},
		})
		// Settling after both windows rotated changes nothing and does not fail.
		ds = run(t, l, []step{{req: alice(5), at: nextDay, allowed: true}})
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, 5000, nextDay.Add(24*time.Hour)))
		require.NoError(t, l.Cancel(t.Context(), ds[0].Reservation, nextDay.Add(24*time.Hour)))
	})

	t.Run("output tokens are reserved when counted", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{TokensPerMinute: 100}, CountOutputTokens: true, DefaultMaxOutputTokens: 50})
		ds := run(t, l, []step{
			{req: Request{User: "alice", InputTokens: 30}, at: t0, allowed: true},                   // 30 + default 50
			{req: Request{User: "alice", InputTokens: 10, OutputTokens: 10}, at: t0, allowed: true}, // 100
			{req: Request{User: "alice", InputTokens: 1, OutputTokens: 1}, at: t0, scope: "user:alice", metric: MetricTokens, window: WindowMinute, limit: 100, reset: nextMinute},
		})
		require.Equal(t, int64(80), ds[0].Reservation.Tokens)
		require.Equal(t, int64(20), ds[1].Reservation.Tokens)
	})

	t.Run("reservation survives JSON", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{TokensPerMinute: 100}})
		ds := run(t, l, []step{{req: alice(90), at: t0, allowed: true}})
		b, err := json.Marshal(ds[0].Reservation)
		require.NoError(t, err)
		var res Reservation
		require.NoError(t, json.Unmarshal(b, &res))
		require.Equal(t, ds[0].Reservation, res)
		require.NoError(t, l.Settle(t.Context(), res, 1, t0))
		run(t, l, []step{{req: alice(99), at: t0, allowed: true}})
	})

	t.Run("long identities are hashed", func(t *testing.T) {
		l := mk(t, Config{Limits: Limits{RequestsPerMinute: 1}})
		long := Request{User: strings.Repeat("x", 1000)}
		ds := run(t, l, []step{{req: long, at: t0, allowed: true}})
		require.Len(t, ds[0].Reservation.Charges, 1)
		scope := ds[0].Reservation.Charges[0].Scope
		require.True(t, strings.HasPrefix(scope, "user:sha256:"), scope)
		run(t, l, []step{{req: long, at: t0, scope: scope, metric: MetricRequests, window: WindowMinute, limit: 1, reset: nextMinute}})
	})

	t.Run("concurrent reserves admit exactly the limit", func(t *testing.T) {
		const limit, callers = 40, 300
		l := mk(t, Config{Limits: Limits{RequestsPerMinute: limit}, Global: Limits{TokensPerMinute: 1 << 40}})
		var admitted atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				d, err := l.Reserve(t.Context(), alice(int64(i)), t0)
				if err == nil && d.Allowed {
					admitted.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		require.Equal(t, int64(limit), admitted.Load())
	})
}

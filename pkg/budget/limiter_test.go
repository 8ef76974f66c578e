package budget

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

// t0 is mid-day, mid-month.
var (
	t0        = time.Date(2030, 5, 6, 12, 30, 10, 0, time.UTC)
	nextDay   = time.Date(2030, 5, 7, 0, 0, 0, 0, time.UTC)
	nextMonth = time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
)

// step is one Reserve in a scripted scenario.
type step struct {
	req     Request
	at      time.Time
	allowed bool
	// Denial fields checked when !allowed.
	scope  string
	window Window
	limit  int64 // nano-dollars
	spend  int64 // nano-dollars
	reset  time.Time
}

func run(t *testing.T, l Limiter, steps []step) []Decision {
	t.Helper()
	out := make([]Decision, 0, len(steps))
	for i, s := range steps {
		at := s.at
		if at.IsZero() {
			at = t0
		}
		d, err := l.Reserve(t.Context(), s.req, at)
		require.NoError(t, err, "step %d", i)
		require.Equal(t, s.allowed, d.Allowed, "step %d: %+v", i, d)
		if !s.allowed {
			require.Equal(t, s.scope, d.Scope, "step %d scope", i)
			require.Equal(t, s.window, d.Window, "step %d window", i)
			require.Equal(t, s.limit, d.LimitNanos, "step %d limit", i)
			require.Equal(t, s.spend, d.SpendNanos, "step %d spend", i)
			require.Equal(t, Nanos(s.req.EstimatedUSD), d.EstimateNanos, "step %d estimate", i)
			require.True(t, s.reset.Equal(d.Reset), "step %d reset %v, want %v", i, d.Reset, s.reset)
			require.Empty(t, d.Reservation.Charges, "step %d: a denial charges nothing", i)
		}
		out = append(out, d)
	}
	return out
}

func alice(usd float64) Request {
	return Request{User: "alice", EstimatedUSD: usd}
}

func keyReq(key string, usd float64) Request {
	return Request{KeyID: key, EstimatedUSD: usd}
}

func userDaily(usd float64) Config { return Config{PerUser: Policy{Default: Limits{DailyUSD: usd}}} }

const usd = NanosPerUSD

func testLimiter(t *testing.T, newLimiter newLimiterFunc) {
	mk := func(t *testing.T, cfg Config) Limiter {
		cfg.Enabled = true
		return newLimiter(t, cfg)
	}

	t.Run("a gateway key's own budget and its team's shared budget", func(t *testing.T) {
		l := mk(t, Config{})
		team := &Limits{DailyUSD: 1}
		a := Request{KeyID: "key_a", KeyBudget: &Limits{DailyUSD: 0.5}, Team: "ml", TeamBudget: team, EstimatedUSD: 0.3}
		b := Request{KeyID: "key_b", Team: "ml", TeamBudget: team, EstimatedUSD: 0.3}
		run(t, l, []step{
			{req: a, allowed: true},
			{req: a, scope: "key:key_a", window: WindowDay, limit: usd / 2, spend: 300_000_000, reset: nextDay},
			{req: b, allowed: true},
			{req: b, allowed: true}, // the team has spent $0.90
			{req: b, scope: "team:ml", window: WindowDay, limit: usd, spend: 900_000_000, reset: nextDay},
			{req: b, at: nextDay, allowed: true},
		})
	})

	t.Run("admits until spend reaches the limit, then refuses", func(t *testing.T) {
		l := mk(t, userDaily(1))
		run(t, l, []step{
			{req: alice(0.25), allowed: true},
			{req: alice(0.25), allowed: true},
			{req: alice(0.25), allowed: true},
			{req: alice(0.25), allowed: true}, // spend exactly $1
			{req: alice(0.01), scope: "user:alice", window: WindowDay, limit: usd, spend: usd, reset: nextDay},
			// Even a call estimated at $0 is refused once the budget is used up.
			{req: alice(0), scope: "user:alice", window: WindowDay, limit: usd, spend: usd, reset: nextDay},
			{req: alice(0.25), at: nextDay, allowed: true},
		})
	})

	t.Run("refuses when spend plus estimate would pass the limit", func(t *testing.T) {
		l := mk(t, userDaily(1))
		run(t, l, []step{
			{req: alice(0.7), allowed: true},
			{req: alice(0.4), scope: "user:alice", window: WindowDay, limit: usd, spend: 700_000_000, reset: nextDay},
			{req: alice(0.300001), scope: "user:alice", window: WindowDay, limit: usd, spend: 700_000_000, reset: nextDay},
			{req: alice(0.3), allowed: true},
		})
	})

	t.Run("an estimate above the whole budget is refused", func(t *testing.T) {
		l := mk(t, userDaily(1))
		run(t, l, []step{
			{req: alice(1.5), scope: "user:alice", window: WindowDay, limit: usd, spend: 0, reset: nextDay},
			{req: alice(1), allowed: true},
		})
	})

	t.Run("zero estimates pass until the budget is used", func(t *testing.T) {
		l := mk(t, userDaily(1))
		ds := run(t, l, []step{
			{req: alice(0), allowed: true},
			{req: alice(0), allowed: true},
		})
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, 1.2, t0)) // the actual cost was known only after
		run(t, l, []step{{req: alice(0), scope: "user:alice", window: WindowDay, limit: usd, spend: 1_200_000_000, reset: nextDay}})
	})

	t.Run("defaults are per identity; overrides replace them", func(t *testing.T) {
		l := mk(t, Config{
			PerKey: Policy{
				Default:   Limits{DailyUSD: 1},
				Overrides: map[string]Limits{"vip": {}, "tight": {DailyUSD: 0.1}},
			},
			PerUser: Policy{
				Default:   Limits{MonthlyUSD: 3},
				Overrides: map[string]Limits{"alice": {DailyUSD: 0.5}},
			},
		})
		bob := func(usd float64) Request { return Request{User: "bob", EstimatedUSD: usd} }
		ds := run(t, l, []step{
			{req: keyReq("k1", 1), allowed: true},
			{req: keyReq("k1", 0.5), scope: "key:k1", window: WindowDay, limit: usd, spend: usd, reset: nextDay},
			{req: keyReq("k2", 1), allowed: true}, // every key has its own $1
			{req: keyReq("tight", 0.1), allowed: true},
			{req: keyReq("tight", 0.1), scope: "key:tight", window: WindowDay, limit: 100_000_000, spend: 100_000_000, reset: nextDay},
			{req: keyReq("vip", 500), allowed: true}, // exempt
			{req: keyReq("vip", 500), allowed: true},
			// alice's override has no monthly limit: it replaces the whole Limits.
			{req: alice(0.5), allowed: true},
			{req: alice(0.5), scope: "user:alice", window: WindowDay, limit: 500_000_000, spend: 500_000_000, reset: nextDay},
			{req: bob(2), allowed: true},
			{req: bob(2), scope: "user:bob", window: WindowMonth, limit: 3 * usd, spend: 2 * usd, reset: nextMonth},
			// Anonymous calls without a key skip both budgets.
			{req: Request{EstimatedUSD: 1000}, allowed: true},
		})
		require.Empty(t, ds[len(ds)-1].Reservation.Charges)
		require.Len(t, ds[0].Reservation.Charges, 1)
	})

	t.Run("key is checked before user; a refusal charges nothing", func(t *testing.T) {
		l := mk(t, Config{
			PerKey:  Policy{Default: Limits{DailyUSD: 1}},
			PerUser: Policy{Default: Limits{DailyUSD: 2}},
		})
		r := func(key string, usd float64) Request { return Request{User: "alice", KeyID: key, EstimatedUSD: usd} }
		run(t, l, []step{
			{req: r("k1", 0.8), allowed: true},
			{req: r("k1", 0.5), scope: "key:k1", window: WindowDay, limit: usd, spend: 800_000_000, reset: nextDay},
			{req: r("k1", 0.5), scope: "key:k1", window: WindowDay, limit: usd, spend: 800_000_000, reset: nextDay},
			// alice holds $0.80, not $1.80: the refusals above charged her nothing.
			{req: r("k2", 1), allowed: true},
			{req: r("k3", 0.2), allowed: true}, // $2.00
			{req: r("k3", 0.01), scope: "user:alice", window: WindowDay, limit: 2 * usd, spend: 2 * usd, reset: nextDay},
			// ... and that refusal did not charge k3.
			{req: Request{KeyID: "k3", EstimatedUSD: 0.8}, allowed: true},
		})
	})

	t.Run("day checked before month; day and month rotate", func(t *testing.T) {
		l := mk(t, Config{PerUser: Policy{Default: Limits{DailyUSD: 1, MonthlyUSD: 2.5}}})
		day2, day3 := nextDay, nextDay.Add(24*time.Hour)
		run(t, l, []step{
			{req: alice(1), allowed: true},
			{req: alice(0.1), scope: "user:alice", window: WindowDay, limit: usd, spend: usd, reset: nextDay},
			{req: alice(1), at: day2, allowed: true},
			{req: alice(0.1), at: day2.Add(time.Hour), scope: "user:alice", window: WindowDay, limit: usd, spend: usd, reset: day3},
			{req: alice(0.6), at: day3, scope: "user:alice", window: WindowMonth, limit: 2_500_000_000, spend: 2 * usd, reset: nextMonth},
			{req: alice(0.5), at: day3, allowed: true},
			{req: alice(0), at: nextMonth.Add(-time.Nanosecond), scope: "user:alice", window: WindowMonth, limit: 2_500_000_000, spend: 2_500_000_000, reset: nextMonth},
			{req: alice(1), at: nextMonth, allowed: true},
		})
	})

	t.Run("settle down and up", func(t *testing.T) {
		l := mk(t, userDaily(1))
		ds := run(t, l, []step{{req: alice(0.8), allowed: true}})
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, 0.1, t0))
		ds = run(t, l, []step{
			{req: alice(0.85), allowed: true}, // 0.10 + 0.85
			{req: alice(0.06), scope: "user:alice", window: WindowDay, limit: usd, spend: 950_000_000, reset: nextDay},
		})
		// The call cost more than estimated: spend passes the limit.
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, 1.3, t0))
		run(t, l, []step{{req: alice(0), scope: "user:alice", window: WindowDay, limit: usd, spend: 1_400_000_000, reset: nextDay}})
	})

	t.Run("settle clamps at zero", func(t *testing.T) {
		l := mk(t, userDaily(1))
		ds := run(t, l, []step{{req: alice(0.5), allowed: true}})
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, -7, t0))
		ds = run(t, l, []step{{req: alice(1), allowed: true}})
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, 1, t0))
		run(t, l, []step{{req: alice(0.000001), scope: "user:alice", window: WindowDay, limit: usd, spend: usd, reset: nextDay}})
	})

	t.Run("cancel gives the estimate back", func(t *testing.T) {
		l := mk(t, userDaily(1))
		ds := run(t, l, []step{
			{req: alice(0.6), allowed: true},
			{req: alice(0.3), allowed: true},
		})
		require.NoError(t, l.Cancel(t.Context(), ds[0].Reservation, t0))
		run(t, l, []step{
			{req: alice(0.7), allowed: true},
			{req: alice(0), scope: "user:alice", window: WindowDay, limit: usd, spend: usd, reset: nextDay},
		})
	})

	t.Run("second settle or cancel is a no-op", func(t *testing.T) {
		l := mk(t, userDaily(1))
		ds := run(t, l, []step{{req: alice(0.5), allowed: true}})
		ctx := t.Context()
		require.NoError(t, l.Settle(ctx, ds[0].Reservation, 0.1, t0))
		require.NoError(t, l.Settle(ctx, ds[0].Reservation, 0.1, t0))
		require.NoError(t, l.Settle(ctx, ds[0].Reservation, 0.9, t0))
		require.NoError(t, l.Cancel(ctx, ds[0].Reservation, t0))
		run(t, l, []step{
			{req: alice(0.9), allowed: true}, // 0.1 + 0.9: the first settle held
			{req: alice(0), scope: "user:alice", window: WindowDay, limit: usd, spend: usd, reset: nextDay},
		})
	})

	t.Run("settle after the day rotated adjusts only the month", func(t *testing.T) {
		l := mk(t, Config{PerUser: Policy{Default: Limits{DailyUSD: 1, MonthlyUSD: 2}}})
		ds := run(t, l, []step{{req: alice(0.9), at: nextDay.Add(-time.Minute), allowed: true}})
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, 0.2, nextDay))
		run(t, l, []step{
			{req: alice(1), at: nextDay, allowed: true},                       // day 1.0, month 1.2
			{req: alice(0.8), at: nextDay.Add(24 * time.Hour), allowed: true}, // month 2.0
			{req: alice(0), at: nextDay.Add(25 * time.Hour), scope: "user:alice", window: WindowMonth, limit: 2 * usd, spend: 2 * usd, reset: nextMonth},
		})
		// Settling after every window rotated changes nothing and does not fail.
		ds = run(t, l, []step{{req: alice(0.5), at: nextMonth, allowed: true}})
		later := nextMonth.AddDate(0, 1, 0)
		require.NoError(t, l.Settle(t.Context(), ds[0].Reservation, 5000, later))
		require.NoError(t, l.Cancel(t.Context(), ds[0].Reservation, later))
	})

	t.Run("reservation survives JSON", func(t *testing.T) {
		l := mk(t, Config{PerKey: Policy{Default: Limits{DailyUSD: 1, MonthlyUSD: 10}}})
		ds := run(t, l, []step{{req: keyReq("k1", 0.9), allowed: true}})
		b, err := json.Marshal(ds[0].Reservation)
		require.NoError(t, err)
		require.Contains(t, string(b), `"estimate_nanos":900000`)
		var res Reservation
		require.NoError(t, json.Unmarshal(b, &res))
		require.Equal(t, ds[0].Reservation, res)
		require.Len(t, res.Charges, 2)
		require.NoError(t, l.Settle(t.Context(), res, 0.000001, t0))
		run(t, l, []step{{req: keyReq("k1", 0.999999), allowed: true}})
	})

	t.Run("long identities are hashed", func(t *testing.T) {
		l := mk(t, userDaily(1))
		long := Request{User: strings.Repeat("x", 1000), EstimatedUSD: 1}
		ds := run(t, l, []step{{req: long, allowed: true}})
		require.Len(t, ds[0].Reservation.Charges, 1)
		scope := ds[0].Reservation.Charges[0].Scope
		require.True(t, strings.HasPrefix(scope, "user:sha256:"), scope)
		long.EstimatedUSD = 0
		run(t, l, []step{{req: long, scope: scope, window: WindowDay, limit: usd, spend: usd, reset: nextDay}})
	})

	t.Run("refusal reason and amounts", func(t *testing.T) {
		l := mk(t, Config{PerKey: Policy{Default: Limits{MonthlyUSD: 2.5}}})
		d, err := l.Reserve(t.Context(), keyReq("k", 3), t0)
		require.NoError(t, err)
		require.False(t, d.Allowed)
		require.Equal(t, "monthly_cost_limit_exceeded", d.Reason())
		require.Equal(t, 2.5, USD(d.LimitNanos))
		require.Equal(t, "2.5", FormatNanos(d.LimitNanos))
		require.Equal(t, 0.0, USD(d.SpendNanos))
	})

	t.Run("concurrent reserves never pass the limit", func(t *testing.T) {
		const callers = 300
		l := mk(t, Config{PerUser: Policy{Default: Limits{DailyUSD: 4}}, PerKey: Policy{Default: Limits{MonthlyUSD: 1000}}})
		var admitted atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				d, err := l.Reserve(t.Context(), Request{User: "alice", KeyID: "k", EstimatedUSD: 0.1}, t0)
				if err == nil && d.Allowed {
					admitted.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		require.Equal(t, int64(40), admitted.Load())
	})
}

package usage

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

type newLedgerFunc func(t *testing.T, cfg Config) Ledger

func totals(req, cost, in, out, unk int64) Totals {
	return Totals{Requests: req, CostNanos: cost, CostUSD: USD(cost), InputTokens: in, OutputTokens: out, UnknownCostRequests: unk}
}

func testLedger(t *testing.T, newLedger newLedgerFunc) {
	t.Run("record then report exact totals", func(t *testing.T) {
		l := newLedger(t, Config{})
		ctx := t.Context()
		recs := []Usage{
			{User: "alice", KeyID: "k1", Team: "ml", Provider: "openai", Model: "gpt-4o", CostNanos: 123_457, InputTokens: 1000, OutputTokens: 200, CostKnown: true},
			{User: "alice", KeyID: "k2", Team: "ml", Provider: "anthropic", Model: "claude-sonnet-4-5", CostNanos: 1, InputTokens: 1, OutputTokens: 1, CostKnown: true},
			{User: "bob", KeyID: "k1", Provider: "openai", Model: "gpt-4o", CostNanos: 2_000_000, InputTokens: 10, OutputTokens: 20, CostKnown: true},
			{KeyID: "k1", Provider: "gemini", Model: "mystery-1", InputTokens: 5, OutputTokens: 6}, // unknown cost, no user
			{User: "bob", Provider: "openai", Model: "gpt-4o", CostNanos: -5, InputTokens: -1, CostKnown: true},
		}
		// Last month is not this month.
		require.NoError(t, l.Record(ctx, Usage{User: "old", CostNanos: 999, CostKnown: true}, t0.AddDate(0, -1, 0)))
		for _, u := range recs {
			require.NoError(t, l.Record(ctx, u, t0))
		}
		rep, err := l.Report(ctx, t0)
		require.NoError(t, err)
		require.Equal(t, t0, rep.GeneratedAt)

		for _, p := range []Period{rep.Today, rep.Month} {
			require.Equal(t, totals(5, 2_123_458, 1016, 227, 1), p.Total)
			require.Equal(t, []Row{
				{Name: "bob", Totals: totals(2, 2_000_000, 10, 20, 0)},
				{Name: "alice", Totals: totals(2, 123_458, 1001, 201, 0)},
			}, p.ByUser.Rows)
			require.Equal(t, []Row{
				{Name: "k1", Totals: totals(3, 2_123_457, 1015, 226, 1)},
				{Name: "k2", Totals: totals(1, 1, 1, 1, 0)},
			}, p.ByKey.Rows)
			require.Equal(t, []Row{{Name: "ml", Totals: totals(2, 123_458, 1001, 201, 0)}}, p.ByTeam.Rows,
				"spend by team: only calls made with a team's gateway keys")
			require.Equal(t, []Row{
				{Name: "openai/gpt-4o", Provider: "openai", Model: "gpt-4o", Totals: totals(3, 2_123_457, 1010, 220, 0)},
				{Name: "anthropic/claude-sonnet-4-5", Provider: "anthropic", Model: "claude-sonnet-4-5", Totals: totals(1, 1, 1, 1, 0)},
				{Name: "gemini/mystery-1", Provider: "gemini", Model: "mystery-1", Totals: totals(1, 0, 5, 6, 1)},
			}, p.ByModel.Rows)
		}
		require.Equal(t, "2030-05-06", rep.Today.Name)
		require.Equal(t, time.Date(2030, 5, 6, 0, 0, 0, 0, time.UTC), rep.Today.Start)
		require.Equal(t, nextDay, rep.Today.End)
		require.Equal(t, "2030-05", rep.Month.Name)
		require.Equal(t, time.Date(2030, 5, 1, 0, 0, 0, 0, time.UTC), rep.Month.Start)
		require.Equal(t, nextMonth, rep.Month.End)
	})

	t.Run("day and month rotate", func(t *testing.T) {
		l := newLedger(t, Config{})
		ctx := t.Context()
		require.NoError(t, l.Record(ctx, Usage{User: "a", CostNanos: 10, CostKnown: true}, t0))
		require.NoError(t, l.Record(ctx, Usage{User: "a", CostNanos: 20, CostKnown: true}, nextDay))
		rep, err := l.Report(ctx, nextDay)
		require.NoError(t, err)
		require.Equal(t, int64(20), rep.Today.Total.CostNanos)
		require.Equal(t, int64(30), rep.Month.Total.CostNanos)
		require.Equal(t, int64(30), rep.Month.ByUser.Rows[0].CostNanos)

		require.NoError(t, l.Record(ctx, Usage{User: "b", CostNanos: 5, CostKnown: true}, nextMonth))
		rep, err = l.Report(ctx, nextMonth)
		require.NoError(t, err)
		require.Equal(t, totals(1, 5, 0, 0, 0), rep.Month.Total)
		require.Equal(t, []Row{{Name: "b", Totals: totals(1, 5, 0, 0, 0)}}, rep.Month.ByUser.Rows)
		require.Equal(t, "2030-06", rep.Month.Name)

		// A period with nothing recorded reports zeros and empty rows.
		rep, err = l.Report(ctx, nextMonth.AddDate(0, 1, 0))
		require.NoError(t, err)
		require.Equal(t, Totals{}, rep.Today.Total)
		require.Empty(t, rep.Month.ByKey.Rows)
		require.NotNil(t, rep.Month.ByKey.Rows)
	})

	t.Run("names beyond the cap go to (other); totals stay exact", func(t *testing.T) {
		l := newLedger(t, Config{MaxUsageNames: 3})
		ctx := t.Context()
		for i := range 10 {
			require.NoError(t, l.Record(ctx, Usage{User: fmt.Sprintf("u%d", i), KeyID: "k", CostNanos: int64(100 + i), CostKnown: true}, t0))
		}
		// A name already tracked keeps its row.
		require.NoError(t, l.Record(ctx, Usage{User: "u0", CostNanos: 1000, CostKnown: true}, t0))
		rep, err := l.Report(ctx, t0)
		require.NoError(t, err)
		require.Equal(t, int64(1000+100*10+45), rep.Today.Total.CostNanos)
		require.Equal(t, []Row{
			{Name: "u0", Totals: totals(2, 1100, 0, 0, 0)},
			{Name: OtherName, Totals: totals(7, 103+104+105+106+107+108+109, 0, 0, 0)},
			{Name: "u2", Totals: totals(1, 102, 0, 0, 0)},
			{Name: "u1", Totals: totals(1, 101, 0, 0, 0)},
		}, rep.Today.ByUser.Rows)
		require.Equal(t, []Row{{Name: "k", Totals: totals(10, 1045, 0, 0, 0)}}, rep.Today.ByKey.Rows)
	})

	t.Run("report rows are capped and sorted", func(t *testing.T) {
		l := newLedger(t, Config{ReportRows: 2})
		ctx := t.Context()
		for i, c := range []int64{5, 50, 5, 20} {
			for range i + 1 {
				require.NoError(t, l.Record(ctx, Usage{KeyID: fmt.Sprintf("k%d", i), CostNanos: c, CostKnown: true}, t0))
			}
		}
		rep, err := l.Report(ctx, t0)
		require.NoError(t, err)
		// k0 $5 in 1 call, k1 $100 in 2, k2 $15 in 3, k3 $80 in 4 (nano-dollars).
		require.Equal(t, Breakdown{Rows: []Row{
			{Name: "k1", Totals: totals(2, 100, 0, 0, 0)},
			{Name: "k3", Totals: totals(4, 80, 0, 0, 0)},
		}, Omitted: 2}, rep.Today.ByKey)
		require.Empty(t, rep.Today.ByUser.Rows)
	})

	t.Run("long names are hashed and JSON is stable", func(t *testing.T) {
		l := newLedger(t, Config{})
		ctx := t.Context()
		require.NoError(t, l.Record(ctx, Usage{User: strings.Repeat("u", 500), Provider: "openai", Model: strings.Repeat("m", 500), CostNanos: 1_500_000_000, CostKnown: true}, t0))
		rep, err := l.Report(ctx, t0)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(rep.Today.ByUser.Rows[0].Name, "sha256:"))
		require.Equal(t, "openai", rep.Today.ByModel.Rows[0].Provider)
		require.True(t, strings.HasPrefix(rep.Today.ByModel.Rows[0].Model, "sha256:"))
		b, err := json.Marshal(rep.Today.Total)
		require.NoError(t, err)
		require.JSONEq(t, `{"requests":1,"cost_nanos":1500000000,"cost_usd":1.5,"input_tokens":0,"output_tokens":0,"unknown_cost_requests":0}`, string(b))
		b, err = json.Marshal(rep)
		require.NoError(t, err)
		require.Contains(t, string(b), `"today":{"period":"2030-05-06"`)
		require.Contains(t, string(b), `"by_key":{"rows":[]}`)
	})

	t.Run("concurrent records add up", func(t *testing.T) {
		l := newLedger(t, Config{})
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 100 {
					u := Usage{User: fmt.Sprintf("u%d", w), KeyID: "k", Provider: "openai", Model: "gpt-4o", CostNanos: int64(i), InputTokens: 1, CostKnown: true}
					if err := l.Record(t.Context(), u, t0); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		rep, err := l.Report(t.Context(), t0)
		require.NoError(t, err)
		require.Equal(t, totals(800, 8*4950, 800, 0, 0), rep.Month.Total)
		require.Len(t, rep.Today.ByUser.Rows, 8)
	})
}

func TestMemoryLedger(t *testing.T) {
	testLedger(t, func(t *testing.T, cfg Config) Ledger {
		require.NoError(t, cfg.Validate())
		l, err := New(t.Context(), cfg, Hooks{})
		require.NoError(t, err)
		require.Equal(t, BackendMemory, l.Status(t.Context()).Backend)
		return l
	})
}

func newRedisLedgerFor(t *testing.T, s *redistest.Server, cfg Config) *RedisLedger {
	t.Helper()
	l, err := New(t.Context(), redisConfigFor(t, s, cfg), Hooks{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l.(*RedisLedger)
}

func TestRedisLedger(t *testing.T) {
	s := redistest.Start(t)
	testLedger(t, func(t *testing.T, cfg Config) Ledger { return newRedisLedgerFor(t, s, cfg) })
}

func TestMemoryLedgerLaggingClockJoinsNewerPeriod(t *testing.T) {
	l := NewMemoryLedger(Config{})
	ctx := t.Context()
	require.NoError(t, l.Record(ctx, Usage{User: "a", CostNanos: 1, CostKnown: true}, nextDay))
	require.NoError(t, l.Record(ctx, Usage{User: "a", CostNanos: 2, CostKnown: true}, nextDay.Add(-time.Millisecond)))
	rep, err := l.Report(ctx, nextDay)
	require.NoError(t, err)
	require.Equal(t, int64(3), rep.Today.Total.CostNanos)
}

func TestRedisLedgerOutageAndRecovery(t *testing.T) {
	s := redistest.Start(t)
	var changes atomic.Int64
	l, err := NewRedisLedger(t.Context(), redisConfigFor(t, s, Config{}), Hooks{OnStateChange: func(BackendStatus) { changes.Add(1) }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	ctx := t.Context()
	require.NoError(t, l.Record(ctx, Usage{User: "a", CostNanos: 1, CostKnown: true}, t0))
	s.Stop()
	require.ErrorIs(t, l.Record(ctx, Usage{User: "a", CostNanos: 1, CostKnown: true}, t0), ErrBackendUnavailable)
	_, err = l.Report(ctx, t0)
	require.ErrorIs(t, err, ErrBackendUnavailable)
	require.False(t, l.Status(ctx).Healthy)
	s.Restart(t)
	require.True(t, l.Status(ctx).Healthy)
	require.NoError(t, l.Record(ctx, Usage{User: "a", CostNanos: 7, CostKnown: true}, t0))
	rep, err := l.Report(ctx, t0)
	require.NoError(t, err)
	require.Equal(t, int64(7), rep.Today.Total.CostNanos)
	require.Equal(t, int64(2), changes.Load())
}

func TestRedisLedgerKeyLayout(t *testing.T) {
	s := redistest.Start(t)
	l := newRedisLedgerFor(t, s, Config{KeyPrefix: "lay:"})
	at := time.Now()
	require.NoError(t, l.Record(t.Context(), Usage{User: "alice", CostNanos: 42, InputTokens: 3, CostKnown: true}, at))
	c := rawClient(t, s)
	keys, err := c.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	day, month := quota.Day.Index(at), quota.Month.Index(at)
	var want []string
	for _, p := range []string{fmt.Sprintf("d:%d", day), fmt.Sprintf("mo:%d", month)} {
		want = append(want, "{lay}:usage:"+p+":total", "{lay}:usage:"+p+":user", "{lay}:usage:"+p+":user:in", "{lay}:usage:"+p+":user:req")
	}
	require.ElementsMatch(t, want, keys)
	v, err := c.HGet(t.Context(), fmt.Sprintf("{lay}:usage:d:%d:user", day), "alice").Result()
	require.NoError(t, err)
	require.Equal(t, "42", v)
	ttl, err := c.PTTL(t.Context(), fmt.Sprintf("{lay}:usage:mo:%d:total", month)).Result()
	require.NoError(t, err)
	require.Greater(t, ttl, quota.Month.End(month).Add(UsageRetention).Sub(at)-time.Second)
}

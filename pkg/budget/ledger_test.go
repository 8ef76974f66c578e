package budget

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/usage"
)

func newRedisLedgerFor(t *testing.T, s *redistest.Server, cfg Config) usage.Ledger {
	t.Helper()
	l, err := usage.New(t.Context(), redisConfigFor(t, s, cfg).Ledger(), usage.Hooks{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// Two instances record concurrently on one Redis; either one reports the
// exact sums, and a budget limiter settled with the same costs holds the
// same spend (zero drift between enforcement and reporting).
func TestRedisLedgerTwoInstancesExact(t *testing.T) {
	s := redistest.Start(t)
	cfg := Config{Enabled: true, Settings: quota.Settings{KeyPrefix: "ledger2:"}, PerKey: Policy{Default: Limits{MonthlyUSD: 1e6}}}
	la, lb := newRedisLedgerFor(t, s, cfg), newRedisLedgerFor(t, s, cfg)
	ba, bb := newRedisFor(t, s, cfg), newRedisFor(t, s, cfg)
	var cost, in, out atomic.Int64
	var wg sync.WaitGroup
	for w := range 16 {
		led, lim := la, ba
		if w%2 == 1 {
			led, lim = lb, bb
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				actual := 0.000123*float64(i) + 0.01*float64(w)
				d, err := lim.Reserve(t.Context(), keyReq("k1", 0.05), t0)
				if err != nil || !d.Allowed {
					t.Errorf("reserve: %v %+v", err, d)
					return
				}
				if err := lim.Settle(t.Context(), d.Reservation, actual, t0); err != nil {
					t.Error(err)
					return
				}
				u := usage.Usage{User: fmt.Sprintf("u%d", i%5), KeyID: "k1", Provider: "openai", Model: "gpt-4o",
					CostNanos: Nanos(actual), InputTokens: int64(i), OutputTokens: int64(w), CostKnown: true}
				if err := led.Record(t.Context(), u, t0); err != nil {
					t.Error(err)
					return
				}
				cost.Add(u.CostNanos)
				in.Add(u.InputTokens)
				out.Add(u.OutputTokens)
			}
		}()
	}
	wg.Wait()
	for _, l := range []usage.Ledger{la, lb} {
		rep, err := l.Report(t.Context(), t0)
		require.NoError(t, err)
		want := usage.Totals{Requests: 1600, CostNanos: cost.Load(), CostUSD: USD(cost.Load()), InputTokens: in.Load(), OutputTokens: out.Load()}
		require.Equal(t, want, rep.Today.Total)
		require.Equal(t, want, rep.Month.Total)
		require.Equal(t, []usage.Row{{Name: "k1", Totals: want}}, rep.Month.ByKey.Rows)
		var sum int64
		for _, r := range rep.Today.ByUser.Rows {
			sum += r.CostNanos
		}
		require.Equal(t, cost.Load(), sum)
	}
	spend, err := rawClient(t, s).HGet(t.Context(), windowKey(ba, WindowMonth, t0, "key:k1"), "s").Int64()
	require.NoError(t, err)
	require.Equal(t, cost.Load(), spend, "budget spend equals the sum of records")
}

package e2e

import (
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
)

// With the circuit breaker, rate limits and budgets all on one Redis, the
// three guards are asked at once (processor.RemoteGuard). Across two
// instances under concurrent load, the request limit still admits exactly
// its count, and the budget holds exactly the cost of the calls served:
// the budget reservations of the calls the rate limiter refused, taken at
// the same time, were all given back.
func TestEveryGuardOnRedisAdmitsAtOnceAndLeavesNothing(t *testing.T) {
	const limit, calls = 30, 120
	rdb := redistest.Start(t)
	clk := newClock(midMinute)
	dirs := [2]string{t.TempDir(), t.TempDir()}
	mk := func(dir string) *emulated {
		return startEmulated(t, withClock(clk.Now),
			circuit(func(c *breaker.Config) {
				c.Backend = breaker.BackendRedis
				c.Redis.Address = rdb.Addr
			}),
			limits(func(c *ratelimit.Config) {
				c.Backend = quota.BackendRedis
				c.Redis.Address = rdb.Addr
				c.Limits = ratelimit.Limits{RequestsPerDay: limit}
			}),
			costTracking(dir, func(ct *config.CostTracking) {
				ct.Budgets.Enabled = true
				ct.Budgets.Backend = quota.BackendRedis
				ct.Budgets.Redis.Address = rdb.Addr
				ct.Budgets.PerUser.Default = budget.Limits{DailyUSD: 1000}
			}))
	}
	gws := [2]*emulated{mk(dirs[0]), mk(dirs[1])}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range calls {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			resp := post(t, gws[i%2], "/openai/v1/chat/completions", "application/json",
				[]byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`),
				http.Header{"X-User-Id": {"bea"}, "X-Fake-Input-Tokens": {"1000"}, "X-Fake-Output-Tokens": {"1000"}})
			readAll(t, resp)
			switch resp.StatusCode {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusTooManyRequests:
				refused.Add(1)
			default:
				t.Errorf("unexpected status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, limit, ok.Load(), "exactly the limit across both instances")
	require.EqualValues(t, calls-limit, refused.Load())

	// Every call leaves a cost record once settled; the served ones cost
	// $0.005 each and the refused ones nothing.
	recs := append(waitRecords(t, filepath.Join(dirs[0], "costs.jsonl"), calls/2),
		waitRecords(t, filepath.Join(dirs[1], "costs.jsonl"), calls/2)...)
	require.Len(t, recs, calls)
	var sum float64
	for _, r := range recs {
		if r.Status != http.StatusOK {
			require.Zero(t, r.TotalCostUSD)
		}
		sum += r.TotalCostUSD
	}
	require.InDelta(t, 0.005*limit, sum, 1e-9)
	require.EqualValues(t, budget.Nanos(sum), dailySpendNanos(t, rdb.Addr, "user:bea", midMinute),
		"the budget holds the served calls' cost: no refused call's reservation was left")
}

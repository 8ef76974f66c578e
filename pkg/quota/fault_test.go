package quota

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

// A short, deterministic fault campaign: two instances in fail mode local
// share one Redis; Redis refuses them for a while (its data kept) and comes
// back. Asserted: per window, admitted never passes the limit plus what the
// fail mode allows (each instance's local share), no reservation stays
// pending, and the counters equal exactly the settled amounts of the
// reservations Redis holds (zero drift).
func TestFaultCampaignLocalModeZeroDrift(t *testing.T) {
	s := redistest.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true})
	t.Cleanup(func() { _ = admin.Close() })
	ctx := t.Context()
	const instances, limit = 2, 60
	clock := t0
	now := func() time.Time { return clock }
	var stores [instances]*Local
	var redisStores [instances]*Redis
	for i := range stores {
		redisStores[i] = NewRedis(single(s)(), reqTok, RedisOptions{Prefix: "fault:", Now: now})
		stores[i] = NewLocal(redisStores[i], reqTok, instances, 0)
		t.Cleanup(func() { _ = stores[i].Close() })
	}
	rng := rand.New(rand.NewPCG(9, 9))
	var admitted, local int
	var settledReqs, settledToks int64 // what Redis must hold in the end
	type held struct {
		st  *Local
		res Reservation
		tok int64
	}
	var inflight []held
	settle := func(h held) {
		actual := rng.Int64N(2 * h.tok)
		_ = h.st.Adjust(ctx, h.res, []int64{0, actual - h.tok}, clock) // a failure is queued, not lost
		if len(h.res.ID) < len(localPrefix) || h.res.ID[:len(localPrefix)] != localPrefix {
			settledReqs++
			settledToks += actual
		}
	}
	phase := func(n int, outage bool) {
		for range n {
			st := stores[rng.IntN(instances)]
			tok := 1 + rng.Int64N(50)
			checks := []Check{minuteCheck("user:shared", clock, limit, 0), dayCheck("global", clock, 0, 1<<40)}
			res, err := st.Reserve(ctx, checks, []int64{1, tok}, clock)
			require.NoError(t, err, "fail mode local never errors")
			require.Equal(t, outage, res.Degraded)
			if res.Allowed {
				admitted++
				if res.Degraded {
					local++
				}
				inflight = append(inflight, held{st, res.Reservation, tok})
			}
			// Settle a random earlier call: settlements cross the outage.
			if len(inflight) > 0 && rng.IntN(2) == 0 {
				k := rng.IntN(len(inflight))
				settle(inflight[k])
				inflight = append(inflight[:k], inflight[k+1:]...)
			}
		}
	}
	phase(40, false)
	require.NoError(t, admin.ConfigSet(ctx, "requirepass", "pw").Err())
	require.NoError(t, admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err())
	phase(80, true)
	require.NoError(t, admin.ConfigSet(ctx, "requirepass", "").Err())
	for _, r := range redisStores {
		r.RetryNow()
	}
	phase(60, false)
	for _, h := range inflight {
		settle(h)
	}
	for _, r := range redisStores {
		require.Zero(t, r.RetryPending(ctx), "every queued settlement landed")
	}

	allowance := instances * (limit / instances) // local shares during the outage
	t.Logf("admitted %d (local %d) of %d calls; limit %d + fail-mode allowance %d", admitted, local, 180, limit, allowance)
	require.LessOrEqual(t, admitted, limit+allowance)
	require.Equal(t, allowance, local, "each instance admitted exactly its share while Redis was down")
	markers, err := admin.Keys(ctx, "fault:*:res:*").Result()
	require.NoError(t, err)
	require.Empty(t, markers, "no reservation left pending")
	key := fmt.Sprintf("fault:{global}:d:%d", Day.Index(t0))
	got, err := admin.HMGet(ctx, key, "r", "t").Result()
	require.NoError(t, err)
	require.Equal(t, []any{fmt.Sprint(settledReqs), fmt.Sprint(settledToks)}, got, "zero drift")
}

package budget

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

var prefixSeq atomic.Int64

// redisConfigFor points cfg at s with a key prefix no other store of the
// test binary uses (unless cfg names one), so tests share one server without
// sharing state.
func redisConfigFor(t *testing.T, s *redistest.Server, cfg Config) Config {
	t.Helper()
	cfg.Backend = quota.BackendRedis
	cfg.Redis = redisconf.Config{Address: s.Addr}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = fmt.Sprintf("test%d:", prefixSeq.Add(1))
	}
	require.NoError(t, cfg.Validate())
	return cfg
}

func newRedisFor(t *testing.T, s *redistest.Server, cfg Config) *Quota {
	t.Helper()
	r, err := Open(t.Context(), redisConfigFor(t, s, cfg), quota.Hooks{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// windowKey is the Redis key of scope's window w at t (see quota.Redis).
func windowKey(q *Quota, w Window, at time.Time, scope string) string {
	code := map[Window]string{WindowDay: "d", WindowMonth: "mo"}[w]
	return fmt.Sprintf("%s{%s}:%s:%d", q.Load().KeyPrefix, scope, code, w.Index(at))
}

func rawClient(t *testing.T, s *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedis(t *testing.T) {
	s := redistest.Start(t)
	testLimiter(t, func(t *testing.T, cfg Config) Limiter { return newRedisFor(t, s, cfg) })
}

// Two instances on one Redis, concurrent reservations from many goroutines,
// settled at random by either instance with actual costs at or below the
// estimate: spend never passes the limit, every admitted request fits, and
// the counters end equal to the sum of the settled costs (zero drift).
func TestRedisTwoInstancesNeverOverspendZeroDrift(t *testing.T) {
	s := redistest.Start(t)
	const (
		limitUSD = 25.0
		calls    = 3000
		workers  = 48
	)
	cfg := Config{
		Enabled:  true,
		Settings: quota.Settings{KeyPrefix: "spend:"},
		PerUser:  Policy{Default: Limits{DailyUSD: limitUSD, MonthlyUSD: 1000}},
		PerKey:   Policy{Default: Limits{MonthlyUSD: 1000}},
	}
	a, b := newRedisFor(t, s, cfg), newRedisFor(t, s, cfg)
	var settled, admitted, refused atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for next.Add(1) <= calls {
				reserver, settler := a, b
				if rng.IntN(2) == 0 {
					reserver, settler = b, a
				}
				est := float64(1+rng.IntN(50_000_000)) / NanosPerUSD // up to $0.05
				d, err := reserver.Reserve(t.Context(), Request{User: "alice", KeyID: "k1", EstimatedUSD: est}, t0)
				if err != nil {
					t.Errorf("reserve: %v", err)
					return
				}
				if !d.Allowed {
					refused.Add(1)
					continue
				}
				admitted.Add(1)
				switch rng.IntN(4) {
				case 0: // upstream 5xx or local reply
					err = settler.Cancel(t.Context(), d.Reservation, t0)
				default:
					actual := rng.Int64N(Nanos(est) + 1)
					err = settler.Settle(t.Context(), d.Reservation, USD(actual), t0)
					if err == nil {
						settled.Add(actual)
					}
					if rng.IntN(4) == 0 { // a duplicate settle changes nothing
						err = settler.Settle(t.Context(), d.Reservation, 1, t0)
					}
				}
				if err != nil {
					t.Errorf("release: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	require.Positive(t, refused.Load(), "the budget must bind in this test")
	c := rawClient(t, s)
	for _, key := range []string{
		windowKey(a, WindowDay, t0, "user:alice"),
		windowKey(a, WindowMonth, t0, "user:alice"),
		windowKey(a, WindowMonth, t0, "key:k1"),
	} {
		got, err := c.HGet(t.Context(), key, "s").Int64()
		require.NoError(t, err, key)
		require.Equal(t, settled.Load(), got, key)
		require.LessOrEqual(t, got, Nanos(limitUSD), key)
	}
	markers, err := c.Keys(t.Context(), "spend:*:res:*").Result()
	require.NoError(t, err)
	require.Empty(t, markers, "every reservation was released")
}

// With actual = estimate, two instances admit exactly limit/estimate calls.
func TestRedisTwoInstancesAdmitExactly(t *testing.T) {
	s := redistest.Start(t)
	cfg := Config{Enabled: true, Settings: quota.Settings{KeyPrefix: "exact:"}, PerKey: Policy{Default: Limits{DailyUSD: 10}}}
	a, b := newRedisFor(t, s, cfg), newRedisFor(t, s, cfg)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for w := range 32 {
		l := a
		if w%2 == 1 {
			l = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				d, err := l.Reserve(t.Context(), keyReq("k", 0.1), t0)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
					if err := l.Settle(t.Context(), d.Reservation, 0.1, t0); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(100), admitted.Load())
}

func TestRedisUnreachableAtStart(t *testing.T) {
	s := redistest.Start(t)
	addr := s.Addr
	s.Stop()
	r, err := Open(t.Context(), Config{Enabled: true, Settings: quota.Settings{Backend: quota.BackendRedis, Redis: redisconf.Config{Address: addr}},
		PerUser: Policy{Default: Limits{DailyUSD: 1}}}, quota.Hooks{})
	require.NoError(t, err, "an unreachable server is a state, not a construction error")
	t.Cleanup(func() { _ = r.Close() })
	require.False(t, r.Status(t.Context()).Healthy)
	_, err = r.Reserve(t.Context(), alice(1), t0)
	require.ErrorIs(t, err, ErrBackendUnavailable)
	s.Restart(t)
	r.Store().(*quota.Redis).RetryNow() // as if the retry interval (1 s) had passed
	d, err := r.Reserve(t.Context(), alice(1), t0)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.True(t, r.Status(t.Context()).Healthy)
}

// The limiter suite on a Sentinel-watched master and on a three-master
// Cluster: the same behaviour as on one server.
func TestRedisSentinelAndCluster(t *testing.T) {
	for _, tt := range []struct {
		name  string
		redis func(t *testing.T) redisconf.Config
	}{
		{"sentinel", func(t *testing.T) redisconf.Config {
			s := redistest.StartSentinel(t)
			return redisconf.Config{Mode: "sentinel", Addresses: []string{s.Sentinel.Addr}, MasterName: redistest.MasterName}
		}},
		{"cluster", func(t *testing.T) redisconf.Config {
			return redisconf.Config{Mode: "cluster", Addresses: redistest.StartCluster(t).Addrs()}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rc := tt.redis(t)
			testLimiter(t, func(t *testing.T, cfg Config) Limiter {
				cfg.Backend, cfg.Redis = quota.BackendRedis, rc
				cfg.KeyPrefix = fmt.Sprintf("test%d:", prefixSeq.Add(1))
				require.NoError(t, cfg.Validate())
				l, err := Open(t.Context(), cfg, quota.Hooks{})
				require.NoError(t, err)
				t.Cleanup(func() { _ = l.Close() })
				return l
			})
		})
	}
}

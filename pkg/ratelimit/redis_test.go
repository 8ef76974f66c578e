package ratelimit

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

// newRedisFor returns a limiter on s with a key prefix no other limiter of
// the test binary uses, so subtests share one server without sharing state.
func newRedisFor(t *testing.T, s *redistest.Server, cfg Config) *Quota {
	t.Helper()
	cfg.Backend = quota.BackendRedis
	cfg.Redis = redisconf.Config{Address: s.Addr}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = fmt.Sprintf("test%d:", prefixSeq.Add(1))
	}
	require.NoError(t, cfg.Validate())
	r, err := Open(t.Context(), cfg, quota.Hooks{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// windowKey is the Redis key of scope's window w at t (see quota.Redis).
func windowKey(q *Quota, w Window, at time.Time, scope string) string {
	code := map[Window]string{WindowMinute: "m", WindowDay: "d"}[w]
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

// Two instances on one Redis, thousands of concurrent calls: exactly N
// admitted per scope.
func TestRedisTwoInstancesExact(t *testing.T) {
	s := redistest.Start(t)
	const (
		limit   = 250
		calls   = 4000
		workers = 64
	)
	cfg := Config{
		Enabled:     true,
		Settings:    quota.Settings{KeyPrefix: "exact:"},
		Limits:      Limits{RequestsPerMinute: limit},
		PerProvider: map[string]Limits{"openai": {RequestsPerMinute: 10 * limit}},
	}
	a, b := newRedisFor(t, s, cfg), newRedisFor(t, s, cfg)
	var admitted [2]atomic.Int64 // alice, bob
	var errs atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		l := a
		if w%2 == 1 {
			l = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > calls {
					return
				}
				who := int(i % 2)
				user := []string{"alice", "bob"}[who]
				d, err := l.Reserve(t.Context(), Request{Provider: "openai", User: user, InputTokens: 10}, t0)
				switch {
				case err != nil:
					errs.Add(1)
				case d.Allowed:
					admitted[who].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.Zero(t, errs.Load())
	require.Equal(t, int64(limit), admitted[0].Load())
	require.Equal(t, int64(limit), admitted[1].Load())

	// The provider counter holds exactly the admitted requests: refusals
	// charged nothing.
	key := windowKey(a, WindowMinute, t0, "provider:openai")
	got, err := rawClient(t, s).HMGet(t.Context(), key, "r", "t").Result()
	require.NoError(t, err)
	require.Equal(t, []any{fmt.Sprint(2 * limit), fmt.Sprint(2 * limit * 10)}, got)
}

// A random mix of settles and cancels from two instances leaves the token
// counters equal to the sum of the settled actuals: zero drift.
func TestRedisZeroDrift(t *testing.T) {
	s := redistest.Start(t)
	cfg := Config{
		Enabled:  true,
		Settings: quota.Settings{KeyPrefix: "drift:"},
		Limits:   Limits{TokensPerMinute: 1 << 50, TokensPerDay: 1 << 50},
		Global:   Limits{RequestsPerDay: 1 << 40},
	}
	a, b := newRedisFor(t, s, cfg), newRedisFor(t, s, cfg)
	const calls, workers = 2000, 32
	var settledTokens, settledReqs atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for next.Add(1) <= calls {
				reserver, settler := a, b
				if rng.IntN(2) == 0 {
					reserver, settler = b, a
				}
				d, err := reserver.Reserve(t.Context(), Request{User: "alice", InputTokens: rng.Int64N(500)}, t0)
				if err != nil || !d.Allowed {
					t.Errorf("reserve: %v %+v", err, d)
					return
				}
				switch rng.IntN(3) {
				case 0: // upstream 5xx or local reply
					err = settler.Cancel(t.Context(), d.Reservation, t0)
				default: // usage reported (a disconnect settles what was streamed)
					actual := rng.Int64N(1000)
					err = settler.Settle(t.Context(), d.Reservation, actual, t0)
					if err == nil {
						settledTokens.Add(actual)
						settledReqs.Add(1)
					}
					if rng.IntN(4) == 0 { // a duplicate settle changes nothing
						err = settler.Settle(t.Context(), d.Reservation, 12345, t0)
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
	c := rawClient(t, s)
	for _, w := range []Window{WindowMinute, WindowDay} {
		key := windowKey(a, w, t0, "user:alice")
		got, err := c.HMGet(t.Context(), key, "r", "t").Result()
		require.NoError(t, err)
		require.Equal(t, []any{fmt.Sprint(settledReqs.Load()), fmt.Sprint(settledTokens.Load())}, got, "window %s", w)
	}
	global, err := c.HGet(t.Context(), windowKey(a, WindowDay, t0, "global"), "r").Int64()
	require.NoError(t, err)
	require.Equal(t, settledReqs.Load(), global)
	// Every reservation was released: no markers left.
	markers, err := c.Keys(t.Context(), "drift:*:res:*").Result()
	require.NoError(t, err)
	require.Empty(t, markers)
}

func TestRedisUnreachableAtStart(t *testing.T) {
	s := redistest.Start(t)
	addr := s.Addr
	s.Stop()
	r, err := Open(t.Context(), Config{Enabled: true, Settings: quota.Settings{Backend: quota.BackendRedis, Redis: redisconf.Config{Address: addr}},
		Limits: Limits{RequestsPerMinute: 1}}, quota.Hooks{})
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

// Fail mode local: while Redis is down, each instance admits its share of
// the limit and marks its answers; back on Redis once it answers.
func TestRedisFailModeLocal(t *testing.T) {
	s := redistest.Start(t)
	cfg := Config{Enabled: true, Settings: quota.Settings{FailMode: quota.FailLocal, ExpectedInstances: 2}, Limits: Limits{RequestsPerMinute: 4}}
	l := newRedisFor(t, s, cfg)
	ctx := t.Context()
	d, err := l.Reserve(ctx, alice(1), t0)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.False(t, d.Degraded)

	s.Stop()
	for i := range 3 {
		d, err := l.Reserve(ctx, alice(1), t0)
		require.NoError(t, err, "no error reaches the caller: the fallback decides")
		require.True(t, d.Degraded)
		require.Equal(t, i < 2, d.Allowed, "call %d: 4 per minute / 2 instances", i)
		if d.Allowed {
			require.NoError(t, l.Settle(ctx, d.Reservation, 1, t0))
		} else {
			require.Equal(t, int64(2), d.Limit)
		}
	}
	require.Equal(t, quota.FailLocal, l.Status(ctx).Fallback)

	s.Restart(t)
	l.Store().(*quota.Local).Primary().(*quota.Redis).RetryNow()
	d, err = l.Reserve(ctx, alice(1), t0)
	require.NoError(t, err)
	require.False(t, d.Degraded, "back on Redis")
	require.True(t, l.Status(ctx).Healthy)
}

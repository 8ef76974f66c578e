package quota

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

var prefixSeq atomic.Int64

// deployment makes clients of one Redis deployment.
type deployment func() redis.UniversalClient

var (
	twinsMu sync.Mutex
	twins   = map[*Redis]func(*testing.T) *Redis{}
)

// newRedisStore returns a store on a fresh client of dep with a prefix no
// other store of the test binary uses, so tests share servers without
// sharing state.
func newRedisStore(t *testing.T, dep deployment, metrics []Metric) *Redis {
	t.Helper()
	prefix := fmt.Sprintf("test%d:", prefixSeq.Add(1))
	var mk func(*testing.T) *Redis
	mk = func(t *testing.T) *Redis {
		r := NewRedis(dep(), metrics, RedisOptions{Prefix: prefix})
		t.Cleanup(func() { _ = r.Close() })
		twinsMu.Lock()
		twins[r] = mk
		twinsMu.Unlock()
		return r
	}
	return mk(t)
}

// newRedisLike returns a second instance (own client) on r's deployment and
// prefix.
func newRedisLike(t *testing.T, r *Redis) Store {
	twinsMu.Lock()
	mk := twins[r]
	twinsMu.Unlock()
	return mk(t)
}

func single(s *redistest.Server) deployment {
	return func() redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true, MaxRetries: -1})
	}
}

func sentinel(s *redistest.Sentinel) deployment {
	return func() redis.UniversalClient {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.MasterName,
			SentinelAddrs: []string{s.Sentinel.Addr}, DisableIdentity: true, MaxRetries: -1})
	}
}

func cluster(c *redistest.Cluster) deployment {
	return func() redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), DisableIdentity: true, MaxRetries: -1})
	}
}

func TestRedisSingle(t *testing.T) {
	dep := single(redistest.Start(t))
	testStore(t, func(t *testing.T, m []Metric) Store { return newRedisStore(t, dep, m) })
}

func TestRedisSentinel(t *testing.T) {
	dep := sentinel(redistest.StartSentinel(t))
	testStore(t, func(t *testing.T, m []Metric) Store { return newRedisStore(t, dep, m) })
}

func TestRedisCluster(t *testing.T) {
	dep := cluster(redistest.StartCluster(t))
	testStore(t, func(t *testing.T, m []Metric) Store { return newRedisStore(t, dep, m) })
}

// On a cluster, a reservation is one script call per slot it touches.
func TestRedisClusterOneCallPerSlot(t *testing.T) {
	dep := cluster(redistest.StartCluster(t))
	r := newRedisStore(t, dep, reqTok)
	var calls atomic.Int64
	r.client.AddHook(countHook{&calls})
	var checks []Check
	slots := map[int]bool{}
	for i := range 6 {
		scope := fmt.Sprintf("user:u%d", i)
		checks = append(checks, minuteCheck(scope, t0, 10, 0), dayCheck(scope, t0, 10, 0))
		slots[Slot(r.windowKey(scope, Minute, 0))] = true
	}
	// The first call loads the scripts on each node (EVALSHA, then EVAL).
	res, err := r.Reserve(t.Context(), checks, []int64{1, 1}, t0)
	require.NoError(t, err)
	require.NoError(t, r.Adjust(t.Context(), res.Reservation, []int64{-1, -1}, t0))
	calls.Store(0)
	res, err = r.Reserve(t.Context(), checks, []int64{1, 1}, t0)
	require.NoError(t, err)
	require.True(t, res.Allowed)
	require.EqualValues(t, len(slots), calls.Load(), "one EVALSHA per slot")
	calls.Store(0)
	require.NoError(t, r.Adjust(t.Context(), res.Reservation, []int64{0, 1}, t0))
	require.EqualValues(t, len(slots), calls.Load())
}

type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestRedisKeyLayout(t *testing.T) {
	s := redistest.Start(t)
	r := NewRedis(single(s)(), reqTok, RedisOptions{Prefix: "layout:"})
	t.Cleanup(func() { _ = r.Close() })
	at := time.Now() // real time: the TTLs are checked against the server's clock
	res, err := r.Reserve(t.Context(), []Check{minuteCheck("key:5f2b9c", at, 5, 0), dayCheck("key:5f2b9c", at, 0, 100),
		minuteCheck("user:alice", at, 5, 0), dayCheck("user:alice", at, 0, 100)}, []int64{1, 3}, at)
	require.NoError(t, err)
	require.True(t, res.Allowed)
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	keys, err := c.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	m, day := Minute.Index(at), Day.Index(at)
	require.ElementsMatch(t, []string{
		fmt.Sprintf("layout:{key:5f2b9c}:m:%d", m),
		fmt.Sprintf("layout:{key:5f2b9c}:d:%d", day),
		fmt.Sprintf("layout:{user:alice}:m:%d", m),
		fmt.Sprintf("layout:{user:alice}:d:%d", day),
		"layout:{key:5f2b9c}:res:" + res.Reservation.ID, // one marker, in the first scope's slot
	}, keys)
	for _, k := range keys {
		ttl, err := c.PTTL(t.Context(), k).Result()
		require.NoError(t, err)
		end := Minute.End(m)
		if strings.Contains(k, ":d:") || strings.Contains(k, ":res:") {
			end = Day.End(day)
		}
		require.LessOrEqual(t, ttl, end.Sub(at)+TTLGrace, k)
		require.Greater(t, ttl, end.Sub(at), k) // just past the window end
	}
	got, err := c.HMGet(t.Context(), fmt.Sprintf("layout:{user:alice}:m:%d", m), "r", "t").Result()
	require.NoError(t, err)
	require.Equal(t, []any{"1", "3"}, got)
}

// A call retried after a lost reply (same reservation id) is not charged
// twice.
func TestRedisReserveScriptIdempotent(t *testing.T) {
	s := redistest.Start(t)
	c := single(s)()
	t.Cleanup(func() { _ = c.Close() })
	keys := []string{"idem:{user:alice}:res:same-id", "idem:{user:alice}:m:1"}
	script := redis.NewScript(reserveSource([]Metric{{Field: "r"}, {Field: "t", Optimistic: true}}))
	for range 3 {
		out, err := script.Run(t.Context(), c, keys, 60000, 1, 7, 60000, 10, 0).Int64Slice()
		require.NoError(t, err)
		require.Equal(t, []int64{1}, out)
	}
	got, err := c.HMGet(t.Context(), keys[1], "r", "t").Result()
	require.NoError(t, err)
	require.Equal(t, []any{"1", "7"}, got)
}

func TestRedisOutageAndRecovery(t *testing.T) {
	s := redistest.Start(t)
	var changes []Status
	var mu sync.Mutex
	r := NewRedis(single(s)(), spend, RedisOptions{Prefix: "outage:", OnStateChange: func(st Status) {
		mu.Lock()
		changes = append(changes, st)
		mu.Unlock()
	}})
	t.Cleanup(func() { _ = r.Close() })
	ctx := t.Context()
	c := []Check{dayCheck("user:a", t0, 10)}
	res, err := r.Reserve(ctx, c, []int64{1}, t0)
	require.NoError(t, err)
	require.True(t, res.Allowed)

	s.Stop()
	_, err = r.Reserve(ctx, c, []int64{1}, t0)
	require.ErrorIs(t, err, ErrUnavailable)
	require.False(t, r.Status(ctx).Healthy)
	// While unhealthy, calls fail at once instead of each waiting for Redis.
	for range 3 {
		_, err = r.Reserve(ctx, c, []int64{1}, t0)
		require.ErrorIs(t, err, ErrUnavailable)
		require.ErrorContains(t, err, "skipped while unhealthy")
	}
	err = r.Adjust(ctx, res.Reservation, []int64{-1}, t0)
	require.ErrorIs(t, err, ErrUnavailable)

	s.Restart(t)
	// The /health probe (Status) always tries Redis, so it ends the outage.
	require.True(t, r.Status(ctx).Healthy)
	res, err = r.Reserve(ctx, c, []int64{1}, t0)
	require.NoError(t, err)
	require.True(t, res.Allowed)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, changes, 2, "one hook call per transition")
	require.False(t, changes[0].Healthy)
	require.True(t, changes[1].Healthy)
}

func TestRedisUnreachableAtStart(t *testing.T) {
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	r := NewRedis(redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second}), spend, RedisOptions{Prefix: "x:"})
	t.Cleanup(func() { _ = r.Close() })
	require.False(t, r.Status(t.Context()).Healthy)
	_, err = r.Reserve(t.Context(), []Check{dayCheck("user:a", t0, 10)}, []int64{1}, t0)
	require.ErrorIs(t, err, ErrUnavailable)
}

func TestLuaString(t *testing.T) {
	for in, want := range map[string]string{"r": "'r'", "tok_2": "'tok_2'", "a'b\\": `'a\039b\092'`, "": "''"} {
		require.Equal(t, want, luaString(in), in)
	}
}

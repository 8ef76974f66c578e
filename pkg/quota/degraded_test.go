package quota

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

// A settlement that fails while Redis refuses us is queued and lands once
// Redis answers again: no estimate stays charged.
func TestRedisFailedAdjustmentIsRetried(t *testing.T) {
	s := redistest.Start(t)
	r := NewRedis(single(s)(), spend, RedisOptions{Prefix: "retry:", Now: func() time.Time { return t0 }})
	t.Cleanup(func() { _ = r.Close() })
	admin := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true})
	t.Cleanup(func() { _ = admin.Close() })
	ctx := t.Context()
	c := []Check{dayCheck("user:a", t0, 10)}
	res, err := r.Reserve(ctx, c, []int64{8}, t0)
	require.NoError(t, err)
	require.True(t, res.Allowed)

	// Lock the store's own connections out, keeping the data.
	require.NoError(t, admin.ConfigSet(ctx, "requirepass", "pw").Err())
	require.NoError(t, admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err())
	err = r.Adjust(ctx, res.Reservation, []int64{-8}, t0)
	require.ErrorIs(t, err, ErrUnavailable)
	require.ErrorContains(t, err, "queued for retry")
	require.Equal(t, 1, r.Pending())
	require.Equal(t, 1, r.Status(ctx).PendingAdjustments)
	require.Equal(t, 1, r.RetryPending(ctx), "still locked out: kept")

	require.NoError(t, admin.ConfigSet(ctx, "requirepass", "").Err())
	require.Zero(t, r.RetryPending(ctx))
	require.Zero(t, r.RetryPending(ctx), "idempotent: nothing left")
	spent, err := admin.HGet(ctx, r.windowKey("user:a", Day, Day.Index(t0)), "s").Int64()
	require.NoError(t, err)
	require.Zero(t, spent, "the estimate was released")
	keys, err := admin.Keys(ctx, "retry:*:res:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "no reservation left pending")
}

// While the store is down, fail mode local admits limit / instances per
// instance, marks its answers, and adjusts locally; the store takes over
// again as soon as it answers.
func TestLocalFallback(t *testing.T) {
	s := redistest.Start(t)
	r := NewRedis(single(s)(), reqTok, RedisOptions{Prefix: "local:"})
	l := NewLocal(r, reqTok, 3, 0)
	t.Cleanup(func() { _ = l.Close() })
	ctx := t.Context()
	c := []Check{minuteCheck("user:a", t0, 10, 0)}
	res, err := l.Reserve(ctx, c, []int64{1, 0}, t0)
	require.NoError(t, err)
	require.True(t, res.Allowed)
	require.False(t, res.Degraded)
	require.True(t, l.Status(ctx).Healthy)
	require.Empty(t, l.Status(ctx).Fallback)

	s.Stop()
	var admitted int
	for range 5 {
		res, err := l.Reserve(ctx, c, []int64{1, 0}, t0)
		require.NoError(t, err, "local answers while the store is down")
		require.True(t, res.Degraded)
		if res.Allowed {
			admitted++
			require.NoError(t, l.Adjust(ctx, res.Reservation, []int64{0, 5}, t0), "adjusted in process")
		} else {
			require.Zero(t, res.Check)
		}
	}
	require.Equal(t, 3, admitted, "10 / 3 instances")
	st := l.Status(ctx)
	require.False(t, st.Healthy)
	require.Equal(t, FailLocal, st.Fallback)

	s.Restart(t)
	r.RetryNow()
	res, err = l.Reserve(ctx, c, []int64{1, 0}, t0)
	require.NoError(t, err)
	require.True(t, res.Allowed)
	require.False(t, res.Degraded, "back on the store")
	require.Empty(t, l.Status(ctx).Fallback)
}

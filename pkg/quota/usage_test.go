package quota

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

// testUsage is what every store's Usage reports.
func testUsage(t *testing.T, newStore newStoreFunc) {
	s := newStore(t, reqTok)
	ctx := t.Context()
	user, key := minuteCheck("user:a", t0, 10, 1000), dayCheck("key:k", t0, 100, 0)
	for _, toks := range []int64{30, 12} {
		res, err := s.Reserve(ctx, []Check{user, key}, []int64{1, toks}, t0)
		require.NoError(t, err)
		require.True(t, res.Allowed)
	}
	got, err := twin(t, s).Usage(ctx, []Check{user, key, minuteCheck("user:never", t0, 1, 1),
		minuteCheck("user:a", t0.Add(Minute.End(0).Sub(Minute.Start(0))), 10, 1000)}, t0)
	require.NoError(t, err)
	require.Equal(t, [][]int64{{2, 42}, {2, 42}, {0, 0}, {0, 0}}, got,
		"both reservations, from any instance; an unknown scope and the next window hold nothing")

	// Reading charges nothing and settles nothing.
	res, err := s.Reserve(ctx, []Check{user}, []int64{1, 8}, t0)
	require.NoError(t, err)
	require.NoError(t, s.Adjust(ctx, res.Reservation, []int64{0, -3}, t0))
	again, err := s.Usage(ctx, []Check{user}, t0)
	require.NoError(t, err)
	require.Equal(t, [][]int64{{3, 47}}, again)
	empty, err := s.Usage(ctx, nil, t0)
	require.NoError(t, err)
	require.Empty(t, empty)
}

func TestMemoryUsage(t *testing.T) {
	testUsage(t, func(t *testing.T, metrics []Metric) Store { return NewMemory(metrics, MemoryOptions{}) })
}

func TestRedisUsage(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		dep := single(redistest.Start(t))
		testUsage(t, func(t *testing.T, m []Metric) Store { return newRedisStore(t, dep, m) })
	})
	t.Run("cluster", func(t *testing.T) {
		dep := cluster(redistest.StartCluster(t))
		testUsage(t, func(t *testing.T, m []Metric) Store { return newRedisStore(t, dep, m) })
	})
}

func TestRedisUsageWhileDown(t *testing.T) {
	srv := redistest.Start(t)
	r := newRedisStore(t, single(srv), reqTok)
	srv.Stop()
	_, err := r.Usage(t.Context(), []Check{minuteCheck("user:a", t0, 1, 1)}, t0)
	require.ErrorIs(t, err, ErrUnavailable)
	// The local fallback does not answer for the shared counters.
	_, err = NewLocal(r, reqTok, 2, 0).Usage(t.Context(), []Check{minuteCheck("user:a", t0, 1, 1)}, t0)
	require.ErrorIs(t, err, ErrUnavailable)
}

func TestRead(t *testing.T) {
	s := NewMemory(spend, MemoryOptions{})
	g, u := minuteCheck("global", t0, 50), minuteCheck("user:a", t0, 5)
	res, err := s.Reserve(t.Context(), []Check{g, u}, []int64{3}, t0)
	require.NoError(t, err)
	require.True(t, res.Allowed)
	plan := func(dst []Check, user string, now time.Time) []Check {
		return append(dst, g, minuteCheck("user:"+user, now, 5), dayCheck("global", now, 500))
	}
	type window struct {
		Check
		used []int64
	}
	row := func(c Check, used []int64) window { return window{c, used} }
	got, err := Read(t.Context(), s, []string{"a", "b", "a"}, plan, t0, row)
	require.NoError(t, err)
	require.Equal(t, []window{{g, []int64{3}}, {u, []int64{3}}, {dayCheck("global", t0, 500), []int64{0}},
		{minuteCheck("user:b", t0, 5), []int64{0}}}, got, "each window once, in plan order, with what it holds")
	got, err = Read(t.Context(), s, nil, plan, t0, row)
	require.NoError(t, err)
	require.Empty(t, got)
}

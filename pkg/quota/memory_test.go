package quota

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMemory(t *testing.T) {
	testStore(t, func(t *testing.T, metrics []Metric) Store { return NewMemory(metrics, MemoryOptions{}) })
}

func TestMemoryEvictsIdleScopes(t *testing.T) {
	const maxScopes = 500
	m := NewMemory(reqTok, MemoryOptions{MaxScopes: maxScopes})
	ctx := t.Context()
	// 20 minutes of 400 new users each: 8000 users, never more than one
	// minute's worth tracked.
	for minute := range 20 {
		at := t0.Add(time.Duration(minute) * time.Minute)
		for u := range 400 {
			res, err := m.Reserve(ctx, []Check{minuteCheck(fmt.Sprintf("user:u%d-%d", minute, u), at, 10, 0)}, []int64{1, 0}, at)
			require.NoError(t, err)
			require.True(t, res.Allowed)
			if u%2 == 0 {
				require.NoError(t, m.Adjust(ctx, res.Reservation, []int64{0, 1}, at))
			}
		}
		scopes, pending := m.Size()
		require.LessOrEqual(t, scopes, maxScopes)
		require.LessOrEqual(t, pending, maxScopes)
	}
	// Unadjusted reservations are forgotten once their window ends.
	late := t0.Add(time.Hour)
	_, err := m.Reserve(ctx, []Check{minuteCheck("user:late", late, 10, 0)}, []int64{1, 0}, late)
	require.NoError(t, err)
	scopes, pending := m.Size()
	require.Equal(t, 1, scopes)
	require.Equal(t, 1, pending)
}

func TestMemoryFullTable(t *testing.T) {
	var changes []Status
	m := NewMemory(spend, MemoryOptions{MaxScopes: 3, OnStateChange: func(s Status) { changes = append(changes, s) }})
	ctx := t.Context()
	checks := func(u string, at time.Time) []Check {
		return []Check{minuteCheck("user:"+u, at, 2), dayCheck("user:"+u, at, 100)}
	}
	for _, u := range []string{"a", "b", "c"} {
		res, err := m.Reserve(ctx, checks(u, t0), []int64{1}, t0)
		require.NoError(t, err)
		require.NoError(t, m.Adjust(ctx, res.Reservation, []int64{-1}, t0))
	}
	// A fourth scope does not fit: the caller's fail mode decides.
	_, err := m.Reserve(ctx, checks("d", t0), []int64{1}, t0)
	require.ErrorIs(t, err, ErrUnavailable)
	require.False(t, m.Status(ctx).Healthy)
	require.Contains(t, m.Status(ctx).LastError, "max_scopes 3")

	// Tracked scopes are still limited exactly.
	for range 2 {
		res, err := m.Reserve(ctx, checks("a", t0), []int64{1}, t0)
		require.NoError(t, err)
		require.True(t, res.Allowed)
	}
	res, err := m.Reserve(ctx, checks("a", t0), []int64{1}, t0)
	require.NoError(t, err)
	require.False(t, res.Allowed)
	require.True(t, m.Status(ctx).Healthy)

	// Day windows keep the scopes alive past the minute; the next day frees them.
	nextMinute := t0.Add(50 * time.Second)
	_, err = m.Reserve(ctx, checks("d", nextMinute), []int64{1}, nextMinute)
	require.ErrorIs(t, err, ErrUnavailable)
	nextDay := time.Date(2030, 5, 7, 0, 0, 0, 0, time.UTC)
	res, err = m.Reserve(ctx, checks("d", nextDay), []int64{1}, nextDay)
	require.NoError(t, err)
	require.True(t, res.Allowed)
	require.Len(t, changes, 4, "one hook call per transition")
	for i, c := range changes {
		require.Equal(t, i%2 == 1, c.Healthy, "transition %d", i)
	}
}

func TestMemoryLaggingClockJoinsNewerWindow(t *testing.T) {
	m := NewMemory(reqTok, MemoryOptions{})
	ctx := t.Context()
	boundary := t0.Add(50 * time.Second)
	res, err := m.Reserve(ctx, []Check{minuteCheck("user:a", boundary, 1, 0)}, []int64{1, 0}, boundary)
	require.NoError(t, err)
	require.True(t, res.Allowed)
	// A goroutine that read the clock just before the boundary does not get
	// a fresh budget from the ended window.
	lag := boundary.Add(-time.Millisecond)
	res, err = m.Reserve(ctx, []Check{minuteCheck("user:a", lag, 1, 0)}, []int64{1, 0}, lag)
	require.NoError(t, err)
	require.False(t, res.Allowed)
	require.Equal(t, Minute.Index(boundary), res.Index)
}

func TestWindows(t *testing.T) {
	at := time.Date(2030, 1, 31, 23, 59, 59, 0, time.UTC)
	require.EqualValues(t, 24360, Month.Index(at))
	require.Equal(t, time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC), Month.End(Month.Index(at)))
	require.Equal(t, time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC), Day.End(Day.Index(at)))
	require.Equal(t, time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC), Minute.End(Minute.Index(at)))
	before := time.Unix(-1, 0)
	require.EqualValues(t, -1, Minute.Index(before))
	require.EqualValues(t, -1, Day.Index(before))
	require.Equal(t, time.Date(1969, 12, 1, 0, 0, 0, 0, time.UTC), Month.Start(Month.Index(before)))
}

func TestSlot(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	require.Equal(t, 12739, Slot("123456789"))
	require.Equal(t, Slot("user1000"), Slot("{user1000}.following"))
	require.Equal(t, Slot("foo{}{bar}"), Slot("foo{}{bar}"))
	require.NotEqual(t, Slot("bar"), Slot("foo{}{bar}"), "an empty tag hashes the whole key")
	require.Equal(t, Slot("{bar"), Slot("foo{{bar}}zap") /* tag is "{bar" */)
}

package budget

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMemory(t *testing.T) {
	testLimiter(t, func(t *testing.T, cfg Config) Limiter {
		require.NoError(t, cfg.Validate())
		return NewMemory(cfg)
	})
}

func TestMemoryEvictsIdleScopes(t *testing.T) {
	const maxScopes = 500
	m := NewMemory(Config{Enabled: true, MaxScopes: maxScopes, PerUser: Policy{Default: Limits{DailyUSD: 10}}})
	ctx := t.Context()
	// 20 days of 400 new users each: never more than one day's worth tracked.
	for day := range 20 {
		at := t0.AddDate(0, 0, day)
		for u := range 400 {
			d, err := m.Reserve(ctx, Request{User: fmt.Sprintf("u%d-%d", day, u), EstimatedUSD: 1}, at)
			require.NoError(t, err)
			require.True(t, d.Allowed)
			if u%2 == 0 {
				require.NoError(t, m.Settle(ctx, d.Reservation, 0.5, at))
			}
		}
		scopes, pending := m.size()
		require.LessOrEqual(t, scopes, maxScopes)
		require.LessOrEqual(t, pending, maxScopes)
	}
	// Unsettled reservations are forgotten once their window ends.
	_, err := m.Reserve(ctx, Request{User: "late", EstimatedUSD: 1}, t0.AddDate(0, 1, 0))
	require.NoError(t, err)
	scopes, pending := m.size()
	require.Equal(t, 1, scopes)
	require.Equal(t, 1, pending)
}

func TestMemoryFullTable(t *testing.T) {
	var changes []BackendStatus
	cfg := Config{Enabled: true, MaxScopes: 3, PerUser: Policy{Default: Limits{DailyUSD: 1, MonthlyUSD: 100}}}
	l, err := New(t.Context(), cfg, Hooks{OnStateChange: func(s BackendStatus) { changes = append(changes, s) }})
	require.NoError(t, err)
	m := l.(*Memory)
	ctx := t.Context()
	for _, u := range []string{"a", "b", "c"} {
		d, err := m.Reserve(ctx, Request{User: u, EstimatedUSD: 0.5}, t0)
		require.NoError(t, err)
		require.NoError(t, m.Cancel(ctx, d.Reservation, t0))
	}
	// A fourth identity does not fit: the caller's fail mode decides.
	_, err = m.Reserve(ctx, Request{User: "d"}, t0)
	require.ErrorIs(t, err, ErrBackendUnavailable)
	require.False(t, m.Status(ctx).Healthy)
	require.Contains(t, m.Status(ctx).LastError, "max_scopes 3")

	// Tracked identities are still limited exactly.
	for range 2 {
		d, err := m.Reserve(ctx, Request{User: "a", EstimatedUSD: 0.5}, t0)
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	d, err := m.Reserve(ctx, Request{User: "a", EstimatedUSD: 0.5}, t0)
	require.NoError(t, err)
	require.False(t, d.Allowed)
	require.True(t, m.Status(ctx).Healthy)

	// Month windows keep the scopes alive past the day; the next month frees them.
	_, err = m.Reserve(ctx, Request{User: "d"}, nextDay)
	require.ErrorIs(t, err, ErrBackendUnavailable)
	d, err = m.Reserve(ctx, Request{User: "d"}, nextMonth)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.Len(t, changes, 4, "one hook call per transition")
	for i, c := range changes {
		require.Equal(t, i%2 == 1, c.Healthy, "transition %d", i)
	}
}

func TestMemoryLaggingClockJoinsNewerWindow(t *testing.T) {
	m := NewMemory(Config{Enabled: true, PerUser: Policy{Default: Limits{DailyUSD: 1}}})
	ctx := t.Context()
	d, err := m.Reserve(ctx, alice(1), nextDay)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	// A goroutine that read the clock just before midnight does not get a
	// fresh budget from the ended day.
	d, err = m.Reserve(ctx, alice(1), nextDay.Add(-time.Millisecond))
	require.NoError(t, err)
	require.False(t, d.Allowed)
}

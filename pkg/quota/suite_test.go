package quota

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// newStoreFunc builds a fresh, empty store counting metrics. Stores built by
// one call of a factory in one test share their backend (two instances).
type newStoreFunc func(t *testing.T, metrics []Metric) Store

// t0 is 50 s before a minute boundary, mid-day and mid-month.
var t0 = time.Date(2030, 5, 6, 12, 30, 10, 0, time.UTC)

// reqTok counts requests (strict) and tokens (optimistic), like the rate
// limiter; spend counts one strict amount, like budgets.
var (
	reqTok = []Metric{{Field: "r"}, {Field: "t", Optimistic: true}}
	spend  = []Metric{{Field: "s"}}
)

func minuteCheck(scope string, at time.Time, limits ...int64) Check {
	return Check{Scope: scope, Window: Minute, Index: Minute.Index(at), Limits: limits}
}

func dayCheck(scope string, at time.Time, limits ...int64) Check {
	return Check{Scope: scope, Window: Day, Index: Day.Index(at), Limits: limits}
}

// twin returns a second instance on the backend of s (the same instance
// for a memory store).
func twin(t *testing.T, s Store) Store {
	if r, ok := s.(*Redis); ok {
		return newRedisLike(t, r)
	}
	return s
}

// testStore is the suite every store passes.
func testStore(t *testing.T, newStore newStoreFunc) {
	t.Run("all or nothing across scopes", func(t *testing.T) {
		s := newStore(t, spend)
		ctx := t.Context()
		checks := func() []Check {
			return []Check{minuteCheck("user:a", t0, 10), dayCheck("key:k", t0, 5), minuteCheck("model:m", t0, 100)}
		}
		res, err := s.Reserve(ctx, checks(), []int64{4}, t0)
		require.NoError(t, err)
		require.True(t, res.Allowed)
		require.Len(t, res.Reservation.Charges, 3)
		// The key's day refuses: nothing is charged anywhere.
		res, err = s.Reserve(ctx, checks(), []int64{2}, t0)
		require.NoError(t, err)
		require.False(t, res.Allowed)
		require.Equal(t, 1, res.Check)
		require.Equal(t, 0, res.Metric)
		require.EqualValues(t, 5, res.Limit)
		require.EqualValues(t, 4, res.Used)
		require.Empty(t, res.Reservation.Charges)
		// The user still holds exactly 4 of 10: 6 fit, 7 do not.
		res, err = s.Reserve(ctx, []Check{minuteCheck("user:a", t0, 10)}, []int64{7}, t0)
		require.NoError(t, err)
		require.False(t, res.Allowed)
		require.EqualValues(t, 4, res.Used)
		res, err = s.Reserve(ctx, []Check{minuteCheck("user:a", t0, 10)}, []int64{6}, t0)
		require.NoError(t, err)
		require.True(t, res.Allowed)
	})

	t.Run("first refusal in plan order", func(t *testing.T) {
		s := newStore(t, reqTok)
		ctx := t.Context()
		var checks []Check
		for i := range 8 {
			checks = append(checks, minuteCheck(fmt.Sprintf("user:u%d", i), t0, 1, 0))
		}
		_, err := s.Reserve(ctx, checks[5:6], []int64{1, 0}, t0)
		require.NoError(t, err)
		_, err = s.Reserve(ctx, checks[2:3], []int64{1, 0}, t0)
		require.NoError(t, err)
		res, err := s.Reserve(ctx, checks, []int64{1, 0}, t0)
		require.NoError(t, err)
		require.False(t, res.Allowed)
		require.Equal(t, 2, res.Check)
		require.Equal(t, Minute.Index(t0), res.Index)
		// The refusal released every slot it had taken: each free scope
		// still admits exactly one.
		for i := range 8 {
			res, err := s.Reserve(ctx, checks[i:i+1], []int64{1, 0}, t0)
			require.NoError(t, err)
			require.Equal(t, i != 2 && i != 5, res.Allowed, "scope %d", i)
		}
	})

	t.Run("optimistic first request", func(t *testing.T) {
		s := newStore(t, reqTok)
		ctx := t.Context()
		c := []Check{minuteCheck("user:a", t0, 0, 100)}
		res, err := s.Reserve(ctx, c, []int64{1, 500}, t0)
		require.NoError(t, err)
		require.True(t, res.Allowed, "the first request of a window passes its token limit")
		res, err = s.Reserve(ctx, c, []int64{1, 1}, t0)
		require.NoError(t, err)
		require.False(t, res.Allowed)
		require.Equal(t, 1, res.Metric)
		require.EqualValues(t, 500, res.Used)
	})

	t.Run("strict metric refuses at the limit even a zero amount", func(t *testing.T) {
		s := newStore(t, spend)
		ctx := t.Context()
		c := []Check{dayCheck("user:a", t0, 10)}
		res, err := s.Reserve(ctx, c, []int64{11}, t0)
		require.NoError(t, err)
		require.False(t, res.Allowed, "no optimistic first request")
		res, err = s.Reserve(ctx, c, []int64{10}, t0)
		require.NoError(t, err)
		require.True(t, res.Allowed)
		res, err = s.Reserve(ctx, c, []int64{0}, t0)
		require.NoError(t, err)
		require.False(t, res.Allowed)
		require.EqualValues(t, 10, res.Used)
	})

	t.Run("adjust exactly once, clamped, current windows only", func(t *testing.T) {
		s := newStore(t, spend)
		ctx := t.Context()
		c := func(at time.Time) []Check {
			return []Check{minuteCheck("user:a", at, 100), dayCheck("user:a", at, 1000)}
		}
		res, err := s.Reserve(ctx, c(t0), []int64{30}, t0)
		require.NoError(t, err)
		// JSON round trip: another instance can settle it.
		raw, err := json.Marshal(res.Reservation)
		require.NoError(t, err)
		var back Reservation
		require.NoError(t, json.Unmarshal(raw, &back))
		require.Equal(t, res.Reservation, back)
		require.NoError(t, s.Adjust(ctx, back, []int64{-20}, t0)) // actual 10
		require.NoError(t, s.Adjust(ctx, back, []int64{-20}, t0)) // second: nothing
		used := func(at time.Time, w int) int64 {
			t.Helper()
			r, err := s.Reserve(ctx, c(at)[w:w+1], []int64{1 << 40}, at)
			require.NoError(t, err)
			require.False(t, r.Allowed)
			return r.Used
		}
		require.EqualValues(t, 10, used(t0, 0))
		require.EqualValues(t, 10, used(t0, 1))

		// A reservation adjusted after its minute rotated changes only the day.
		res, err = s.Reserve(ctx, c(t0), []int64{50}, t0)
		require.NoError(t, err)
		later := t0.Add(time.Minute)
		require.NoError(t, s.Adjust(ctx, res.Reservation, []int64{-1000}, later))
		require.EqualValues(t, 60, used(t0, 0), "the rotated minute keeps its estimate")
		require.EqualValues(t, 0, used(later, 1), "clamped at 0")
	})

	t.Run("windows are independent", func(t *testing.T) {
		s := newStore(t, reqTok)
		ctx := t.Context()
		res, err := s.Reserve(ctx, []Check{minuteCheck("user:a", t0, 1, 0)}, []int64{1, 0}, t0)
		require.NoError(t, err)
		require.True(t, res.Allowed)
		next := t0.Add(50 * time.Second)
		res, err = s.Reserve(ctx, []Check{minuteCheck("user:a", next, 1, 0)}, []int64{1, 0}, next)
		require.NoError(t, err)
		require.True(t, res.Allowed, "a new minute starts empty")
	})

	t.Run("no checks admits", func(t *testing.T) {
		s := newStore(t, spend)
		res, err := s.Reserve(t.Context(), nil, []int64{5}, t0)
		require.NoError(t, err)
		require.True(t, res.Allowed)
		require.Empty(t, res.Reservation.Charges)
		require.NoError(t, s.Adjust(t.Context(), res.Reservation, []int64{-5}, t0))
		require.True(t, s.Status(t.Context()).Healthy)
	})

	t.Run("concurrent reservations across instances never pass the limit", func(t *testing.T) {
		a := newStore(t, reqTok)
		b := twin(t, a)
		const limit, calls = 40, 400
		var admitted, concurrentN atomic.Int64
		var wg sync.WaitGroup
		for i := range calls {
			st := a
			if i%2 == 1 {
				st = b
			}
			wg.Go(func() {
				checks := []Check{minuteCheck("global", t0, 0, 0), minuteCheck(fmt.Sprintf("user:u%d", i%4), t0, limit/4, 0),
					dayCheck("provider:openai", t0, limit, 0)}
				res, err := st.Reserve(t.Context(), checks, []int64{1, 3}, t0)
				if err == nil && res.Allowed {
					admitted.Add(1)
					concurrentN.Add(1)
					if i%3 == 0 {
						_ = st.Adjust(t.Context(), res.Reservation, []int64{0, -3}, t0)
					}
				}
			})
		}
		wg.Wait()
		// Never above the limits, and nothing leaked: sequential calls
		// admit exactly what is left.
		require.LessOrEqual(t, admitted.Load(), int64(limit))
		concurrent := concurrentN.Load()
		for u := range 4 {
			for {
				checks := []Check{minuteCheck("global", t0, 0, 0), minuteCheck(fmt.Sprintf("user:u%d", u), t0, limit/4, 0),
					dayCheck("provider:openai", t0, limit, 0)}
				res, err := a.Reserve(t.Context(), checks, []int64{1, 3}, t0)
				require.NoError(t, err)
				if !res.Allowed {
					break
				}
				admitted.Add(1)
			}
		}
		require.EqualValues(t, limit, admitted.Load())
		if r, ok := a.(*Redis); !ok || !r.cluster {
			// One script (or one lock) decides: no call was refused while
			// the limits had room.
			require.EqualValues(t, limit, concurrent)
		}
	})
}

package budget

import "time"

// Window is the period a budget limit applies to.
type Window string

// Windows, aligned to the UTC calendar.
const (
	// WindowDay is a UTC day, 00:00 to 24:00 UTC. Its index is the number of
	// days since the Unix epoch.
	WindowDay Window = "day"
	// WindowMonth is a UTC calendar month. Its index is year*12 + month - 1
	// (month 1 to 12), so January 2030 is 24360.
	WindowMonth Window = "month"
)

const secondsPerDay = 86400

// windowIndex is the index of the window w that contains now.
func windowIndex(now time.Time, w Window) int64 {
	if w == WindowMonth {
		u := now.UTC()
		return int64(u.Year())*12 + int64(u.Month()) - 1
	}
	s := now.Unix()
	idx := s / secondsPerDay
	if s%secondsPerDay < 0 {
		idx--
	}
	return idx
}

// windowStart is when window idx of w starts.
func windowStart(w Window, idx int64) time.Time {
	if w == WindowMonth {
		y, m := idx/12, idx%12
		if m < 0 {
			y, m = y-1, m+12
		}
		return time.Date(int(y), time.Month(m+1), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Unix(idx*secondsPerDay, 0).UTC()
}

// windowEnd is when window idx of w ends (the next one starts).
func windowEnd(w Window, idx int64) time.Time { return windowStart(w, idx+1) }

// windowLabel names window idx of w: "2030-05-06" for a day, "2030-05" for
// a month.
func windowLabel(w Window, idx int64) string {
	if w == WindowMonth {
		return windowStart(w, idx).Format("2006-01")
	}
	return windowStart(w, idx).Format(time.DateOnly)
}

package quota

import "time"

// Window is the length of a fixed window, aligned to the UTC calendar.
type Window string

// Windows.
const (
	// Minute starts at second 0 of every UTC minute; its index is minutes
	// since the Unix epoch.
	Minute Window = "minute"
	// Day is 00:00 to 24:00 UTC; its index is days since the Unix epoch.
	Day Window = "day"
	// Month is a UTC calendar month; its index is year*12 + month - 1
	// (month 1 to 12), so January 2030 is 24360.
	Month Window = "month"
)

// Index is the index of the window w that contains now.
func (w Window) Index(now time.Time) int64 {
	if w == Month {
		u := now.UTC()
		return int64(u.Year())*12 + int64(u.Month()) - 1
	}
	s, size := now.Unix(), w.seconds()
	idx := s / size
	if s%size < 0 {
		idx--
	}
	return idx
}

// Start is when window idx of w starts.
func (w Window) Start(idx int64) time.Time {
	if w == Month {
		y, m := idx/12, idx%12
		if m < 0 {
			y, m = y-1, m+12
		}
		return time.Date(int(y), time.Month(m+1), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Unix(idx*w.seconds(), 0).UTC()
}

// End is when window idx of w ends (the next one starts).
func (w Window) End(idx int64) time.Time { return w.Start(idx + 1) }

func (w Window) seconds() int64 {
	if w == Day {
		return 86400
	}
	return 60
}

// code is the window's short name in Redis keys.
func (w Window) code() string {
	switch w {
	case Day:
		return "d"
	case Month:
		return "mo"
	default:
		return "m"
	}
}

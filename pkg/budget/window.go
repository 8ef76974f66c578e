package budget

import (
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// Window is the period a budget limit applies to.
type Window = quota.Window

// Windows, aligned to the UTC calendar.
const (
	// WindowDay is a UTC day, 00:00 to 24:00 UTC. Its index is the number of
	// days since the Unix epoch.
	WindowDay = quota.Day
	// WindowMonth is a UTC calendar month. Its index is year*12 + month - 1
	// (month 1 to 12), so January 2030 is 24360.
	WindowMonth = quota.Month
)

// windowLabel names window idx of w: "2030-05-06" for a day, "2030-05" for
// a month.
func windowLabel(w Window, idx int64) string {
	if w == WindowMonth {
		return w.Start(idx).Format("2006-01")
	}
	return w.Start(idx).Format(time.DateOnly)
}

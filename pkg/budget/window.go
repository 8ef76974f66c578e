package budget

import "github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"

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

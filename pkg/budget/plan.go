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

// Scope kinds, also the prefixes of [Decision.Scope].
const (
	scopeKey  = "key:"
	scopeTeam = "team:"
	scopeUser = "user:"
)

// metrics is what every budget window counts: spend, strictly (no
// optimistic first request).
var metrics = []quota.Metric{{Field: "s"}}

// plan appends to dst the checks that apply to req at now, in evaluation
// order: the key's budget (the gateway key's own when it sets one, else the
// configured one), the team's, then the user's; for each, the day before
// the month. Windows whose limit is 0 are left out.
func (c *Config) plan(dst []quota.Check, req Request, now time.Time) []quota.Check {
	day, month := WindowDay.Index(now), WindowMonth.Index(now)
	if req.KeyID != "" {
		l := c.PerKey.limits(req.KeyID)
		if req.KeyBudget != nil && !req.KeyBudget.IsZero() {
			l = *req.KeyBudget
		}
		dst = appendChecks(dst, quota.ScopeName(scopeKey, req.KeyID), l, day, month)
	}
	if req.Team != "" && req.TeamBudget != nil {
		dst = appendChecks(dst, quota.ScopeName(scopeTeam, req.Team), *req.TeamBudget, day, month)
	}
	if req.User != "" {
		dst = appendChecks(dst, quota.ScopeName(scopeUser, req.User), c.PerUser.limits(req.User), day, month)
	}
	return dst
}

func appendChecks(dst []quota.Check, scope string, l Limits, day, month int64) []quota.Check {
	dst = quota.AddCheck(dst, scope, WindowDay, day, Nanos(l.DailyUSD))
	return quota.AddCheck(dst, scope, WindowMonth, month, Nanos(l.MonthlyUSD))
}

// denial builds the refusal the store reported for checks.
func denial(checks []quota.Check, r quota.Result, charge int64) Decision {
	ch := checks[r.Check]
	return Decision{
		Degraded:      r.Degraded,
		Scope:         ch.Scope,
		Window:        ch.Window,
		LimitNanos:    r.Limit,
		SpendNanos:    r.Used,
		EstimateNanos: charge,
		Reset:         ch.Window.End(r.Index),
	}
}

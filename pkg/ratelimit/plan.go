package ratelimit

import (
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// Scope kinds, also the prefixes of [Decision.Scope].
const (
	scopeGlobal   = "global"
	scopeProvider = "provider:"
	scopeModel    = "model:"
	scopeKey      = "key:"
	scopeTeam     = "team:"
	scopeUser     = "user:"
)

// metrics are what every window counts: requests (checked strictly) and
// tokens (optimistic first request).
var metrics = []quota.Metric{{Field: "r"}, {Field: "t", Optimistic: true}}

// plan appends to dst the checks that apply to req at now, in the order
// they are evaluated: scopes global, provider, model, key, team, user; for each,
// the minute window before the day window. Windows whose limits are all 0
// are left out. Each check's limits are {requests, tokens}.
func (c *Config) plan(dst []quota.Check, req Request, now time.Time) []quota.Check {
	minute, day := quota.Minute.Index(now), quota.Day.Index(now)
	dst = appendChecks(dst, scopeGlobal, c.Global, minute, day)
	if l, ok := c.PerProvider[req.Provider]; ok && req.Provider != "" {
		dst = appendChecks(dst, quota.ScopeName(scopeProvider, req.Provider), l, minute, day)
	}
	if l, ok := c.Overrides.PerModel[req.Model]; ok && req.Model != "" {
		dst = appendChecks(dst, quota.ScopeName(scopeModel, req.Model), l, minute, day)
	}
	if req.KeyID != "" {
		l, ok := c.Overrides.PerKey[req.KeyID]
		if !ok {
			l = c.Limits
		}
		if req.KeyLimits != nil && !req.KeyLimits.IsZero() {
			l = *req.KeyLimits
		}
		dst = appendChecks(dst, quota.ScopeName(scopeKey, req.KeyID), l, minute, day)
	}
	if req.Team != "" && req.TeamLimits != nil {
		dst = appendChecks(dst, quota.ScopeName(scopeTeam, req.Team), *req.TeamLimits, minute, day)
	}
	if req.User != "" {
		l, ok := c.Overrides.PerUser[req.User]
		if !ok {
			l = c.Limits
		}
		dst = appendChecks(dst, quota.ScopeName(scopeUser, req.User), l, minute, day)
	}
	return dst
}

func appendChecks(dst []quota.Check, scope string, l Limits, minute, day int64) []quota.Check {
	dst = quota.AddCheck(dst, scope, WindowMinute, minute, l.RequestsPerMinute, l.TokensPerMinute)
	return quota.AddCheck(dst, scope, WindowDay, day, l.RequestsPerDay, l.TokensPerDay)
}

// denial builds the refusal the store reported for checks.
func denial(checks []quota.Check, r quota.Result, now time.Time) Decision {
	ch := checks[r.Check]
	m := MetricRequests
	if r.Metric == 1 {
		m = MetricTokens
	}
	reset := ch.Window.End(r.Index)
	return Decision{
		Degraded:   r.Degraded,
		Scope:      ch.Scope,
		Metric:     m,
		Window:     ch.Window,
		Limit:      r.Limit,
		Remaining:  max(r.Limit-r.Used, 0),
		Reset:      reset,
		RetryAfter: max(reset.Sub(now), 0),
	}
}

package processor

import (
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
)

// GatewayKeyLimits returns the rate limits of a gateway key and of its
// team exactly as admission hands them to the rate limiter (nil when none
// is set), so reports of those limits (the console's headroom) read the
// same windows.
func GatewayKeyLimits(id *keys.Identity) (key *ratelimit.Limits, team string, teamLimits *ratelimit.Limits) {
	if id == nil {
		return nil, "", nil
	}
	conv := func(l keys.Limits) *ratelimit.Limits {
		return &ratelimit.Limits{RequestsPerMinute: l.RequestsPerMinute, TokensPerMinute: l.TokensPerMinute,
			RequestsPerDay: l.RequestsPerDay, TokensPerDay: l.TokensPerDay}
	}
	if !id.Key.Limits.IsZero() {
		key = conv(id.Key.Limits)
	}
	if id.Team != nil && !id.Team.Limits.IsZero() {
		team, teamLimits = id.Team.ID, conv(id.Team.Limits)
	}
	return key, team, teamLimits
}

// GatewayKeyBudgets is [GatewayKeyLimits] for the budget limiter.
func GatewayKeyBudgets(id *keys.Identity) (key *budget.Limits, team string, teamBudget *budget.Limits) {
	if id == nil {
		return nil, "", nil
	}
	if b := id.Key.Budget; !b.IsZero() {
		key = &budget.Limits{DailyUSD: b.DailyUSD, MonthlyUSD: b.MonthlyUSD}
	}
	if id.Team != nil && !id.Team.Budget.IsZero() {
		b := id.Team.Budget
		team, teamBudget = id.Team.ID, &budget.Limits{DailyUSD: b.DailyUSD, MonthlyUSD: b.MonthlyUSD}
	}
	return key, team, teamBudget
}

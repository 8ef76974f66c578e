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
	return gatewayKeyLimits(id)
}

// GatewayKeyBudgets is [GatewayKeyLimits] for the budget limiter.
func GatewayKeyBudgets(id *keys.Identity) (key *budget.Limits, team string, teamBudget *budget.Limits) {
	return gatewayKeyBudgets(id)
}

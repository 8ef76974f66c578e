package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

const reloadBase = `
providers:
  openai:
    models:
      gpt-x: {pricing: {input: 1, output: 2}}
features:
  rate_limiting:
    enabled: true
    backend: memory
    global: {requests_per_day: 10}
  cost_tracking:
    enabled: true
    budgets:
      enabled: true
      per_user: {default: {daily_usd: 5}}
`

func TestRestartRequiredAndReloadable(t *testing.T) {
	tests := []struct {
		name    string
		next    string // appended to reloadBase as a second document
		restart []string
		check   func(t *testing.T, merged Config)
	}{
		{
			name: "nothing changed",
		},
		{
			name: "limits, budgets and prices are live",
			next: `
providers:
  openai:
    models:
      gpt-x: {pricing: {input: 3, output: 4}}
features:
  rate_limiting:
    global: {requests_per_day: 3}
    per_provider: {openai: {requests_per_minute: 7}}
  cost_tracking:
    budgets:
      per_user: {default: {daily_usd: 1}}
      per_key: {default: {monthly_usd: 9}}
`,
			check: func(t *testing.T, m Config) {
				require.EqualValues(t, 3, m.Features.RateLimiting.Global.RequestsPerDay)
				require.EqualValues(t, 7, m.Features.RateLimiting.PerProvider["openai"].RequestsPerMinute)
				require.InDelta(t, 1, m.Features.CostTracking.Budgets.PerUser.Default.DailyUSD, 0)
				require.InDelta(t, 9, m.Features.CostTracking.Budgets.PerKey.Default.MonthlyUSD, 0)
				require.InDelta(t, 3, m.Providers["openai"].Models["gpt-x"].Pricing.Input, 0)
			},
		},
		{
			name: "store settings need a restart and keep their running value",
			next: `
features:
  rate_limiting:
    key_prefix: "other:"
    fail_mode: closed
    global: {requests_per_day: 3}
`,
			restart: []string{"features.rate_limiting.fail_mode", "features.rate_limiting.key_prefix"},
			check: func(t *testing.T, m Config) {
				require.EqualValues(t, 3, m.Features.RateLimiting.Global.RequestsPerDay, "the live part applies")
				require.NotEqual(t, "other:", m.Features.RateLimiting.KeyPrefix)
				require.NotEqual(t, "closed", m.Features.RateLimiting.FailMode)
			},
		},
		{
			name:    "feature enablement needs a restart",
			next:    "features:\n  circuit_breaker:\n    enabled: true\n",
			restart: []string{"features.circuit_breaker.enabled"},
			check: func(t *testing.T, m Config) {
				require.False(t, m.Features.CircuitBreaker.Enabled)
			},
		},
		{
			name: "a new provider's prices are live",
			next: `
providers:
  anthropic:
    models:
      claude-x: {pricing: {input: 1, output: 1}}
`,
			check: func(t *testing.T, m Config) {
				require.Contains(t, m.Providers["anthropic"].Models, "claude-x")
				require.Contains(t, m.Providers["openai"].Models, "gpt-x")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running, err := Parse(nil, []byte(reloadBase))
			require.NoError(t, err)
			docs := [][]byte{[]byte(reloadBase)}
			if tt.next != "" {
				docs = append(docs, []byte(tt.next))
			}
			next, err := Parse(nil, docs...)
			require.NoError(t, err)
			require.Equal(t, tt.restart, RestartRequired(running, next))
			merged := Reloadable(running, next)
			require.Empty(t, RestartRequired(running, merged), "the merge changes only live rules")
			if tt.check != nil {
				tt.check(t, merged)
			}
		})
	}
}

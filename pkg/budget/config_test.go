package budget

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/usage"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		errs []string
	}{
		{name: "zero value", cfg: Config{}},
		{name: "full", cfg: Config{
			Enabled: true, Settings: quota.Settings{Backend: quota.BackendRedis, FailMode: quota.FailClosed, Redis: redisconf.Config{URL: "redis://localhost:6379/2"}, KeyPrefix: "x:"},
			PerKey:  Policy{Default: Limits{DailyUSD: 10, MonthlyUSD: 200}, Overrides: map[string]Limits{"k": {}}},
			PerUser: Policy{Overrides: map[string]Limits{"alice": {DailyUSD: 0.5}}},
		}},
		{name: "every problem at once", cfg: Config{
			Settings:      quota.Settings{Backend: "etcd", FailMode: "maybe", KeyPrefix: "a{b}", MaxScopes: -1},
			PerKey:        Policy{Default: Limits{DailyUSD: -1, MonthlyUSD: math.NaN()}},
			PerUser:       Policy{Overrides: map[string]Limits{"": {}, "bob": {MonthlyUSD: math.Inf(1)}, "carol": {DailyUSD: 0.0000000001}}},
			MaxUsageNames: -2, ReportRows: -3,
		}, errs: []string{
			`features.cost_tracking.budgets.backend: must be "memory" or "redis", got "etcd"`,
			`features.cost_tracking.budgets.fail_mode: must be "open", "closed" or "local", got "maybe"`,
			`features.cost_tracking.budgets.per_key.default.daily_usd: must be 0 (unlimited) or a positive amount up to 1e+09, got -1`,
			`features.cost_tracking.budgets.per_key.default.monthly_usd: must be 0 (unlimited) or a positive amount up to 1e+09, got NaN`,
			`features.cost_tracking.budgets.per_user.overrides: empty name`,
			`features.cost_tracking.budgets.per_user.overrides.bob.monthly_usd: must be 0 (unlimited) or a positive amount up to 1e+09, got +Inf`,
			`features.cost_tracking.budgets.per_user.overrides.carol.daily_usd: must be at least 0.000000001 (one nano-dollar), got 1e-10`,
			`features.cost_tracking.budgets.key_prefix: must not contain '{' or '}'`,
			`features.cost_tracking.budgets.max_scopes: must not be negative, got -1`,
			`features.cost_tracking.budgets.max_usage_names: must not be negative, got -2`,
			`features.cost_tracking.budgets.report_rows: must not be negative, got -3`,
		}},
		{name: "redis without address", cfg: Config{Settings: quota.Settings{Backend: quota.BackendRedis, Redis: redisconf.Config{DB: intp(-1)}}}, errs: []string{
			`features.cost_tracking.budgets.redis: url, address or addresses is required`,
			`features.cost_tracking.budgets.redis.db: must not be negative, got -1`,
		}},
		{name: "bad redis url hides the password", cfg: Config{Settings: quota.Settings{Backend: quota.BackendRedis, Redis: redisconf.Config{URL: "http://u:secret@h"}}}, errs: []string{
			`features.cost_tracking.budgets.redis.url: not a valid redis:// or rediss:// URL`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.errs) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, e := range tt.errs {
				require.ErrorContains(t, err, e)
			}
			require.NotContains(t, err.Error(), "secret")
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.ApplyDefaults()
	require.Equal(t, Config{Settings: quota.Settings{Backend: quota.BackendMemory, FailMode: quota.FailOpen, ExpectedInstances: 1, KeyPrefix: "llmproxy:budget:", MaxScopes: 100_000},
		MaxUsageNames: 10_000, ReportRows: 1000}, c)
	require.False(t, c.FailClosed())
	require.True(t, Config{Settings: quota.Settings{FailMode: quota.FailClosed}}.FailClosed())
	require.True(t, Limits{}.IsZero())
	require.False(t, Limits{MonthlyUSD: 0.01}.IsZero())
}

func TestNew(t *testing.T) {
	l, err := New(t.Context(), Config{PerUser: Policy{Default: Limits{DailyUSD: 1}}}, quota.Hooks{})
	require.NoError(t, err)
	require.Equal(t, Nop{}, l, "disabled budgets admit everything")
	d, err := l.Reserve(t.Context(), alice(1e6), t0)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.Equal(t, "disabled", l.Status(t.Context()).Backend)
	require.NoError(t, l.Settle(t.Context(), d.Reservation, 1, t0))
	require.NoError(t, l.Cancel(t.Context(), d.Reservation, t0))
	require.NoError(t, l.Close())

	_, err = New(t.Context(), Config{Enabled: true, Settings: quota.Settings{Backend: "nope"}}, quota.Hooks{})
	require.ErrorContains(t, err, "backend")

	l, err = New(t.Context(), Config{Enabled: true}, quota.Hooks{})
	require.NoError(t, err)
	require.IsType(t, &quota.Memory{}, l.(*Quota).Store())
	// The ledger works with budgets disabled.
	require.Equal(t, usage.Config{Backend: quota.BackendMemory, KeyPrefix: DefaultKeyPrefix, MaxUsageNames: DefaultMaxUsageNames,
		ReportRows: DefaultReportRows}, func() Config { var c Config; c.ApplyDefaults(); return c }().Ledger())
}
func intp(i int) *int { return &i }

package breaker

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func intp(v int) *int { return &v }

func TestDefaults(t *testing.T) {
	c := Defaults()
	require.Equal(t, Config{
		Mode:                            ModeEnforce,
		Backend:                         BackendMemory,
		FailureThreshold:                5,
		WindowSeconds:                   120,
		CooldownSeconds:                 300,
		MaxTransientRetries:             intp(2),
		MaxRateLimitRetries:             intp(2),
		RetryContributionMode:           ContributionLog,
		GlobalRateLimitEscalationWindow: 60,
		ProbeLeaseSeconds:               60,
		DegradedSignal:                  "[LLM_PROXY_PROVIDER_DEGRADED]",
		KeyPrefix:                       "llmproxy:cb:",
	}, c)
	require.NoError(t, c.Validate())
	require.Equal(t, Policy{
		Threshold: 5, Window: 120 * time.Second, Cooldown: 300 * time.Second, ProbeLease: time.Minute,
		EscalationWindow: time.Minute, Retention: 30 * time.Minute, MaxWindowEntries: 256,
	}, c.Policy())
}

func TestApplyDefaultsKeepsExplicitZeroRetries(t *testing.T) {
	c := Config{MaxTransientRetries: intp(0)}
	c.ApplyDefaults()
	require.Equal(t, 0, c.TransientRetries())
	require.Equal(t, 2, c.RateLimitRetries())
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Config)
		errs []string
	}{
		{"defaults", func(*Config) {}, nil},
		{"log mode and redis url", func(c *Config) {
			c.Mode, c.Backend, c.Redis.URL = ModeLog, BackendRedis, "redis://:secret@localhost:6379/2"
		}, nil},
		{"signal of 256 multibyte characters", func(c *Config) { c.DegradedSignal = strings.Repeat("é", 256) }, nil},
		{"every problem at once", func(c *Config) {
			c.Mode, c.Backend, c.RetryContributionMode = "block", "etcd", "always"
			c.FailureThreshold, c.WindowSeconds, c.CooldownSeconds = -1, -5, 1<<30
			c.GlobalRateLimitEscalationWindow, c.ProbeLeaseSeconds = -1, -1
			c.MaxTransientRetries, c.MaxRateLimitRetries = intp(-1), intp(11)
			c.DegradedSignal = strings.Repeat("x", 257)
			c.KeyPrefix = "a b"
			c.Redis.DB = intp(-1)
		}, []string{
			`features.circuit_breaker.mode: must be "enforce" or "log", got "block"`,
			`features.circuit_breaker.backend: must be "memory" or "redis", got "etcd"`,
			`features.circuit_breaker.retry_contribution_mode: must be "off", "log" or "on", got "always"`,
			`features.circuit_breaker.failure_threshold: must be between 1 and 10000, got -1`,
			`features.circuit_breaker.window_seconds: must be between 1 and 604800 seconds, got -5`,
			`features.circuit_breaker.cooldown_seconds: must be between 1 and 604800 seconds, got 1073741824`,
			`features.circuit_breaker.global_rate_limit_escalation_window: must be between 1 and 604800 seconds, got -1`,
			`features.circuit_breaker.probe_lease_seconds: must be between 1 and 604800 seconds, got -1`,
			`features.circuit_breaker.max_transient_retries: must be between 0 and 10, got -1`,
			`features.circuit_breaker.max_rate_limit_retries: must be between 0 and 10, got 11`,
			`features.circuit_breaker.degraded_signal: must be at most 256 characters, got 257`,
			`features.circuit_breaker.key_prefix: must not contain whitespace, got "a b"`,
		}},
		{"redis db", func(c *Config) { c.Backend, c.Redis.Address, c.Redis.DB = BackendRedis, "r:1", intp(-1) }, []string{
			`features.circuit_breaker.redis.db: must not be negative, got -1`,
		}},
		{"invalid utf-8 signal", func(c *Config) { c.DegradedSignal = "\xff" }, []string{
			"features.circuit_breaker.degraded_signal: must be valid UTF-8",
		}},
		{"redis without address", func(c *Config) { c.Backend = BackendRedis }, []string{
			`features.circuit_breaker.redis: url, address or addresses is required`,
		}},
		{"bad redis url does not leak the password", func(c *Config) {
			c.Backend, c.Redis.URL = BackendRedis, "http://user:hunter2@host"
		}, []string{"features.circuit_breaker.redis.url: not a valid redis:// or rediss:// URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.edit(&c)
			err := c.Validate()
			if tt.errs == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.NotContains(t, err.Error(), "hunter2")
			lines := strings.Split(err.Error(), "\n")
			require.Len(t, lines, len(tt.errs))
			for i, want := range tt.errs {
				require.True(t, strings.HasPrefix(lines[i], want), "got %q, want prefix %q", lines[i], want)
			}
		})
	}
}

package breaker

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
)

// Mode values for [Config.Mode].
const (
	// ModeEnforce answers refused requests locally and replaces terminal
	// degraded responses with the degraded signal.
	ModeEnforce = "enforce"
	// ModeLog observes and records only: every request is admitted and no
	// response is replaced, but state moves exactly as in enforce mode.
	ModeLog = "log"
)

// Backend values for [Config.Backend].
const (
	// BackendMemory keeps state in this process (one instance only).
	BackendMemory = "memory"
	// BackendRedis shares state between instances through Redis.
	BackendRedis = "redis"
)

// Retry contribution modes for [Config.RetryContributionMode].
const (
	// ContributionOff ignores failed attempts; only the terminal failure counts.
	ContributionOff = "off"
	// ContributionLog reports failed attempts through [Hooks.OnAttempt]
	// without counting them; only the terminal failure counts.
	ContributionLog = "log"
	// ContributionOn counts every failed degraded attempt as a failure.
	ContributionOn = "on"
)

// Defaults used when a field of [Config] is zero.
const (
	DefaultMode                  = ModeEnforce
	DefaultBackend               = BackendMemory
	DefaultFailureThreshold      = 5
	DefaultWindowSeconds         = 120
	DefaultCooldownSeconds       = 300
	DefaultMaxTransientRetries   = 2
	DefaultMaxRateLimitRetries   = 2
	DefaultContributionMode      = ContributionLog
	DefaultEscalationWindow      = 60
	DefaultProbeLeaseSeconds     = 60
	DefaultSignal                = "[LLM_PROXY_PROVIDER_DEGRADED]"
	DefaultKeyPrefix             = "llmproxy:cb:"
	MaxSignalLength              = 256
	maxFailureThreshold          = 10000
	maxSeconds                   = 7 * 24 * 3600
	maxRetries                   = 10
	configPath                   = "features.circuit_breaker"
	defaultRedisTimeout          = 500 * time.Millisecond
	retentionCooldowns           = 6
	minWindowEntries             = 256
	defaultMaxKeys               = 10000
	fallbackMinBackoff           = time.Second
	fallbackMaxBackoff           = 30 * time.Second
	defaultRedisStartupPingLimit = 2 * time.Second
)

// Config configures the circuit breaker. It is read from YAML under
// features.circuit_breaker (JSON tags). A zero numeric or string field means
// its default; call [Config.ApplyDefaults] and then [Config.Validate].
type Config struct {
	// Enabled gates the feature. Default false: [New] returns a breaker
	// that admits everything and records nothing.
	Enabled bool `json:"enabled"`
	// Mode is "enforce" (default) or "log".
	Mode string `json:"mode"`
	// Backend is "memory" (default, single instance) or "redis".
	Backend string `json:"backend"`
	// FailureThreshold is the number of failures inside the sliding window
	// that opens a closed key. Default 5; 0 means the default.
	FailureThreshold int `json:"failure_threshold"`
	// WindowSeconds is the sliding failure window, in seconds. Default 120.
	WindowSeconds int `json:"window_seconds"`
	// CooldownSeconds is how long an opened key fast-fails before one probe
	// is admitted, in seconds. Default 300.
	CooldownSeconds int `json:"cooldown_seconds"`
	// MaxTransientRetries is the number of retries of degraded attempts
	// (Envoy's retry policy should use the same value). Nil means the
	// default, 2; an explicit 0 disables them. The breaker only carries the
	// value for the caller; see [Config.TransientRetries].
	MaxTransientRetries *int `json:"max_transient_retries,omitempty"`
	// MaxRateLimitRetries is the number of retries of rate-limited attempts.
	// Nil means the default, 2; see [Config.RateLimitRetries].
	MaxRateLimitRetries *int `json:"max_rate_limit_retries,omitempty"`
	// RetryContributionMode is "off", "log" (default) or "on"; see
	// [ContributionOff], [ContributionLog] and [ContributionOn].
	RetryContributionMode string `json:"retry_contribution_mode"`
	// GlobalRateLimitEscalationWindow is how long, in seconds, global rate
	// limits must keep arriving on a key (across requests, gaps no longer
	// than the window) before they count as degraded. Default 60.
	GlobalRateLimitEscalationWindow int `json:"global_rate_limit_escalation_window"`
	// ProbeLeaseSeconds bounds how long a half-open probe holds its slot
	// without reporting; after it, another probe is admitted. It should
	// exceed the time a vendor takes to send response headers. Default 60.
	ProbeLeaseSeconds int `json:"probe_lease_seconds"`
	// DegradedSignal is the marker placed in degraded responses. Empty
	// means "[LLM_PROXY_PROVIDER_DEGRADED]"; at most 256 characters.
	DegradedSignal string `json:"degraded_signal"`
	// TestModeEnabled allows the test-mode header; the caller also requires
	// LLM_PROXY_ALLOW_TEST_MODE=1 in the environment. Default false.
	TestModeEnabled bool `json:"test_mode_enabled"`
	// Redis locates the server for backend "redis".
	Redis RedisConfig `json:"redis"`
	// KeyPrefix prefixes every Redis key. Default "llmproxy:cb:".
	KeyPrefix string `json:"key_prefix"`
}

// RedisConfig locates the Redis deployment: mode single, sentinel or
// cluster, addresses, master_name, username, password, db, tls, and the
// older url and address keys as aliases (see internal/redisconf; a
// non-empty address or password overrides the url's, and db when set).
type RedisConfig = redisconf.Config

// ApplyDefaults replaces every zero field with its default.
func (c *Config) ApplyDefaults() {
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setStr(&c.Mode, DefaultMode)
	setStr(&c.Backend, DefaultBackend)
	setStr(&c.RetryContributionMode, DefaultContributionMode)
	setStr(&c.DegradedSignal, DefaultSignal)
	setStr(&c.KeyPrefix, DefaultKeyPrefix)
	setInt(&c.FailureThreshold, DefaultFailureThreshold)
	setInt(&c.WindowSeconds, DefaultWindowSeconds)
	setInt(&c.CooldownSeconds, DefaultCooldownSeconds)
	setInt(&c.GlobalRateLimitEscalationWindow, DefaultEscalationWindow)
	setInt(&c.ProbeLeaseSeconds, DefaultProbeLeaseSeconds)
	if c.MaxTransientRetries == nil {
		v := DefaultMaxTransientRetries
		c.MaxTransientRetries = &v
	}
	if c.MaxRateLimitRetries == nil {
		v := DefaultMaxRateLimitRetries
		c.MaxRateLimitRetries = &v
	}
}

// Defaults returns the configuration with every default applied.
func Defaults() Config {
	c := Config{}
	c.ApplyDefaults()
	return c
}

// TransientRetries returns MaxTransientRetries, or its default when nil.
func (c *Config) TransientRetries() int {
	if c.MaxTransientRetries == nil {
		return DefaultMaxTransientRetries
	}
	return *c.MaxTransientRetries
}

// RateLimitRetries returns MaxRateLimitRetries, or its default when nil.
func (c *Config) RateLimitRetries() int {
	if c.MaxRateLimitRetries == nil {
		return DefaultMaxRateLimitRetries
	}
	return *c.MaxRateLimitRetries
}

// Validate reports every problem of c at once, joined, each prefixed with
// its YAML path under features.circuit_breaker. Call it after
// [Config.ApplyDefaults].
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", configPath, field, fmt.Sprintf(format, args...)))
	}
	if c.Mode != ModeEnforce && c.Mode != ModeLog {
		bad("mode", "must be %q or %q, got %q", ModeEnforce, ModeLog, c.Mode)
	}
	if c.Backend != BackendMemory && c.Backend != BackendRedis {
		bad("backend", "must be %q or %q, got %q", BackendMemory, BackendRedis, c.Backend)
	}
	switch c.RetryContributionMode {
	case ContributionOff, ContributionLog, ContributionOn:
	default:
		bad("retry_contribution_mode", "must be %q, %q or %q, got %q", ContributionOff, ContributionLog, ContributionOn, c.RetryContributionMode)
	}
	if c.FailureThreshold < 1 || c.FailureThreshold > maxFailureThreshold {
		bad("failure_threshold", "must be between 1 and %d, got %d", maxFailureThreshold, c.FailureThreshold)
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"window_seconds", c.WindowSeconds},
		{"cooldown_seconds", c.CooldownSeconds},
		{"global_rate_limit_escalation_window", c.GlobalRateLimitEscalationWindow},
		{"probe_lease_seconds", c.ProbeLeaseSeconds},
	} {
		if f.v < 1 || f.v > maxSeconds {
			bad(f.name, "must be between 1 and %d seconds, got %d", maxSeconds, f.v)
		}
	}
	if n := c.TransientRetries(); n < 0 || n > maxRetries {
		bad("max_transient_retries", "must be between 0 and %d, got %d", maxRetries, n)
	}
	if n := c.RateLimitRetries(); n < 0 || n > maxRetries {
		bad("max_rate_limit_retries", "must be between 0 and %d, got %d", maxRetries, n)
	}
	if !utf8.ValidString(c.DegradedSignal) {
		bad("degraded_signal", "must be valid UTF-8")
	} else if n := utf8.RuneCountInString(c.DegradedSignal); n > MaxSignalLength {
		bad("degraded_signal", "must be at most %d characters, got %d", MaxSignalLength, n)
	}
	if strings.ContainsAny(c.KeyPrefix, " \t\r\n") {
		bad("key_prefix", "must not contain whitespace, got %q", c.KeyPrefix)
	}
	if c.Backend == BackendRedis {
		errs = append(errs, c.Redis.Validate(configPath+".redis"))
	}
	return errors.Join(errs...)
}

// redisProfile is how the breaker's client behaves: short timeouts so an
// unreachable server is noticed quickly and the breaker falls back to
// memory (which retries Redis on its own backoff), and no command retries.
var redisProfile = redisconf.Profile{DialTimeout: defaultRedisTimeout, IOTimeout: defaultRedisTimeout, MaxRetries: -1}

// Policy returns the state-machine parameters derived from c.
func (c *Config) Policy() Policy {
	cd := time.Duration(c.CooldownSeconds) * time.Second
	w := time.Duration(c.WindowSeconds) * time.Second
	return Policy{
		Threshold:        c.FailureThreshold,
		Window:           w,
		Cooldown:         cd,
		ProbeLease:       time.Duration(c.ProbeLeaseSeconds) * time.Second,
		EscalationWindow: time.Duration(c.GlobalRateLimitEscalationWindow) * time.Second,
		Retention:        retentionCooldowns * cd,
		MaxWindowEntries: max(c.FailureThreshold, minWindowEntries),
	}
}

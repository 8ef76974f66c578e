package ratelimit

import (
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// Defaults applied by [Config.ApplyDefaults] to zero fields.
const DefaultKeyPrefix = "llmproxy:rl:"

// configPath is where the block lives in the YAML configuration; Validate
// reports field paths under it.
const configPath = "features.rate_limiting"

// Config configures rate limiting. It is the YAML block
// features.rate_limiting (json tags; the estimation block of that section is
// owned by pkg/config). It holds data only; the zero value is valid and
// disabled.
//
// Scopes. A request is checked against every scope that applies to it, in
// this order, and is admitted only if all of them admit it:
//
//   - "global": [Config.Global], all traffic through the limiter backend.
//   - "provider:<name>": [Config.PerProvider][name], all traffic to a vendor.
//   - "model:<name>": [Overrides.PerModel][name], all traffic to a model,
//     whoever sends it. Skipped when the model is unknown.
//   - "key:<key id>": one counter per API key id. Its limits are
//     the gateway key's own ([Request.KeyLimits]) when set, else
//     [Overrides.PerKey][id] when present, else [Config.Limits]. Skipped
//     when the request carries no key.
//   - "team:<id>": the limits a gateway key's team shares by all its keys
//     ([Request.TeamLimits]). Skipped for a key without a team.
//   - "user:<id>": one counter per user id. Its limits are
//     [Overrides.PerUser][id] when present, else [Config.Limits]. Skipped when
//     the request has no user id.
//
// So Limits are per identity (each user and each key has its own budget),
// never a shared cap: the shared caps are Global, PerProvider and PerModel,
// and each applies only where it is configured. A scope whose limits are all
// 0 is unlimited and keeps no counters.
type Config struct {
	// Enabled turns rate limiting on. Default false.
	Enabled bool `json:"enabled"`
	// Settings configure the store (YAML keys in [quota.Settings]);
	// key_prefix defaults to "llmproxy:rl:".
	quota.Settings
	// Limits are the default limits of EACH user and EACH API key, counted
	// separately per identity.
	Limits Limits `json:"limits"`
	// Overrides replace Limits for named identities and set per-model caps.
	Overrides Overrides `json:"overrides"`
	// Global caps all traffic together. Zero (default) means no global cap.
	Global Limits `json:"global"`
	// PerProvider caps all traffic to a provider ("openai", "anthropic",
	// "gemini"). Providers not listed are not capped.
	PerProvider map[string]Limits `json:"per_provider,omitempty"`
	// CountOutputTokens makes token limits count input plus output tokens.
	// The request's output cap (or DefaultMaxOutputTokens) is reserved at
	// admission and replaced by the actual count at settlement. Default
	// false: token limits count input tokens only.
	CountOutputTokens bool `json:"count_output_tokens"`
	// DefaultMaxOutputTokens is the output, in tokens, reserved when
	// CountOutputTokens is set and the request names no maximum. Default 0.
	DefaultMaxOutputTokens int64 `json:"default_max_output_tokens"`
}

// Limits are request and token budgets per fixed window. Windows are aligned
// to the UTC clock: a minute window starts at second 0, a day window at
// 00:00 UTC. A field of 0 means unlimited.
type Limits struct {
	// RequestsPerMinute is the number of requests admitted per minute.
	RequestsPerMinute int64 `json:"requests_per_minute"`
	// TokensPerMinute is the number of tokens (input, or input+output with
	// CountOutputTokens) per minute.
	TokensPerMinute int64 `json:"tokens_per_minute"`
	// RequestsPerDay is the number of requests admitted per UTC day.
	RequestsPerDay int64 `json:"requests_per_day"`
	// TokensPerDay is the number of tokens per UTC day.
	TokensPerDay int64 `json:"tokens_per_day"`
}

// IsZero reports whether l sets no limit.
func (l Limits) IsZero() bool { return l == Limits{} }

// Overrides name identities whose limits differ from the base Limits.
//
// A per-user or per-key override REPLACES the whole [Limits] of that
// identity: fields left out are 0, which means unlimited, not "use the base
// value". So {requests_per_minute: 100} lifts that user's token limits; write
// every field you want enforced. An override with all fields 0 exempts the
// identity.
type Overrides struct {
	// PerUser maps a user id to its limits.
	PerUser map[string]Limits `json:"per_user,omitempty"`
	// PerKey maps an API key id (the hashed key the gateway derives; never
	// the raw key) to its limits.
	PerKey map[string]Limits `json:"per_key,omitempty"`
	// PerModel caps all traffic to a model, shared by every user and key.
	PerModel map[string]Limits `json:"per_model,omitempty"`
}

// ApplyDefaults sets the documented defaults on zero fields.
func (c *Config) ApplyDefaults() { c.Settings.ApplyDefaults(DefaultKeyPrefix) }

// Billable returns the tokens that token limits count for a request that
// used input and output tokens: input alone, or input+output when
// CountOutputTokens is set. Negative values count as 0. Pass the result to
// [Limiter.Settle].
func (c Config) Billable(input, output int64) int64 {
	n := max(input, 0)
	if c.CountOutputTokens {
		n += max(output, 0)
	}
	return n
}

// charge returns the tokens reserved at admission for req: its billable
// input and output cap, DefaultMaxOutputTokens when it names none.
func (c *Config) charge(req Request) int64 {
	out := req.OutputTokens
	if out <= 0 {
		out = c.DefaultMaxOutputTokens
	}
	return c.Billable(req.InputTokens, out)
}

// Validate reports every problem of c at once (joined with errors.Join),
// each prefixed with its field path under features.rate_limiting. Zero
// fields are valid (they mean the default). A disabled Config is still
// validated so that mistakes surface before it is enabled.
func (c Config) Validate() error {
	p := quota.NewProblems(configPath)
	validateLimits(p, "limits", c.Limits)
	validateLimits(p, "global", c.Global)
	check := func(path string, l Limits) { validateLimits(p, path, l) }
	quota.EachNamed(p, "per_provider", c.PerProvider, check)
	quota.EachNamed(p, "overrides.per_user", c.Overrides.PerUser, check)
	quota.EachNamed(p, "overrides.per_key", c.Overrides.PerKey, check)
	quota.EachNamed(p, "overrides.per_model", c.Overrides.PerModel, check)
	if c.DefaultMaxOutputTokens < 0 {
		p.Add("default_max_output_tokens", "must not be negative, got %d", c.DefaultMaxOutputTokens)
	}
	c.Settings.Validate(p)
	return p.Err()
}

func validateLimits(p *quota.Problems, path string, l Limits) {
	keys := [...]string{"requests_per_minute", "tokens_per_minute", "requests_per_day", "tokens_per_day"}
	for i, v := range [...]int64{l.RequestsPerMinute, l.TokensPerMinute, l.RequestsPerDay, l.TokensPerDay} {
		if v < 0 {
			p.Add(path+"."+keys[i], "must be 0 (unlimited) or positive, got %d", v)
		}
	}
}

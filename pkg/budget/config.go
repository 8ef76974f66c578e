package budget

import (
	"math"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/usage"
)

// Defaults applied by [Config.ApplyDefaults] to zero fields.
const (
	DefaultKeyPrefix     = "llmproxy:budget:"
	DefaultMaxUsageNames = usage.DefaultMaxUsageNames
	DefaultReportRows    = usage.DefaultReportRows
)

// configPath is where the block lives in the YAML configuration; Validate
// reports field paths under it.
const configPath = "features.cost_tracking.budgets"

// Config configures budgets and the spend ledger. It is the YAML block
// features.cost_tracking.budgets (json tags). It holds data only; the zero
// value is valid and disabled.
//
// Scopes. A request is checked against its API key's budget ("key:<key
// id>": the gateway key's own [Request.KeyBudget] when set, else PerKey's
// override for that id, else its default), its gateway key's team's
// ("team:<id>", [Request.TeamBudget], shared by the team's keys), then its
// user's ("user:<id>", from PerUser the same way). Limits are per
// identity: every key and every user has its own day and month counters.
// A request without a key, team or user id skips that scope; a window
// whose limit is 0 is unlimited and keeps no counter.
//
// Backend, Redis and KeyPrefix are also used by the usage ledger, which
// records spend whether or not Enabled is set.
type Config struct {
	// Enabled turns budget enforcement on. Default false.
	Enabled bool `json:"enabled"`
	// Settings configure the store (YAML keys in [quota.Settings]);
	// key_prefix defaults to "llmproxy:budget:".
	quota.Settings
	// PerKey are the budgets of API keys, by key id (the hashed key the
	// gateway derives; never the raw key).
	PerKey Policy `json:"per_key"`
	// PerUser are the budgets of users, by user id.
	PerUser Policy `json:"per_user"`
	// MaxUsageNames bounds the ledger: per period (today, this month) and
	// dimension (user, key, model) at most this many names are recorded
	// separately; spend of further names is added to the row "(other)", so
	// totals stay exact. Default 10000. Applies to both backends.
	MaxUsageNames int `json:"max_usage_names"`
	// ReportRows is how many rows, highest cost first, usage.Ledger.Report
	// returns per dimension. Default 1000.
	ReportRows int `json:"report_rows"`
}

// Policy is the budget of every identity of one kind (API keys or users).
type Policy struct {
	// Default is the budget of EACH identity not listed in Overrides,
	// counted separately per identity.
	Default Limits `json:"default"`
	// Overrides replace Default for named identities. An override replaces
	// the whole Limits: a field left out is 0, which means unlimited, not
	// "use the default". An override with both fields 0 exempts the
	// identity.
	Overrides map[string]Limits `json:"overrides,omitempty"`
}

// limits returns the budget of identity id.
func (p *Policy) limits(id string) Limits {
	if l, ok := p.Overrides[id]; ok {
		return l
	}
	return p.Default
}

// Limits are spend limits in USD. A field of 0 means unlimited. Amounts are
// kept to the nano-dollar ([Nanos]).
type Limits struct {
	// DailyUSD is the spend allowed per UTC day.
	DailyUSD float64 `json:"daily_usd"`
	// MonthlyUSD is the spend allowed per UTC calendar month.
	MonthlyUSD float64 `json:"monthly_usd"`
}

// IsZero reports whether l sets no limit.
func (l Limits) IsZero() bool { return Nanos(l.DailyUSD) == 0 && Nanos(l.MonthlyUSD) == 0 }

// ApplyDefaults sets the documented defaults on zero fields.
func (c *Config) ApplyDefaults() {
	c.Settings.ApplyDefaults(DefaultKeyPrefix)
	if c.MaxUsageNames == 0 {
		c.MaxUsageNames = DefaultMaxUsageNames
	}
	if c.ReportRows == 0 {
		c.ReportRows = DefaultReportRows
	}
}

// Validate reports every problem of c at once (joined with errors.Join),
// each prefixed with its field path under features.cost_tracking.budgets.
// Zero fields are valid (they mean the default). A disabled Config is still
// validated so that mistakes surface before it is enabled.
func (c Config) Validate() error {
	p := quota.NewProblems(configPath)
	validatePolicy(p, "per_key", c.PerKey)
	validatePolicy(p, "per_user", c.PerUser)
	p.NotNegative("max_usage_names", c.MaxUsageNames)
	p.NotNegative("report_rows", c.ReportRows)
	c.Settings.Validate(p)
	return p.Err()
}

func validatePolicy(p *quota.Problems, path string, pol Policy) {
	validateLimits(p, path+".default", pol.Default)
	quota.EachNamed(p, path+".overrides", pol.Overrides, func(path string, l Limits) { validateLimits(p, path, l) })
}

func validateLimits(p *quota.Problems, path string, l Limits) {
	for i, v := range [...]float64{l.DailyUSD, l.MonthlyUSD} {
		switch field := path + "." + [...]string{"daily_usd", "monthly_usd"}[i]; {
		case math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > MaxUSD:
			p.Add(field, "must be 0 (unlimited) or a positive amount up to %g, got %v", float64(MaxUSD), v)
		case v > 0 && Nanos(v) == 0:
			p.Add(field, "must be at least 0.000000001 (one nano-dollar), got %v", v)
		}
	}
}

// Ledger returns the configuration of the usage ledger, which shares the
// budgets' backend, Redis and key prefix, whether or not Enabled is set.
func (c Config) Ledger() usage.Config {
	return usage.Config{Backend: c.Backend, Redis: c.Redis, KeyPrefix: c.KeyPrefix,
		MaxUsageNames: c.MaxUsageNames, ReportRows: c.ReportRows}
}

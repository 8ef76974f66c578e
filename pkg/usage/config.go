package usage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// Backends accepted in [Config.Backend].
const (
	BackendMemory = "memory"
	BackendRedis  = "redis"
)

// Defaults applied by [Config.ApplyDefaults] to zero fields.
const (
	DefaultKeyPrefix     = "llmproxy:budget:"
	DefaultMaxUsageNames = 10_000
	DefaultReportRows    = 1000
)

// ErrBackendUnavailable is wrapped by every error a [Ledger] returns when
// its backend cannot answer.
var ErrBackendUnavailable = errors.New("usage ledger backend unavailable")

// Config configures the ledger. Its keys live in the budgets block
// (features.cost_tracking.budgets: backend, redis, key_prefix,
// max_usage_names, report_rows; see budget.Config.Ledger), because the
// ledger shares the budgets' store. The zero value is a memory ledger.
type Config struct {
	// Backend is "memory" (default) or "redis".
	Backend string
	// Redis locates the Redis of backend redis.
	Redis redisconf.Config
	// KeyPrefix starts every Redis key. Default "llmproxy:budget:".
	KeyPrefix string
	// MaxUsageNames bounds the names recorded separately per period and
	// dimension; further names add to [OtherName]. Default 10000.
	MaxUsageNames int
	// ReportRows is how many rows per dimension [Ledger.Report] returns,
	// highest cost first. Default 1000.
	ReportRows int
}

// ApplyDefaults sets the documented defaults on zero fields.
func (c *Config) ApplyDefaults() {
	if c.Backend == "" {
		c.Backend = BackendMemory
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.MaxUsageNames == 0 {
		c.MaxUsageNames = DefaultMaxUsageNames
	}
	if c.ReportRows == 0 {
		c.ReportRows = DefaultReportRows
	}
}

// Validate reports unusable settings (the budgets block reports them
// with their YAML paths first).
func (c Config) Validate() error {
	var errs []error
	if c.Backend != "" && c.Backend != BackendMemory && c.Backend != BackendRedis {
		errs = append(errs, fmt.Errorf("usage ledger: backend must be %q or %q, got %q", BackendMemory, BackendRedis, c.Backend))
	}
	if c.MaxUsageNames < 0 || c.ReportRows < 0 {
		errs = append(errs, errors.New("usage ledger: max_usage_names and report_rows must not be negative"))
	}
	if c.Backend == BackendRedis {
		errs = append(errs, c.Redis.Validate("usage ledger redis"))
	}
	return errors.Join(errs...)
}

// BackendStatus reports a backend's health for /health.
type BackendStatus = quota.Status

// Hooks observe a ledger without the package logging. Nil fields are
// skipped; hooks run synchronously and must be quick.
type Hooks struct {
	// OnStateChange is called once per health transition.
	OnStateChange func(s BackendStatus)
}

// New returns the ledger of cfg's backend, validated and defaulted.
func New(ctx context.Context, cfg Config, hooks Hooks) (Ledger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.ApplyDefaults()
	if cfg.Backend == BackendRedis {
		return NewRedisLedger(ctx, cfg, hooks)
	}
	return NewMemoryLedger(cfg), nil
}

// USD converts nano-dollars to dollars (for JSON).
func USD(nanos int64) float64 { return float64(nanos) / 1e9 }

// windowLabel names window idx of w: "2030-05-06" for a day, "2030-05" for
// a month.
func windowLabel(w quota.Window, idx int64) string {
	if w == quota.Month {
		return w.Start(idx).Format("2006-01")
	}
	return w.Start(idx).Format(time.DateOnly)
}

package quota

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
)

// Backend names accepted by [Settings.Backend].
const (
	BackendMemory = "memory"
	BackendRedis  = "redis"
)

// Settings are the store fields of a policy's configuration, embedded in
// it so that one mechanism defaults, validates and opens them for every
// policy. The YAML keys are the same in every policy:
//
//   - backend: "memory" (default; this process only, so every replica
//     counts alone, and counts are lost on restart) or "redis" (shared and
//     exact across replicas).
//   - fail_mode, while the store fails: [FailOpen] (default), [FailClosed]
//     or [FailLocal] (redis only; answers so decided carry
//     X-Llm-Proxy-Degraded: local).
//   - expected_instances: instances sharing the Redis, for fail mode local.
//     Default 1.
//   - redis: where the Redis is (single, Sentinel or Cluster).
//   - key_prefix: starts every Redis key. It must not contain '{' or '}':
//     the store builds the Redis Cluster hash tag after it.
//   - max_scopes: bounds the memory store and the local fallback: at most
//     this many scopes with live counters and this many outstanding
//     reservations. Default 100000.
type Settings struct {
	Backend           string           `json:"backend"`
	FailMode          string           `json:"fail_mode"`
	ExpectedInstances int              `json:"expected_instances"`
	Redis             redisconf.Config `json:"redis"`
	KeyPrefix         string           `json:"key_prefix"`
	MaxScopes         int              `json:"max_scopes"`
}

// FailClosed reports whether requests must be refused when the store
// fails (an error wrapping the policy's unavailable error); false means
// admit them (fail open; fail mode local admits when its fallback fails).
func (s Settings) FailClosed() bool { return s.FailMode == FailClosed }

// ApplyDefaults sets backend memory, fail mode open, one expected
// instance, keyPrefix and [DefaultMaxScopes] on zero fields.
func (s *Settings) ApplyDefaults(keyPrefix string) {
	s.Backend = cmp.Or(s.Backend, BackendMemory)
	s.FailMode = cmp.Or(s.FailMode, FailOpen)
	s.KeyPrefix = cmp.Or(s.KeyPrefix, keyPrefix)
	s.ExpectedInstances = cmp.Or(s.ExpectedInstances, 1)
	s.MaxScopes = cmp.Or(s.MaxScopes, DefaultMaxScopes)
}

// Validate adds to p every problem of the settings; zero fields are valid.
func (s *Settings) Validate(p *Problems) {
	if !slices.Contains([]string{"", BackendMemory, BackendRedis}, s.Backend) {
		p.Add("backend", "must be %q or %q, got %q", BackendMemory, BackendRedis, s.Backend)
	}
	if !slices.Contains([]string{"", FailOpen, FailClosed, FailLocal}, s.FailMode) {
		p.Add("fail_mode", "must be %q, %q or %q, got %q", FailOpen, FailClosed, FailLocal, s.FailMode)
	}
	if strings.ContainsAny(s.KeyPrefix, "{}") {
		p.Add("key_prefix", "must not contain '{' or '}' (the store adds the Redis Cluster hash tag), got %q", s.KeyPrefix)
	}
	p.NotNegative("expected_instances", s.ExpectedInstances)
	p.NotNegative("max_scopes", s.MaxScopes)
	if s.Backend == BackendRedis {
		p.errs = append(p.errs, s.Redis.Validate(p.path+".redis"))
	}
}

// Hooks observe a policy's store without the engine logging or importing
// metrics. Nil fields are skipped. Hooks run synchronously on the calling
// goroutine and must be quick.
type Hooks struct {
	// OnStateChange is called when the store turns unhealthy (with the
	// error) or healthy again, once per transition, so the caller can log
	// once rather than per request.
	OnStateChange func(s Status)
}

// Open returns the store counting metrics on defaulted settings: memory,
// or Redis on the shared client of its configuration (pinged once so
// /health starts right; an unreachable server is a state, not an error),
// behind [Local] for fail mode local. Only unusable settings are an error.
func (s *Settings) Open(ctx context.Context, metrics []Metric, hooks Hooks) (Store, error) {
	if s.Backend != BackendRedis {
		return NewMemory(metrics, MemoryOptions{MaxScopes: s.MaxScopes, OnStateChange: hooks.OnStateChange}), nil
	}
	client, err := redisconf.Default.Client(s.Redis, redisconf.Profile{MaxRetries: -1})
	if err != nil {
		return nil, err
	}
	var st Store = NewRedis(client, metrics, RedisOptions{Prefix: s.KeyPrefix, OnStateChange: hooks.OnStateChange})
	if s.FailMode == FailLocal {
		st = NewLocal(st, metrics, s.ExpectedInstances, s.MaxScopes)
	}
	st.Status(ctx)
	return st, nil
}

// Problems collects the problems of one configuration block, each prefixed
// with the block's path and the field's.
type Problems struct {
	path string
	errs []error
}

// NewProblems returns an empty collection for the block at path.
func NewProblems(path string) *Problems { return &Problems{path: path} }

// Add records a problem of field (a path under the block).
func (p *Problems) Add(field, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s.%s: %s", p.path, field, fmt.Sprintf(format, args...)))
}

// NotNegative records a problem when v is negative.
func (p *Problems) NotNegative(field string, v int) {
	if v < 0 {
		p.Add(field, "must not be negative, got %d", v)
	}
}

// Err joins the problems (errors.Join); nil when there are none.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// EachNamed calls check for every entry of m in name order with the entry's
// path, and records an empty name as a problem of field.
func EachNamed[V any](p *Problems, field string, m map[string]V, check func(path string, v V)) {
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if name == "" {
			p.Add(field, "empty name")
			continue
		}
		check(field+"."+name, m[name])
	}
}

// Rules is what [Policy] needs of a policy's configuration C, through its
// pointer.
type Rules[C any] interface {
	*C
	Validate() error
	ApplyDefaults()
}

// Policy is the engine side of a policy's limiter: its store, with every
// store error wrapped in the policy's own unavailable error, and the
// configuration in force, which SetRules swaps atomically. It is safe for
// concurrent use.
type Policy[C any, P Rules[C]] struct {
	store       Store
	unavailable error
	rules       atomic.Pointer[C]
}

// OpenPolicy defaults cfg and opens the store its settings s name (see
// [Settings.Open]; s is cfg's embedded Settings, read after the defaults);
// the store's errors wrap unavailable.
func OpenPolicy[C any, P Rules[C]](ctx context.Context, cfg C, s func(*C) *Settings, metrics []Metric, hooks Hooks, unavailable error) (*Policy[C, P], error) {
	P(&cfg).ApplyDefaults()
	st, err := s(&cfg).Open(ctx, metrics, hooks)
	if err != nil {
		return nil, err
	}
	p := &Policy[C, P]{store: st, unavailable: unavailable}
	p.rules.Store(&cfg)
	return p, nil
}

// wrap wraps a store error in the policy's unavailable error.
func (p *Policy[C, P]) wrap(err error) error {
	if err != nil {
		return fmt.Errorf("%w: %w", p.unavailable, err)
	}
	return nil
}

// Reserve is [Store.Reserve]; an error wraps the policy's unavailable error.
func (p *Policy[C, P]) Reserve(ctx context.Context, checks []Check, amounts []int64, now time.Time) (Result, error) {
	r, err := p.store.Reserve(ctx, checks, amounts, now)
	return r, p.wrap(err)
}

// Adjust is [Store.Adjust] for reservation id; one without charges is left
// alone. An error wraps the policy's unavailable error.
func (p *Policy[C, P]) Adjust(ctx context.Context, id string, charges []Charge, deltas []int64, now time.Time) error {
	if len(charges) == 0 {
		return nil
	}
	return p.wrap(p.store.Adjust(ctx, Reservation{ID: id, Charges: charges}, deltas, now))
}

// Usage is [Store.Usage]; an error wraps the policy's unavailable error.
func (p *Policy[C, P]) Usage(ctx context.Context, checks []Check, now time.Time) ([][]int64, error) {
	used, err := p.store.Usage(ctx, checks, now)
	return used, p.wrap(err)
}

// Status reports the store's health; the Redis store pings.
func (p *Policy[C, P]) Status(ctx context.Context) Status { return p.store.Status(ctx) }

// Close releases the store's resources.
func (p *Policy[C, P]) Close() error { return p.store.Close() }

// Store returns the store under p, for tests and diagnostics.
func (p *Policy[C, P]) Store() Store { return p.store }

// Load returns the configuration in force, shared: callers must not
// modify it.
func (p *Policy[C, P]) Load() *C { return p.rules.Load() }

// SetRules puts the limits of cfg in force for every later reservation,
// after validating and defaulting cfg; on error the current limits stay.
// Only the limits change: the store's [Settings] are those p was opened
// with (see config.RestartRequired). Reservations made before keep their
// charges and settle against them. Safe for concurrent use.
func (p *Policy[C, P]) SetRules(cfg C) error {
	if err := P(&cfg).Validate(); err != nil {
		return err
	}
	P(&cfg).ApplyDefaults()
	p.rules.Store(&cfg)
	return nil
}

// Reader is what [Read] reads through: a [Store] or a [Policy].
type Reader interface {
	Usage(ctx context.Context, checks []Check, now time.Time) ([][]int64, error)
}

// Read plans each of reqs at now with plan (appending its checks), reads
// every distinct window (scope, window, index; the first is kept) once
// with r.Usage, and returns row(window, what it holds) for each in plan
// order: the read-only side of a policy's Reserve. An error is r's.
func Read[R, U any](ctx context.Context, r Reader, reqs []R, plan func([]Check, R, time.Time) []Check, now time.Time, row func(Check, []int64) U) ([]U, error) {
	var all, checks []Check
	for _, req := range reqs {
		all = plan(all, req, now)
	}
	seen := make(map[Charge]bool, len(all))
	for _, c := range all {
		if k := c.charge(); !seen[k] {
			seen[k] = true
			checks = append(checks, c)
		}
	}
	used, err := r.Usage(ctx, checks, now)
	if err != nil {
		return nil, err
	}
	out := make([]U, len(checks))
	for i, c := range checks {
		out[i] = row(c, used[i])
	}
	return out, nil
}

// Limiter is the lifecycle of every policy's limiter: requests R, decisions
// D, reservations Res settled with actual amounts A. Implementations are
// safe for concurrent use.
type Limiter[R, D, Res, A any] interface {
	// Reserve checks every window the policy plans for req at now and,
	// only if all admit, charges the request's amounts to all of them
	// atomically; a denial charges nothing and D names the first refusing
	// window. An error wraps the policy's unavailable error.
	Reserve(ctx context.Context, req R, now time.Time) (D, error)
	// Settle replaces the reserved amounts with actual in every charged
	// window still current at now (rotated windows are left alone);
	// counters never go below 0. A second Settle or Cancel of the same
	// reservation does nothing.
	Settle(ctx context.Context, res Res, actual A, now time.Time) error
	// Cancel takes the reserved amounts back from every charged window
	// still current at now (the call consumed nothing).
	Cancel(ctx context.Context, res Res, now time.Time) error
	// Status reports the store's health; the Redis store pings.
	Status(ctx context.Context) Status
	// Close releases the store's resources.
	Close() error
}

// Disabled is embedded by a policy's no-op limiter: healthy, nothing to
// close. The zero value is ready to use.
type Disabled struct{}

// Status reports backend "disabled", healthy.
func (Disabled) Status(context.Context) Status { return Status{Backend: "disabled", Healthy: true} }

// Close does nothing.
func (Disabled) Close() error { return nil }

package keys

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
)

// Store backends accepted in [Config.Store].
const (
	StoreFile  = "file"
	StoreRedis = "redis"
)

// configPath is where the block lives in the YAML configuration.
const configPath = "features.gateway_keys"

// Defaults applied by [Config.ApplyDefaults].
const (
	DefaultSyncIntervalMS       = 500
	DefaultMaxStaleSeconds      = 300
	DefaultRotationGraceSeconds = 3600
)

// Config is the YAML block features.gateway_keys: the key store shared by
// every provider in gateway_keys mode. It holds data only.
type Config struct {
	// Store is "file" (one instance) or "redis" (shared by all).
	Store string `json:"store"`
	// File configures the file store.
	File FileConfig `json:"file"`
	// Redis locates the Redis server of the redis store.
	Redis redisconf.Config `json:"redis"`
	// KeyPrefix prefixes the Redis keys. Default DefaultRedisKeyPrefix.
	KeyPrefix string `json:"key_prefix"`
	// SyncIntervalMS is how often each instance polls the store version,
	// in milliseconds: the delay before a change made elsewhere (a
	// revocation) takes effect here. Default 500, at most 1000.
	SyncIntervalMS int `json:"sync_interval_ms"`
	// MaxStaleSeconds is how long cached keys keep working while the store
	// does not answer; after that every request is refused. Default 300.
	MaxStaleSeconds int `json:"max_stale_seconds"`
	// RotationGraceSeconds is the default time a rotated-away secret keeps
	// working. Default 3600.
	RotationGraceSeconds int `json:"rotation_grace_seconds"`
	// FailedLookups limits failed key lookups per client IP.
	FailedLookups FailedLookups `json:"failed_lookups"`
}

// FileConfig configures the file store.
type FileConfig struct {
	// Path of the JSON file; its directory must exist.
	Path string `json:"path"`
}

// FailedLookups configures the [FailureLimiter].
type FailedLookups struct {
	// Burst is how many failures a client may make at once. Default 10.
	Burst int `json:"burst"`
	// PerMinute is the sustained failures per minute. Default 10.
	PerMinute int `json:"per_minute"`
}

// ApplyDefaults fills zero fields.
func (c *Config) ApplyDefaults() {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultRedisKeyPrefix
	}
	if c.SyncIntervalMS == 0 {
		c.SyncIntervalMS = DefaultSyncIntervalMS
	}
	if c.MaxStaleSeconds == 0 {
		c.MaxStaleSeconds = DefaultMaxStaleSeconds
	}
	if c.RotationGraceSeconds == 0 {
		c.RotationGraceSeconds = DefaultRotationGraceSeconds
	}
	if c.FailedLookups.Burst == 0 {
		c.FailedLookups.Burst = DefaultFailureBurst
	}
	if c.FailedLookups.PerMinute == 0 {
		c.FailedLookups.PerMinute = int(time.Minute / DefaultFailureRefill)
	}
}

// Validate reports every problem, with paths under features.gateway_keys.
// Call it after ApplyDefaults.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", configPath, field, fmt.Sprintf(format, args...)))
	}
	switch c.Store {
	case StoreFile:
		if c.File.Path == "" {
			bad("file.path", "required with store: file")
		}
	case StoreRedis:
		if c.Redis.URL == "" && c.Redis.Address == "" {
			bad("redis", "url or address required with store: redis")
		}
	default:
		bad("store", "must be %q or %q", StoreFile, StoreRedis)
	}
	if c.SyncIntervalMS < 10 || c.SyncIntervalMS > 1000 {
		bad("sync_interval_ms", "must be between 10 and 1000, got %d", c.SyncIntervalMS)
	}
	if c.MaxStaleSeconds < 1 {
		bad("max_stale_seconds", "must be positive, got %d", c.MaxStaleSeconds)
	}
	if c.RotationGraceSeconds < 0 || time.Duration(c.RotationGraceSeconds)*time.Second > MaxRotationGrace {
		bad("rotation_grace_seconds", "must be between 0 and %d", int(MaxRotationGrace/time.Second))
	}
	if c.FailedLookups.Burst < 1 || c.FailedLookups.PerMinute < 1 {
		bad("failed_lookups", "burst and per_minute must be positive")
	}
	return errors.Join(errs...)
}

// SyncInterval returns SyncIntervalMS as a duration.
func (c Config) SyncInterval() time.Duration {
	return time.Duration(c.SyncIntervalMS) * time.Millisecond
}

// OpenStore builds the configured store. The Redis client never retries a
// command: a write whose reply was lost may have been applied, and
// repeating a rotation would end the old secret's grace period.
func OpenStore(c Config) (Store, error) {
	switch c.Store {
	case StoreFile:
		return OpenFileStore(c.File.Path)
	case StoreRedis:
		rdb, err := c.Redis.NewClient(redisconf.Profile{MaxRetries: -1})
		if err != nil {
			return nil, fmt.Errorf("%s.redis: %w", configPath, err)
		}
		return NewRedisStore(rdb, c.KeyPrefix, true), nil
	}
	return nil, fmt.Errorf("%s.store: must be %q or %q", configPath, StoreFile, StoreRedis)
}

// NewLimiter returns the FailureLimiter the configuration describes.
func (c Config) NewLimiter() *FailureLimiter {
	return NewFailureLimiter(c.FailedLookups.Burst, time.Minute/time.Duration(max(c.FailedLookups.PerMinute, 1)), 0)
}

// AuthenticatorOptions returns the options the configuration describes,
// with a new FailureLimiter, the clock (nil: time.Now) and the logger.
func (c Config) AuthenticatorOptions(now func() time.Time, log *slog.Logger) AuthenticatorOptions {
	return AuthenticatorOptions{MaxStale: time.Duration(c.MaxStaleSeconds) * time.Second, Now: now, Limiter: c.NewLimiter(), Log: log}
}

package budget

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ttlGrace keeps a window's key a little past the window's end, so an
// instance whose clock lags slightly still finds the counters it charged.
// Keys are stamped with the window index, so the grace never lets spend
// leak into the next window.
const ttlGrace = 2 * time.Second

// redisRetryInterval is how often, while Redis is unhealthy, one call is let
// through to try it; the others fail at once with [ErrBackendUnavailable].
// Status always tries.
const redisRetryInterval = time.Second

// redisConn is what the redis limiter and ledger share: a client, the hash
// tag that starts every key, and health tracking.
type redisConn struct {
	client *redis.Client
	tag    string // "{P}:"
	health *health
}

// newRedisConn builds the client of cfg (defaults applied). Commands are
// never retried by the client: the scripts that are not idempotent (ledger
// records) must not run twice after a lost reply.
func newRedisConn(cfg Config, hooks Hooks) (*redisConn, error) {
	opts, err := redisOptions(cfg.Redis)
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(cfg.KeyPrefix, ":")
	if prefix == "" {
		prefix = strings.TrimSuffix(DefaultKeyPrefix, ":")
	}
	return &redisConn{
		client: redis.NewClient(opts),
		tag:    "{" + prefix + "}:",
		health: newHealth(BackendRedis, hooks, redisRetryInterval),
	}, nil
}

func redisOptions(c RedisConfig) (*redis.Options, error) { return c.Options(-1) }

// status pings Redis with ctx and reports the resulting health.
func (c *redisConn) status(ctx context.Context) BackendStatus {
	if err := c.client.Ping(ctx).Err(); err != nil {
		_ = c.fail(ctx, "ping", err)
	} else {
		c.health.Observe(nil)
	}
	return c.health.Status()
}

// fail wraps err in ErrBackendUnavailable and records it, unless the
// caller's own context ended (that says nothing about Redis).
func (c *redisConn) fail(ctx context.Context, op string, err error) error {
	err = fmt.Errorf("redis %s: %w", op, err)
	if ctx.Err() == nil {
		c.health.Observe(err)
	}
	return fmt.Errorf("%w: %w", ErrBackendUnavailable, err)
}

func (c *redisConn) skipped(op string) error {
	return fmt.Errorf("%w: redis %s: skipped while unhealthy (last error: %s)",
		ErrBackendUnavailable, op, c.health.Status().LastError)
}

// ttlMillis is the TTL, in ms, of a key whose window ends at end.
func ttlMillis(end, now time.Time) int64 {
	return max(end.Sub(now)+ttlGrace, time.Millisecond).Milliseconds()
}

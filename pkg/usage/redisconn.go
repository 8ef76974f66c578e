package usage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/backendhealth"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// redisConn is the redis ledger's client, the hash tag that starts every
// ledger key, and health tracking.
type redisConn struct {
	client *redisconf.Client
	tag    string // "{P}:"
	health *backendhealth.Tracker
}

// newRedisConn builds the client of cfg (defaults applied). Commands are
// never retried by the client: ledger records must not run twice after a
// lost reply.
func newRedisConn(cfg Config, hooks Hooks) (*redisConn, error) {
	client, err := redisconf.Default.Client(cfg.Redis, redisconf.Profile{MaxRetries: -1})
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(cfg.KeyPrefix, ":")
	if prefix == "" {
		prefix = strings.TrimSuffix(DefaultKeyPrefix, ":")
	}
	return &redisConn{
		client: client,
		tag:    "{" + prefix + "}:",
		health: backendhealth.New(BackendRedis, hooks.OnStateChange, quota.RetryInterval),
	}, nil
}

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

// ttlMillis is the TTL, in ms, of a key whose period ends at end.
func ttlMillis(end, now time.Time) int64 {
	return max(end.Sub(now)+quota.TTLGrace, time.Millisecond).Milliseconds()
}

package usage

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

// t0 is mid-day, mid-month.
var (
	t0        = time.Date(2030, 5, 6, 12, 30, 10, 0, time.UTC)
	nextDay   = time.Date(2030, 5, 7, 0, 0, 0, 0, time.UTC)
	nextMonth = time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
)

var prefixSeq atomic.Int64

// redisConfigFor points cfg at s with a key prefix no other ledger of the
// test binary uses (unless cfg names one).
func redisConfigFor(t *testing.T, s *redistest.Server, cfg Config) Config {
	t.Helper()
	cfg.Backend = BackendRedis
	cfg.Redis = redisconf.Config{Address: s.Addr}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = fmt.Sprintf("test%d:", prefixSeq.Add(1))
	}
	require.NoError(t, cfg.Validate())
	return cfg
}

func rawClient(t *testing.T, s *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

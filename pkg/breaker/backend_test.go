package breaker

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

func newMemoryBreaker(t *testing.T, cfg Config, h Hooks) *Breaker {
	t.Helper()
	cfg.Enabled, cfg.Backend = true, BackendMemory
	b, err := New(t.Context(), cfg, Options{Hooks: h})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

var prefixSeq atomic.Int64

// redisBreakers returns a factory of breakers on one redis-server, each
// under its own key prefix.
func redisBreakers(s *redistest.Server) newBreakerFunc {
	return func(t *testing.T, cfg Config, h Hooks) *Breaker {
		t.Helper()
		cfg.Enabled, cfg.Backend = true, BackendRedis
		cfg.Redis.Address = s.Addr
		cfg.KeyPrefix = "t" + strconv.FormatInt(prefixSeq.Add(1), 10) + ":"
		b, err := New(t.Context(), cfg, Options{Hooks: h})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		require.False(t, b.Status().Fallback)
		return b
	}
}

func TestBreakerMemory(t *testing.T) {
	testBreaker(t, newMemoryBreaker)
}

func TestBreakerRedis(t *testing.T) {
	testBreaker(t, redisBreakers(redistest.Start(t)))
}

func TestDisabledBreaker(t *testing.T) {
	tests := []struct {
		name string
		b    *Breaker
	}{
		{"nil", nil},
		{"disabled", func() *Breaker {
			b, err := New(t.Context(), Config{}, Options{})
			require.NoError(t, err)
			return b
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			adm, err := tt.b.Allow(t.Context(), "openai", "gpt-a", t0)
			require.NoError(t, err)
			require.Equal(t, Admission{Allowed: true}, adm)
			v, err := tt.b.Report(t.Context(), adm, Outcome{Class: Degraded, Terminal: true}, t0)
			require.NoError(t, err)
			require.Equal(t, Verdict{}, v)
			pv, err := tt.b.Peek(t.Context(), "openai", "gpt-a", t0)
			require.NoError(t, err)
			require.Equal(t, View{Key: ModelKey("openai", "gpt-a"), Admits: true}, pv)
			require.False(t, tt.b.Enforcing())
			require.Equal(t, DefaultSignal, tt.b.Signal())
			require.NoError(t, tt.b.Close())
		})
	}
}

func TestPeekInLogModeAdmits(t *testing.T) {
	cfg := suiteConfig()
	cfg.Mode = ModeLog
	b := newMemoryBreaker(t, cfg, Hooks{})
	trip(t, b, at(2))
	v, err := b.Peek(t.Context(), "openai", "gpt-a", at(3))
	require.NoError(t, err)
	require.True(t, v.Admits, "log mode never refuses")
	require.Equal(t, StateOpen, v.State)
	require.Equal(t, ReasonOpen, v.Reason, "what enforce mode would say")
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	_, err := New(t.Context(), Config{Enabled: true, Mode: "panic"}, Options{})
	require.ErrorContains(t, err, "features.circuit_breaker.mode")
}

// twoInstances builds two breakers on one Redis and one key prefix, as two
// gateway replicas would be.
func twoInstances(t *testing.T, cfg Config) (*Breaker, *Breaker) {
	t.Helper()
	s := redistest.Start(t)
	cfg.Enabled, cfg.Backend, cfg.Redis.Address = true, BackendRedis, s.Addr
	var out [2]*Breaker
	for i := range out {
		b, err := New(t.Context(), cfg, Options{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		out[i] = b
	}
	return out[0], out[1]
}

func TestRedisInstancesShareState(t *testing.T) {
	t.Run("failures from both add up and one opens it for both", func(t *testing.T) {
		a, b := twoInstances(t, suiteConfig())
		request(t, a, "anthropic", "claude", Degraded, at(0))
		request(t, b, "anthropic", "claude", Degraded, at(1))
		require.Equal(t, 2, stats(t, a, "anthropic", at(1)).Failures)
		v := request(t, a, "anthropic", "claude", Degraded, at(2))
		require.Equal(t, StateOpen, v.State)
		for _, inst := range []*Breaker{a, b} {
			adm := allow(t, inst, "anthropic", "claude", at(3))
			require.False(t, adm.Allowed)
			require.Equal(t, at(32), adm.CooldownUntil)
		}
	})
	t.Run("only one probe runs across both", func(t *testing.T) {
		a, b := twoInstances(t, suiteConfig())
		trip(t, a, at(0))
		var probes atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			inst := a
			if i%2 == 1 {
				inst = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				adm, err := inst.Allow(context.Background(), "openai", "gpt-a", at(30))
				if err == nil && adm.Probe {
					probes.Add(1)
				}
			}()
		}
		wg.Wait()
		require.Equal(t, int32(1), probes.Load())
	})
	t.Run("a probe admitted by one is closed by its report and seen by the other", func(t *testing.T) {
		a, b := twoInstances(t, suiteConfig())
		trip(t, b, at(0))
		probe := allow(t, a, "openai", "gpt-a", at(30))
		require.True(t, probe.Probe)
		require.False(t, allow(t, b, "openai", "gpt-a", at(30)).Allowed)
		report(t, a, probe, None, at(31))
		require.True(t, allow(t, b, "openai", "gpt-a", at(31)).Allowed)
	})
	t.Run("quota on one opens the provider on the other", func(t *testing.T) {
		a, b := twoInstances(t, suiteConfig())
		request(t, a, "openai", "gpt-a", QuotaExhausted, at(0))
		require.Equal(t, ReasonProviderOpen, allow(t, b, "openai", "gpt-z", at(1)).Reason)
	})
}

func TestRedisFallback(t *testing.T) {
	s := redistest.Start(t)
	var mu sync.Mutex
	var changes []Status
	cfg := suiteConfig()
	cfg.Enabled, cfg.Backend, cfg.Redis.Address = true, BackendRedis, s.Addr
	b, err := New(t.Context(), cfg, Options{Hooks: Hooks{OnBackendChange: func(st Status) {
		mu.Lock()
		defer mu.Unlock()
		changes = append(changes, st)
	}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.Equal(t, Status{Backend: BackendRedis}, b.Status())

	request(t, b, "openai", "gpt-a", Degraded, at(0))
	s.Stop()

	// The next call fails on Redis and is served from memory.
	adm, err := b.Allow(t.Context(), "openai", "gpt-a", at(1))
	require.NoError(t, err)
	require.True(t, adm.Allowed)
	st := b.Status()
	require.True(t, st.Fallback)
	require.Equal(t, BackendRedis, st.Backend)
	require.NotEmpty(t, st.LastError)
	require.Equal(t, at(1), st.Since)

	// Memory enforces on its own during the outage.
	trip(t, b, at(5))
	require.False(t, allow(t, b, "openai", "gpt-a", at(6)).Allowed)

	// Redis back: the first call after the backoff returns to it, and the
	// fresh server's (empty) state wins.
	s.Restart(t)
	// The failed pings at 3, 4 and 5 pushed the next try past 6.
	require.False(t, allow(t, b, "openai", "gpt-a", at(6)).Allowed, "still on memory inside the backoff")
	require.True(t, b.Status().Fallback)
	adm = allow(t, b, "openai", "gpt-a", at(40))
	require.True(t, adm.Allowed)
	require.False(t, adm.Probe, "memory's half-open key is gone")
	require.False(t, b.Status().Fallback)
	request(t, b, "openai", "gpt-b", Degraded, at(41))
	require.Equal(t, 1, stats(t, b, "openai", at(41)).Failures)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, changes, 2)
	require.True(t, changes[0].Fallback)
	require.False(t, changes[1].Fallback)
}

func TestRedisUnreachableAtStart(t *testing.T) {
	s := redistest.Start(t)
	s.Stop()
	cfg := suiteConfig()
	cfg.Enabled, cfg.Backend, cfg.Redis.Address = true, BackendRedis, s.Addr
	b, err := New(t.Context(), cfg, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.True(t, b.Status().Fallback)
	trip(t, b, at(0))
	require.False(t, allow(t, b, "openai", "gpt-a", at(1)).Allowed)
	s.Restart(t)
	require.False(t, allow(t, b, "openai", "gpt-a", at(2)).Allowed, "inside the backoff")
	require.True(t, allow(t, b, "openai", "gpt-a", at(40)).Allowed)
	require.False(t, b.Status().Fallback)
}

func TestRedisCanceledContextIsNotAnOutage(t *testing.T) {
	b := redisBreakers(redistest.Start(t))(t, suiteConfig(), Hooks{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	adm, err := b.Allow(ctx, "openai", "gpt-a", t0)
	require.ErrorIs(t, err, context.Canceled)
	require.True(t, adm.Allowed, "fail open")
	require.False(t, b.Status().Fallback)
}

// commandCounter counts commands (pipelined ones one by one) sent to Redis.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func TestRedisRoundTripsOnClosedPath(t *testing.T) {
	s := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = client.Close() })
	var cc commandCounter
	cfg := suiteConfig()
	cfg.Enabled, cfg.Backend, cfg.Redis.Address = true, BackendRedis, s.Addr
	b, err := New(t.Context(), cfg, Options{RedisClient: client})
	require.NoError(t, err)
	client.AddHook(&cc)

	tests := []struct {
		name   string
		class  Class
		allow  int64
		report int64
	}{
		{"success", None, 1, 0},
		{"caller error", ClientError, 1, 0},
		{"degraded", Degraded, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc.n.Store(0)
			adm := allow(t, b, "openai", "gpt-a", at(0))
			require.Equal(t, tt.allow, cc.n.Load(), "Allow round trips")
			cc.n.Store(0)
			report(t, b, adm, tt.class, at(0))
			require.Equal(t, tt.report, cc.n.Load(), "Report round trips")
		})
	}
}

func TestRedisKeysCarryTTLAndHashTag(t *testing.T) {
	s := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = client.Close() })
	cfg := suiteConfig()
	cfg.Enabled, cfg.Backend, cfg.Redis.Address = true, BackendRedis, s.Addr
	b, err := New(t.Context(), cfg, Options{RedisClient: client})
	require.NoError(t, err)
	now := time.Now()
	for i := 0; i < 3; i++ {
		request(t, b, "openai", "gpt-a", Degraded, now)
	}
	keys, err := client.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{
		"llmproxy:cb:{openai}:h:openai:gpt-a",
		"llmproxy:cb:{openai}:f:openai:gpt-a",
		"llmproxy:cb:{openai}:idx",
	}, keys)
	for _, k := range keys {
		ttl, err := client.PTTL(t.Context(), k).Result()
		require.NoError(t, err)
		// Open for 30 s, then half-open for 6 × 30 s: the TTL covers both.
		require.Greater(t, ttl, 210*time.Second, k)
		require.LessOrEqual(t, ttl, 212*time.Second, k)
	}
}

func TestMemoryBounded(t *testing.T) {
	cfg := suiteConfig()
	cfg.Enabled = true
	m := NewMemory(cfg.Policy(), MemoryOptions{MaxKeys: 100})
	ctx := t.Context()
	t.Run("cap holds under many model names", func(t *testing.T) {
		for i := 0; i < 5000; i++ {
			_, err := m.Record(ctx, ModelKey("openai", fmt.Sprintf("junk-%d", i)), Event{Terminal: true, Final: Degraded}, at(float64(i)/100))
			require.NoError(t, err)
		}
		require.LessOrEqual(t, m.Len(), 100)
	})
	t.Run("open keys survive eviction of closed ones", func(t *testing.T) {
		m := NewMemory(cfg.Policy(), MemoryOptions{MaxKeys: 10})
		for i := 0; i < 3; i++ {
			_, err := m.Record(ctx, ModelKey("openai", "real"), Event{Terminal: true, Final: Degraded}, at(0))
			require.NoError(t, err)
		}
		for i := 0; i < 50; i++ {
			_, err := m.Record(ctx, ModelKey("openai", fmt.Sprintf("junk-%d", i)), Event{Terminal: true, Final: Degraded}, at(1))
			require.NoError(t, err)
		}
		d, err := m.Admit(ctx, ModelKey("openai", "real"), "tok", at(2))
		require.NoError(t, err)
		require.True(t, d.Reject)
	})
	t.Run("idle keys are reclaimed", func(t *testing.T) {
		m := NewMemory(cfg.Policy(), MemoryOptions{})
		for i := 0; i < 50; i++ {
			_, err := m.Record(ctx, ModelKey("openai", fmt.Sprintf("junk-%d", i)), Event{Terminal: true, Final: Degraded}, at(0))
			require.NoError(t, err)
		}
		// Each write after the window reclaims up to two lapsed keys.
		for i := 0; i < 10; i++ {
			_, err := m.Record(ctx, ModelKey("openai", "live"), Event{Terminal: true, Final: Degraded}, at(61+float64(i)/100))
			require.NoError(t, err)
		}
		require.Equal(t, 1+50-2*10, m.Len())
		st, err := m.Stats(ctx, "openai", at(62))
		require.NoError(t, err)
		require.Equal(t, 1, m.Len(), "Stats drops the provider's lapsed keys")
		require.Equal(t, StateOpen, st.State)
	})
}

func TestReportIgnoresRefusedRequests(t *testing.T) {
	b := newMemoryBreaker(t, suiteConfig(), Hooks{})
	trip(t, b, at(0))
	adm := allow(t, b, "openai", "gpt-a", at(1))
	require.False(t, adm.Allowed)
	require.Equal(t, Verdict{}, report(t, b, adm, Degraded, at(1)))
	require.Equal(t, 3, stats(t, b, "openai", at(1)).Failures)
}

// Remote says when Allow waits on Redis: never on memory; on Redis unless
// this instance saw the key refused with its cooldown still running.
func TestRemote(t *testing.T) {
	mem := newMemoryBreaker(t, suiteConfig(), Hooks{})
	require.False(t, mem.Remote("openai", "gpt-a", at(0)), "memory backend")

	b := redisBreakers(redistest.Start(t))(t, suiteConfig(), Hooks{})
	require.True(t, b.Remote("openai", "gpt-a", at(0)))
	trip(t, b, at(2)) // open until at(32)
	require.True(t, b.Remote("openai", "gpt-a", at(3)), "not refused here yet")
	adm, err := b.Allow(t.Context(), "openai", "gpt-a", at(3))
	require.NoError(t, err)
	require.False(t, adm.Allowed)
	require.False(t, b.Remote("openai", "gpt-a", at(4)), "refused, cooldown running")
	require.True(t, b.Remote("openai", "gpt-b", at(4)), "another model")
	require.True(t, b.Remote("openai", "gpt-a", at(32)), "cooldown over: Allow may probe")
	adm, err = b.Allow(t.Context(), "openai", "gpt-a", at(33))
	require.NoError(t, err)
	require.True(t, adm.Allowed && adm.Probe)
	require.True(t, b.Remote("openai", "gpt-a", at(33)))
}

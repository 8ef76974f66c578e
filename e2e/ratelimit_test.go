package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
)

// clock is a test clock the server reads; tests move it, never sleep.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(t time.Time) *clock { return &clock{now: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// midMinute is 20 s into a minute, so a test's requests share one window.
var midMinute = time.Date(2026, 11, 25, 12, 30, 20, 0, time.UTC)

func limits(f func(*ratelimit.Config)) emuOption {
	return withConfig(func(c *config.Config) {
		c.Features.RateLimiting.Enabled = true
		f(&c.Features.RateLimiting.Config)
	})
}

// requireRateLimitHeaders checks the refusal contract on a 429's headers.
func requireRateLimitHeaders(t *testing.T, h http.Header, scope, metric string, limit int) {
	t.Helper()
	require.Equal(t, "40", h.Get("Retry-After"), "the minute window ends in 40 s")
	require.Equal(t, strconv.Itoa(limit), h.Get("X-RateLimit-Limit"))
	require.Equal(t, "0", h.Get("X-RateLimit-Remaining"))
	require.Equal(t, strconv.FormatInt(midMinute.Truncate(time.Minute).Add(time.Minute).Unix(), 10), h.Get("X-RateLimit-Reset"))
	require.Equal(t, scope, h.Get("X-RateLimit-Scope"))
	require.Equal(t, metric, h.Get("X-RateLimit-Metric"))
	require.Equal(t, "minute", h.Get("X-RateLimit-Window"))
	require.Equal(t, "proxy", h.Get("X-Llm-Proxy-Error-Source"))
	require.Equal(t, "application/json", h.Get("Content-Type"))
}

func TestRateLimitUserOverRPMWithEachSDK(t *testing.T) {
	clk := newClock(midMinute)
	s := startEmulated(t, withClock(clk.Now), limits(func(c *ratelimit.Config) {
		c.Limits = ratelimit.Limits{RequestsPerMinute: 2}
	}))
	user := aoption.WithHeader("X-User-ID", "carol")

	// Each call carries its own API key, so the user's scope is the one
	// that runs out (keys have the same per-identity limit).
	t.Run("openai", func(t *testing.T) {
		c := openaiClient(s, option.WithHeader("X-User-ID", "olga"))
		for i := range 2 {
			_, err := c.Chat.Completions.New(t.Context(), chatParams(), option.WithAPIKey(fmt.Sprintf("sk-olga-%d", i)))
			require.NoError(t, err)
		}
		_, err := c.Chat.Completions.New(t.Context(), chatParams(), option.WithAPIKey("sk-olga-9"))
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusTooManyRequests, apiErr.StatusCode)
		require.Equal(t, "rate_limit_exceeded", apiErr.Code)
		requireRateLimitHeaders(t, apiErr.Response.Header, "user:olga", "requests", 2)
		require.Contains(t, apiErr.Message, "[PROXY]")
	})
	t.Run("anthropic", func(t *testing.T) {
		c := anthropicClient(s, "/anthropic/", user)
		for i := range 2 {
			_, err := c.Messages.New(t.Context(), messageParams(), aoption.WithAPIKey(fmt.Sprintf("sk-carol-%d", i)))
			require.NoError(t, err)
		}
		_, err := c.Messages.New(t.Context(), messageParams(), aoption.WithAPIKey("sk-carol-9"))
		var apiErr *anthropic.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusTooManyRequests, apiErr.StatusCode)
		require.Contains(t, apiErr.Error(), "rate_limit_error")
		requireRateLimitHeaders(t, apiErr.Response.Header, "user:carol", "requests", 2)
	})
	t.Run("gemini", func(t *testing.T) {
		c := genaiClient(t, s, http.Header{"X-User-Id": {"gus"}})
		for range 2 {
			_, err := c.Models.GenerateContent(t.Context(), "gemini-2.5-flash", genai.Text("hi"), nil)
			require.NoError(t, err)
		}
		_, err := c.Models.GenerateContent(t.Context(), "gemini-2.5-flash", genai.Text("hi"), nil)
		var apiErr genai.APIError
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusTooManyRequests, apiErr.Code)
		require.Equal(t, "RESOURCE_EXHAUSTED", apiErr.Status)
	})
	// 6 admitted calls reached the vendor; the 3 refusals did not.
	require.Len(t, s.VendorCalls(t), 6)

	// The next window admits again.
	clk.Advance(time.Minute)
	_, err := anthropicClient(s, "/anthropic/", user).Messages.New(t.Context(), messageParams(), aoption.WithAPIKey("sk-carol-9"))
	require.NoError(t, err)
}

func TestRateLimitSDKHonoursRetryAfter(t *testing.T) {
	// 59 s into the minute: Retry-After is 1 s. openai-go waits that long
	// and retries; the clock moves on meanwhile, so the retry is admitted.
	clk := newClock(midMinute.Truncate(time.Minute).Add(59 * time.Second))
	s := startEmulated(t, withClock(clk.Now), limits(func(c *ratelimit.Config) {
		c.Limits = ratelimit.Limits{RequestsPerMinute: 1}
	}))
	c := openaiClient(s, option.WithHeader("X-User-ID", "rita"))
	_, err := c.Chat.Completions.New(t.Context(), chatParams())
	require.NoError(t, err)
	var retried atomic.Bool
	go func() {
		// Move to the next window once the refusal has been logged.
		s.AccessLog(t, 2)
		clk.Advance(time.Second)
		retried.Store(true)
	}()
	start := time.Now()
	_, err = c.Chat.Completions.New(t.Context(), chatParams(), option.WithMaxRetries(1))
	require.NoError(t, err, "the SDK retried after Retry-After and got through")
	require.True(t, retried.Load())
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "the SDK waited for Retry-After")
	lines := s.AccessLog(t, 3)
	require.EqualValues(t, 429, num(lines[1]["response_code"]))
	require.Equal(t, processor.RateLimitDetails, str(lines[1]["response_code_details"]))
	require.EqualValues(t, 200, num(lines[2]["response_code"]))
}

func TestRateLimitOverridesWin(t *testing.T) {
	vipKey := "sk-vip-key"
	s := startEmulated(t, withClock(newClock(midMinute).Now), limits(func(c *ratelimit.Config) {
		c.Limits = ratelimit.Limits{RequestsPerMinute: 1}
		c.Overrides.PerKey = map[string]ratelimit.Limits{processor.KeyID(vipKey): {RequestsPerMinute: 3}}
		c.Overrides.PerModel = map[string]ratelimit.Limits{"gpt-4.1": {RequestsPerMinute: 2}}
	}))
	vip := openai.NewClient(option.WithBaseURL(s.URL()+"/openai/v1/"), option.WithAPIKey(vipKey), option.WithMaxRetries(0))
	for i := range 3 {
		_, err := vip.Chat.Completions.New(t.Context(), chatParams())
		require.NoError(t, err, "per-key override admits call %d", i+1)
	}
	_, err := vip.Chat.Completions.New(t.Context(), chatParams())
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "key:"+processor.KeyID(vipKey), apiErr.Response.Header.Get("X-RateLimit-Scope"))
	require.NotContains(t, apiErr.Response.Header.Get("X-RateLimit-Scope"), vipKey)

	// The model cap is shared by every caller of gpt-4.1.
	p := chatParams()
	p.Model = "gpt-4.1"
	for i := range 2 {
		c := openai.NewClient(option.WithBaseURL(s.URL()+"/openai/v1/"), option.WithAPIKey(fmt.Sprintf("sk-other-%d", i)), option.WithMaxRetries(0))
		_, err := c.Chat.Completions.New(t.Context(), p)
		require.NoError(t, err)
	}
	c := openai.NewClient(option.WithBaseURL(s.URL()+"/openai/v1/"), option.WithAPIKey("sk-other-9"), option.WithMaxRetries(0))
	_, err = c.Chat.Completions.New(t.Context(), p)
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "model:gpt-4.1", apiErr.Response.Header.Get("X-RateLimit-Scope"))
}

func TestRateLimitTokensCountEstimateThenActual(t *testing.T) {
	// The fake bills ceil(chars/4) input tokens per call; force 100 to make
	// the actual clearly differ from the estimate (~10).
	s := startEmulated(t, withClock(newClock(midMinute).Now), limits(func(c *ratelimit.Config) {
		c.Limits = ratelimit.Limits{TokensPerMinute: 150}
	}))
	c := openaiClient(s, option.WithHeader("X-User-ID", "tess"), option.WithHeader("x-fake-input-tokens", "100"))
	_, err := c.Chat.Completions.New(t.Context(), chatParams())
	require.NoError(t, err, "first call: the estimate (~12 tokens) fits")
	r := s.Records(t, 1)[0]
	require.Less(t, r.EstimatedInputTokens, int64(50))
	// Settled at 100 actual tokens: a second call estimated at ~12 still
	// fits (112 <= 150), a third does not (>= 150 after two actuals).
	_, err = c.Chat.Completions.New(t.Context(), chatParams())
	require.NoError(t, err)
	// The server settles a call after its last reply: wait for the second
	// record (written after settlement) so the third admission sees it.
	s.Records(t, 2)
	_, err = c.Chat.Completions.New(t.Context(), chatParams())
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr, "the limit counted the actual tokens, not the estimates")
	require.Equal(t, "tokens", apiErr.Response.Header.Get("X-RateLimit-Metric"))
}

// twoInstances starts two ext_proc servers sharing one Redis, each behind
// its own emulated Envoy, in front of one fake vendor.
func twoInstances(t *testing.T, rdb *redistest.Server, clk *clock, f func(*ratelimit.Config)) [2]*emulated {
	t.Helper()
	return twoInstancesOn(t, redisconf.Config{Address: rdb.Addr}, clk, f)
}

// twoInstancesOn is twoInstances on any Redis deployment.
func twoInstancesOn(t *testing.T, rc redisconf.Config, clk *clock, f func(*ratelimit.Config)) [2]*emulated {
	t.Helper()
	opt := limits(func(c *ratelimit.Config) {
		c.Backend = quota.BackendRedis
		c.Redis = rc
		f(c)
	})
	return [2]*emulated{startEmulated(t, withClock(clk.Now), opt), startEmulated(t, withClock(clk.Now), opt)}
}

func TestRateLimitExactAcrossInstancesOnRedis(t *testing.T) {
	exactAcrossInstances(t, redisconf.Config{Address: redistest.Start(t).Addr}, 100, 2000)
}

// The same on a Sentinel-watched master and on a three-master Cluster (one
// user scope: one slot, so exact there too).
func TestRateLimitExactAcrossInstancesOnSentinelAndCluster(t *testing.T) {
	t.Run("sentinel", func(t *testing.T) {
		s := redistest.StartSentinel(t)
		exactAcrossInstances(t, redisconf.Config{Mode: "sentinel", Addresses: []string{s.Sentinel.Addr},
			MasterName: redistest.MasterName}, 40, 300)
	})
	t.Run("cluster", func(t *testing.T) {
		exactAcrossInstances(t, redisconf.Config{Mode: "cluster", Addresses: redistest.StartCluster(t).Addrs()}, 40, 300)
	})
}

func exactAcrossInstances(t *testing.T, rc redisconf.Config, limit, calls int) {
	// A daily limit: the servers' clock is frozen but Redis expires keys in
	// real time (window end − now + grace), so a per-minute key would vanish
	// after ~40 s of a slow run and let a second limit's worth through.
	gws := twoInstancesOn(t, rc, newClock(midMinute), func(c *ratelimit.Config) {
		c.Limits = ratelimit.Limits{RequestsPerDay: int64(limit)}
	})
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range calls {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			resp := post(t, gws[i%2], "/openai/v1/chat/completions", "application/json",
				[]byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`), http.Header{"X-User-Id": {"shared"}})
			readAll(t, resp)
			switch resp.StatusCode {
			case 200:
				ok.Add(1)
			case 429:
				refused.Add(1)
			default:
				t.Errorf("unexpected status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, ok.Load(), int64(limit), "never above the limit across both instances")
	require.EqualValues(t, calls, ok.Load()+refused.Load())
	if rc.Mode != "cluster" {
		require.EqualValues(t, limit, ok.Load(), "one script per reservation: exactly the limit is admitted")
	}
	// On a Cluster a reservation spanning slots can be refused while a
	// concurrent one briefly holds a slot it then gives back, so fewer than
	// the limit may pass under contention (never more). One request at a
	// time contends with nothing: the rest of the limit must be there,
	// which also proves no reservation was left behind.
	for i := 0; ok.Load() < int64(limit) && i <= limit; i++ {
		resp := post(t, gws[i%2], "/openai/v1/chat/completions", "application/json",
			[]byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`), http.Header{"X-User-Id": {"shared"}})
		readAll(t, resp)
		require.Equal(t, http.StatusOK, resp.StatusCode, "the limit is not yet used up: %d admitted", ok.Load())
		ok.Add(1)
	}
	resp := post(t, gws[0], "/openai/v1/chat/completions", "application/json",
		[]byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`), http.Header{"X-User-Id": {"shared"}})
	readAll(t, resp)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "exactly the limit is admitted")
	require.Len(t, append(gws[0].VendorCalls(t), gws[1].VendorCalls(t)...), limit)
}

func TestRateLimitZeroDriftWithFaults(t *testing.T) {
	rdb := redistest.Start(t)
	clk := newClock(midMinute)
	gws := twoInstances(t, rdb, clk, func(c *ratelimit.Config) {
		c.Global = ratelimit.Limits{TokensPerMinute: 10_000_000}
	})
	faults := []http.Header{
		{},
		{"X-Fake-Status": {"503"}},
		{"X-Fake-Status": {"400"}},
		{"X-Fake-Reset-After-Bytes": {"300"}, "X-Fake-Chunk-Delay-Ms": {"2"}},
		{"X-Fake-Reset-Before-Headers": {"1"}},
	}
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			h := faults[i%len(faults)].Clone()
			h.Set("X-Fake-Input-Tokens", strconv.Itoa(10+i))
			h.Set("X-Fake-Fail-Key", fmt.Sprintf("drift-%d", i))
			body := `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}]}`
			if i%3 == 0 {
				// Client disconnects mid-stream.
				ctx, cancel := context.WithCancel(t.Context())
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gws[i%2].URL()+"/openai/v1/chat/completions", strings.NewReader(body))
				req.Header = h
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Fake-Chunk-Delay-Ms", "3")
				resp, err := httpClient().Do(req)
				if err == nil {
					buf := make([]byte, 64)
					_, _ = resp.Body.Read(buf)
					cancel()
					resp.Body.Close()
				}
				cancel()
				return
			}
			// Faults may break the connection before any response (an
			// upstream reset while Envoy still holds the headers resets the
			// client too), so transport errors are expected here.
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, gws[i%2].URL()+"/openai/v1/chat/completions", strings.NewReader(body))
			req.Header = h
			req.Header.Set("Content-Type", "application/json")
			if resp, err := httpClient().Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	// Every request ends in exactly one settlement; the Redis counter for the
	// shared window equals the sum of what both servers settled.
	var settled int64
	for _, g := range gws {
		require.Len(t, g.Records(t, 30), 30, "each instance recorded each of its requests once")
	}
	client := redis.NewClient(&redis.Options{Addr: rdb.Addr})
	defer client.Close()
	key := fmt.Sprintf("llmproxy:rl:{global}:m:%d", midMinute.Unix()/60)
	require.Eventually(t, func() bool {
		settled = settledTokens(t, gws)
		got, err := client.HGet(t.Context(), key, "t").Int64()
		if errors.Is(err, redis.Nil) {
			got = 0
		} else if err != nil {
			return false
		}
		return got == settled
	}, 5*time.Second, 20*time.Millisecond, "Redis token counter equals the sum of settled usage")
	require.Positive(t, settled)
}

// settledTokens sums llm_proxy_ratelimit_settled_tokens_total over the
// instances' /metrics endpoints.
func settledTokens(t *testing.T, gws [2]*emulated) int64 {
	t.Helper()
	var sum float64
	for _, g := range gws {
		resp, err := httpClient().Get(g.adminURL + "/metrics")
		require.NoError(t, err)
		for _, line := range strings.Split(readAll(t, resp), "\n") {
			if !strings.HasPrefix(line, "llm_proxy_ratelimit_settled_tokens_total{") {
				continue
			}
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			require.NoError(t, err)
			sum += v
		}
	}
	return int64(sum)
}

func TestRateLimitRefusalCarriesCORSAndPreflightsAreFree(t *testing.T) {
	s := startEmulated(t, withClock(newClock(midMinute).Now), limits(func(c *ratelimit.Config) {
		c.Limits = ratelimit.Limits{RequestsPerMinute: 1}
	}))
	origin := "https://app.example.com"
	preflight := func() {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodOptions, s.URL()+"/openai/v1/chat/completions", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := httpClient().Do(req)
		require.NoError(t, err)
		readAll(t, resp)
		require.Equal(t, 200, resp.StatusCode)
		require.NotEmpty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	call := func() *http.Response {
		return post(t, s, "/openai/v1/chat/completions", "application/json",
			[]byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`),
			http.Header{"Origin": {origin}, "X-User-Id": {"cora"}})
	}
	// Preflights are answered by Envoy's CORS filter: they never reach the
	// server, so they never spend rate-limit budget.
	preflight()
	preflight()
	resp := call()
	readAll(t, resp)
	require.Equal(t, 200, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	resp = call()
	readAll(t, resp)
	require.Equal(t, 429, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Access-Control-Allow-Origin"), "the refusal carries CORS headers")
	require.Contains(t, strings.ToLower(resp.Header.Get("Access-Control-Expose-Headers")), "retry-after")
	require.Len(t, s.VendorCalls(t), 1)
}

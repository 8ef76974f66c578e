package processor

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
)

type settleLog struct {
	mu     sync.Mutex
	tokens []int64
	cancel []bool
}

func (s *settleLog) hook(_ string, tokens int64, cancelled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = append(s.tokens, tokens)
	s.cancel = append(s.cancel, cancelled)
}

func (s *settleLog) wait(t *testing.T, n int) ([]int64, []bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.tokens) >= n
	}, 5*time.Second, time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.tokens...), append([]bool(nil), s.cancel...)
}

func newLimited(t *testing.T, rl ratelimit.Config, now func() time.Time) (*harness, *settleLog) {
	t.Helper()
	rl.Enabled = true
	rl.ApplyDefaults()
	require.NoError(t, rl.Validate())
	log := &settleLog{}
	lim, err := ratelimit.Open(t.Context(), rl, quota.Hooks{})
	require.NoError(t, err)
	g := NewRateLimit(RateLimitOptions{Limiter: lim, Config: rl,
		Providers: providers.Registry{"fake": fakeProvider{}}, Now: now,
		Hooks: RateLimitHooks{OnSettle: log.hook}})
	return newHarness(t, config.Defaults(), g), log
}

func lifecycle(t *testing.T, h *harness, user, body string, status string, usage string) *conv {
	t.Helper()
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json",
		"x-user-id", user, "authorization", "Bearer sk-"+user)))
	resp := c.do(reqBody([]byte(body), true))
	if resp.GetImmediateResponse() != nil {
		return nil
	}
	c.do(respHeaders(hdrs(false, ":status", status, "content-type", "application/json", "content-length", "40")))
	c.do(respBody([]byte(usage), true))
	return c
}

func TestRateLimitRefusesWithHeadersAndVendorBody(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 30, 0, time.UTC)
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h, _ := newLimited(t, ratelimit.Config{Limits: ratelimit.Limits{RequestsPerMinute: 2}}, clock)

	for range 2 {
		require.NotNil(t, lifecycle(t, h, "alice", `{"model":"m","text":"abcd"}`, "200", `{"in":1,"out":1}`))
	}
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json",
		"x-user-id", "alice", "authorization", "Bearer sk-alice")))
	resp := c.do(reqBody([]byte(`{"model":"m","text":"abcd"}`), true))
	ir := resp.GetImmediateResponse()
	require.NotNil(t, ir, "third request in the minute is refused")
	require.EqualValues(t, 429, ir.GetStatus().GetCode())
	require.Equal(t, RateLimitDetails, ir.GetDetails())
	got := map[string]string{}
	for _, hv := range ir.GetHeaders().GetSetHeaders() {
		got[hv.GetHeader().GetKey()] = string(hv.GetHeader().GetRawValue())
	}
	require.Equal(t, "30", got["retry-after"], "the minute window ends in 30 s")
	require.Equal(t, "2", got["x-ratelimit-limit"])
	require.Equal(t, "0", got["x-ratelimit-remaining"])
	require.Equal(t, "requests", got["x-ratelimit-metric"])
	require.Equal(t, "minute", got["x-ratelimit-window"])
	require.Equal(t, "proxy", got["x-llm-proxy-error-source"])
	require.Equal(t, "application/json", got["content-type"])
	require.Contains(t, []string{"key:" + KeyID("sk-alice"), "user:alice"}, got["x-ratelimit-scope"])
	require.NotContains(t, got["x-ratelimit-scope"], "sk-alice", "raw keys never leave the server")
	var body map[string]any
	require.NoError(t, json.Unmarshal(ir.GetBody(), &body))
	require.EqualValues(t, providers.ErrorRateLimited, body["kind"])

	// Another user is unaffected; the next minute admits alice again.
	require.NotNil(t, lifecycle(t, h, "bob", `{"model":"m","text":"abcd"}`, "200", `{"in":1,"out":1}`))
	mu.Lock()
	now = t0.Add(time.Minute)
	mu.Unlock()
	require.NotNil(t, lifecycle(t, h, "alice", `{"model":"m","text":"abcd"}`, "200", `{"in":1,"out":1}`))
}

func TestRateLimitSettlement(t *testing.T) {
	tests := []struct {
		name       string
		status     string
		usage      string
		wantTokens int64
		wantCancel bool
	}{
		{"usage replaces the estimate", "200", `{"in":7,"out":3}`, 7, false},
		{"no usage keeps the estimate", "200", `{}`, 3, false},
		{"vendor 4xx charges no tokens", "400", `{}`, 0, false},
		{"vendor 5xx cancels", "503", `{}`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, log := newLimited(t, ratelimit.Config{Limits: ratelimit.Limits{TokensPerMinute: 1000}}, time.Now)
			require.NotNil(t, lifecycle(t, h, "u", `{"model":"m","text":"abcdefghij"}`, tt.status, tt.usage))
			tokens, cancel := log.wait(t, 1)
			require.Equal(t, []int64{tt.wantTokens}, tokens)
			require.Equal(t, []bool{tt.wantCancel}, cancel)
		})
	}
}

func TestRateLimitAbortedRequestSettlesOnce(t *testing.T) {
	h, log := newLimited(t, ratelimit.Config{Limits: ratelimit.Limits{RequestsPerMinute: 5}}, time.Now)
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json", "x-user-id", "u")))
	c.do(reqBody([]byte(`{"model":"m","text":"abcd"}`), true))
	c.cf()
	tokens, cancel := log.wait(t, 1)
	require.Equal(t, []bool{true}, cancel, "no response at all: the charge is cancelled")
	require.Equal(t, []int64{0}, tokens)
	time.Sleep(20 * time.Millisecond)
	tokens, _ = log.wait(t, 1)
	require.Len(t, tokens, 1, "settled exactly once")
}

type failingLimiter struct{ ratelimit.Nop }

func (failingLimiter) Reserve(context.Context, ratelimit.Request, time.Time) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.Join(ratelimit.ErrBackendUnavailable, errors.New("redis down"))
}

func TestRateLimitBackendFailure(t *testing.T) {
	for _, mode := range []string{quota.FailOpen, quota.FailClosed} {
		t.Run(mode, func(t *testing.T) {
			cfg := ratelimit.Config{Enabled: true, Settings: quota.Settings{FailMode: mode}}
			var failOpen []bool
			g := NewRateLimit(RateLimitOptions{Limiter: failingLimiter{}, Config: cfg,
				Providers: providers.Registry{"fake": fakeProvider{}},
				Hooks:     RateLimitHooks{OnBackendError: func(_ string, open bool) { failOpen = append(failOpen, open) }}})
			h := newHarness(t, config.Defaults(), g)
			c := h.open()
			c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
			resp := c.do(reqBody([]byte(`{"model":"m","text":"abcd"}`), true))
			if mode == quota.FailOpen {
				require.NotNil(t, resp.GetRequestBody(), "fail open lets the request through")
				require.Equal(t, []bool{true}, failOpen)
				return
			}
			require.EqualValues(t, 503, resp.GetImmediateResponse().GetStatus().GetCode())
			require.Equal(t, []bool{false}, failOpen)
		})
	}
}

func TestPromptTokens(t *testing.T) {
	u := providers.Usage{InputTokens: 10, CacheReadTokens: 5, CacheWriteTokens: 2}
	require.EqualValues(t, 17, PromptTokens("anthropic", providers.RequestInfo{}, u))
	require.EqualValues(t, 10, PromptTokens("anthropic", providers.RequestInfo{OpenAICompatible: true}, u))
	require.EqualValues(t, 10, PromptTokens("openai", providers.RequestInfo{}, u))
}

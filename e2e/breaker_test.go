package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

const marker = "[LLM_PROXY_PROVIDER_DEGRADED]"

func circuit(f func(*breaker.Config)) emuOption {
	return withConfig(func(c *config.Config) {
		cb := &c.Features.CircuitBreaker
		cb.Enabled = true
		cb.Mode = breaker.ModeEnforce
		if f != nil {
			f(cb)
		}
	})
}

// health reads the gateway's /health (routed by Envoy to the admin port).
func health(t *testing.T, s stack) map[string]any {
	t.Helper()
	resp, err := httpClient().Get(s.URL() + "/health")
	require.NoError(t, err)
	defer resp.Body.Close()
	var h map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
	return h
}

func providerHealth(t *testing.T, s stack, p string) map[string]any {
	t.Helper()
	return health(t, s)["providers"].(map[string]any)[p].(map[string]any)
}

// requireDegradedSignal checks the exact degraded contract on a response.
func requireDegradedSignal(t *testing.T, status int, h http.Header, body, provider, source, signal string, note ...string) {
	t.Helper()
	require.Equal(t, 503, status)
	require.Equal(t, "application/json", h.Get("Content-Type"))
	require.Equal(t, "provider_degraded", h.Get("X-Llm-Proxy-Error-Class"))
	require.Equal(t, source, h.Get("X-Llm-Proxy-Error-Source"))
	tag := "[PROXY]"
	if source == "upstream" {
		tag = "[UPSTREAM]"
	}
	noted := ""
	for _, n := range note {
		noted += " " + n + "."
	}
	msg, err := json.Marshal(fmt.Sprintf("%s %s Provider %s is currently degraded or unavailable.%s Please try again later.", tag, signal, provider, noted))
	require.NoError(t, err)
	want := `{"error":{"code":"provider_degraded","message":` + string(msg) + `,"type":"provider_degraded"}}`
	require.JSONEq(t, want, body)
}

func TestCircuitTripsOnAnthropic529AndRecovers(t *testing.T) {
	clk := newClock(midMinute)
	s := startEmulated(t, withClock(clk.Now), circuit(nil))
	failing := anthropicClient(s, "/anthropic/", aoption.WithHeader("x-fake-status", "529"))
	for i := range 5 {
		require.Equal(t, "closed", providerHealth(t, s, "anthropic")["circuit_state"], "before call %d", i+1)
		_, err := failing.Messages.New(t.Context(), messageParams())
		// Every terminal degraded response (after Envoy's retries) becomes
		// the signal, so clients can fall back at once.
		var apiErr *anthropic.Error
		require.ErrorAs(t, err, &apiErr, "call %d", i+1)
		require.Equal(t, 503, apiErr.StatusCode)
		require.Contains(t, apiErr.Error(), marker)
		requireDegradedSignal(t, apiErr.StatusCode, apiErr.Response.Header, apiErr.RawJSON(), "anthropic", "upstream", marker)
	}
	require.Len(t, s.VendorCalls(t), 15, "five calls, each tried three times by Envoy")
	ph := providerHealth(t, s, "anthropic")
	require.Equal(t, "open", ph["circuit_state"])
	require.EqualValues(t, midMinute.Add(300*time.Second).Unix(), ph["circuit_cooldown_until"])

	// Open: the next call fails fast without reaching the vendor, and the
	// SDK's error carries the marker.
	_, err := anthropicClient(s, "/anthropic/").Messages.New(t.Context(), messageParams())
	var apiErr *anthropic.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, 503, apiErr.StatusCode)
	require.Contains(t, apiErr.Error(), marker)
	require.Contains(t, apiErr.Error(), "[PROXY]")
	requireDegradedSignal(t, apiErr.StatusCode, apiErr.Response.Header, apiErr.RawJSON(), "anthropic", "proxy", marker)
	require.Len(t, s.VendorCalls(t), 15, "fast-fail never reaches the vendor")

	// Other models and providers are unaffected.
	other := messageParams()
	other.Model = "claude-haiku-4-5"
	_, err = anthropicClient(s, "/anthropic/").Messages.New(t.Context(), other)
	require.NoError(t, err)
	_, err = openaiClient(s).Chat.Completions.New(t.Context(), chatParams())
	require.NoError(t, err)

	// After the cooldown exactly one probe goes through (without retries)
	// and its success closes the circuit.
	clk.Advance(301 * time.Second)
	_, err = anthropicClient(s, "/anthropic/").Messages.New(t.Context(), messageParams())
	require.NoError(t, err, "the probe succeeds")
	calls := s.VendorCalls(t)
	probe := calls[len(calls)-1]
	// The probe's x-envoy-max-retries: 0 (one attempt, pinned in
	// pkg/processor and internal/envoytest) is consumed by Envoy's router.
	require.Empty(t, probe.Header.Get("X-Envoy-Max-Retries"), "Envoy's router consumes it")
	require.Equal(t, "closed", providerHealth(t, s, "anthropic")["circuit_state"])
	_, err = anthropicClient(s, "/anthropic/").Messages.New(t.Context(), messageParams())
	require.NoError(t, err)
}

func TestCircuitOpenAI5xxAndGemini503(t *testing.T) {
	clk := newClock(midMinute)
	s := startEmulated(t, withClock(clk.Now), circuit(func(c *breaker.Config) { c.FailureThreshold = 2 }))

	oa := openaiClient(s, option.WithHeader("x-fake-status", "500"))
	for range 2 {
		_, err := oa.Chat.Completions.New(t.Context(), chatParams())
		require.Error(t, err)
	}
	_, err := openaiClient(s).Chat.Completions.New(t.Context(), chatParams())
	var oaErr *openai.Error
	require.ErrorAs(t, err, &oaErr)
	require.Equal(t, 503, oaErr.StatusCode)
	require.Equal(t, "provider_degraded", oaErr.Code)
	require.Contains(t, oaErr.Message, marker)

	gm := genaiClient(t, s, http.Header{"X-Fake-Status": {"503"}})
	for range 2 {
		_, err := gm.Models.GenerateContent(t.Context(), "gemini-2.5-pro", genai.Text("hi"), nil)
		require.Error(t, err)
	}
	_, err = genaiClient(t, s, nil).Models.GenerateContent(t.Context(), "gemini-2.5-pro", genai.Text("hi"), nil)
	var gErr genai.APIError
	require.ErrorAs(t, err, &gErr)
	require.Equal(t, 503, gErr.Code)
	require.Contains(t, gErr.Message, marker)
	// gemini-2.5-flash is another key.
	_, err = genaiClient(t, s, nil).Models.GenerateContent(t.Context(), "gemini-2.5-flash", genai.Text("hi"), nil)
	require.NoError(t, err)
}

func TestCircuitOpenAIQuotaOpensProviderAndPassesThe429(t *testing.T) {
	s := startEmulated(t, withClock(newClock(midMinute).Now), circuit(nil))
	_, err := openaiClient(s, option.WithHeader("x-fake-status", "429"), option.WithHeader("x-fake-error-type", "insufficient_quota")).
		Chat.Completions.New(t.Context(), chatParams())
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, 429, apiErr.StatusCode, "the vendor's own 429 passes through")
	require.Equal(t, "insufficient_quota", apiErr.Code)

	// The whole provider is open: another model fails fast.
	p := chatParams()
	p.Model = "gpt-4.1"
	before := len(s.VendorCalls(t))
	_, err = openaiClient(s).Chat.Completions.New(t.Context(), p)
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, 503, apiErr.StatusCode)
	require.Len(t, s.VendorCalls(t), before)
	// Anthropic is unaffected.
	_, err = anthropicClient(s, "/anthropic/").Messages.New(t.Context(), messageParams())
	require.NoError(t, err)
}

func TestCircuitCustomSignal(t *testing.T) {
	signal := `<<FALLBACK "now">>`
	s := startEmulated(t, withClock(newClock(midMinute).Now), circuit(func(c *breaker.Config) {
		c.FailureThreshold = 1
		c.DegradedSignal = signal
	}))
	resp := post(t, s, "/anthropic/v1/messages", "application/json",
		[]byte(`{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`),
		http.Header{"X-Fake-Status": {"503"}, "Anthropic-Version": {"2023-06-01"}})
	body := readAll(t, resp)
	requireDegradedSignal(t, resp.StatusCode, resp.Header, body, "anthropic", "upstream", signal)
	require.Contains(t, body, `<<FALLBACK \"now\">>`, "the marker appears verbatim (JSON-escaped quotes, no HTML escaping)")
	require.NotContains(t, body, marker)
	line := s.AccessLog(t, 1)[0]
	require.Equal(t, processor.CircuitDegradedDetails, str(line["response_code_details"]))
}

func TestCircuitRetryContributionModes(t *testing.T) {
	tests := []struct {
		mode      string
		threshold int
		calls     int // failing calls (3 attempts each) until the circuit opens
	}{
		{breaker.ContributionOn, 3, 1},  // every failed attempt counts
		{breaker.ContributionLog, 3, 3}, // attempts only logged
		{breaker.ContributionOff, 3, 3}, // only the terminal failure counts
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			s := startEmulated(t, withClock(newClock(midMinute).Now), circuit(func(c *breaker.Config) {
				c.FailureThreshold = tt.threshold
				c.RetryContributionMode = tt.mode
			}))
			c := anthropicClient(s, "/anthropic/", aoption.WithHeader("x-fake-status", "503"))
			for i := range tt.calls {
				require.NotEqual(t, "open", providerHealth(t, s, "anthropic")["circuit_state"], "open too early, before call %d", i+1)
				_, err := c.Messages.New(t.Context(), messageParams())
				require.Error(t, err)
			}
			require.Equal(t, "open", providerHealth(t, s, "anthropic")["circuit_state"])
			for _, line := range s.AccessLog(t, 2*tt.calls+1) {
				if str(line["provider"]) == "anthropic" {
					require.EqualValues(t, 3, num(line["attempts"]), "Envoy retried twice")
				}
			}
		})
	}
}

func TestCircuitTransientFailureRecoveredByRetryDoesNotTrip(t *testing.T) {
	s := startEmulated(t, withClock(newClock(midMinute).Now), circuit(func(c *breaker.Config) {
		c.FailureThreshold = 1
		c.RetryContributionMode = breaker.ContributionOff
	}))
	_, err := anthropicClient(s, "/anthropic/", aoption.WithHeader("x-fake-status", "529"),
		aoption.WithHeader("x-fake-fail-times", "1"), aoption.WithHeader("x-fake-fail-key", "t1")).
		Messages.New(t.Context(), messageParams())
	require.NoError(t, err)
	require.Equal(t, "closed", providerHealth(t, s, "anthropic")["circuit_state"])
}

func TestCircuitTestModes(t *testing.T) {
	t.Setenv("LLM_PROXY_ALLOW_TEST_MODE", "1")
	s := startEmulated(t, withClock(newClock(midMinute).Now), circuit(func(c *breaker.Config) {
		c.TestModeEnabled = true
		c.FailureThreshold = 1
		c.RetryContributionMode = breaker.ContributionOn
	}))
	// force_degraded: answered at once, nothing reaches the vendor.
	resp := post(t, s, "/openai/v1/chat/completions?llm_proxy_test_mode=force_degraded", "application/json",
		[]byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`), nil)
	requireDegradedSignal(t, resp.StatusCode, resp.Header, readAll(t, resp), "openai", "proxy", marker)
	require.Empty(t, s.VendorCalls(t))

	// force_transient_recover: the first attempt fails as degraded, Envoy
	// retries, the client gets the answer, and the circuit stays closed.
	_, err := openaiClient(s, option.WithHeader("X-LLM-Proxy-Test-Mode", "force_transient_recover")).
		Chat.Completions.New(t.Context(), chatParams())
	require.NoError(t, err)
	calls := s.VendorCalls(t)
	require.Len(t, calls, 2, "attempt one was failed by the gateway, attempt two succeeded")
	for _, c := range calls {
		require.Empty(t, c.Header.Get("X-LLM-Proxy-Test-Mode"), "test-mode header never reaches the vendor")
		require.NotContains(t, c.Query.Encode(), "llm_proxy")
	}
	require.EqualValues(t, 2, num(s.AccessLog(t, 2)[1]["attempts"]))
	require.Equal(t, "closed", providerHealth(t, s, "openai")["circuit_state"])

	// Unknown values are ignored and never forwarded.
	_, err = openaiClient(s, option.WithHeader("X-LLM-Proxy-Test-Mode", "explode")).Chat.Completions.New(t.Context(), chatParams())
	require.NoError(t, err)
	resp = post(t, s, "/gemini/v1beta/models/gemini-2.5-flash:generateContent?llm_proxy_test_mode=explode&key=g-1", "application/json",
		[]byte(`{"contents":[{"parts":[{"text":"hi"}]}]}`), nil)
	readAll(t, resp)
	require.Equal(t, 200, resp.StatusCode)
	calls = s.VendorCalls(t)
	last := calls[len(calls)-1]
	require.Equal(t, "g-1", last.Query.Get("key"), "other parameters are kept")
	require.False(t, last.Query.Has("llm_proxy_test_mode"), "proxy-only parameters never reach the vendor")
}

func TestCircuitTestModeNeedsTheEnvironment(t *testing.T) {
	t.Setenv("LLM_PROXY_ALLOW_TEST_MODE", "")
	s := startEmulated(t, circuit(func(c *breaker.Config) { c.TestModeEnabled = true }))
	_, err := openaiClient(s, option.WithHeader("X-LLM-Proxy-Test-Mode", "force_degraded")).Chat.Completions.New(t.Context(), chatParams())
	require.NoError(t, err, "without LLM_PROXY_ALLOW_TEST_MODE=1 the header does nothing")
}

func TestCircuitSharedAcrossInstancesOnRedis(t *testing.T) {
	rdb := redistest.Start(t)
	clk := newClock(midMinute)
	opt := circuit(func(c *breaker.Config) {
		c.Backend = breaker.BackendRedis
		c.Redis.Address = rdb.Addr
		c.FailureThreshold = 4
	})
	a := startEmulated(t, withClock(clk.Now), opt)
	b := startEmulated(t, withClock(clk.Now), opt)
	fail := aoption.WithHeader("x-fake-status", "529")
	// Failures from both instances add up: 2 + 2 = threshold.
	for _, s := range []stack{a, a, b, b} {
		_, err := anthropicClient(s, "/anthropic/", fail).Messages.New(t.Context(), messageParams())
		require.Error(t, err)
	}
	for _, s := range []*emulated{a, b} {
		require.Equal(t, "open", providerHealth(t, s, "anthropic")["circuit_state"], "one instance's trip opens it for both")
		_, err := anthropicClient(s, "/anthropic/").Messages.New(t.Context(), messageParams())
		var apiErr *anthropic.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, 503, apiErr.StatusCode)
	}
	// After the cooldown, concurrent calls on both instances: exactly one
	// probe reaches the vendor; the rest fail fast.
	clk.Advance(301 * time.Second)
	before := len(a.VendorCalls(t)) + len(b.VendorCalls(t))
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			s := a
			if i%2 == 1 {
				s = b
			}
			// A slow vendor keeps the probe in flight while the others arrive.
			_, err := anthropicClient(s, "/anthropic/", aoption.WithHeader("x-fake-latency-ms", "200")).Messages.New(t.Context(), messageParams())
			if err == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 1, ok.Load(), "one probe")
	require.Equal(t, before+1, len(a.VendorCalls(t))+len(b.VendorCalls(t)))
	require.Equal(t, "closed", providerHealth(t, b, "anthropic")["circuit_state"])
}

func TestHealthReportsTheBreaker(t *testing.T) {
	s := startEmulated(t, circuit(nil))
	h := health(t, s)
	cb := h["circuit_breaker"].(map[string]any)
	require.Equal(t, true, cb["enabled"])
	require.Equal(t, "enforce", cb["mode"])
	require.Equal(t, "memory", cb["backend"])
	require.Equal(t, marker, cb["degraded_signal"])
	require.Equal(t, "closed", providerHealth(t, s, "gemini")["circuit_state"])
	require.True(t, strings.HasPrefix(providerHealth(t, s, "openai")["baseURL"].(string), "https://"))
}

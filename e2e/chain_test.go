package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoytest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
)

// exampleChain is the chain envoy-mock.yaml carries (route and cluster
// failover_openai_gpt_4o): the rules must list the same targets in the
// same order.
var exampleChain = map[string][]string{
	"openai:gpt-4o": {"openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5", "gemini:gemini-2.5-flash"},
}

// envoyChain turns failover on with exampleChain, carried by Envoy.
func envoyChain() emuOption {
	return withConfig(func(c *config.Config) {
		c.Features.Failover = failover.Config{Enabled: true, Chains: exampleChain, EnvoyChains: []string{"openai:gpt-4o"}}
	})
}

// chainPerTry sets the chain route's per_try_timeout (the
// timeout_before_first_byte of the test).
func chainPerTry(d time.Duration) emuOption {
	return withEnvoy(func(c *envoytest.Config) {
		for i := range c.VirtualHosts {
			for j := range c.VirtualHosts[i].Routes {
				if r := &c.VirtualHosts[i].Routes[j]; r.Name == "failover_openai_gpt_4o" {
					r.Retry.PerTryTimeout = d
				}
			}
		}
	})
}

// recordCount is the number of records the server made so far.
func (e *emulated) recordCount(t *testing.T) int { return len(e.Records(t, 0)) }

// failingVendor stands before the fake vendor and fails the calls for the
// models in fail before any byte: with that status and a JSON error, or,
// for 0, by never answering (until Envoy gives up on the attempt). It
// records every call as "host model".
type failingVendor struct {
	next http.Handler
	mu   sync.Mutex
	fail map[string]int
	hits []string
}

func (v *failingVendor) set(fail map[string]int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.fail, v.hits = fail, nil
}

func (v *failingVendor) calls() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.hits...)
}

func (v *failingVendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var m struct {
		Model string `json:"model"`
	}
	_ = json.Unmarshal(body, &m)
	if rest, ok := strings.CutPrefix(r.URL.Path, "/v1beta/models/"); ok && m.Model == "" {
		m.Model, _, _ = strings.Cut(rest, ":") // Gemini's native API: the model is in the path
	}
	v.mu.Lock()
	status, fails := v.fail[m.Model]
	v.hits = append(v.hits, r.Host+" "+m.Model)
	v.mu.Unlock()
	if !fails {
		r.Body = io.NopCloser(bytes.NewReader(body))
		v.next.ServeHTTP(w, r)
		return
	}
	if status == 0 {
		<-r.Context().Done()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `{"error":{"type":"overloaded_error","message":"failing on purpose"}}`)
}

func TestFailoverBeforeFirstByte(t *testing.T) {
	rdb := redistest.Start(t)
	dir := t.TempDir()
	fake := fakevendor.New(fakevendor.Options{Seed: 7})
	v := &failingVendor{next: fake}
	s := startEmulated(t, append(gatewayKeysOn(rdb.Addr), withVendor(v), costTracking(dir, nil), envoyChain(),
		chainPerTry(500*time.Millisecond))...)
	k := createKey(t, s, keys.KeySpec{Owner: "ann", Description: "chain e2e"})
	oc := openaiClient(s, option.WithAPIKey(k.Key))
	gpt4o := chatParams()
	gpt4o.Model = "gpt-4o"

	callJSON := func(t *testing.T) (string, http.Header, error) {
		var resp *http.Response
		out, err := oc.Chat.Completions.New(t.Context(), gpt4o, option.WithResponseInto(&resp))
		if err != nil {
			return "", nil, err
		}
		require.NotEmpty(t, out.Choices[0].Message.Content)
		return out.Model, resp.Header, nil
	}
	callStream := func(t *testing.T) (string, http.Header, error) {
		var resp *http.Response
		st := oc.Chat.Completions.NewStreaming(t.Context(), gpt4o, option.WithResponseInto(&resp))
		acc := openai.ChatCompletionAccumulator{}
		for st.Next() {
			acc.AddChunk(st.Current())
		}
		if err := st.Err(); err != nil {
			return "", nil, err
		}
		require.NotEmpty(t, acc.Choices[0].Message.Content)
		return acc.Model, resp.Header, nil
	}
	hosts := map[string]string{"openai": "api.openai.com", "anthropic": "api.anthropic.com", "gemini": "generativelanguage.googleapis.com"}
	paths := map[fakevendor.Vendor]string{fakevendor.VendorOpenAI: "/v1/chat/completions",
		fakevendor.VendorAnthropic: "/v1/chat/completions", fakevendor.VendorGemini: "/v1beta/openai/chat/completions"}

	tests := []struct {
		name   string
		fail   map[string]int
		served failover.Target
		reason string
		tried  []string // the targets attempted, in order
	}{
		{"a 503 moves to the next model of the vendor", map[string]int{"gpt-4o": 503},
			failover.Target{Provider: "openai", Model: "gpt-4o-mini"}, "upstream_5xx",
			[]string{"openai:gpt-4o", "openai:gpt-4o-mini"}},
		{"a 429 too", map[string]int{"gpt-4o": 429},
			failover.Target{Provider: "openai", Model: "gpt-4o-mini"}, "rate_limited",
			[]string{"openai:gpt-4o", "openai:gpt-4o-mini"}},
		{"a 529 then a 503 move to another vendor", map[string]int{"gpt-4o": 529, "gpt-4o-mini": 503},
			failover.Target{Provider: "anthropic", Model: "claude-sonnet-4-5"}, "upstream_5xx",
			[]string{"openai:gpt-4o", "openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"}},
		{"no response headers in time, down to the last target", map[string]int{"gpt-4o": 0, "gpt-4o-mini": 429, "claude-sonnet-4-5": 529},
			failover.Target{Provider: "gemini", Model: "gemini-2.5-flash"}, "timeout_before_first_byte",
			[]string{"openai:gpt-4o", "openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5", "gemini:gemini-2.5-flash"}},
	}
	// Each call makes one record; waiting for all of them before reading
	// the last one makes it the call's own.
	made := s.recordCount(t)
	for _, tt := range tests {
		for name, call := range map[string]func(*testing.T) (string, http.Header, error){"json": callJSON, "stream": callStream} {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				v.set(tt.fail)
				before := len(fake.Calls())
				model, h, err := call(t)
				require.NoError(t, err)
				require.Equal(t, tt.served.Model, model)
				require.Equal(t, tt.served.String(), h.Get("X-LLM-Proxy-Fallback"))
				var want []string
				for _, tr := range tt.tried {
					p, m, _ := strings.Cut(tr, ":")
					want = append(want, hosts[p]+" "+m)
				}
				require.Equal(t, want, v.calls(), "one attempt per target, in chain order, each rewritten for its host")
				calls := fake.Calls()
				require.Len(t, calls, before+1, "only the serving target answered")
				vc := calls[len(calls)-1]
				require.Equal(t, fakevendor.Vendor(tt.served.Provider), vc.Vendor)
				require.Equal(t, paths[vc.Vendor], vc.Path)
				require.Equal(t, tt.served.Model, vc.Model)
				require.Equal(t, vendorKeys[tt.served.Provider], vc.APIKey, "the target vendor's key, never the gateway key")
				require.Empty(t, vc.Header.Get("X-Llm-Proxy-Chain"), "the chain header stays in Envoy")
				if tt.served.Provider != "openai" {
					require.Empty(t, vc.Header.Get("X-Api-Key"), "no other vendor's key")
					require.Empty(t, vc.Header.Get("X-Goog-Api-Key"))
				}
				made++
				recs := s.Records(t, made)
				rec := recs[len(recs)-1]
				log := s.AccessLog(t, made)
				md := log[len(log)-1]
				require.Equal(t, tt.served.Provider, rec.Provider)
				require.Equal(t, tt.served.Model, rec.Info.Model)
				require.NotNil(t, rec.Failover)
				require.Equal(t, failover.Target{Provider: "openai", Model: "gpt-4o"}, rec.Failover.Requested)
				require.Equal(t, tt.reason, rec.Failover.Reason)
				require.Equal(t, "openai:gpt-4o", rec.Failover.Chain)
				require.True(t, rec.Usage.Found, "the served target's usage")
				require.Equal(t, 200, rec.Status)
				require.Equal(t, tt.served.Provider, md["provider"], "%v", md)
				require.Equal(t, tt.served.Model, md["model"])
				require.Equal(t, "openai", md["requested_provider"])
				require.Equal(t, "gpt-4o", md["requested_model"])
				// The cost record charges the served target, at its price.
				charged := costRecordOf(t, dir, rec.RequestID)
				require.Equal(t, tt.served.Provider, charged.Provider)
				require.Equal(t, tt.served.Model, charged.Model)
				require.Equal(t, "gpt-4o", charged.RequestedModel)
			})
		}
	}

	t.Run("served by the requested target: no failover", func(t *testing.T) {
		v.set(nil)
		model, h, err := callJSON(t)
		require.NoError(t, err)
		require.Equal(t, "gpt-4o", model)
		require.Empty(t, h.Get("X-LLM-Proxy-Fallback"))
		require.Equal(t, []string{"api.openai.com gpt-4o"}, v.calls())
		made++
		recs := s.Records(t, made)
		require.Nil(t, recs[len(recs)-1].Failover)
	})

	t.Run("a failure after bytes reached the client does not fail over", func(t *testing.T) {
		v.set(nil)
		made++
		// The vendor's in-stream error after two events: the response
		// (200, its first events) is the client's already.
		var resp *http.Response
		st := oc.Chat.Completions.NewStreaming(t.Context(), gpt4o, option.WithHeader(fakevendor.HeaderStreamErrorAfter, "2"),
			option.WithResponseInto(&resp))
		chunks := 0
		for st.Next() {
			chunks++
		}
		require.Error(t, st.Err(), "the stream ends with the vendor's error, as without a chain")
		require.Equal(t, 2, chunks)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Empty(t, resp.Header.Get("X-LLM-Proxy-Fallback"))
		require.Equal(t, []string{"api.openai.com gpt-4o"}, v.calls(), "one attempt")
	})

	t.Run("every target failing ends with the last target's answer", func(t *testing.T) {
		v.set(map[string]int{"gpt-4o": 503, "gpt-4o-mini": 503, "claude-sonnet-4-5": 529, "gemini-2.5-flash": 503})
		_, _, err := callJSON(t)
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusServiceUnavailable, apiErr.StatusCode)
		require.Equal(t, "gemini:gemini-2.5-flash", apiErr.Response.Header.Get("X-LLM-Proxy-Fallback"))
		require.Len(t, v.calls(), 4, "every target once")
	})

	t.Run("llm_proxy_failover_total counts each call by chain, served target and reason", func(t *testing.T) {
		var got []string
		for _, line := range strings.Split(readAll(t, mustGet(t, s.adminURL+"/metrics")), "\n") {
			if strings.HasPrefix(line, "llm_proxy_failover_total{") {
				got = append(got, line)
			}
		}
		for _, line := range []string{
			`llm_proxy_failover_total{from="openai:gpt-4o",reason="upstream_5xx",to="openai:gpt-4o-mini"} 2`,
			`llm_proxy_failover_total{from="openai:gpt-4o",reason="rate_limited",to="openai:gpt-4o-mini"} 2`,
			`llm_proxy_failover_total{from="openai:gpt-4o",reason="upstream_5xx",to="anthropic:claude-sonnet-4-5"} 2`,
			`llm_proxy_failover_total{from="openai:gpt-4o",reason="timeout_before_first_byte",to="gemini:gemini-2.5-flash"} 2`,
		} {
			require.Contains(t, got, line)
		}
	})

	t.Run("attempts stop before a target the gateway key may not use", func(t *testing.T) {
		narrow := createKey(t, s, keys.KeySpec{Owner: "bob", Description: "openai only", Models: []string{"gpt-4o*"}})
		v.set(map[string]int{"gpt-4o": 503, "gpt-4o-mini": 503})
		_, err := openaiClient(s, option.WithAPIKey(narrow.Key)).Chat.Completions.New(t.Context(), gpt4o)
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusServiceUnavailable, apiErr.StatusCode, "the last usable target's answer")
		require.Equal(t, []string{"api.openai.com gpt-4o", "api.openai.com gpt-4o-mini"}, v.calls(),
			"never sent to anthropic or gemini")
	})
}

// The requested target's failures before the first byte count in its
// circuit, though another target served every call: once it opens, calls
// fail over at admission and never reach it again.
func TestFailoverBeforeFirstByteFeedsTheBreaker(t *testing.T) {
	rdb := redistest.Start(t)
	fake := fakevendor.New(fakevendor.Options{Seed: 7})
	v := &failingVendor{next: fake}
	s := startEmulated(t, append(gatewayKeysOn(rdb.Addr), withVendor(v), circuit(nil), envoyChain())...)
	k := createKey(t, s, keys.KeySpec{Owner: "ann", Description: "chain breaker e2e"})
	oc := openaiClient(s, option.WithAPIKey(k.Key))
	p := chatParams()
	p.Model = "gpt-4o"
	v.set(map[string]int{"gpt-4o": 503})
	for i := range 5 {
		var resp *http.Response
		out, err := oc.Chat.Completions.New(t.Context(), p, option.WithResponseInto(&resp))
		require.NoError(t, err, "call %d", i+1)
		require.Equal(t, "gpt-4o-mini", out.Model)
		require.Equal(t, "openai:gpt-4o-mini", resp.Header.Get("X-LLM-Proxy-Fallback"))
	}
	require.Len(t, v.calls(), 10, "each call: one attempt on gpt-4o, one on gpt-4o-mini")

	v.set(map[string]int{"gpt-4o": 503})
	var resp *http.Response
	out, err := oc.Chat.Completions.New(t.Context(), p, option.WithResponseInto(&resp))
	require.NoError(t, err)
	require.NotEqual(t, "gpt-4o", out.Model)
	require.NotEmpty(t, resp.Header.Get("X-LLM-Proxy-Fallback"))
	for _, c := range v.calls() {
		require.NotEqual(t, "api.openai.com gpt-4o", c, "the open circuit keeps calls away from gpt-4o")
	}
	recs := s.Records(t, 6)
	require.Equal(t, "circuit_open", recs[len(recs)-1].Failover.Reason)
}

// withChain adds a chain route and cluster beside envoy-mock.yaml's, built
// like failover_openai_gpt_4o: the route matching x-llm-proxy-chain with
// key, the cluster's hosts the targets (the requested one first) on the
// fake vendor, each with its vendor's hostname and llm_proxy.failover
// metadata.
func withChain(key string, targets ...string) emuOption {
	return withEnvoy(func(c *envoytest.Config) {
		hosts := map[string]string{"openai": "api.openai.com", "anthropic": "api.anthropic.com", "gemini": "generativelanguage.googleapis.com"}
		name := "failover_" + strings.NewReplacer(":", "_", "-", "_", ".", "_").Replace(key)
		addr := c.ClusterEndpoints["failover_openai_gpt_4o"][0].Address
		var eps []envoytest.Endpoint
		for i, tg := range append([]string{key}, targets...) {
			p, _, _ := strings.Cut(tg, ":")
			eps = append(eps, envoytest.Endpoint{Address: addr, Priority: i, Hostname: hosts[p],
				Metadata: map[string]map[string]any{"llm_proxy.failover": {"chain": key, "target": tg}}})
		}
		c.ClusterEndpoints[name] = eps
		for i := range c.VirtualHosts {
			rs := c.VirtualHosts[i].Routes
			for j := range rs {
				if rs[j].Name != "failover_openai_gpt_4o" {
					continue
				}
				r := rs[j]
				r.Name, r.Cluster = name, name
				r.Headers = []envoytest.HeaderMatcher{{Name: "x-llm-proxy-chain", Match: &envoytest.StringMatcher{Exact: key}}}
				retry := *r.Retry
				retry.NumRetries = len(targets)
				r.Retry = &retry
				c.VirtualHosts[i].Routes = append(rs[:j:j], append([]envoytest.Route{r}, rs[j:]...)...)
				return
			}
		}
	})
}

// Same-vendor chains with each vendor's own SDK: Anthropic's Messages
// answering 529, Gemini's generateContent answering 503, before any byte.
func TestFailoverBeforeFirstByteWithEachVendorsSDK(t *testing.T) {
	rdb := redistest.Start(t)
	fake := fakevendor.New(fakevendor.Options{Seed: 7})
	v := &failingVendor{next: fake}
	chains := map[string][]string{"anthropic:claude-opus-4-1": {"anthropic:claude-sonnet-4-5"},
		"gemini:gemini-2.5-pro": {"gemini:gemini-2.5-flash"}}
	s := startEmulated(t, append(gatewayKeysOn(rdb.Addr), withVendor(v),
		withConfig(func(c *config.Config) {
			c.Features.Failover = failover.Config{Enabled: true, Chains: chains,
				EnvoyChains: []string{"anthropic:claude-opus-4-1", "gemini:gemini-2.5-pro"}}
		}),
		withChain("anthropic:claude-opus-4-1", "anthropic:claude-sonnet-4-5"),
		withChain("gemini:gemini-2.5-pro", "gemini:gemini-2.5-flash"))...)
	k := createKey(t, s, keys.KeySpec{Owner: "ann", Description: "chain SDK e2e"})

	t.Run("anthropic-sdk-go", func(t *testing.T) {
		ac := anthropicClient(s, "/anthropic/", aoption.WithAPIKey(k.Key))
		opus := messageParams()
		opus.Model = "claude-opus-4-1"
		v.set(map[string]int{"claude-opus-4-1": 529})
		var resp *http.Response
		msg, err := ac.Messages.New(t.Context(), opus, aoption.WithResponseInto(&resp))
		require.NoError(t, err)
		require.Equal(t, anthropic.Model("claude-sonnet-4-5"), msg.Model)
		require.Equal(t, "anthropic:claude-sonnet-4-5", resp.Header.Get("X-LLM-Proxy-Fallback"))
		require.Equal(t, []string{"api.anthropic.com claude-opus-4-1", "api.anthropic.com claude-sonnet-4-5"}, v.calls())
		vc := fake.Calls()[len(fake.Calls())-1]
		require.Equal(t, "/v1/messages", vc.Path)
		require.Equal(t, vendorKeys["anthropic"], vc.APIKey)

		v.set(map[string]int{"claude-opus-4-1": 529})
		st := ac.Messages.NewStreaming(t.Context(), opus, aoption.WithResponseInto(&resp))
		var streamed anthropic.Message
		for st.Next() {
			require.NoError(t, streamed.Accumulate(st.Current()))
		}
		require.NoError(t, st.Err())
		require.Equal(t, anthropic.Model("claude-sonnet-4-5"), streamed.Model)
		require.Equal(t, "anthropic:claude-sonnet-4-5", resp.Header.Get("X-LLM-Proxy-Fallback"))
		require.Positive(t, streamed.Usage.OutputTokens)
	})

	t.Run("genai", func(t *testing.T) {
		gc, err := genai.NewClient(t.Context(), &genai.ClientConfig{APIKey: k.Key, Backend: genai.BackendGeminiAPI,
			HTTPOptions: genai.HTTPOptions{BaseURL: s.URL() + "/gemini/"}})
		require.NoError(t, err)
		v.set(map[string]int{"gemini-2.5-pro": 503})
		out, err := gc.Models.GenerateContent(t.Context(), "gemini-2.5-pro", genai.Text("hi"), nil)
		require.NoError(t, err)
		require.NotEmpty(t, out.Text())
		require.Equal(t, "gemini:gemini-2.5-flash", out.SDKHTTPResponse.Headers.Get("X-LLM-Proxy-Fallback"))
		require.Equal(t, []string{"generativelanguage.googleapis.com gemini-2.5-pro", "generativelanguage.googleapis.com gemini-2.5-flash"}, v.calls())
		vc := fake.Calls()[len(fake.Calls())-1]
		require.Equal(t, "/v1beta/models/gemini-2.5-flash:generateContent", vc.Path, "the model is in Gemini's path")
		require.Equal(t, vendorKeys["gemini"], vc.APIKey)

		v.set(map[string]int{"gemini-2.5-pro": 503})
		n := 0
		for chunk, err := range gc.Models.GenerateContentStream(t.Context(), "gemini-2.5-pro", genai.Text("hi"), nil) {
			require.NoError(t, err)
			n++
			require.Equal(t, "gemini:gemini-2.5-flash", chunk.SDKHTTPResponse.Headers.Get("X-LLM-Proxy-Fallback"))
		}
		require.Positive(t, n)
		vc = fake.Calls()[len(fake.Calls())-1]
		require.Equal(t, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", vc.Path)
		require.Equal(t, "sse", vc.Query.Get("alt"), "the query is kept")
	})

	t.Run("a client's own chain header is ignored", func(t *testing.T) {
		v.set(nil)
		haiku := messageParams()
		haiku.Model = "claude-haiku-4-5"
		var resp *http.Response
		_, err := anthropicClient(s, "/anthropic/", aoption.WithAPIKey(k.Key), aoption.WithHeader("x-llm-proxy-chain", "anthropic:claude-opus-4-1")).
			Messages.New(t.Context(), haiku, aoption.WithResponseInto(&resp))
		require.NoError(t, err)
		require.Empty(t, resp.Header.Get("X-LLM-Proxy-Fallback"))
		vc := fake.Calls()[len(fake.Calls())-1]
		require.Equal(t, "/v1/messages", vc.OriginalPath, "the vendor route's prefix_rewrite: not the chain route Envoy chose on it")
		require.Empty(t, vc.Header.Get("X-Llm-Proxy-Chain"))
	})
}

// With the circuit breaker on, every target of a chain route failing
// before the first byte ends, as without a chain, with the degraded signal:
// the last target's degraded answer is replaced, its marker unchanged.
func TestFailoverBeforeFirstByteEveryTargetDownIsTheDegradedSignal(t *testing.T) {
	rdb := redistest.Start(t)
	fake := fakevendor.New(fakevendor.Options{Seed: 7})
	v := &failingVendor{next: fake}
	s := startEmulated(t, append(gatewayKeysOn(rdb.Addr), withVendor(v), circuit(nil), envoyChain())...)
	k := createKey(t, s, keys.KeySpec{Owner: "ann", Description: "chain all down"})
	p := chatParams()
	p.Model = "gpt-4o"
	v.set(map[string]int{"gpt-4o": 503, "gpt-4o-mini": 503, "claude-sonnet-4-5": 529, "gemini-2.5-flash": 503})
	_, err := openaiClient(s, option.WithAPIKey(k.Key)).Chat.Completions.New(t.Context(), p)
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusServiceUnavailable, apiErr.StatusCode)
	require.Len(t, v.calls(), 4, "every target once")
	require.Equal(t, "provider_degraded", apiErr.Response.Header.Get("X-Llm-Proxy-Error-Class"))
	require.Equal(t, "gemini:gemini-2.5-flash", apiErr.Response.Header.Get("X-LLM-Proxy-Fallback"))
	requireDegradedSignal(t, apiErr.StatusCode, apiErr.Response.Header, `{"error":`+apiErr.RawJSON()+`}`, "gemini", "upstream",
		"[LLM_PROXY_PROVIDER_DEGRADED]", `Failover chain "openai:gpt-4o": last tried gemini:gemini-2.5-flash`)
}

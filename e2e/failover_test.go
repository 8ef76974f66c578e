package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	adminapi "github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/admin"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/costlog"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
)

// failoverChains turns failover on with the chains of the e2e tests.
func failoverChains(chains map[string][]string) emuOption {
	return withConfig(func(c *config.Config) {
		c.Features.Failover = failover.Config{Enabled: true, Chains: chains}
	})
}

// tripCircuit opens provider:model's circuit the way an outage does: the
// vendor answers 503 to every attempt until the breaker's threshold of
// terminal degraded responses is reached.
func tripCircuit(t *testing.T, s *emulated, key, model string) {
	t.Helper()
	c := openaiClient(s, option.WithAPIKey(key), option.WithHeader("x-fake-status", "503"))
	p := chatParams()
	p.Model = model
	for range 5 {
		_, err := c.Chat.Completions.New(t.Context(), p)
		var apiErr *openai.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusServiceUnavailable, apiErr.StatusCode)
	}
}

// costRecordOf waits for the cost record of requestID in dir's costs.jsonl.
func costRecordOf(t *testing.T, dir, requestID string) costlog.Record {
	t.Helper()
	var charged costlog.Record
	require.Eventually(t, func() bool {
		for _, r := range readRecords(t, filepath.Join(dir, "costs.jsonl")) {
			if r.RequestID == requestID {
				charged = r
				return true
			}
		}
		return false
	}, 30*time.Second, 10*time.Millisecond)
	return charged
}

// lastVendorCall is the fake vendor's latest call.
func lastVendorCall(t *testing.T, s *emulated) fakevendor.Call {
	t.Helper()
	calls := s.VendorCalls(t)
	require.NotEmpty(t, calls)
	return calls[len(calls)-1]
}

func TestFailoverAtAdmission(t *testing.T) {
	rdb := redistest.Start(t)
	dir := t.TempDir()
	s := startEmulated(t, append(gatewayKeysOn(rdb.Addr), circuit(nil), costTracking(dir, nil), failoverChains(map[string][]string{
		"openai:gpt-4o":             {"openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"},
		"anthropic:claude-opus-4-1": {"anthropic:claude-sonnet-4-5"},
	}))...)
	k := createKey(t, s, keys.KeySpec{Owner: "ann", Description: "failover e2e"})
	oc := openaiClient(s, option.WithAPIKey(k.Key))
	gpt4o := chatParams()
	gpt4o.Model = "gpt-4o"

	// callJSON and callStream make one OpenAI SDK call for gpt-4o and return
	// the answer's model and the response headers.
	callJSON := func(t *testing.T) (string, http.Header) {
		t.Helper()
		var resp *http.Response
		out, err := oc.Chat.Completions.New(t.Context(), gpt4o, option.WithResponseInto(&resp))
		require.NoError(t, err)
		require.NotEmpty(t, out.Choices[0].Message.Content)
		return out.Model, resp.Header
	}
	callStream := func(t *testing.T) (string, http.Header) {
		t.Helper()
		var resp *http.Response
		st := oc.Chat.Completions.NewStreaming(t.Context(), gpt4o, option.WithResponseInto(&resp))
		acc := openai.ChatCompletionAccumulator{}
		for st.Next() {
			acc.AddChunk(st.Current())
		}
		require.NoError(t, st.Err())
		require.NotEmpty(t, acc.Choices[0].Message.Content)
		return acc.Model, resp.Header
	}

	model, h := callJSON(t)
	require.Equal(t, "gpt-4o", model, "a closed circuit serves the model asked for")
	require.Empty(t, h.Get("X-LLM-Proxy-Fallback"))

	// requireServedBy makes a JSON and a streamed call for gpt-4o and checks
	// that target served each, in one vendor call carrying the rewritten
	// path, model and the target vendor's key.
	requireServedBy := func(t *testing.T, vendor fakevendor.Vendor, model string) {
		t.Helper()
		for name, call := range map[string]func(*testing.T) (string, http.Header){"json": callJSON, "stream": callStream} {
			t.Run(name, func(t *testing.T) {
				before := len(s.VendorCalls(t))
				got, h := call(t)
				require.Equal(t, model, got)
				require.Equal(t, string(vendor)+":"+model, h.Get("X-LLM-Proxy-Fallback"))
				require.Len(t, s.VendorCalls(t), before+1, "one call, to the target only")
				vc := lastVendorCall(t, s)
				require.Equal(t, vendor, vc.Vendor)
				require.Equal(t, "/v1/chat/completions", vc.Path)
				require.Equal(t, model, vc.Model)
				require.Equal(t, vendorKeys[string(vendor)], vc.APIKey, "the target vendor's key")
				if vendor != fakevendor.VendorAnthropic {
					return
				}
				require.Empty(t, vc.Header.Get("x-api-key"), "Bearer on the OpenAI-compatible endpoint")
			})
		}
		recs := s.Records(t, 1)
		rec := recs[len(recs)-1]
		require.Equal(t, string(vendor), rec.Provider)
		require.Equal(t, model, rec.Info.Model)
		require.NotNil(t, rec.Failover)
		require.Equal(t, failover.Target{Provider: "openai", Model: "gpt-4o"}, rec.Failover.Requested)
		require.True(t, rec.Usage.Found, "usage is the target's, streamed or not")
	}

	tripCircuit(t, s, k.Key, "gpt-4o")
	t.Run("same vendor", func(t *testing.T) { requireServedBy(t, fakevendor.VendorOpenAI, "gpt-4o-mini") })

	tripCircuit(t, s, k.Key, "gpt-4o-mini")
	t.Run("cross vendor through the OpenAI-compatible endpoint", func(t *testing.T) {
		requireServedBy(t, fakevendor.VendorAnthropic, "claude-sonnet-4-5")
		recs := s.Records(t, 1)
		rec := recs[len(recs)-1]
		log := s.AccessLog(t, len(recs))
		md := log[len(log)-1]
		require.Equal(t, "anthropic", md["provider"], "%v", md)
		require.Equal(t, "claude-sonnet-4-5", md["model"])
		require.Equal(t, "openai", md["requested_provider"])
		require.Equal(t, "gpt-4o", md["requested_model"])
		// The cost record charges the target, at the target's price, and
		// keeps what the client asked for.
		charged := costRecordOf(t, dir, rec.RequestID)
		require.Equal(t, "anthropic", charged.Provider)
		require.Equal(t, "claude-sonnet-4-5", charged.Model)
		require.Equal(t, "claude-sonnet-4-5", charged.PricedModel)
		require.True(t, charged.CostKnown)
		require.Equal(t, "openai", charged.RequestedProvider)
		require.Equal(t, "gpt-4o", charged.RequestedModel)
	})

	t.Run("the console's failover report", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.adminURL+"/api/v1/failover", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := httpClient().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var rep adminapi.FailoverReport
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&rep))
		require.True(t, rep.Enabled)
		require.Equal(t, []string{"anthropic:claude-opus-4-1", "openai:gpt-4o"}, rep.Chains)
		calls := map[string]int64{}
		for _, r := range rep.Routes {
			require.Equal(t, "circuit_open", r.Reason)
			calls[r.From+">"+r.To] = r.Calls
		}
		require.Equal(t, map[string]int64{"openai:gpt-4o>openai:gpt-4o-mini": 2,
			"openai:gpt-4o>anthropic:claude-sonnet-4-5": 2}, calls, "a JSON and a streamed call per hop")
		require.Equal(t, int64(4), rep.Total)
		require.Len(t, rep.Recent, 4)
		require.Equal(t, "anthropic:claude-sonnet-4-5", rep.Recent[0].To)
	})

	t.Run("same vendor with the Anthropic SDK", func(t *testing.T) {
		tripAnthropic := anthropicClient(s, "/anthropic/", aoption.WithAPIKey(k.Key), aoption.WithHeader("x-fake-status", "529"))
		opus := messageParams()
		opus.Model = "claude-opus-4-1"
		for range 5 {
			_, err := tripAnthropic.Messages.New(t.Context(), opus)
			require.Error(t, err)
		}
		ac := anthropicClient(s, "/anthropic/", aoption.WithAPIKey(k.Key))
		var resp *http.Response
		msg, err := ac.Messages.New(t.Context(), opus, aoption.WithResponseInto(&resp))
		require.NoError(t, err)
		require.Equal(t, anthropic.Model("claude-sonnet-4-5"), msg.Model)
		require.Equal(t, "anthropic:claude-sonnet-4-5", resp.Header.Get("X-LLM-Proxy-Fallback"))
		vc := lastVendorCall(t, s)
		require.Equal(t, "/v1/messages", vc.Path)
		require.Equal(t, "claude-sonnet-4-5", vc.Model)
		require.Equal(t, vendorKeys["anthropic"], vc.APIKey)

		st := ac.Messages.NewStreaming(t.Context(), opus, aoption.WithResponseInto(&resp))
		var streamed anthropic.Message
		for st.Next() {
			require.NoError(t, streamed.Accumulate(st.Current()))
		}
		require.NoError(t, st.Err())
		require.Equal(t, anthropic.Model("claude-sonnet-4-5"), streamed.Model)
		require.Equal(t, "anthropic:claude-sonnet-4-5", resp.Header.Get("X-LLM-Proxy-Fallback"))
	})

	t.Run("every target open: the degraded 503", func(t *testing.T) {
		ac := anthropicClient(s, "/anthropic/", aoption.WithAPIKey(k.Key), aoption.WithHeader("x-fake-status", "529"))
		for range 5 {
			_, err := ac.Messages.New(t.Context(), messageParams())
			require.Error(t, err)
		}
		before := len(s.VendorCalls(t))
		body, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL()+"/openai/v1/chat/completions", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+k.Key)
		resp, err := httpClient().Do(req)
		require.NoError(t, err)
		text := readAll(t, resp)
		requireDegradedSignal(t, resp.StatusCode, resp.Header, text, "openai", "proxy", marker,
			`Failover chain "openai:gpt-4o": no target left`)
		require.Empty(t, resp.Header.Get("X-LLM-Proxy-Fallback"))
		require.Len(t, s.VendorCalls(t), before, "no vendor was called")
	})
}

// The breaker's Redis store is what makes the failover shared: one
// instance sees the outage, another fails over at admission without ever
// sending a request to the dead target.
func TestFailoverAcrossInstancesOnRedis(t *testing.T) {
	rdb := redistest.Start(t)
	opts := []emuOption{circuit(func(c *breaker.Config) {
		c.Backend = breaker.BackendRedis
		c.Redis.Address = rdb.Addr
	}), failoverChains(map[string][]string{"openai:gpt-4o": {"openai:gpt-4o-mini"}})}
	a := startEmulated(t, opts...)
	b := startEmulated(t, opts...)
	tripCircuit(t, a, "sk-test", "gpt-4o")
	var resp *http.Response
	p := chatParams()
	p.Model = "gpt-4o"
	out, err := openaiClient(b).Chat.Completions.New(t.Context(), p, option.WithResponseInto(&resp))
	require.NoError(t, err)
	require.Equal(t, "gpt-4o-mini", out.Model)
	require.Equal(t, "openai:gpt-4o-mini", resp.Header.Get("X-LLM-Proxy-Fallback"))
	calls := b.VendorCalls(t)
	require.Len(t, calls, 1, "instance b called the vendor once")
	require.Equal(t, "gpt-4o-mini", calls[0].Model, "and never the target a saw fail")
	require.Equal(t, "sk-test", calls[0].APIKey, "a same-vendor hop keeps a passthrough client's own key")
}

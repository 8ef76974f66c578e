package processor

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
)

// chainRules is the chain of envoy.yaml's example, carried by Envoy (a
// continuation of the features block of newFailoverRig's keys mode).
const chainRules = `
  failover:
    enabled: true
    envoy_chains: ["openai:gpt-4o"]
    chains:
      "openai:gpt-4o": ["openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"]
      "openai:o3": ["openai:o4-mini"]
`

func removed(m *extprocv3.HeaderMutation) []string { return m.GetRemoveHeaders() }

func TestChainRouteAtAdmission(t *testing.T) {
	tests := []struct {
		name       string
		models     []string // the gateway key's; nil: any
		path, body string
		trip       string // model whose circuit is open
		chain      bool   // sent to the chain route
		targets    string // chain_targets
		maxRetries string // x-envoy-max-retries set, "" none
	}{
		{name: "every target usable", path: "/openai/v1/chat/completions", body: chat("gpt-4o"), chain: true,
			targets: "openai:gpt-4o-mini,anthropic:claude-sonnet-4-5"},
		{name: "the key may not use the second target: attempts stop before it", models: []string{"gpt-4o*"},
			path: "/openai/v1/chat/completions", body: chat("gpt-4o"), chain: true, targets: "openai:gpt-4o-mini", maxRetries: "1"},
		{name: "the key may use no target: the vendor route", models: []string{"gpt-4o"},
			path: "/openai/v1/chat/completions", body: chat("gpt-4o"), chain: false},
		{name: "an API without a cross-vendor equivalent stops before the other vendor", path: "/openai/v1/responses",
			body: `{"model":"gpt-4o","input":"hi"}`, chain: true, targets: "openai:gpt-4o-mini", maxRetries: "1"},
		{name: "a chain Envoy does not carry", path: "/openai/v1/chat/completions", body: chat("o3"), chain: false},
		{name: "no chain", path: "/openai/v1/chat/completions", body: chat("gpt-4.1"), chain: false},
		{name: "failed over at admission: its target is chosen", path: "/openai/v1/chat/completions", body: chat("gpt-4o"),
			trip: "gpt-4o", chain: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFailoverRig(t, chainRules, true, tt.models...)
			if tt.trip != "" {
				r.trip(t, "openai", tt.trip)
			}
			req, _, _ := r.call(t, tt.path, tt.body)
			common := req.GetRequestBody().GetResponse()
			set := setHeaders(common.GetHeaderMutation())
			if !tt.chain {
				require.Empty(t, set[HeaderChain])
				require.Empty(t, set["x-envoy-max-retries"])
				require.Nil(t, mdField(t, req, "chain"))
				require.Equal(t, tt.trip != "", common.GetClearRouteCache(), "only a failover at admission re-routes")
				return
			}
			require.Equal(t, "openai:gpt-4o", set[HeaderChain])
			require.True(t, common.GetClearRouteCache(), "the route is chosen again, on the chain header")
			require.Equal(t, tt.maxRetries, set["x-envoy-max-retries"])
			require.Empty(t, set[":path"], "the attempts set their paths")
			require.Equal(t, "openai:gpt-4o", mdField(t, req, "chain"))
			require.Equal(t, strings.TrimPrefix(tt.path, "/openai"), mdField(t, req, "chain_path"))
			require.Equal(t, tt.targets, mdField(t, req, "chain_targets"))
		})
	}
}

// A probe carries x-envoy-max-retries: 0 (one attempt, its own outcome)
// and a query credential must never reach the metadata: both keep the
// vendor route. A client's own x-llm-proxy-chain is removed, and the route
// Envoy chose on it discarded.
func TestChainRouteExclusions(t *testing.T) {
	t.Run("a circuit's probe", func(t *testing.T) {
		r := newFailoverRig(t, chainRules, true)
		r.trip(t, "openai", "gpt-4o")
		r.now = r.now.Add(time.Duration(breaker.DefaultCooldownSeconds+1) * time.Second) // the next call probes
		req, _, _ := r.call(t, "/openai/v1/chat/completions", chat("gpt-4o"))
		set := setHeaders(req.GetRequestBody().GetResponse().GetHeaderMutation())
		require.Equal(t, "0", set["x-envoy-max-retries"], "the probe")
		require.Empty(t, set[HeaderChain])
	})
	t.Run("a key in the query", func(t *testing.T) {
		r := newFailoverRig(t, `
features:
  failover:
    enabled: true
    envoy_chains: ["gemini:gemini-2.5-pro"]
    chains:
      "gemini:gemini-2.5-pro": ["gemini:gemini-2.5-flash"]
`, false)
		body := `{"contents":[{"parts":[{"text":"hi"}]}]}`
		req, _, _ := r.call(t, "/gemini/v1beta/models/gemini-2.5-pro:generateContent?key=AIza-client-secret", body)
		require.Empty(t, setHeaders(req.GetRequestBody().GetResponse().GetHeaderMutation())[HeaderChain])
		require.Nil(t, mdField(t, req, "chain_path"))
		req, _, _ = r.call(t, "/gemini/v1beta/models/gemini-2.5-pro:generateContent", body, "x-goog-api-key", "AIza-client-secret")
		require.Equal(t, "gemini:gemini-2.5-pro", setHeaders(req.GetRequestBody().GetResponse().GetHeaderMutation())[HeaderChain],
			"a key in a header: the chain route")
		require.Equal(t, "/v1beta/models/gemini-2.5-pro:generateContent", mdField(t, req, "chain_path"))
	})
	t.Run("a client's own chain header", func(t *testing.T) {
		r := newFailoverRig(t, chainRules, true)
		st := newStream(r.s)
		resp := st.handle(context.Background(), keyReqHeaders("/openai/v1/chat/completions", "authorization", "Bearer "+r.secret,
			HeaderChain, "openai:gpt-4o"))
		common := resp.GetRequestHeaders().GetResponse()
		require.Contains(t, removed(common.GetHeaderMutation()), HeaderChain)
		require.True(t, common.GetClearRouteCache())
	})
}

// chainMD is the metadata admission wrote for a chained call of chainRules.
func chainMD(t *testing.T, extra map[string]any) *corev3.Metadata {
	kv := map[string]any{"provider": "openai", "model": "gpt-4o", "chain": "openai:gpt-4o",
		"chain_path": "/v1/chat/completions", "chain_targets": "openai:gpt-4o-mini,anthropic:claude-sonnet-4-5"}
	for k, v := range extra {
		kv[k] = v
	}
	return attemptMD(t, kv)
}

// attemptStart is the first message of an upstream filter's stream for an
// attempt sent to a host whose metadata names target.
func attemptStart(md *corev3.Metadata, target string, kv ...string) *extprocv3.ProcessingRequest {
	r := keyReqHeaders(kv[0], kv[1:]...)
	r.MetadataContext = md
	if target != "" {
		r.Attributes = map[string]*structpb.Struct{attributesKey: {Fields: map[string]*structpb.Value{
			ChainTargetAttribute: structpb.NewStringValue(target)}}}
	}
	return r
}

func bodyModel(t *testing.T, b []byte) string {
	t.Helper()
	m := map[string]any{}
	require.NoError(t, json.Unmarshal(b, &m))
	s, _ := m["model"].(string)
	return s
}

func TestChainAttemptRewrite(t *testing.T) {
	orig := chat("gpt-4o")
	// What an earlier attempt (to gpt-4o-mini) left in the router's one
	// header map.
	shared := []string{"/v1/chat/completions", "authorization", "Bearer " + testVendorKey,
		"content-length", strconv.Itoa(len(chat("gpt-4o-mini"))), HeaderChain, "openai:gpt-4o", "x-envoy-attempt-count"}
	tests := []struct {
		name, target string
		attempt      string
		path         string // "" when the attempt is failed on purpose
		model        string // "" the original body
		auth, apiKey string
	}{
		{name: "another vendor", target: "anthropic:claude-sonnet-4-5", attempt: "3", path: "/v1/chat/completions",
			model: "claude-sonnet-4-5", auth: "Bearer " + anthropicVendorKey},
		{name: "the next model of the vendor", target: "openai:gpt-4o-mini", attempt: "2", path: "/v1/chat/completions",
			model: "gpt-4o-mini", auth: "Bearer " + testVendorKey},
		{name: "the requested target after another (the chain key names it)", target: "openai:gpt-4o", attempt: "2",
			path: "/v1/chat/completions", auth: "Bearer " + testVendorKey},
		{name: "a target the call may not use", target: "gemini:gemini-2.5-flash", attempt: "3"},
		{name: "a host naming no target this server knows", target: "mistral:large", attempt: "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFailoverRig(t, chainRules, true)
			ctx := context.Background()
			st := newStream(r.s)
			start := st.handle(ctx, attemptStart(chainMD(t, nil), tt.target, append(shared, tt.attempt)...))
			require.Nil(t, start.GetImmediateResponse())
			require.Equal(t, filterv3.ProcessingMode_BUFFERED, start.GetModeOverride().GetRequestBodyMode(), "the body is asked for")
			require.Equal(t, tt.target, mdField(t, start, "chain_target_"+tt.attempt))
			reply := st.handle(ctx, reqBody([]byte(orig), true))
			require.Nil(t, reply.GetImmediateResponse(), "never a local reply: Envoy would not retry it")
			common := reply.GetRequestBody().GetResponse()
			set := setHeaders(common.GetHeaderMutation())
			rm := removed(common.GetHeaderMutation())
			require.Contains(t, rm, HeaderChain, "the chain header never reaches a vendor")
			resp := st.handle(ctx, respHeaders(hdrs(false, ":status", "200")))
			if tt.path == "" {
				require.Equal(t, []byte{}, common.GetBodyMutation().GetBody(), "the prompt is not sent")
				require.Equal(t, "0", set["content-length"])
				require.Subset(t, rm, credentialHeaders, "no key is sent")
				require.Empty(t, set["authorization"])
				require.Equal(t, "503", setHeaders(resp.GetResponseHeaders().GetResponse().GetHeaderMutation())[":status"],
					"failed, so the router moves on")
				return
			}
			require.Equal(t, tt.path, set[":path"])
			body := []byte(orig)
			if tt.model != "" {
				body = common.GetBodyMutation().GetBody()
				require.Equal(t, tt.model, bodyModel(t, body))
			} else {
				require.Nil(t, common.GetBodyMutation(), "the replayed original is right")
			}
			require.Equal(t, strconv.Itoa(len(body)), set["content-length"], "true to this attempt's body, not the last one's")
			require.Equal(t, tt.auth, set["authorization"])
			require.Contains(t, rm, "x-api-key")
			require.Contains(t, rm, "x-goog-api-key")
			require.NotContains(t, rm, "authorization")
			require.Nil(t, resp.GetResponseHeaders().GetResponse(), "the vendor's answer passes")
			require.EqualValues(t, 200, mdField(t, resp, "chain_status_"+tt.attempt))
			require.Empty(t, r.after.calls, "an attempt is no call of its own: nothing admitted")
		})
	}

	t.Run("a chain host without a chained call is passed through", func(t *testing.T) {
		r := newFailoverRig(t, chainRules, true)
		st := newStream(r.s)
		resp := st.handle(context.Background(), attemptStart(attemptMD(t, map[string]any{"provider": "openai", "model": "gpt-4o"}),
			"openai:gpt-4o-mini", "/openai/v1/chat/completions", "x-envoy-attempt-count", "1"))
		require.Equal(t, filterv3.ProcessingMode_SKIP, resp.GetModeOverride().GetResponseHeaderMode())
		require.True(t, st.closed)
		require.Nil(t, st.provider, "never admitted as a call of its own, though its path names a provider")
	})
}

// chainedCall runs one chained gpt-4o call whose attempts went to targets
// with statuses (the upstream filter's metadata), the last one answering
// 200 with usage.
func (r *failoverRig) chainedCall(t *testing.T, afterAdmission func(), targets []string, statuses []int) (*extprocv3.ProcessingResponse, *extprocv3.ProcessingResponse) {
	t.Helper()
	ctx := context.Background()
	st := newStream(r.s)
	body := chat("gpt-4o")
	st.handle(ctx, keyReqHeaders("/openai/v1/chat/completions", "authorization", "Bearer "+r.secret, "content-length", strconv.Itoa(len(body))))
	req := st.handle(ctx, keyReqBody(body))
	st.flush()
	require.Equal(t, "openai:gpt-4o", setHeaders(req.GetRequestBody().GetResponse().GetHeaderMutation())[HeaderChain])
	if afterAdmission != nil {
		afterAdmission()
	}
	extra := map[string]any{}
	for i, tg := range targets {
		if tg == "" {
			continue // no trace of the attempt
		}
		extra["chain_target_"+strconv.Itoa(i+1)] = tg
		if statuses[i] > 0 {
			extra["chain_status_"+strconv.Itoa(i+1)] = statuses[i]
		}
	}
	rh := respHeaders(hdrs(false, ":status", "200", "content-type", "application/json", "content-length", "120",
		"x-envoy-upstream-service-time", "5", "x-envoy-attempt-count", strconv.Itoa(len(targets))))
	rh.MetadataContext = chainMD(t, extra)
	head := st.handle(ctx, rh)
	_, model, _ := strings.Cut(targets[len(targets)-1], ":")
	end := st.handle(ctx, respBody([]byte(`{"model":"`+model+`","usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`), true))
	st.flush()
	return head, end
}

func TestChainServedTargetTakesTheCall(t *testing.T) {
	r := newFailoverRig(t, chainRules, true)
	for i := range breaker.DefaultFailureThreshold {
		r.after.calls, r.after.settl = nil, nil
		head, end := r.chainedCall(t, nil, []string{"openai:gpt-4o", "anthropic:claude-sonnet-4-5"}, []int{503, 200})
		require.Equal(t, "anthropic:claude-sonnet-4-5",
			setHeaders(head.GetResponseHeaders().GetResponse().GetHeaderMutation())[HeaderFallback])
		// (The guard keeps the *Call, which is the served target's now.)
		require.Len(t, r.after.calls, 2, "admitted for the requested target, then for the one that served")
		require.Len(t, r.after.settl, 2)
		require.Equal(t, OutcomeRefused, r.after.settl[0].Outcome, "the requested target's claim is given back in full")
		require.Equal(t, "gpt-4o", r.after.settl[0].Info.Model)
		served := r.after.settl[1]
		require.Equal(t, OutcomeCompleted, served.Outcome)
		require.Equal(t, "anthropic", served.Provider)
		require.Equal(t, "claude-sonnet-4-5", served.Info.Model)
		require.True(t, served.Info.OpenAICompatible)
		require.EqualValues(t, 10, served.Usage.TotalTokens)
		require.Equal(t, "upstream_5xx", served.Failover.Reason)
		require.Equal(t, "openai:gpt-4o", served.Failover.Requested.String())
		// Written with the response headers, so that a client hanging up
		// before the last reply still leaves them in the access log.
		require.Equal(t, "anthropic", mdField(t, head, "provider"), "the access log names the served target")
		require.Equal(t, "claude-sonnet-4-5", mdField(t, head, "model"))
		require.Equal(t, "gpt-4o", mdField(t, head, "requested_model"))
		require.Equal(t, "upstream_5xx", mdField(t, head, "failover_reason"))
		require.EqualValues(t, 10, mdField(t, end, "total_tokens"), "the usage comes with the last reply")
		adm, _ := r.b.Allow(context.Background(), "openai", "gpt-4o", r.now)
		require.Equal(t, i+1 < breaker.DefaultFailureThreshold, adm.Allowed, "call %d: each failure counts against gpt-4o", i+1)
		if adm.Allowed {
			_, _ = r.b.Report(context.Background(), adm, breaker.Outcome{Class: breaker.Canceled, Terminal: true}, r.now)
		}
	}
	adm, _ := r.b.Allow(context.Background(), "anthropic", "claude-sonnet-4-5", r.now)
	require.True(t, adm.Allowed, "the served target's successes keep it closed")
}

func TestChainServedReasons(t *testing.T) {
	tests := []struct {
		name     string
		targets  []string
		statuses []int
		reason   string
	}{
		{"429", []string{"openai:gpt-4o", "openai:gpt-4o-mini"}, []int{429, 200}, "rate_limited"},
		{"no response headers", []string{"openai:gpt-4o", "openai:gpt-4o-mini"}, []int{0, 200}, "timeout_before_first_byte"},
		{"died connecting: no trace", []string{"", "openai:gpt-4o-mini"}, []int{0, 200}, "upstream_5xx"},
		{"the first failure names it", []string{"openai:gpt-4o", "openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"},
			[]int{529, 429, 200}, "upstream_5xx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFailoverRig(t, chainRules, true)
			head, _ := r.chainedCall(t, nil, tt.targets, tt.statuses)
			require.Equal(t, tt.reason, mdField(t, head, "failover_reason"))
		})
	}
}

// A guard that refuses the served target keeps the requested target's
// claim, which settles with the served call's record: nothing is lost.
func TestChainServedTargetRefusedKeepsTheClaim(t *testing.T) {
	r := newFailoverRig(t, chainRules, true)
	r.chainedCall(t, func() { r.after.reply = &Reply{Status: 429, Details: "limited"} },
		[]string{"openai:gpt-4o", "openai:gpt-4o-mini"}, []int{503, 200})
	require.Len(t, r.after.settl, 1, "one claim, settled once")
	require.Equal(t, OutcomeCompleted, r.after.settl[0].Outcome)
	require.Equal(t, "gpt-4o-mini", r.after.settl[0].Info.Model)
	require.EqualValues(t, 10, r.after.settl[0].Usage.TotalTokens)
}

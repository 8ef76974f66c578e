package processor

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/credentials"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/gatewayauth"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
)

const anthropicVendorKey = "sk-ant-vendor-test-0123456789"

// failoverRig is a Server with a real (memory) circuit breaker first in its
// guards, a counting guard after it (standing for the rate limiter: it must
// see the target), and the chains of rules. With keysMode openai and
// anthropic run in gateway_keys mode and secret is a gateway key allowed
// models.
type failoverRig struct {
	s      *Server
	b      *breaker.Breaker
	after  *countingGuard
	obs    *recorder
	secret string
	now    time.Time
}

func newFailoverRig(t *testing.T, rules string, keysMode bool, models ...string) *failoverRig {
	t.Helper()
	ctx := context.Background()
	r := &failoverRig{after: &countingGuard{}, obs: &recorder{}, now: time.Unix(1_700_000_000, 0)}
	yaml := rules
	var ga *gatewayauth.Admission
	if keysMode {
		yaml = `
providers:
  openai: {auth: gateway_keys, credentials: {api_key: "` + testVendorKey + `"}}
  anthropic: {auth: gateway_keys, credentials: {api_key: "` + anthropicVendorKey + `"}}
features:
  gateway_keys: {store: file, file: {path: /unused}}
` + rules
		store, err := keys.OpenFileStore(filepath.Join(t.TempDir(), "keys.json"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = store.Close() })
		_, secret, err := (&keys.Manager{Store: store}).CreateKey(ctx, keys.KeySpec{Owner: "ann", Models: models})
		require.NoError(t, err)
		r.secret = secret
		auth := keys.NewAuthenticator(store, keys.AuthenticatorOptions{})
		require.NoError(t, auth.Sync(ctx))
		oa, err := credentials.New("openai", credentials.Config{APIKey: credentials.NewSecret(testVendorKey)})
		require.NoError(t, err)
		an, err := credentials.New("anthropic", credentials.Config{APIKey: credentials.NewSecret(anthropicVendorKey)})
		require.NoError(t, err)
		ga = gatewayauth.New(auth, map[string]*credentials.Pool{"openai": oa, "anthropic": an})
	}
	cfg, err := config.Parse(func(string) string { return "" }, []byte(yaml))
	require.NoError(t, err)
	set, err := cfg.FailoverChains()
	require.NoError(t, err)
	r.b, err = breaker.New(ctx, breaker.Config{Enabled: true}, breaker.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.b.Close() })
	now := func() time.Time { return r.now }
	r.s = New(Options{Config: cfg, Guards: []Guard{NewCircuit(r.b, false, now), r.after}, Observer: r.obs,
		Now: now, GatewayKeys: ga, Failover: set})
	return r
}

// trip opens provider:model's circuit with degraded outcomes.
func (r *failoverRig) trip(t *testing.T, provider, model string) {
	t.Helper()
	ctx := context.Background()
	for range breaker.DefaultFailureThreshold {
		adm, err := r.b.Allow(ctx, provider, model, r.now)
		require.NoError(t, err)
		_, err = r.b.Report(ctx, adm, breaker.Outcome{Class: breaker.Degraded, Terminal: true}, r.now)
		require.NoError(t, err)
	}
	adm, _ := r.b.Allow(ctx, provider, model, r.now)
	require.False(t, adm.Allowed, "%s:%s is open", provider, model)
}

// call sends one request's headers and buffered body and, when admitted,
// a 200 JSON response; it returns the body reply and the response
// headers reply (nil when refused).
func (r *failoverRig) call(t *testing.T, path, body string, kv ...string) (req, resp *extprocv3.ProcessingResponse, st *stream) {
	t.Helper()
	ctx := context.Background()
	st = newStream(r.s)
	kv = append(kv, "content-length", strconv.Itoa(len(body)))
	if r.secret != "" {
		kv = append(kv, "authorization", "Bearer "+r.secret)
	}
	st.handle(ctx, keyReqHeaders(path, kv...))
	req = st.handle(ctx, keyReqBody(body))
	st.flush()
	if req.GetImmediateResponse() != nil {
		return req, nil, st
	}
	resp = st.handle(ctx, respHeaders(hdrs(true, ":status", "200", "content-type", "application/json",
		"x-envoy-upstream-service-time", "5")))
	st.flush()
	return req, resp, st
}

func chat(model string) string {
	return `{"model":"` + model + `","messages":[{"role":"user","content":"hello there"}]}`
}

func TestFailoverAtAdmission(t *testing.T) {
	const chains = `
  failover:
    enabled: true
    chains:
      "openai:gpt-4o": ["openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"]
      "anthropic:claude-opus-4-1": ["openai:gpt-4o", "anthropic:claude-sonnet-4-5"]
      "gemini:gemini-2.5-*": ["gemini:gemini-2.5-flash"]
`
	const sameVendor = `
features:
  failover:
    enabled: true
    chains:
      "openai:gpt-4o": ["openai:gpt-4o-mini"]
      "gemini:gemini-2.5-*": ["gemini:gemini-2.5-flash"]
`
	type want struct {
		status   int    // 0: admitted
		path     string // the :path set for the target; "" none
		model    string // the model in the rewritten body; "" body unchanged
		provider string // the provider the record and guards charge
		served   string // x-llm-proxy-fallback; "" none
		auth     string // the credential header set ("name=value"), "" none checked
	}
	tests := []struct {
		name     string
		keysMode bool
		models   []string // the gateway key's allowed models
		rules    string
		open     [][2]string
		path     string
		body     string
		want     want
	}{
		{name: "closed circuit: no failover", rules: sameVendor,
			path: "/openai/v1/chat/completions", body: chat("gpt-4o"),
			want: want{provider: "openai"}},
		{name: "same vendor, passthrough", rules: sameVendor, open: [][2]string{{"openai", "gpt-4o"}},
			path: "/openai/v1/chat/completions", body: chat("gpt-4o"),
			want: want{path: "/openai/v1/chat/completions", model: "gpt-4o-mini", provider: "openai", served: "openai:gpt-4o-mini"}},
		{name: "the /meta/{user}/ prefix and the query are kept", rules: sameVendor, open: [][2]string{{"openai", "gpt-4o"}},
			path: "/meta/u1/openai/v1/chat/completions?x=1", body: chat("gpt-4o"),
			want: want{path: "/meta/u1/openai/v1/chat/completions?x=1", model: "gpt-4o-mini", provider: "openai", served: "openai:gpt-4o-mini"}},
		{name: "passthrough, all down: degraded 503", rules: sameVendor,
			open: [][2]string{{"openai", "gpt-4o"}, {"openai", "gpt-4o-mini"}},
			path: "/openai/v1/chat/completions", body: chat("gpt-4o"),
			want: want{status: 503, provider: "openai"}},
		{name: "cross vendor with the target's vendor key", keysMode: true, models: []string{"gpt-4o", "claude-sonnet-4-5"},
			rules: chains, open: [][2]string{{"openai", "gpt-4o"}},
			path: "/openai/v1/chat/completions", body: chat("gpt-4o"),
			want: want{path: "/anthropic/v1/chat/completions", model: "claude-sonnet-4-5", provider: "anthropic",
				served: "anthropic:claude-sonnet-4-5", auth: "authorization=Bearer " + anthropicVendorKey}},
		{name: "a target the key may not use is skipped", keysMode: true, models: []string{"gpt-4o", "gpt-4o-mini"},
			rules: chains, open: [][2]string{{"openai", "gpt-4o"}},
			path: "/openai/v1/chat/completions", body: chat("gpt-4o"),
			want: want{path: "/openai/v1/chat/completions", model: "gpt-4o-mini", provider: "openai",
				served: "openai:gpt-4o-mini", auth: "authorization=Bearer " + testVendorKey}},
		{name: "a native API keeps to its vendor", keysMode: true, models: []string{"*"},
			rules: chains, open: [][2]string{{"anthropic", "claude-opus-4-1"}},
			path: "/anthropic/v1/messages", body: `{"model":"claude-opus-4-1","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`,
			want: want{path: "/anthropic/v1/messages", model: "claude-sonnet-4-5", provider: "anthropic",
				served: "anthropic:claude-sonnet-4-5", auth: "x-api-key=" + anthropicVendorKey}},
		{name: "gemini native: the model is in the path", rules: sameVendor, open: [][2]string{{"gemini", "gemini-2.5-pro"}},
			path: "/gemini/v1beta/models/gemini-2.5-pro:generateContent", body: `{"contents":[{"parts":[{"text":"hi"}]}]}`,
			want: want{path: "/gemini/v1beta/models/gemini-2.5-flash:generateContent", provider: "gemini", served: "gemini:gemini-2.5-flash"}},
		{name: "every target open: the requested target's degraded 503", keysMode: true, models: []string{"*"},
			rules: chains, open: [][2]string{{"openai", "gpt-4o"}, {"openai", "gpt-4o-mini"}, {"anthropic", "claude-sonnet-4-5"}},
			path: "/openai/v1/chat/completions", body: chat("gpt-4o"),
			want: want{status: 503, provider: "openai"}},
		{name: "a chain without circuit_open keeps the 503", rules: "features:" + `
  failover:
    enabled: true
    chains: {"openai:gpt-4o": ["openai:gpt-4o-mini"]}
    conditions: [upstream_5xx]`,
			open: [][2]string{{"openai", "gpt-4o"}},
			path: "/openai/v1/chat/completions", body: chat("gpt-4o"),
			want: want{status: 503, provider: "openai"}},
		{name: "failover disabled keeps the 503", rules: "features:" + `
  failover:
    enabled: false
    chains: {"openai:gpt-4o": ["openai:gpt-4o-mini"]}`,
			open: [][2]string{{"openai", "gpt-4o"}},
			path: "/openai/v1/chat/completions", body: chat("gpt-4o"),
			want: want{status: 503, provider: "openai"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFailoverRig(t, tt.rules, tt.keysMode, tt.models...)
			for _, o := range tt.open {
				r.trip(t, o[0], o[1])
			}
			req, resp, st := r.call(t, tt.path, tt.body)
			recs := r.obs.all()
			require.Len(t, recs, 1)
			rec := recs[0]
			require.Equal(t, tt.want.provider, rec.Provider)
			if tt.want.status != 0 {
				im := req.GetImmediateResponse()
				require.NotNil(t, im)
				require.EqualValues(t, tt.want.status, im.GetStatus().GetCode())
				require.Equal(t, CircuitOpenDetails, im.GetDetails())
				require.Contains(t, string(im.GetBody()), r.b.Signal(), "the degraded marker is unchanged")
				require.NotContains(t, setHeaders(im.GetHeaders()), HeaderFallback)
				require.Nil(t, rec.Failover)
				require.Empty(t, r.after.calls, "no guard after the breaker ran for a refused call")
				return
			}
			common := req.GetRequestBody().GetResponse()
			set := setHeaders(common.GetHeaderMutation())
			require.Len(t, r.after.calls, 1, "the later guards ran once, for the target")
			guarded := r.after.calls[0]
			require.Equal(t, tt.want.provider, guarded.Provider)
			if tt.want.served == "" {
				require.False(t, common.GetClearRouteCache())
				require.NotContains(t, set, ":path")
				require.Nil(t, rec.Failover)
				require.Empty(t, setHeaders(resp.GetResponseHeaders().GetResponse().GetHeaderMutation())[HeaderFallback])
				return
			}
			require.True(t, common.GetClearRouteCache(), "the new :path re-routes only with the route cache cleared")
			require.Equal(t, tt.want.path, set[":path"])
			body := common.GetBodyMutation().GetBody()
			if tt.want.model != "" {
				var m map[string]any
				require.NoError(t, json.Unmarshal(body, &m))
				require.Equal(t, tt.want.model, m["model"])
				require.Equal(t, strconv.Itoa(len(body)), set["content-length"], "content-length follows the new body")
			} else {
				require.Nil(t, common.GetBodyMutation(), "the body is unchanged")
			}
			if tt.want.auth != "" {
				name, value, _ := cutEq(tt.want.auth)
				require.Equal(t, value, set[name])
			}
			require.NotNil(t, rec.Failover)
			served := rec.Provider + ":" + rec.Info.Model
			require.Equal(t, tt.want.served, served, "the record charges the target")
			require.Equal(t, served, guarded.Provider+":"+guarded.Info.Model, "and so do the guards")
			require.Equal(t, failover.CircuitOpen.String(), rec.Failover.Reason)
			require.Equal(t, tt.want.served, setHeaders(resp.GetResponseHeaders().GetResponse().GetHeaderMutation())[HeaderFallback])
			md := req.GetDynamicMetadata().GetFields()["llm_proxy"].GetStructValue().GetFields()
			require.Equal(t, rec.Failover.Requested.Model, md["requested_model"].GetStringValue())
			require.Equal(t, rec.Failover.Requested.Provider, md["requested_provider"].GetStringValue())
			require.Equal(t, rec.Info.Model, md["model"].GetStringValue())
			require.Equal(t, rec.Provider, md["provider"].GetStringValue())
			require.Equal(t, rec.Provider, st.call.Provider)
		})
	}
}

func cutEq(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == '=' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// The usage chunk is removed from a stream only when the gateway asked for
// it: a failover's body rewrite alone never strips what the client asked
// for, and an injected include_usage follows the call to the target.
func TestFailoverKeepsUsageInjectionHonest(t *testing.T) {
	const rules = `
  failover:
    enabled: true
    chains: {"openai:gpt-4o": ["anthropic:claude-sonnet-4-5"]}
`
	tests := []struct {
		name      string
		body      string
		injected  bool
		stripped  bool
		wantUsage bool // the rewritten body asks for usage
	}{
		{"the client asked for usage itself", `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[]}`,
			false, false, true},
		{"the gateway asked for it", `{"model":"gpt-4o","stream":true,"messages":[]}`, true, true, true},
		{"not a stream", `{"model":"gpt-4o","messages":[]}`, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFailoverRig(t, rules, true, "*")
			r.trip(t, "openai", "gpt-4o")
			ctx := context.Background()
			st := newStream(r.s)
			st.handle(ctx, keyReqHeaders("/openai/v1/chat/completions", "authorization", "Bearer "+r.secret))
			resp := st.handle(ctx, keyReqBody(tt.body))
			require.NotNil(t, st.call.Failover)
			require.Equal(t, tt.injected, st.injected)
			require.Equal(t, tt.stripped, st.stripUsage)
			body := string(resp.GetRequestBody().GetResponse().GetBodyMutation().GetBody())
			require.Contains(t, body, `"claude-sonnet-4-5"`)
			if tt.wantUsage {
				require.Contains(t, body, `"include_usage":true`)
			} else {
				require.NotContains(t, body, "include_usage")
			}
		})
	}
}

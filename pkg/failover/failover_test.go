package failover

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// providers of the tests: openai and anthropic hold their vendor keys,
// gemini is passthrough.
func lookup(p string) ProviderInfo {
	switch p {
	case "openai", "anthropic":
		return ProviderInfo{Known: true, HoldsCredentials: true}
	case "gemini":
		return ProviderInfo{Known: true}
	}
	return ProviderInfo{}
}

func TestCompileRefusesImpossibleChains(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // each must appear in the error
	}{
		{"not provider:model", Config{Chains: map[string][]string{"gpt-4o": {"openai:gpt-4o-mini"}}},
			[]string{`chains["gpt-4o"]`, "not provider:model"}},
		{"unknown source provider", Config{Chains: map[string][]string{"azure:gpt-4o": {"openai:gpt-4o"}}},
			[]string{`unknown provider "azure"`}},
		{"unknown target provider", Config{Chains: map[string][]string{"openai:gpt-4o": {"mistral:large"}}},
			[]string{`target 0: unknown provider "mistral"`}},
		{"cycle", Config{Chains: map[string][]string{"openai:gpt-4o": {"openai:gpt-4o-mini", "openai:gpt-4o"}}},
			[]string{"target 1: openai:gpt-4o is the chain's own key (a cycle)"}},
		{"duplicate", Config{Chains: map[string][]string{"openai:gpt-4o": {"openai:o3", "openai:o3"}}},
			[]string{"target 1: openai:o3 is listed twice"}},
		{"cross-vendor without the vendor key", Config{Chains: map[string][]string{"openai:gpt-4o": {"gemini:gemini-2.5-flash"}}},
			[]string{"needs providers.gemini.auth: gateway_keys"}},
		{"cross-vendor from a passthrough provider", Config{Chains: map[string][]string{"gemini:gemini-2.5-pro": {"openai:gpt-4o"}}},
			[]string{"cross-vendor hop from gemini needs providers.gemini.auth: gateway_keys"}},
		{"pattern target", Config{Chains: map[string][]string{"openai:gpt-4o": {"openai:gpt-4*"}}},
			[]string{"a target names one model"}},
		{"empty chain", Config{Chains: map[string][]string{"openai:gpt-4o": {}}}, []string{"no targets"}},
		{"unknown condition", Config{Conditions: []string{"always"}, Chains: map[string][]string{"openai:a": {"openai:b"}}},
			[]string{`features.failover.conditions: unknown condition "always"`}},
		{"conditions for no chain", Config{ChainConditions: map[string][]string{"openai:x": {"circuit_open"}}},
			[]string{`chain_conditions["openai:x"]: no chain`}},
		{"envoy chain that is no chain", Config{EnvoyChains: []string{"openai:x"}, Chains: map[string][]string{"openai:a": {"openai:b"}}},
			[]string{`envoy_chains: "openai:x": no chain`}},
		{"envoy chain that Envoy would never retry", Config{EnvoyChains: []string{"openai:a"},
			Chains: map[string][]string{"openai:a": {"openai:b"}}, ChainConditions: map[string][]string{"openai:a": {"circuit_open", "quota_exhausted"}}},
			[]string{`chains["openai:a"]: in envoy_chains, but none of its conditions (circuit_open,quota_exhausted)`}},
		{"every problem at once", Config{Chains: map[string][]string{
			"openai:a": {"openai:a"}, "anthropic:b": {"nope:c"}}},
			[]string{`chains["openai:a"]`, `chains["anthropic:b"]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, enabled := range []bool{true, false} {
				tt.cfg.Enabled = enabled
				_, err := Compile(tt.cfg, lookup)
				require.Error(t, err, "enabled=%v", enabled)
				for _, w := range tt.want {
					require.Contains(t, err.Error(), w)
				}
			}
		})
	}
}

func TestEnvoyChains(t *testing.T) {
	set, err := Compile(Config{Enabled: true, EnvoyChains: []string{"openai:a"}, Chains: map[string][]string{
		"openai:a": {"openai:b"}, "openai:c": {"openai:b"}}}, lookup)
	require.NoError(t, err)
	require.True(t, set.HasEnvoyChains())
	a, _ := set.Lookup("openai", "a")
	c, _ := set.Lookup("openai", "c")
	require.True(t, a.Envoy)
	require.False(t, c.Envoy, "only the chains listed")
	set, err = Compile(Config{Enabled: true, Chains: map[string][]string{"openai:a": {"openai:b"}}}, lookup)
	require.NoError(t, err)
	require.False(t, set.HasEnvoyChains(), "default: none")
	require.False(t, (*Set)(nil).HasEnvoyChains())
}

func TestLookupExactBeforeLongestPattern(t *testing.T) {
	s, err := Compile(Config{Enabled: true, Chains: map[string][]string{
		"openai:gpt-4o":    {"openai:gpt-4o-mini"},
		"openai:gpt-4*":    {"openai:o3"},
		"openai:*":         {"anthropic:claude-sonnet-4-5"},
		"gemini:gemini-2*": {"gemini:gemini-2.5-flash"},
	}, ChainConditions: map[string][]string{"openai:*": {"circuit_open", "upstream_5xx"}}}, lookup)
	require.NoError(t, err)
	require.True(t, s.Enabled())
	for model, key := range map[string]string{"gpt-4o": "openai:gpt-4o", "gpt-4.1": "openai:gpt-4*", "o1": "openai:*"} {
		c, ok := s.Lookup("openai", model)
		require.True(t, ok, model)
		require.Equal(t, key, c.Key, model)
	}
	c, _ := s.Lookup("openai", "o1")
	require.Equal(t, CircuitOpen|Upstream5xx, c.On)
	require.False(t, c.On.Has(RateLimited))
	c, _ = s.Lookup("openai", "gpt-4o")
	require.Equal(t, AllConditions, c.On, "default: every condition")
	_, ok := s.Lookup("anthropic", "claude-opus-4")
	require.False(t, ok)
	_, ok = s.Lookup("openai", "")
	require.False(t, ok, "no model, no chain")
	require.Equal(t, "circuit_open,upstream_5xx", (CircuitOpen | Upstream5xx).String())
}

func TestDisabledCompilesEmpty(t *testing.T) {
	s, err := Compile(Config{Chains: map[string][]string{"openai:a": {"openai:b"}}}, lookup)
	require.NoError(t, err)
	require.False(t, s.Enabled())
	_, ok := s.Lookup("openai", "a")
	require.False(t, ok)
	var nilSet *Set
	require.False(t, nilSet.Enabled())
	require.Nil(t, nilSet.Chains())
}

func TestCandidates(t *testing.T) {
	s, err := Compile(Config{Enabled: true, Chains: map[string][]string{
		"openai:gpt-4*": {"openai:gpt-4o", "anthropic:claude-sonnet-4-5", "openai:gpt-4o-mini"},
	}}, lookup)
	require.NoError(t, err)
	c, _ := s.Lookup("openai", "gpt-4o")
	req := Target{"openai", "gpt-4o"}
	require.Equal(t, []Target{{"anthropic", "claude-sonnet-4-5"}, {"openai", "gpt-4o-mini"}},
		c.Candidates(nil, req, ChatCompletions), "itself skipped")
	require.Equal(t, []Target{{"openai", "gpt-4o-mini"}},
		c.Candidates(nil, req, Native), "a native API stays with its vendor")
}

func TestRewrite(t *testing.T) {
	chat := `{"model": "gpt-4o", "messages":[{"role":"user","content":"model"}],"metadata":{"model":"x"},"stream":true}`
	tests := []struct {
		name     string
		req      Request
		to       Target
		path     string
		body     string // "" when unchanged
		errorHas string
	}{
		{"same vendor openai", Request{From: Target{"openai", "gpt-4o"}, Path: "/v1/chat/completions", Shape: ChatCompletions, Body: []byte(chat)},
			Target{"openai", "gpt-4o-mini"}, "/openai/v1/chat/completions",
			`{"model": "gpt-4o-mini", "messages":[{"role":"user","content":"model"}],"metadata":{"model":"x"},"stream":true}`, ""},
		{"cross vendor to anthropic, meta user kept", Request{From: Target{"openai", "gpt-4o"}, User: "ann", Path: "/v1/chat/completions", RawQuery: "x=1", Shape: ChatCompletions, Body: []byte(chat)},
			Target{"anthropic", "claude-sonnet-4-5"}, "/meta/ann/anthropic/v1/chat/completions",
			`{"model": "claude-sonnet-4-5", "messages":[{"role":"user","content":"model"}],"metadata":{"model":"x"},"stream":true}`, ""},
		{"cross vendor to gemini compat", Request{From: Target{"openai", "gpt-4o"}, Path: "/v1/chat/completions", Shape: ChatCompletions, Body: []byte(`{"model":"gpt-4o"}`)},
			Target{"gemini", "gemini-2.5-flash"}, "/gemini/v1beta/openai/chat/completions", `{"model":"gemini-2.5-flash"}`, ""},
		{"gemini compat to openai", Request{From: Target{"gemini", "gemini-2.5-pro"}, Path: "/v1beta/openai/chat/completions", Shape: ChatCompletions, Body: []byte(`{"model":"gemini-2.5-pro"}`)},
			Target{"openai", "gpt-4o"}, "/openai/v1/chat/completions", `{"model":"gpt-4o"}`, ""},
		{"gemini native: model in the path, query kept", Request{From: Target{"gemini", "gemini-2.5-pro"}, Path: "/v1beta/models/gemini-2.5-pro:streamGenerateContent", RawQuery: "alt=sse", Body: []byte(`{"contents":[]}`)},
			Target{"gemini", "gemini-2.5-flash"}, "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "", ""},
		{"gemini tuned model to a base model", Request{From: Target{"gemini", "t1"}, Path: "/v1beta/tunedModels/t1:generateContent", Body: []byte(`{}`)},
			Target{"gemini", "gemini-2.5-flash"}, "/gemini/v1beta/models/gemini-2.5-flash:generateContent", "", ""},
		{"anthropic messages same vendor, model added when absent", Request{From: Target{"anthropic", "claude-opus-4"}, Path: "/v1/messages", Body: []byte(` { "max_tokens": 5 }`)},
			Target{"anthropic", "claude-sonnet-4-5"}, "/anthropic/v1/messages", ` {"model":"claude-sonnet-4-5", "max_tokens": 5 }`, ""},
		{"empty object gets the model", Request{From: Target{"openai", "a"}, Path: "/v1/responses", Body: []byte(`{}`)},
			Target{"openai", "b"}, "/openai/v1/responses", `{"model":"b"}`, ""},
		{"native cross vendor refused", Request{From: Target{"anthropic", "claude-opus-4"}, Path: "/v1/messages", Body: []byte(`{}`)},
			Target{"openai", "gpt-4o"}, "", "", "no equivalent"},
		{"model not a string", Request{From: Target{"openai", "a"}, Path: "/v1/chat/completions", Body: []byte(`{"model":["a"]}`)},
			Target{"openai", "b"}, "", "", "not a string"},
		{"not JSON", Request{From: Target{"openai", "a"}, Path: "/v1/chat/completions", Body: []byte(`model=a`)},
			Target{"openai", "b"}, "", "", "not a JSON object"},
		{"truncated", Request{From: Target{"openai", "a"}, Path: "/v1/chat/completions", Body: []byte(`{"messages":[`)},
			Target{"openai", "b"}, "", "", "body"},
		{"escaped key and every duplicate", Request{From: Target{"openai", "a"}, Path: "/v1/chat/completions", Body: []byte(`{"mod\u0065l":"a","model" :  "a\"b"}`)},
			Target{"openai", `q"uote`}, "/openai/v1/chat/completions", `{"mod\u0065l":"q\"uote","model" :  "q\"uote"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Rewrite(tt.req, tt.to)
			if tt.errorHas != "" {
				require.ErrorIs(t, err, ErrCannotRewrite)
				require.Contains(t, err.Error(), tt.errorHas)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.path, out.Path)
			if tt.body == "" {
				require.False(t, out.BodyChanged)
				require.Equal(t, string(tt.req.Body), string(out.Body))
				return
			}
			require.True(t, out.BodyChanged)
			require.Equal(t, tt.body, string(out.Body))
			require.True(t, json.Valid(out.Body))
		})
	}
}

// FuzzSetModel: whatever the body, setModel either refuses it or returns
// valid JSON whose top-level model is the new one and whose other members
// are unchanged.
func FuzzSetModel(f *testing.F) {
	f.Add(`{"model":"a","messages":[{"model":"b"}]}`, "gpt-4o")
	f.Add(`{}`, "m")
	f.Add(`{"a":{"model":1},"model":"x"}`, "é\x00")
	f.Fuzz(func(t *testing.T, body, model string) {
		var before map[string]any
		if json.Unmarshal([]byte(body), &before) != nil || !strings.HasPrefix(strings.TrimLeft(body, " \t\r\n"), "{") {
			_, _ = setModel([]byte(body), model)
			return
		}
		out, err := setModel([]byte(body), model)
		if err != nil {
			// Refusal is right only for a model that is not a string (the
			// last of duplicates decides before[...]; an earlier one may be
			// the non-string, so duplicates are allowed to refuse too).
			_, isString := before["model"].(string)
			_, present := before["model"]
			if (!present || isString) && strings.Count(body, "model") < 2 && !strings.Contains(body, `\u`) {
				t.Fatalf("valid object with a string or no model refused: %v", err)
			}
			return
		}
		var after map[string]any
		require.NoError(t, json.Unmarshal(out, &after), "%s", out)
		want, _ := json.Marshal(model)
		var wantModel string
		require.NoError(t, json.Unmarshal(want, &wantModel))
		require.Equal(t, wantModel, after["model"])
		delete(before, "model")
		delete(after, "model")
		require.Equal(t, before, after)
	})
}

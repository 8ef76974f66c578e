package breaker

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDegradedResponse(t *testing.T) {
	tests := []struct {
		name     string
		provider string
		signal   string
		source   Source
		body     string
	}{
		{"proxy default", "openai", "", SourceProxy,
			`{"error":{"code":"provider_degraded","message":"[PROXY] [LLM_PROXY_PROVIDER_DEGRADED] Provider openai is currently degraded or unavailable. Please try again later.","type":"provider_degraded"}}`},
		{"upstream default", "anthropic", DefaultSignal, SourceUpstream,
			`{"error":{"code":"provider_degraded","message":"[UPSTREAM] [LLM_PROXY_PROVIDER_DEGRADED] Provider anthropic is currently degraded or unavailable. Please try again later.","type":"provider_degraded"}}`},
		{"custom signal escaped", "gemini", `[MY "CO" \ <DOWN> & é]`, SourceUpstream,
			`{"error":{"code":"provider_degraded","message":"[UPSTREAM] [MY \"CO\" \\ <DOWN> & é] Provider gemini is currently degraded or unavailable. Please try again later.","type":"provider_degraded"}}`},
		{"control characters", "openai", "A\nB\tC\u2028", SourceProxy,
			`{"error":{"code":"provider_degraded","message":"[PROXY] A\nB\tC\u2028 Provider openai is currently degraded or unavailable. Please try again later.","type":"provider_degraded"}}`},
		{"empty provider", "", "", SourceProxy,
			`{"error":{"code":"provider_degraded","message":"[PROXY] [LLM_PROXY_PROVIDER_DEGRADED] Provider unknown is currently degraded or unavailable. Please try again later.","type":"provider_degraded"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, headers, body := DegradedResponse(tt.provider, tt.signal, tt.source)
			require.Equal(t, 503, status)
			require.Equal(t, [][2]string{
				{"Content-Type", "application/json"},
				{"X-Llm-Proxy-Error-Class", "provider_degraded"},
				{"X-Llm-Proxy-Error-Source", tt.source.String()},
			}, headers)
			require.Equal(t, tt.body, string(body))
			require.True(t, json.Valid(body))
		})
	}
}

func TestSourceString(t *testing.T) {
	require.Equal(t, "proxy", SourceProxy.String())
	require.Equal(t, "upstream", SourceUpstream.String())
}

func TestNoteDegraded(t *testing.T) {
	_, _, body := DegradedResponse("gemini", `[MY <DOWN>]`, SourceUpstream)
	got := NoteDegraded(body, `Failover chain "openai:gpt-4o": no target left`)
	require.Equal(t, `{"error":{"code":"provider_degraded","message":"[UPSTREAM] [MY <DOWN>] Provider gemini is currently degraded or unavailable. Failover chain \"openai:gpt-4o\": no target left. Please try again later.","type":"provider_degraded"}}`, string(got))
	for _, other := range []string{`{"error":{"code":"rate_limit_exceeded","message":"x. Please try again later."}}`, `not json`, ``} {
		require.Equal(t, other, string(NoteDegraded([]byte(other), "note")), "left alone")
	}
	require.Equal(t, string(body), string(NoteDegraded(body, "")))
}

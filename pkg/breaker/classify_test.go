package breaker

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func headers(kv ...string) func(string) string {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h.Get
}

func gz(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, err := w.Write([]byte(s))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

const (
	openaiQuota   = `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`
	openaiRate    = `{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}`
	geminiMinute  = `{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"23s"}]}}`
	geminiDay     = `{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"20s"}]}}`
	geminiLong    = `{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"120s"}]}}`
	geminiNoHint  = `{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}`
	geminiBusy    = `{"error":{"code":429,"message":"Too many concurrent requests.","status":"RESOURCE_EXHAUSTED"}}`
	geminiOther   = `{"error":{"code":429,"message":"quota","status":"UNAVAILABLE"}}`
	date          = "Fri, 01 May 2026 12:00:00 GMT"
	dateIn90s     = "Fri, 01 May 2026 12:01:30 GMT"
	dateIn30s     = "Fri, 01 May 2026 12:00:30 GMT"
	dateInThePast = "Fri, 01 May 2026 11:00:00 GMT"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name     string
		provider string
		status   int
		header   func(string) string
		body     []byte
		local    bool
		want     Class
	}{
		// Successes and caller errors, every provider (seed §3.4).
		{"200", "openai", 200, nil, nil, false, None},
		{"304", "gemini", 304, nil, nil, false, None},
		{"401 is the caller's", "anthropic", 401, nil, nil, false, ClientError},
		{"403 is the caller's", "openai", 403, nil, nil, false, ClientError},
		{"400", "gemini", 400, nil, nil, false, ClientError},
		{"404", "openai", 404, nil, nil, false, ClientError},
		{"413", "anthropic", 413, nil, nil, false, ClientError},

		// Anthropic: 529 and 5xx degraded; 429 scoped by its own headers.
		{"anthropic 529 overloaded", "anthropic", 529, nil, []byte(`{"type":"error","error":{"type":"overloaded_error"}}`), false, Degraded},
		{"anthropic 500", "anthropic", 500, nil, nil, false, Degraded},
		{"anthropic 502", "anthropic", 502, nil, nil, false, Degraded},
		{"anthropic 503", "anthropic", 503, nil, nil, false, Degraded},
		{"anthropic 504", "anthropic", 504, nil, nil, false, Degraded},
		{"anthropic other 5xx", "anthropic", 501, nil, nil, false, Degraded},
		{"anthropic 429 both remaining zero", "anthropic", 429, headers("anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-tokens-remaining", " 0 "), nil, false, GlobalRateLimit},
		{"anthropic 429 retry-after 60", "anthropic", 429, headers("retry-after", "60"), nil, false, GlobalRateLimit},
		{"anthropic 429 retry-after 59", "anthropic", 429, headers("retry-after", "59"), nil, false, LocalRateLimit},
		{"anthropic 429 one remaining zero", "anthropic", 429, headers("anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-tokens-remaining", "1000"), nil, false, LocalRateLimit},
		{"anthropic 429 no headers is local", "anthropic", 429, nil, nil, false, LocalRateLimit},

		// OpenAI.
		{"openai 500", "openai", 500, nil, nil, false, Degraded},
		{"openai 502", "openai", 502, nil, nil, false, Degraded},
		{"openai 503", "openai", 503, nil, nil, false, Degraded},
		{"openai 504", "openai", 504, nil, nil, false, Degraded},
		{"openai other 5xx", "openai", 520, nil, nil, false, Degraded},
		{"openai insufficient_quota", "openai", 429, headers("x-ratelimit-remaining-requests", "10"), []byte(openaiQuota), false, QuotaExhausted},
		{"openai insufficient_quota gzip", "openai", 429, nil, gz(t, openaiQuota), false, QuotaExhausted},
		{"openai insufficient_quota truncated", "openai", 429, nil, []byte(openaiQuota[:150]), false, QuotaExhausted},
		{"openai quota word in message only", "openai", 429, headers("retry-after", "1"), []byte(`{"error":{"message":"insufficient_quota soon","code":"rate_limit_exceeded"}}`), false, LocalRateLimit},
		{"openai both remaining zero", "openai", 429, headers("x-ratelimit-remaining-requests", "0", "x-ratelimit-remaining-tokens", "0"), []byte(openaiRate), false, GlobalRateLimit},
		{"openai no rate-limit headers", "openai", 429, nil, []byte(openaiRate), false, GlobalRateLimit},
		{"openai retry-after 120", "openai", 429, headers("x-ratelimit-remaining-requests", "5", "retry-after", "120"), nil, false, GlobalRateLimit},
		{"openai retry-after 1.5 reads as 1", "openai", 429, headers("retry-after", "1.5"), nil, false, LocalRateLimit},
		{"openai retry-after date 90s", "openai", 429, headers("retry-after", dateIn90s, "date", date), nil, false, GlobalRateLimit},
		{"openai retry-after date 30s", "openai", 429, headers("retry-after", dateIn30s, "date", date), nil, false, LocalRateLimit},
		{"openai retry-after date past", "openai", 429, headers("retry-after", dateInThePast, "date", date), nil, false, LocalRateLimit},
		{"openai retry-after garbage", "openai", 429, headers("retry-after", "soon"), nil, false, LocalRateLimit},
		{"openai retry-after huge", "openai", 429, headers("retry-after", "99999999999999999999999"), nil, false, GlobalRateLimit},
		{"openai requests zero only", "openai", 429, headers("x-ratelimit-remaining-requests", "0", "x-ratelimit-remaining-tokens", "100"), nil, false, LocalRateLimit},

		// Gemini (rule decided in classifyGemini429).
		{"gemini 500", "gemini", 500, nil, nil, false, Degraded},
		{"gemini 503", "gemini", 503, nil, nil, false, Degraded},
		{"gemini 504", "gemini", 504, nil, nil, false, Degraded},
		{"gemini 502", "gemini", 502, nil, nil, false, Degraded},
		{"gemini per-minute quota short delay", "gemini", 429, nil, []byte(geminiMinute), false, LocalRateLimit},
		{"gemini per-minute quota gzip", "gemini", 429, nil, gz(t, geminiMinute), false, LocalRateLimit},
		{"gemini per-day quota", "gemini", 429, nil, []byte(geminiDay), false, GlobalRateLimit},
		{"gemini retry delay 120s", "gemini", 429, nil, []byte(geminiLong), false, GlobalRateLimit},
		{"gemini retry-after header 60", "gemini", 429, headers("retry-after", "60"), []byte(geminiBusy), false, GlobalRateLimit},
		{"gemini quota message without hints", "gemini", 429, nil, []byte(geminiNoHint), false, GlobalRateLimit},
		{"gemini quota message with retry-after", "gemini", 429, headers("retry-after", "5"), []byte(geminiNoHint), false, LocalRateLimit},
		{"gemini exhausted without quota wording", "gemini", 429, nil, []byte(geminiBusy), false, LocalRateLimit},
		{"gemini 429 other status", "gemini", 429, nil, []byte(geminiOther), false, LocalRateLimit},
		{"gemini array-wrapped", "gemini", 429, nil, []byte("[" + geminiDay + "]"), false, GlobalRateLimit},
		{"gemini unparsable", "gemini", 429, nil, []byte("<html>"), false, LocalRateLimit},

		// Envoy's own replies: connect failure, reset, timeout.
		{"envoy 503 connect failure", "openai", 503, headers("content-type", "text/plain"), []byte("upstream connect error or disconnect/reset before headers. reset reason: connection failure"), true, Degraded},
		{"envoy 504 timeout", "anthropic", 504, nil, []byte("upstream request timeout"), true, Degraded},
		{"envoy 502", "gemini", 502, nil, nil, true, Degraded},
		{"envoy 500 is not the vendor", "openai", 500, nil, nil, true, None},
		{"envoy 413 is not the vendor", "openai", 413, nil, nil, true, None},
		{"envoy 429 is not the vendor", "openai", 429, nil, nil, true, None},

		// Other providers: generic rules.
		{"generic 500", "bedrock", 500, nil, nil, false, Degraded},
		{"generic 429", "bedrock", 429, nil, nil, false, LocalRateLimit},
		{"generic 400", "bedrock", 400, nil, nil, false, ClientError},

		// Bad input.
		{"status 0", "openai", 0, nil, nil, false, None},
		{"negative status", "openai", -1, nil, nil, false, None},
		{"broken gzip", "openai", 429, headers("retry-after", "1"), []byte{0x1f, 0x8b, 0x00, 0x01}, false, LocalRateLimit},
		{"huge body", "openai", 429, headers("retry-after", "1"), []byte(strings.Repeat("x", 1<<20)), false, LocalRateLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Classify(tt.provider, tt.status, tt.header, tt.body, tt.local))
		})
	}
}

func TestClassStrings(t *testing.T) {
	tests := []struct {
		c       Class
		name    string
		failure bool
	}{
		{None, "none", false},
		{ClientError, "client_error", false},
		{Canceled, "canceled", false},
		{LocalRateLimit, "localized_rate_limit", true},
		{GlobalRateLimit, "global_rate_limit", true},
		{QuotaExhausted, "insufficient_quota", true},
		{Degraded, "provider_degraded", true},
		{Class(99), "unknown", false},
		{Class(-1), "unknown", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.name, tt.c.String())
			require.Equal(t, tt.failure, tt.c.Failure())
		})
	}
}

func TestDecodeBodyIsBounded(t *testing.T) {
	bomb := gz(t, strings.Repeat("a", 10<<20))
	require.Len(t, decodeBody(bomb), maxErrorBody)
}

func FuzzClassify(f *testing.F) {
	f.Add("gemini", 429, []byte(geminiMinute), "60")
	f.Add("openai", 429, []byte(openaiQuota), "")
	f.Fuzz(func(t *testing.T, provider string, status int, body []byte, ra string) {
		c := Classify(provider, status, headers("retry-after", ra, "date", ra), body, false)
		require.GreaterOrEqual(t, int(c), 0)
		require.LessOrEqual(t, int(c), int(Degraded))
	})
}

func TestParseClass(t *testing.T) {
	for c := None; c <= Degraded; c++ {
		got, ok := ParseClass(c.String())
		if !ok || got != c {
			t.Fatalf("ParseClass(%q) = %v, %v", c.String(), got, ok)
		}
	}
	if _, ok := ParseClass("nonsense"); ok {
		t.Fatal("ParseClass accepted an unknown name")
	}
}

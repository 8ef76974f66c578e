package breaker

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Class is the breaker's reading of one vendor response.
type Class int

// Classes, from harmless to worst. The zero value is None.
const (
	// None is a success (status below 400). It resets global rate-limit
	// tracking and closes a half-open key when it answers the probe.
	None Class = iota
	// ClientError is a caller mistake (401, 403 and other 4xx that are not
	// rate limits). It is never a provider failure, and on the probe it
	// neither closes nor re-opens (seed §12.6): the probe slot is released.
	ClientError
	// Canceled is not produced by [Classify]: report it when the caller
	// went away before a response, to release a probe slot unchanged.
	Canceled
	// LocalRateLimit is a 429 scoped to the caller's key or a short window.
	// It never counts toward the breaker.
	LocalRateLimit
	// GlobalRateLimit is a 429 that caps the whole account. It counts as
	// degraded only after escalation ([Config.GlobalRateLimitEscalationWindow]).
	GlobalRateLimit
	// QuotaExhausted is OpenAI's insufficient_quota 429. It force-opens the
	// provider-wide key; the real 429 is passed through.
	QuotaExhausted
	// Degraded is a provider outage: 5xx, Anthropic 529, or Envoy's own
	// 502/503/504 for connect failure, reset or timeout.
	Degraded
)

var classNames = [...]string{"none", "client_error", "canceled", "localized_rate_limit", "global_rate_limit", "insufficient_quota", "provider_degraded"}

// String returns the failure-class label used in metrics and logs
// ("provider_degraded", "global_rate_limit", ...), "unknown" when out of range.
func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return "unknown"
	}
	return classNames[c]
}

// Failure reports whether c is a provider-side failure class (rate limits,
// quota, degraded).
func (c Class) Failure() bool { return c >= LocalRateLimit && c <= Degraded }

// Provider names understood by [Classify]; any other name gets the generic
// rules (5xx degraded, everything else not a failure).
const (
	ProviderOpenAI    = "openai"
	ProviderAnthropic = "anthropic"
	ProviderGemini    = "gemini"
)

// maxErrorBody bounds the decoded error body read by Classify, in bytes.
const maxErrorBody = 64 << 10

// globalRetryAfter is the Retry-After at or above which a 429 is global
// (seed §3.4 classifyRateLimitScope).
const globalRetryAfter = 60 * time.Second

// Classify reads a final vendor response. header looks a response header up
// by name, case-insensitively (nil means no headers); body is the error body
// as received, possibly truncated, gzip detected by its magic bytes and
// decompressed up to 64 KiB. envoyLocal says Envoy generated the response
// itself (no vendor answered): then 502, 503 and 504 (connect failure,
// reset, timeout) are Degraded and everything else is None, since Envoy's
// other local replies are about the request, not the vendor.
//
// The vendor rules follow seed.md §3.4, with the Gemini 429 rule decided in
// classifyGemini429. Classify is pure apart from reading the wall clock when
// an HTTP-date Retry-After comes without a Date header, and is safe for
// concurrent use. Bad input yields None, never a panic.
func Classify(provider string, status int, header func(string) string, body []byte, envoyLocal bool) Class {
	if header == nil {
		header = func(string) string { return "" }
	}
	if envoyLocal {
		switch status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return Degraded
		}
		return None
	}
	switch {
	case status < 400:
		// Includes nonsense statuses (0, negative): nothing to count.
		return None
	case status >= 500:
		// seed §3.4: Anthropic 529 and 500/502/503/504, OpenAI
		// 500/502/503/504, Gemini 500/503/504 and "any other >= 500" of
		// every provider are degraded.
		return Degraded
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return ClientError
	case status != http.StatusTooManyRequests:
		return ClientError
	}
	switch provider {
	case ProviderOpenAI:
		return classifyOpenAI429(header, body)
	case ProviderAnthropic:
		// seed §3.4 Anthropic 429: scope from its own rate-limit headers,
		// without OpenAI's "no headers" heuristic.
		return rateLimitScope(header("anthropic-ratelimit-requests-remaining"), header("anthropic-ratelimit-tokens-remaining"), header)
	case ProviderGemini:
		return classifyGemini429(header, body)
	}
	// seed §3.4 generic providers: only >= 500 is a failure. A 429 we
	// cannot scope is the caller's own limit.
	return LocalRateLimit
}

// classifyOpenAI429 applies seed §3.4 OpenAI 429 rules in order:
// insufficient_quota in the error body, then "no rate-limit headers at all"
// (billing caps), then the remaining-requests/tokens and Retry-After scope.
func classifyOpenAI429(header func(string) string, body []byte) Class {
	var e struct {
		Error struct {
			Code json.RawMessage `json:"code"`
			Type string          `json:"type"`
		} `json:"error"`
	}
	raw := decodeBody(body)
	if err := json.Unmarshal(raw, &e); err == nil {
		var code string
		_ = json.Unmarshal(e.Error.Code, &code) // code may be null or a number
		if code == "insufficient_quota" || e.Error.Type == "insufficient_quota" {
			return QuotaExhausted
		}
	} else if bytes.Contains(raw, []byte(`"insufficient_quota"`)) {
		// A truncated body does not parse; the quoted token is still decisive.
		return QuotaExhausted
	}
	rr := strings.TrimSpace(header("x-ratelimit-remaining-requests"))
	rt := strings.TrimSpace(header("x-ratelimit-remaining-tokens"))
	if rr == "" && rt == "" && strings.TrimSpace(header("retry-after")) == "" {
		return GlobalRateLimit
	}
	return rateLimitScope(rr, rt, header)
}

// rateLimitScope is seed §3.4 classifyRateLimitScope: both remaining
// counters at "0", or Retry-After of 60 s or more, is global; else local.
func rateLimitScope(remainingRequests, remainingTokens string, header func(string) string) Class {
	if strings.TrimSpace(remainingRequests) == "0" && strings.TrimSpace(remainingTokens) == "0" {
		return GlobalRateLimit
	}
	if retryAfter(header) >= globalRetryAfter {
		return GlobalRateLimit
	}
	return LocalRateLimit
}

// classifyGemini429 decides Gemini's RESOURCE_EXHAUSTED 429s.
//
// The seed README says these are local; the seed code says global whenever
// the message mentions "quota" (seed §12 item 2), which real Gemini 429s
// nearly always do ("You exceeded your current quota ..."), so the code
// made every Gemini 429 global. We use what the body says about when the
// limit clears instead of the wording:
//   - a QuotaFailure violation on a per-day quota (quotaId or quotaMetric
//     containing "PerDay") is global: it will not clear within minutes;
//   - a retry delay of 60 s or more (RetryInfo.retryDelay or Retry-After)
//     is global, as for the other vendors;
//   - a message that mentions quota with no retry hint at all (no RetryInfo,
//     no Retry-After) is global, mirroring OpenAI's "no headers" heuristic;
//   - anything else, including per-minute quotas with a short retry delay
//     and 429s that are not RESOURCE_EXHAUSTED, is local.
//
// Global limits only count after the escalation window, so a wrong
// "global" costs little; a wrong "local" would hide a sustained outage.
func classifyGemini429(header func(string) string, body []byte) Class {
	var e struct {
		Error struct {
			Status  string `json:"status"`
			Message string `json:"message"`
			Details []struct {
				Type       string `json:"@type"`
				RetryDelay string `json:"retryDelay"`
				Violations []struct {
					QuotaID     string `json:"quotaId"`
					QuotaMetric string `json:"quotaMetric"`
				} `json:"violations"`
			} `json:"details"`
		} `json:"error"`
	}
	// Gemini sometimes wraps the error object in a one-element array.
	raw := bytes.TrimSpace(decodeBody(body))
	if len(raw) > 0 && raw[0] == '[' {
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) == nil && len(arr) > 0 {
			raw = arr[0]
		}
	}
	if json.Unmarshal(raw, &e) != nil || e.Error.Status != "RESOURCE_EXHAUSTED" {
		return rateLimitScope("", "", header)
	}
	hint := strings.TrimSpace(header("retry-after")) != ""
	if retryAfter(header) >= globalRetryAfter {
		return GlobalRateLimit
	}
	for _, d := range e.Error.Details {
		for _, v := range d.Violations {
			if strings.Contains(strings.ToLower(v.QuotaID+" "+v.QuotaMetric), "perday") {
				return GlobalRateLimit
			}
		}
		if d.RetryDelay != "" {
			hint = true
			if dur, err := time.ParseDuration(d.RetryDelay); err == nil && dur >= globalRetryAfter {
				return GlobalRateLimit
			}
		}
	}
	if !hint && strings.Contains(strings.ToLower(e.Error.Message), "quota") {
		return GlobalRateLimit
	}
	return LocalRateLimit
}

// retryAfter parses Retry-After as in seed §3.4: leading integer seconds
// ("1.5" reads as 1), else an HTTP date measured against the response's
// Date header (the wall clock when absent), clamped at 0; unparseable is 0.
func retryAfter(header func(string) string) time.Duration {
	v := strings.TrimSpace(header("retry-after"))
	if v == "" {
		return 0
	}
	digits := 0
	for digits < len(v) && v[digits] >= '0' && v[digits] <= '9' {
		digits++
	}
	if digits > 0 {
		n, err := strconv.ParseInt(v[:digits], 10, 64)
		if err != nil || n > math.MaxInt64/int64(time.Second) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(n) * time.Second
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	now := time.Now()
	if d, err := http.ParseTime(strings.TrimSpace(header("date"))); err == nil {
		now = d
	}
	if wait := at.Sub(now); wait > 0 {
		return time.Duration(math.Ceil(wait.Seconds())) * time.Second
	}
	return 0
}

// decodeBody returns body, gunzipped (bounded by maxErrorBody) when it
// starts with the gzip magic bytes. A broken stream yields what decoded.
func decodeBody(body []byte) []byte {
	if len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		if len(body) > maxErrorBody {
			return body[:maxErrorBody]
		}
		return body
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil
	}
	out, _ := io.ReadAll(io.LimitReader(zr, maxErrorBody))
	return out
}

// ParseClass returns the Class whose String is s; ok is false for any
// other string. It reads the attempt classes the server itself wrote into
// Envoy's dynamic metadata.
func ParseClass(s string) (Class, bool) {
	for i, n := range classNames {
		if n == s {
			return Class(i), true
		}
	}
	return None, false
}

package fakevendor

import (
	"net/http"
	"net/url"
	"time"
)

// Vendor names an emulated LLM vendor.
type Vendor string

// The emulated vendors.
const (
	VendorOpenAI    Vendor = "openai"
	VendorAnthropic Vendor = "anthropic"
	VendorGemini    Vendor = "gemini"
)

// Usage is the token usage a response carried, in the vendor's own wire
// semantics (the numbers are exactly those written into the response):
//
//	field             OpenAI (chat / responses)               Anthropic                                 Gemini
//	InputTokens       prompt_tokens / input_tokens            input_tokens (excludes cache read/write)  promptTokenCount (includes cached)
//	OutputTokens      completion_tokens / output_tokens       output_tokens (includes thinking)         candidatesTokenCount (excludes thoughts)
//	TotalTokens       total_tokens                            0 (Anthropic sends no total)              totalTokenCount
//	CacheReadTokens   *_tokens_details.cached_tokens          cache_read_input_tokens                   cachedContentTokenCount
//	CacheWriteTokens  *_tokens_details.cache_write_tokens     cache_creation_input_tokens               0 (not reported)
//	ReasoningTokens   *_tokens_details.reasoning_tokens       output_tokens_details.thinking_tokens     thoughtsTokenCount
//
// The OpenAI-compatible chat endpoints of Anthropic and Gemini use the OpenAI column.
type Usage struct {
	InputTokens      int64 `json:"input_tokens"`
	OutputTokens     int64 `json:"output_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
	CacheReadTokens  int64 `json:"cache_read_tokens"`
	CacheWriteTokens int64 `json:"cache_write_tokens"`
	ReasoningTokens  int64 `json:"reasoning_tokens"`
}

// Call records one request the fake served and what it answered. All fields
// are copies; a Call returned by [Server.Calls] is never modified afterwards.
type Call struct {
	// Seq numbers the calls of a Server from 1 in arrival order.
	Seq int64 `json:"seq"`
	// Time is when the request arrived (Options.Now).
	Time time.Time `json:"time"`
	// Vendor is the emulated vendor, empty when none matched.
	Vendor Vendor `json:"vendor"`
	// Endpoint names the emulated operation, for example "chat.completions",
	// "responses", "embeddings", "models.list", "messages",
	// "messages.count_tokens", "generateContent", "streamGenerateContent",
	// "countTokens"; empty when the path matched none.
	Endpoint string `json:"endpoint"`
	Method   string `json:"method"`
	// Host is the request's Host header (the :authority behind Envoy).
	Host string `json:"host"`
	// Path is the vendor path after any /openai, /anthropic, /gemini prefix
	// was stripped; OriginalPath is the path as received.
	Path         string      `json:"path"`
	OriginalPath string      `json:"original_path"`
	Query        url.Values  `json:"query"`
	Header       http.Header `json:"header"`
	Body         []byte      `json:"body"`
	// APIKey is the credential the request carried: the bearer token of
	// Authorization, x-api-key, x-goog-api-key or the key query parameter, in
	// that order of preference. The fake never checks it.
	APIKey string `json:"api_key"`
	// Model is the model named by the request body or path.
	Model string `json:"model"`
	// Stream reports whether the response was a stream.
	Stream bool `json:"stream"`
	// Status is the HTTP status sent, 0 when the connection was closed
	// before any response.
	Status int `json:"status"`
	// RequestID is the id the response carried (x-request-id, request-id or
	// Gemini's responseId); empty when it carried none.
	RequestID string `json:"request_id"`
	// Usage is the final usage the response was built to carry; nil when it
	// carries none (errors, OpenAI streams without include_usage, listings).
	Usage *Usage `json:"usage"`
	// DeliveredUsage is the usage of the last usage-bearing event (or JSON
	// body) that was completely written to the client; it equals Usage when
	// Completed and may be nil or partial after an injected reset.
	DeliveredUsage *Usage `json:"delivered_usage"`
	// BodyBytes counts response body bytes written, before any gzip.
	BodyBytes int64 `json:"body_bytes"`
	// Completed reports whether the whole response was written and ended
	// normally.
	Completed bool `json:"completed"`
	// Fault names the injected fault that shaped the response: "status",
	// "reset-before-headers", "reset-after-bytes", or "" for none.
	Fault string `json:"fault"`
	// Err describes why the request was rejected or cut short, if it was.
	Err string `json:"error,omitempty"`
	// Proto is the request's protocol ("HTTP/1.1", "HTTP/2.0").
	Proto string `json:"proto"`
	// ContentEncoding is the response's content-encoding ("gzip" or "").
	ContentEncoding string `json:"content_encoding,omitempty"`
	// ContentLength reports whether the response carried content-length
	// (false: HTTP/1.1 chunked, or an HTTP/2 body ended by END_STREAM).
	ContentLength bool `json:"content_length"`
	// Trailers are the response trailers sent, nil when none.
	Trailers http.Header `json:"trailers,omitempty"`
}

func (c *Call) clone() Call {
	out := *c
	out.Query = cloneValues(c.Query)
	out.Header = c.Header.Clone()
	out.Trailers = c.Trailers.Clone()
	out.Body = append([]byte(nil), c.Body...)
	if c.Usage != nil {
		u := *c.Usage
		out.Usage = &u
	}
	if c.DeliveredUsage != nil {
		u := *c.DeliveredUsage
		out.DeliveredUsage = &u
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

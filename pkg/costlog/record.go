package costlog

import (
	"math"
	"time"
)

// Outcome values for [Record.Outcome].
const (
	// OutcomeCompleted means the vendor's response reached its end.
	OutcomeCompleted = "completed"
	// OutcomeAborted means the client or the vendor ended the exchange
	// before the response was complete (for example a dropped stream).
	OutcomeAborted = "aborted"
	// OutcomeRefused means the gateway answered without calling the vendor
	// (rate limit, budget, open circuit, bad request).
	OutcomeRefused = "refused"
)

// Record is one cost record: one JSON object on one line per request. The
// JSON field names are stable; every field is always present (no
// omitempty) so consumers see a fixed set of columns. Token counts are
// integers, costs are US dollars as floats, durations are milliseconds.
type Record struct {
	// Timestamp is when the request arrived. It is encoded in UTC with
	// RFC 3339 nanosecond precision, whatever its location.
	Timestamp time.Time `json:"timestamp"`
	// RequestID is the gateway's request id (Envoy's x-request-id).
	RequestID string `json:"request_id"`
	// User is the caller's user id, empty when unknown.
	User string `json:"user"`
	// KeyID identifies the API key by hash (processor.KeyID); it must never
	// be a raw key.
	KeyID string `json:"key_id"`
	// Team and Owner are the gateway key's team and owner (KeyID is then
	// the key's display id); empty in passthrough mode.
	Team  string `json:"team,omitempty"`
	Owner string `json:"key_owner,omitempty"`
	// ClientIP is the client address Envoy vouches for, without port.
	ClientIP string `json:"client_ip"`
	// Provider is the vendor: "openai", "anthropic" or "gemini".
	Provider string `json:"provider"`
	// Model is the model as the client requested it, or, for a call failed
	// over to another target of its chain, the target's model (Provider is
	// then the target's too).
	Model string `json:"model"`
	// RequestedProvider and RequestedModel are what the client asked for
	// when the call failed over to another target; omitted otherwise.
	RequestedProvider string `json:"requested_provider,omitempty"`
	RequestedModel    string `json:"requested_model,omitempty"`
	// PricedModel is the canonical model whose price was used; empty when
	// the model has no price.
	PricedModel string `json:"priced_model"`
	// Endpoint is the operation, for example "chat_completions".
	Endpoint string `json:"endpoint"`
	// Path is the inbound request path.
	Path string `json:"path"`
	// Stream reports whether the response was streamed.
	Stream bool `json:"stream"`
	// Status is the HTTP status returned to the client.
	Status int `json:"status"`
	// Outcome is [OutcomeCompleted], [OutcomeAborted] or [OutcomeRefused].
	Outcome string `json:"outcome"`
	// InputTokens counts prompt tokens, cached ones included.
	InputTokens int64 `json:"input_tokens"`
	// OutputTokens counts completion tokens, reasoning ones included.
	OutputTokens int64 `json:"output_tokens"`
	// TotalTokens is the vendor's total, or input plus output.
	TotalTokens int64 `json:"total_tokens"`
	// CacheReadTokens counts prompt tokens served from the vendor's cache.
	CacheReadTokens int64 `json:"cache_read_tokens"`
	// CacheWriteTokens counts prompt tokens written to the vendor's cache.
	CacheWriteTokens int64 `json:"cache_write_tokens"`
	// ReasoningTokens counts output tokens spent on reasoning.
	ReasoningTokens int64 `json:"reasoning_tokens"`
	// InputCostUSD is the cost of uncached input tokens, in USD.
	InputCostUSD float64 `json:"input_cost_usd"`
	// CacheReadCostUSD is the cost of cache-read tokens, in USD.
	CacheReadCostUSD float64 `json:"cache_read_cost_usd"`
	// CacheWriteCostUSD is the cost of cache-write tokens, in USD.
	CacheWriteCostUSD float64 `json:"cache_write_cost_usd"`
	// OutputCostUSD is the cost of output tokens, in USD.
	OutputCostUSD float64 `json:"output_cost_usd"`
	// TotalCostUSD is the sum of the four costs, in USD.
	TotalCostUSD float64 `json:"total_cost_usd"`
	// CostKnown is false when the model has no price (the costs are then
	// zero), or when a cost was not a finite number.
	CostKnown bool `json:"cost_known"`
	// UsageEstimated is true when the vendor reported no usage and the
	// token counts are the gateway's estimates.
	UsageEstimated bool `json:"usage_estimated"`
	// FinishReason is the vendor's finish or stop reason, as sent.
	FinishReason string `json:"finish_reason"`
	// VendorRequestID is the vendor's request id header, when present.
	VendorRequestID string `json:"vendor_request_id"`
	// TTFBMillis is the time from request to first response byte, in ms.
	TTFBMillis int64 `json:"ttfb_ms"`
	// DurationMillis is the time from request to end of response, in ms.
	DurationMillis int64 `json:"duration_ms"`
}

// AppendJSON appends r as one line of JSON, newline included, to dst and
// returns the extended slice. The timestamp is converted to UTC; a cost
// that is NaN or infinite is written as 0 and CostKnown as false, because
// JSON has no such numbers; a timestamp outside years 0-9999, which RFC 3339
// cannot express, is written as the zero time. Strings are escaped as
// encoding/json does (invalid UTF-8 becomes U+FFFD). The output is the
// same as json.Marshal's, produced without reflection; the error is
// always nil and exists so a future field that can fail needs no API
// change.
func AppendJSON(dst []byte, r Record) ([]byte, error) {
	sanitize(&r)
	dst = appendRecord(dst, &r)
	return append(dst, '\n'), nil
}

// sanitize makes r encodable: UTC timestamp within RFC 3339's years and
// finite costs.
func sanitize(r *Record) {
	r.Timestamp = r.Timestamp.UTC()
	if y := r.Timestamp.Year(); y < 0 || y > 9999 {
		r.Timestamp = time.Time{}
	}
	for _, p := range []*float64{&r.InputCostUSD, &r.CacheReadCostUSD, &r.CacheWriteCostUSD, &r.OutputCostUSD, &r.TotalCostUSD} {
		if math.IsNaN(*p) || math.IsInf(*p, 0) {
			*p = 0
			r.CostKnown = false
		}
	}
}

package costlog

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAppendJSONFieldNames(t *testing.T) {
	line, err := AppendJSON(nil, Record{})
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(string(line), "}\n"))
	require.Equal(t, 1, strings.Count(string(line), "\n"))
	var m map[string]any
	require.NoError(t, json.Unmarshal(line, &m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{
		"cache_read_cost_usd", "cache_read_tokens", "cache_write_cost_usd", "cache_write_tokens",
		"client_ip", "cost_known", "duration_ms", "endpoint", "finish_reason", "input_cost_usd",
		"input_tokens", "key_id", "model", "outcome", "output_cost_usd", "output_tokens", "path",
		"priced_model", "provider", "reasoning_tokens", "request_id", "status", "stream",
		"timestamp", "total_cost_usd", "total_tokens", "ttfb_ms", "usage_estimated", "user",
		"vendor_request_id",
	}
	require.Equal(t, want, keys)
}

func TestAppendJSONValues(t *testing.T) {
	paris := time.FixedZone("CEST", 2*3600)
	tests := []struct {
		name      string
		in        Record
		timestamp string
		total     float64
		known     bool
	}{
		{
			name:      "converted to UTC with nanoseconds",
			in:        Record{Timestamp: time.Date(2026, 8, 1, 14, 0, 0, 5, paris), TotalCostUSD: 0.25, CostKnown: true},
			timestamp: "2026-08-01T12:00:00.000000005Z",
			total:     0.25,
			known:     true,
		},
		{
			name:      "NaN cost becomes zero and unknown",
			in:        Record{Timestamp: time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC), TotalCostUSD: math.NaN(), CostKnown: true},
			timestamp: "2026-08-01T12:00:00Z",
			total:     0,
			known:     false,
		},
		{
			name:      "infinite cost becomes zero and unknown",
			in:        Record{Timestamp: time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC), InputCostUSD: math.Inf(1), TotalCostUSD: 1, CostKnown: true},
			timestamp: "2026-08-01T12:00:00Z",
			total:     1,
			known:     false,
		},
		{
			name:      "year beyond RFC 3339 becomes zero time",
			in:        Record{Timestamp: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)},
			timestamp: "0001-01-01T00:00:00Z",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, err := AppendJSON([]byte("prefix"), tt.in)
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(string(line), "prefix{"))
			var got struct {
				Timestamp string  `json:"timestamp"`
				Total     float64 `json:"total_cost_usd"`
				Known     bool    `json:"cost_known"`
			}
			require.NoError(t, json.Unmarshal(line[len("prefix"):], &got))
			require.Equal(t, tt.timestamp, got.Timestamp)
			require.Equal(t, tt.total, got.Total)
			require.Equal(t, tt.known, got.Known)
		})
	}
}

func TestAppendJSONRoundTrip(t *testing.T) {
	r := rec("req-1")
	r.Stream = true
	r.UsageEstimated = true
	r.CacheReadTokens, r.CacheWriteTokens, r.ReasoningTokens = 10, 20, 30
	r.FinishReason, r.VendorRequestID, r.ClientIP = "stop", "chatcmpl-1", "10.0.0.1"
	r.TTFBMillis, r.DurationMillis = 120, 950
	r.User = "bad\xffutf8"
	line, err := AppendJSON(nil, r)
	require.NoError(t, err)
	var got Record
	require.NoError(t, json.Unmarshal(line, &got))
	want := r
	want.User = "bad\uFFFDutf8"
	require.True(t, want.Timestamp.Equal(got.Timestamp))
	got.Timestamp = want.Timestamp
	require.Equal(t, want, got)
}

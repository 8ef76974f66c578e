package costlog

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// plainRecord has Record's fields and tags; json.Marshal of it is the
// reference output appendRecord must reproduce byte for byte.
type plainRecord Record

func reference(t testing.TB, r Record) string {
	sanitize(&r)
	b, err := json.Marshal((*plainRecord)(&r))
	require.NoError(t, err)
	return string(b) + "\n"
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	full := rec("req-1")
	full.Stream, full.UsageEstimated = true, true
	full.CacheReadTokens, full.CacheWriteTokens, full.ReasoningTokens = 1, -2, math.MaxInt64
	full.Status = -1
	full.Team, full.Owner = "platform", "ann@example.com"
	full.RequestedProvider, full.RequestedModel = "openai", "gpt-4o"
	tests := []struct {
		name string
		r    Record
	}{
		{name: "zero", r: Record{}},
		{name: "full", r: full},
		{name: "escapes", r: Record{
			RequestID: "q\"uote\\back\nnl\rcr\ttab\bbs\fff\x00nul\x1fus",
			User:      "<html>&amp; \u2028 \u2029 é 日本 🚀",
			Model:     "bad\xff\xfeutf8\xc3",
			Path:      "/v1/chat/completions?x=1",
		}},
		{name: "floats", r: Record{
			InputCostUSD: 1e-7, CacheReadCostUSD: 0.000001, CacheWriteCostUSD: 1e21,
			OutputCostUSD: -3.5e-9, TotalCostUSD: 123456789.123456789,
		}},
		{name: "more floats", r: Record{InputCostUSD: 1e20, OutputCostUSD: 5e-324, TotalCostUSD: math.MaxFloat64}},
		{name: "timestamp nanos and zone", r: Record{Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 60, time.FixedZone("X", -7*3600))}},
		{name: "non-finite", r: Record{InputCostUSD: math.NaN(), OutputCostUSD: math.Inf(-1), CostKnown: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendJSON(nil, tt.r)
			require.NoError(t, err)
			require.Equal(t, reference(t, tt.r), string(got))
		})
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("id", "user\x00", "<m>", 1.5, int64(7), int64(1700000000000000000))
	f.Add("\xff", "\u2028", "", 1e-9, int64(-1), int64(0))
	f.Fuzz(func(t *testing.T, id, user, model string, cost float64, tokens, nanos int64) {
		r := Record{
			Timestamp: time.Unix(0, nanos), RequestID: id, User: user, Model: model,
			TotalCostUSD: cost, InputTokens: tokens, CostKnown: true,
		}
		got, err := AppendJSON(nil, r)
		require.NoError(t, err)
		require.Equal(t, reference(t, r), string(got))
		require.True(t, json.Valid(got))
	})
}

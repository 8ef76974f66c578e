package budget

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNanos(t *testing.T) {
	tests := []struct {
		name string
		usd  float64
		want int64
	}{
		{name: "zero", usd: 0, want: 0},
		{name: "one dollar", usd: 1, want: 1_000_000_000},
		{name: "decimal without drift", usd: 0.1 + 0.2, want: 300_000_000},
		{name: "gpt-4o-mini 21 in + 2 out", usd: 21*0.15/1e6 + 2*0.6/1e6, want: 4350},
		{name: "rounds to nearest", usd: 0.0000000014, want: 1},
		{name: "rounds half up", usd: 0.0000000025, want: 3},
		{name: "below half a nano", usd: 0.0000000004, want: 0},
		{name: "negative", usd: -3, want: 0},
		{name: "NaN", usd: math.NaN(), want: 0},
		{name: "infinite", usd: math.Inf(1), want: MaxUSD * NanosPerUSD},
		{name: "huge", usd: 1e300, want: MaxUSD * NanosPerUSD},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Nanos(tt.usd))
		})
	}
}

func TestFormatNanos(t *testing.T) {
	tests := []struct {
		name  string
		nanos int64
		want  string
	}{
		{name: "zero", nanos: 0, want: "0"},
		{name: "whole", nanos: 25_000_000_000, want: "25"},
		{name: "half", nanos: 1_500_000_000, want: "1.5"},
		{name: "one nano", nanos: 1, want: "0.000000001"},
		{name: "small call", nanos: 4350, want: "0.00000435"},
		{name: "mixed", nanos: 12_030_400_000, want: "12.0304"},
		{name: "negative", nanos: -1_250_000_000, want: "-1.25"},
		{name: "min int64", nanos: math.MinInt64, want: "-9223372036.854775808"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, FormatNanos(tt.nanos))
		})
	}
	require.Equal(t, 1.5, USD(1_500_000_000))
}

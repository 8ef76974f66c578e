package breaker

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLuaConstants pins the numbers the Lua scripts use for Go constants.
func TestLuaConstants(t *testing.T) {
	require.Equal(t, []int{0, 1, 2}, []int{int(StateClosed), int(StateHalfOpen), int(StateOpen)})
	require.Equal(t, []int{0, 4, 5, 6}, []int{int(None), int(GlobalRateLimit), int(QuotaExhausted), int(Degraded)})
	require.Equal(t, []int{1, 2, 3, 4, 6, 7, 8}, []int{
		int(ReasonThreshold), int(ReasonProbeFailed), int(ReasonQuota), int(ReasonProbeSuccess),
		int(ReasonOpen), int(ReasonProviderOpen), int(ReasonProbeInFlight),
	})
	require.Equal(t, []int{1, 2}, []int{int(TargetModel), int(TargetProvider)})
	require.Equal(t, []int{1, 2, 3}, []int{int(ProbeSucceeded), int(ProbeFailed), int(ProbeReleased)})
}

func TestModelKey(t *testing.T) {
	long := strings.Repeat("m", 129)
	tests := []struct {
		name  string
		model string
		want  string
	}{
		{"plain", "gpt-4o", "openai:gpt-4o"},
		{"empty is the sentinel", "", "openai:_unknown"},
		{"128 bytes kept", strings.Repeat("m", 128), "openai:" + strings.Repeat("m", 128)},
		{"long is digested", long, ModelKey("openai", long).String()},
		{"control characters digested", "a\nb", ModelKey("openai", "a\nb").String()},
		{"invalid utf-8 digested", "\xff", ModelKey("openai", "\xff").String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ModelKey("openai", tt.model).String()
			require.Equal(t, tt.want, got)
			if tt.model != "" && got != "openai:"+tt.model {
				require.True(t, strings.HasPrefix(got, "openai:_h"))
				require.Len(t, got, len("openai:_h")+24)
			}
		})
	}
	require.NotEqual(t, ModelKey("openai", long+"a"), ModelKey("openai", long+"b"))
	require.Equal(t, "openai", ProviderKey("openai").String())
}

func TestEnumStrings(t *testing.T) {
	require.Equal(t, "half_open", StateHalfOpen.String())
	require.Equal(t, "closed", State(7).String())
	require.Equal(t, "insufficient_quota", ReasonQuota.String())
	require.Equal(t, "unknown", Reason(42).String())
	require.Equal(t, "released", ProbeReleased.String())
	require.Empty(t, NoProbe.String())
}

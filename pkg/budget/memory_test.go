package budget

import (
	"testing"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/stretchr/testify/require"
)

func TestMemory(t *testing.T) {
	testLimiter(t, func(t *testing.T, cfg Config) Limiter {
		require.NoError(t, cfg.Validate())
		return newMemory(t, cfg)
	})
}

// newMemory returns a limiter on a memory store for cfg.
func newMemory(tb testing.TB, cfg Config) *Quota {
	tb.Helper()
	cfg.Backend = quota.BackendMemory
	q, err := Open(tb.Context(), cfg, quota.Hooks{})
	require.NoError(tb, err)
	return q
}

package ratelimit

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMemory(t *testing.T) {
	testLimiter(t, func(t *testing.T, cfg Config) Limiter {
		require.NoError(t, cfg.Validate())
		return NewMemory(cfg)
	})
}

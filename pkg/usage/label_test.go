package usage

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

func TestWindowLabel(t *testing.T) {
	require.Equal(t, "2030-05-06", windowLabel(quota.Day, quota.Day.Index(t0)))
	require.Equal(t, "2030-05", windowLabel(quota.Month, quota.Month.Index(t0)))
	require.Equal(t, "1969-12-31", windowLabel(quota.Day, quota.Day.Index(time.Unix(-1, 0))))
}

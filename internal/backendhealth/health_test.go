package backendhealth

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTransitionsAreReportedOnce(t *testing.T) {
	var seen []Status
	tr := New("redis", func(s Status) { seen = append(seen, s) }, time.Hour)
	require.True(t, tr.Admit())
	tr.Observe(nil)
	require.Empty(t, seen)
	tr.Observe(errors.New("dial tcp: refused"))
	tr.Observe(errors.New("dial tcp: refused"))
	require.Len(t, seen, 1)
	require.False(t, seen[0].Healthy)
	require.Equal(t, "dial tcp: refused", tr.Status().LastError)
	require.False(t, tr.Admit(), "calls are skipped until the retry interval passes")
	tr.Observe(nil)
	require.Len(t, seen, 2)
	require.True(t, seen[1].Healthy)
	require.True(t, tr.Admit())
	require.Equal(t, "redis", tr.Status().Backend)
}

func TestOneTrialPerInterval(t *testing.T) {
	tr := New("redis", nil, 0)
	tr.Observe(errors.New("down"))
	require.True(t, tr.Admit(), "a zero interval tries every call")
}

package admin

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func failedOver(at time.Time, from, to, reason, class string) Sample {
	p, m, _ := strings.Cut(to, ":")
	return Sample{Time: at, Provider: p, Model: m, Class: class, FailoverFrom: from, FailoverReason: reason}
}

func TestSeriesFailover(t *testing.T) {
	s := NewSeries(SeriesOptions{})
	chains := []string{"openai:gpt-4o", "anthropic:claude-*"}
	// Not failed over: counted in requests only.
	s.Add(Sample{Time: seriesNow, Provider: "openai", Model: "gpt-4o", Class: ClassOK})
	s.Add(failedOver(seriesNow.Add(-3*time.Hour), "openai:gpt-4o", "openai:gpt-4o-mini", "circuit_open", ClassOK))
	s.Add(failedOver(seriesNow.Add(-time.Hour), "openai:gpt-4o", "openai:gpt-4o-mini", "circuit_open", ClassOK))
	s.Add(failedOver(seriesNow, "openai:gpt-4o", "anthropic:claude-sonnet-4-5", "circuit_open", ClassUpstreamError))
	// Yesterday: in 7d, not in today.
	s.Add(failedOver(seriesNow.Add(-24*time.Hour), "gemini:gemini-2.5-pro", "gemini:gemini-2.5-flash", "circuit_open", ClassOK))

	today := s.Failover(RangeToday, chains, seriesNow)
	require.True(t, today.Enabled)
	require.Equal(t, []string{"anthropic:claude-*", "openai:gpt-4o"}, today.Chains)
	require.Equal(t, "instance", today.Scope)
	require.Equal(t, int64(3), today.Total)
	require.Equal(t, int64(4), today.Requests)
	require.Equal(t, []FailoverRoute{
		{From: "openai:gpt-4o", To: "openai:gpt-4o-mini", Reason: "circuit_open", Calls: 2, Last: seriesNow.Add(-time.Hour)},
		{From: "openai:gpt-4o", To: "anthropic:claude-sonnet-4-5", Reason: "circuit_open", Calls: 1, Last: seriesNow},
	}, today.Routes)
	// Recent: newest added first, whatever the range.
	require.Len(t, today.Recent, 4)
	require.Equal(t, FailoverEvent{Time: seriesNow.Add(-24 * time.Hour), From: "gemini:gemini-2.5-pro",
		To: "gemini:gemini-2.5-flash", Reason: "circuit_open", Class: ClassOK}, today.Recent[0])
	require.Equal(t, ClassUpstreamError, today.Recent[1].Class)

	week := s.Failover(Range7d, chains, seriesNow)
	require.Equal(t, int64(4), week.Total)
	require.Len(t, week.Routes, 3)

	off := NewSeries(SeriesOptions{}).Failover(RangeToday, nil, seriesNow)
	require.False(t, off.Enabled)
	require.NotNil(t, off.Routes)
	require.NotNil(t, off.Recent)
	require.NotNil(t, off.Chains)
}

func TestSeriesFailoverIsBounded(t *testing.T) {
	s := NewSeries(SeriesOptions{MaxNames: 3})
	for i := range 50 {
		s.Add(failedOver(seriesNow, fmt.Sprintf("openai:m%d", i), "openai:mini", "circuit_open", ClassOK))
	}
	r := s.Failover(RangeToday, []string{"openai:m*"}, seriesNow)
	require.Equal(t, int64(50), r.Total)
	require.Len(t, r.Routes, 4) // three routes and the (other) row
	require.Equal(t, FailoverRoute{From: OtherName, To: OtherName, Reason: OtherName, Calls: 47, Last: seriesNow}, r.Routes[0])
	require.Len(t, r.Recent, recentFailovers)
	require.Equal(t, "openai:m49", r.Recent[0].From, "the ring keeps the names of the calls it shows")
}

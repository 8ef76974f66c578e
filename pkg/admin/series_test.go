package admin

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var seriesNow = time.Date(2030, 5, 6, 14, 30, 0, 0, time.UTC)

func TestSeriesUsageToday(t *testing.T) {
	s := NewSeries(SeriesOptions{})
	s.Add(Sample{Time: seriesNow.Add(-2 * time.Hour), Provider: "openai", Model: "gpt-4o", User: "alice", KeyID: "k1",
		Class: ClassOK, CostNanos: 1_500_000, InputTokens: 100, OutputTokens: 50})
	s.Add(Sample{Time: seriesNow, Provider: "openai", Model: "gpt-4o", User: "bob", Class: ClassOK,
		CostNanos: 500_000, InputTokens: 10, OutputTokens: 5})
	s.Add(Sample{Time: seriesNow, Provider: "anthropic", Model: "claude", Class: ClassUpstreamError, CostNanos: -3})
	// Yesterday: outside today, inside 7d.
	s.Add(Sample{Time: seriesNow.Add(-24 * time.Hour), Provider: "gemini", Model: "flash", Class: ClassOK, CostNanos: 7})

	u := s.Usage(RangeToday, ByModel, 8, seriesNow)
	require.Equal(t, int64(3600), u.StepSeconds)
	require.Len(t, u.Buckets, 15) // 00:00 .. 14:00
	require.Equal(t, time.Date(2030, 5, 6, 0, 0, 0, 0, time.UTC), u.Buckets[0])
	require.Equal(t, Totals{Requests: 3, CostNanos: 2_000_000, InputTokens: 110, OutputTokens: 55}, u.Total)
	require.Equal(t, int64(2), u.Points[14].Requests)
	require.Len(t, u.Series, 2)
	require.Equal(t, "openai/gpt-4o", u.Series[0].Name)
	require.Equal(t, int64(1_500_000), u.Series[0].Points[12].CostNanos)
	require.Equal(t, int64(500_000), u.Series[0].Points[14].CostNanos)
	require.Equal(t, "anthropic/claude", u.Series[1].Name)
	require.Equal(t, int64(0), u.Series[1].Total.CostNanos, "negative cost counts as 0")

	byUser := s.Usage(RangeToday, ByUser, 8, seriesNow)
	require.Len(t, byUser.Series, 2, "a call without a user is in no user row")

	week := s.Usage(Range7d, ByProvider, 8, seriesNow)
	require.Equal(t, int64(86400), week.StepSeconds)
	require.Len(t, week.Buckets, 7)
	require.Equal(t, time.Date(2030, 4, 30, 0, 0, 0, 0, time.UTC), week.Buckets[0])
	require.Equal(t, int64(4), week.Total.Requests)
	require.Equal(t, int64(1), week.Points[5].Requests)
	require.Equal(t, int64(3), week.Points[6].Requests)
}

func TestSeriesTopFoldsIntoOther(t *testing.T) {
	s := NewSeries(SeriesOptions{MaxNames: 3})
	for i, name := range []string{"a", "b", "c", "d", "e"} {
		s.Add(Sample{Time: seriesNow, User: name, Class: ClassOK, CostNanos: int64(10 * (i + 1))})
	}
	// MaxNames folds d and e into (other) at record time.
	u := s.Usage(RangeToday, ByUser, 10, seriesNow)
	names := []string{}
	for _, ns := range u.Series {
		names = append(names, ns.Name)
	}
	require.Equal(t, []string{OtherName, "c", "b", "a"}, names)
	require.Equal(t, int64(90), u.Series[0].Total.CostNanos)
	// top 2 folds the rest, merging the existing (other) row.
	u = s.Usage(RangeToday, ByUser, 2, seriesNow)
	require.Len(t, u.Series, 2)
	require.Equal(t, "c", u.Series[0].Name)
	require.Equal(t, OtherName, u.Series[1].Name)
	require.Equal(t, int64(120), u.Series[1].Total.CostNanos) // 90 + b 20 + a 10
}

func TestSeriesForgetsOldBuckets(t *testing.T) {
	s := NewSeries(SeriesOptions{})
	s.Add(Sample{Time: seriesNow.Add(-9 * 24 * time.Hour), Provider: "openai", Class: ClassOK, CostNanos: 5})
	require.Zero(t, s.Usage(Range7d, ByProvider, 8, seriesNow).Total.Requests)
	// A newer hour owns the slot; a late sample for the old hour is dropped.
	slotOwner := seriesNow.Add(-9*24*time.Hour + 8*24*time.Hour)
	s.Add(Sample{Time: slotOwner, Provider: "openai", Class: ClassOK, CostNanos: 1})
	s.Add(Sample{Time: seriesNow.Add(-9 * 24 * time.Hour), Provider: "openai", Class: ClassOK, CostNanos: 5})
	require.Equal(t, int64(1), s.Usage(Range7d, ByProvider, 8, seriesNow).Total.CostNanos)
}

func TestSeriesTraffic(t *testing.T) {
	s := NewSeries(SeriesOptions{})
	for i := range 100 {
		s.Add(Sample{Time: seriesNow, Class: ClassOK, Duration: time.Duration(i+1) * time.Millisecond})
	}
	s.Add(Sample{Time: seriesNow.Add(-time.Minute), Class: ClassRateLimited, Duration: 2 * time.Millisecond})
	s.Add(Sample{Time: seriesNow.Add(-time.Minute), Class: "nonsense"})
	s.Add(Sample{Time: seriesNow.Add(-2 * time.Hour), Class: ClassOK}) // out of the hour

	tr := s.Traffic(60, seriesNow)
	require.Len(t, tr.Buckets, 60)
	require.Equal(t, seriesNow.Truncate(time.Minute), tr.Buckets[59])
	require.Equal(t, int64(100), tr.Requests[59])
	require.Equal(t, int64(2), tr.Requests[58])
	require.Equal(t, int64(1), tr.Classes[ClassRateLimited][58])
	require.Equal(t, int64(1), tr.Classes[ClassOther][58])
	require.Equal(t, int64(102), tr.Summary.Requests)
	require.InDelta(t, 102.0/3600, tr.Summary.RequestsPerSecond, 1e-9)
	for _, c := range Classes {
		require.Contains(t, tr.Classes, c)
		require.Len(t, tr.Classes[c], 60)
	}
	// Durations 1..100 ms: p50 = 50 ms, p99 = 99 ms; reported as the
	// histogram bucket's upper bound, within 19% above.
	p50, p99 := tr.LatencyMS["p50"][59], tr.LatencyMS["p99"][59]
	require.GreaterOrEqual(t, p50, 50.0)
	require.Less(t, p50, 50*1.19)
	require.GreaterOrEqual(t, p99, 99.0)
	require.Less(t, p99, 99*1.19)
	require.Zero(t, tr.LatencyMS["p50"][0])

	short := s.Traffic(5, seriesNow)
	require.Len(t, short.Buckets, 5)
	require.Equal(t, int64(102), short.Summary.Requests)
}

func TestPercentile(t *testing.T) {
	counts := make([]int64, len(latencyBounds))
	require.Zero(t, percentile(counts, 0.5))
	counts[latencyBucket(3*time.Hour)]++ // beyond every bound but the last
	counts[latencyBucket(10*time.Hour)]++
	require.Equal(t, len(latencyBounds)-1, latencyBucket(10*time.Hour))
	require.InDelta(t, latencyBounds[len(latencyBounds)-1], percentile(counts, 0.99), 0.01)
	require.Equal(t, 0, latencyBucket(0))
}

package telemetry

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

func unpricedRecord(provider, reported, requested string) *processor.Record {
	r := record(requested)
	r.Provider = provider
	r.Usage.Model = reported
	return r
}

func TestUnpricedModels(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	u := NewUnpricedModels(func() time.Time { return now })

	priced := unpricedRecord("openai", "gpt-4o-2024-08-06", "gpt-4o")
	priced.Cost = processor.Cost{Known: true, Model: "gpt-4o", TotalUSD: 0.01}
	u.Observe(priced)
	noUsage := unpricedRecord("openai", "", "gpt-x")
	noUsage.Usage.Found = false
	u.Observe(noUsage)
	require.Empty(t, u.List(), "priced calls and calls without usage are not listed")

	u.Observe(unpricedRecord("openai", "gpt-7-2027-01-01", "gpt-7"))
	now = now.Add(time.Hour)
	u.Observe(unpricedRecord("anthropic", "", "claude-next"))
	u.Observe(unpricedRecord("openai", "gpt-7-2027-01-01", "gpt-7"))
	u.Observe(unpricedRecord("gemini", "bad name!", "x"))
	now = now.Add(time.Minute)
	u.Observe(unpricedRecord("gemini", "", ""))

	got := u.List()
	require.Equal(t, []UnpricedModel{
		{Provider: "gemini", Model: "unknown", Requests: 1, FirstSeen: now, LastSeen: now},
		{Provider: "anthropic", Model: "claude-next", Requests: 1, FirstSeen: now.Add(-time.Minute), LastSeen: now.Add(-time.Minute)},
		{Provider: "gemini", Model: "other", Requests: 1, FirstSeen: now.Add(-time.Minute), LastSeen: now.Add(-time.Minute)},
		{Provider: "openai", Model: "gpt-7-2027-01-01", Requests: 2, FirstSeen: now.Add(-61 * time.Minute), LastSeen: now.Add(-time.Minute)},
	}, got)

	// A day after it was last seen a model drops off the list.
	now = now.Add(UnpricedWindow - time.Minute + time.Nanosecond)
	got = u.List()
	require.Len(t, got, 1)
	require.Equal(t, "unknown", got[0].Model)
	require.Equal(t, got, u.Health(context.Background()))
}

func TestUnpricedModelsIsBounded(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	u := NewUnpricedModels(func() time.Time { return now })
	for i := range MaxUnpriced + 10 {
		now = now.Add(time.Second)
		u.Observe(unpricedRecord("openai", fmt.Sprintf("m-%d", i), "m"))
	}
	got := u.List()
	require.Len(t, got, MaxUnpriced)
	require.Equal(t, fmt.Sprintf("m-%d", MaxUnpriced+9), got[0].Model, "newest kept")
	require.Equal(t, "m-10", got[len(got)-1].Model, "the least recently seen were forgotten")
}

func TestMetricsUnpricedByModel(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	m.Observe(unpricedRecord("openai", "gpt-7-2027-01-01", "gpt-7"))
	m.Observe(unpricedRecord("openai", "", "gpt-7"))
	m.Observe(unpricedRecord("openai", strings.Repeat("x", 200), "gpt-7"))
	priced := unpricedRecord("openai", "gpt-4o-2024-08-06", "gpt-4o")
	priced.Cost = processor.Cost{Known: true, Model: "gpt-4o"}
	m.Observe(priced)
	require.InDelta(t, 1, testutil.ToFloat64(m.noPriceModel.WithLabelValues("openai", "gpt-7-2027-01-01")), 0)
	require.InDelta(t, 1, testutil.ToFloat64(m.noPriceModel.WithLabelValues("openai", "gpt-7")), 0, "requested model when none reported")
	require.InDelta(t, 1, testutil.ToFloat64(m.noPriceModel.WithLabelValues("openai", "other")), 0)
	require.InDelta(t, 3, testutil.ToFloat64(m.noPrice.WithLabelValues("openai")), 0)
	require.Equal(t, 3, testutil.CollectAndCount(m.noPriceModel))
}

package budget

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/usage"
)

// A million calls priced like gpt-4o-mini ($0.15 in, $0.60 out per million
// tokens), half of them the 4.35 µ$ call of 21 input and 2 output tokens:
// the ledger's total and the budget's settled spend equal the sum of the
// cost records (the float USD each record carries) to the cent. Whole
// micro-dollars would have counted the small call as 4 µ$, $0.175 low over
// the half million of them.
func TestMillionCallsSumToTheCostRecords(t *testing.T) {
	calls := 1_000_000
	if testing.Short() {
		calls = 100_000
	}
	cfg := Config{Enabled: true, PerUser: Policy{Default: Limits{MonthlyUSD: MaxUSD}}}
	lim := newMemory(t, cfg)
	led := usage.NewMemoryLedger(cfg.Ledger())
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(4, 35))
	records := new(big.Float).SetPrec(200)
	var micros int64
	for i := range calls {
		in, out := int64(21), int64(2)
		if i%2 == 1 {
			in, out = 1+rng.Int64N(3000), rng.Int64N(800)
		}
		usd := float64(in)*0.15/1e6 + float64(out)*0.6/1e6 // what a cost record carries
		records.Add(records, big.NewFloat(usd))
		micros += int64(math.Round(usd * 1e6))

		d, err := lim.Reserve(ctx, Request{User: "alice", EstimatedUSD: usd * 2}, t0)
		require.NoError(t, err)
		require.True(t, d.Allowed)
		require.NoError(t, lim.Settle(ctx, d.Reservation, usd, t0))
		require.NoError(t, led.Record(ctx, usage.Usage{User: "alice", Provider: "openai", Model: "gpt-4o-mini",
			CostNanos: Nanos(usd), InputTokens: in, OutputTokens: out, CostKnown: true}, t0))
	}
	want, _ := records.Float64()
	rep, err := led.Report(ctx, t0)
	require.NoError(t, err)
	got := rep.Month.Total
	require.EqualValues(t, calls, got.Requests)
	require.InDelta(t, want, got.CostUSD, 0.005, "ledger equals the records to the cent")
	require.InDelta(t, want, USD(got.CostNanos), 1e-6, "and in fact to the micro-dollar")

	require.Greater(t, math.Abs(want-float64(micros)/1e6), 0.01*float64(calls)/1e6, "micro-dollars drift by cents")
	budgetSpend := budgetSpendOf(t, lim, "alice")
	require.Equal(t, got.CostNanos, budgetSpend, "budget spend equals the ledger exactly")
}

// budgetSpendOf reads a user's month spend by asking for more than the
// limit allows: the refusal reports the spend.
func budgetSpendOf(t *testing.T, l *Quota, user string) int64 {
	t.Helper()
	d, err := l.Reserve(t.Context(), Request{User: user, EstimatedUSD: MaxUSD}, t0)
	require.NoError(t, err)
	require.False(t, d.Allowed)
	return d.SpendNanos
}

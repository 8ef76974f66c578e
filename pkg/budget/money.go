package budget

import (
	"fmt"
	"math"
	"strings"
)

// NanosPerUSD is the number of nano-dollars in one US dollar. Every amount
// is kept internally, in memory and in Redis, as an integer number of
// nano-dollars: fine enough that a call of 4.35 µ$ counts as 4350, so the
// sum over any number of calls equals the sum of their cost records to far
// below a cent, and integer sums never drift.
const NanosPerUSD = 1_000_000_000

// MaxUSD is the largest amount, in USD, that [Nanos] converts and
// [Config.Validate] accepts as a limit ($1e9, 1e18 nano-dollars, inside
// int64 with room for overspend). Sums are exact integers everywhere; on
// Redis, the Lua comparison of a counter with its limit is exact up to
// 2^53 nano-dollars ($9,007,199) and within a few hundred nano-dollars
// above.
const MaxUSD = 1e9

// Nanos converts usd to nano-dollars, rounding to the nearest one. NaN,
// negative and zero amounts give 0; amounts above [MaxUSD] give MaxUSD. It
// rounds as cost.Breakdown.Nanos does: settle a budget with the cost in USD
// and record [Usage.CostNanos] from the same breakdown, and budgets, the
// ledger and the cost records agree.
func Nanos(usd float64) int64 {
	if !(usd > 0) { // also NaN
		return 0
	}
	if usd >= MaxUSD {
		return MaxUSD * NanosPerUSD
	}
	return int64(math.Round(usd * NanosPerUSD))
}

// USD converts nano-dollars to dollars (for JSON; exact for every amount
// below 2^53 nano-dollars up to float formatting).
func USD(nanos int64) float64 { return float64(nanos) / NanosPerUSD }

// FormatNanos renders nano-dollars as an exact decimal USD amount without
// trailing zeros: 1500000000 is "1.5", 4350 is "0.00000435", 0 is "0". Use
// it for the X-Cost-Limit-USD and X-Cost-Spend-USD headers.
func FormatNanos(nanos int64) string {
	sign, u := "", uint64(nanos)
	if nanos < 0 {
		sign, u = "-", -u
	}
	s := fmt.Sprintf("%s%d.%09d", sign, u/NanosPerUSD, u%NanosPerUSD)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}

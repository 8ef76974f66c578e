package budget

import (
	"math"
	"strconv"
)

// MicrosPerUSD is the number of micro-dollars in one US dollar. Every amount
// is kept internally, in memory and in Redis, as an integer number of
// micro-dollars, so sums are exact and never drift.
const MicrosPerUSD = 1_000_000

// MaxUSD is the largest amount, in USD, that [Micros] converts and
// [Config.Validate] accepts as a limit ($1e9). It keeps every counter far
// below 2^53 micro-dollars, the range Redis Lua numbers hold exactly.
const MaxUSD = 1e9

// Micros converts usd to micro-dollars, rounding to the nearest one. NaN,
// negative and zero amounts give 0; amounts above [MaxUSD] give MaxUSD. It is
// the only conversion the package uses: pass Micros(cost) to
// [Usage.CostMicros] and the same cost to [Limiter.Settle] and both stores
// agree to the micro-dollar.
func Micros(usd float64) int64 {
	if !(usd > 0) { // also NaN
		return 0
	}
	if usd >= MaxUSD {
		return MaxUSD * MicrosPerUSD
	}
	return int64(math.Round(usd * MicrosPerUSD))
}

// USD converts micro-dollars to dollars (for JSON and headers; exact for
// every amount below 2^53 micro-dollars up to float formatting).
func USD(micros int64) float64 { return float64(micros) / MicrosPerUSD }

// FormatMicros renders micro-dollars as an exact decimal USD amount without
// trailing zeros: 1500000 is "1.5", 1 is "0.000001", 0 is "0". Use it for
// the X-Cost-Limit-USD and X-Cost-Spend-USD headers.
func FormatMicros(micros int64) string {
	neg := micros < 0
	u := uint64(micros)
	if neg {
		u = -u
	}
	b := make([]byte, 0, 24)
	if neg {
		b = append(b, '-')
	}
	b = strconv.AppendUint(b, u/MicrosPerUSD, 10)
	frac := u % MicrosPerUSD
	if frac == 0 {
		return string(b)
	}
	digits := strconv.AppendUint(make([]byte, 0, 6), frac, 10)
	b = append(b, '.')
	for range 6 - len(digits) {
		b = append(b, '0')
	}
	for len(digits) > 0 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
	}
	return string(append(b, digits...))
}

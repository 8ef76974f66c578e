// Package budget enforces daily and monthly USD spend limits per API key
// and per user before a call reaches the vendor. It is a policy on the
// [quota] engine, which defines the reservation lifecycle, the admission
// rule, the windows and the stores.
//
// The caller prices the request's estimate (estimated input plus expected
// output at the model's price), calls [Limiter.Reserve] before the vendor is
// contacted, and then settles the reservation exactly once:
// [Limiter.Settle] with the actual cost, or [Limiter.Cancel] when the call
// cost nothing (a 5xx, a local reply, a later guard refusing it).
// Independently, every finished request is added once to the usage ledger
// (pkg/usage, sharing this block's store settings: [Config.Ledger]),
// whether or not budgets are enforced. Time is always passed in.
//
//	d, err := lim.Reserve(ctx, budget.Request{User: "alice", KeyID: keyHash,
//		EstimatedUSD: est}, time.Now())
//	switch {
//	case err != nil && cfg.FailClosed(): // 503
//	case err != nil: // admit, unchecked
//	case !d.Allowed: // 402, X-Cost-Limit-Reason: d.Reason(),
//		// X-Cost-Limit-USD: budget.FormatNanos(d.LimitNanos),
//		// X-Cost-Spend-USD: budget.FormatNanos(d.SpendNanos)
//	default: // forward; later lim.Settle(ctx, d.Reservation, actualUSD, time.Now())
//		// and ledger.Record(ctx, usage.Usage{..., CostNanos: budget.Nanos(actualUSD)}, time.Now())
//	}
//
// A window's spend is the settled cost of its calls plus the estimates of
// the calls in flight; scopes are checked in the order of [Config], the
// day before the month. There is no optimistic first request: a budget is
// a cap on money, so a call whose estimate alone is above the remaining
// budget is refused rather than let through to overspend. When actual costs
// are at most their estimates, concurrent calls never overspend in
// aggregate, on one instance or many; a cost above its estimate is charged
// anyway (spend is never under-counted), the window can end above its limit
// by at most those differences, and the next request is refused. A
// reservation never settled (a crashed instance) keeps its estimate charged
// until its last window ends: the error is on the side of stopping spend.
//
// Amounts are integer nano-dollars everywhere ([NanosPerUSD]): settling
// with actualUSD while recording [Nanos](actualUSD) keeps budgets and the
// ledger equal to the nano-dollar.
//
// This package depends on no other package of the gateway but pkg/quota
// and pkg/usage.
package budget

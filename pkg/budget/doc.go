// Package budget enforces daily and monthly USD spend limits per API key
// and per user before a call reaches the vendor, on one instance (memory
// backend) or exactly across many (Redis backend).
//
// # Lifecycle
//
// The caller prices the request's estimate (estimated input plus expected
// output at the model's price), calls [Limiter.Reserve] before the vendor is
// contacted, and then settles the reservation exactly once:
// [Limiter.Settle] with the actual cost when the response is priced, or
// [Limiter.Cancel] when the call cost nothing (a 5xx, a local reply, a
// later guard such as the rate limiter refusing it). A second Settle or
// Cancel of the same reservation does nothing. Independently, every
// finished request is added once to the usage ledger with Record,
// whether or not budgets are enforced. Time is always passed in, so tests
// use fixed instants.
//
//	d, err := lim.Reserve(ctx, budget.Request{Provider: "openai", Model: "gpt-4o",
//		User: "alice", KeyID: keyHash, EstimatedUSD: est}, time.Now())
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
// # Budgets and the admission rule
//
// See [Config] for which budgets apply. Each key id and each user id has its
// own counters for the current UTC day and the current UTC calendar month;
// a request is checked against its key's budget, then its user's, the day
// before the month, and the first refusing window is reported in the
// [Decision]. A window's spend is the settled cost of its calls plus the
// estimates of the calls still in flight. A budget refuses a request when
//
//   - spend >= limit (the budget is used up; this refuses even a request
//     estimated at $0), or
//   - spend + estimate > limit (the call would pass the limit if it cost
//     what was estimated).
//
// There is no optimistic first request (the rate limiter has one): a
// budget is a cap on money, so a call whose estimate alone is above the
// whole remaining budget is refused rather than let through to overspend.
// A budget of $X therefore admits calls until their spend reaches X. Because
// in-flight calls count at their estimate, concurrent calls never overspend
// in aggregate when actual costs are at most the estimates, on one instance
// or many. When an actual cost comes out above its estimate, Settle charges
// the difference anyway (spend is never under-counted) and the window can
// end above its limit by at most those differences; the next request is then
// refused. Admission is all-or-nothing: a refusal charges no window.
//
// Settle replaces the estimate with the actual cost in each charged window
// that has not rotated since; a window that has ended keeps the estimate.
// Spend never goes below 0. A reservation that is never settled (a crashed
// instance) keeps its estimate charged until its last window ends: the
// error is on the side of stopping spend. Budgets do not hold an estimate
// past settlement (the reference proxy held it for 30 s, even for requests
// rejected later).
//
// # Money
//
// Amounts are integer nano-dollars everywhere inside the package ([Nanos]
// rounds a USD amount to the nearest one), added with integer HINCRBY on
// Redis, so sums across instances are exact. Settling with actualUSD and
// recording [Nanos](actualUSD) keep budgets and the ledger equal to the
// nano-dollar.
//
// # Backends
//
// Budgets run on the [quota] engine: "memory" is per process (a single
// instance; spend is lost on restart) and bounded ([Config.MaxScopes],
// [Config.MaxUsageNames]); "redis" is exact across instances on a single
// server, Sentinel or Cluster. Backend failures return errors wrapping
// [ErrBackendUnavailable]; for budgets the caller applies
// [Config.FailMode]. The package never logs: [Hooks] report health
// transitions and Status serves /health.
//
// # Ledger
//
// The spend ledger behind GET /usage is pkg/usage; it shares this block's
// backend, Redis and key prefix ([Config.Ledger]).
//
// This package depends on no other package of the gateway but pkg/quota
// and pkg/usage.
package budget

// Package quota is the engine under rate limits and budgets: fixed-window
// counters in any unit (requests, tokens, nano-dollars) over named scopes,
// with all-or-nothing reservation across scopes, settlement exactly once
// and release on abort.
//
// A policy (pkg/ratelimit, pkg/budget) decides what to count and which
// scopes apply: it builds one [Check] per (scope, window) with a limit per
// [Metric], and asks a [Store] to [Store.Reserve] the request's amounts in
// all of them. Only if every check admits are all of them charged; a
// refusal charges nothing and names the first refusing check in plan order.
// The reservation is later adjusted exactly once with [Store.Adjust]: the
// difference between the actual and the reserved amounts on settlement, or
// minus the reserved amounts on abort. A second Adjust of the same
// reservation id does nothing.
//
// # Admission rule
//
// A check refuses metric j when its limit is positive and
//
//	used >= limit  or  used + amount > limit
//
// except that a metric marked [Metric.Optimistic] is not checked while its
// window holds 0 (the first request of a window passes even when its
// estimate alone is above the limit).
//
// # Windows
//
// Windows are fixed and aligned to UTC ([Minute], [Day], [Month]); each
// counter is stamped with its window index, so nothing carries across a
// boundary. Adjustments apply only to windows that have not rotated since
// the reservation; counters never go below 0.
//
// # Stores
//
// [Memory] is per process and bounded. [Redis] is shared and exact across
// instances on a single server, Sentinel or Cluster: every scope's keys
// carry the scope as hash tag, a reservation sends one Lua script per slot
// it touches (in parallel) and releases what it took when another slot
// refuses. Both are tested by one suite. Store failures return errors
// wrapping [ErrUnavailable]; [Local] applies fail mode local, and the
// Redis store retries failed adjustments in the background.
package quota

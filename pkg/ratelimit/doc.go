// Package ratelimit admits LLM requests against fixed-window request and
// token limits, per user, per API key, per model, per provider and
// globally. It is a policy on the [quota] engine, which defines the
// reservation lifecycle, the admission rule, the windows and the stores.
//
// The caller estimates a request's tokens, calls [Limiter.Reserve] before
// the vendor is contacted, and then settles the reservation exactly once:
// [Limiter.Settle] with the billable usage ([Config.Billable]), or
// [Limiter.Cancel] when the request failed without consuming quota (a 5xx,
// an Envoy local reply). Time is always passed in.
//
//	d, err := lim.Reserve(ctx, ratelimit.Request{Provider: "openai", Model: "gpt-4o",
//		User: "alice", KeyID: keyHash, InputTokens: est}, time.Now())
//	switch {
//	case err != nil && cfg.FailClosed(): // 503
//	case err != nil: // admit, unlimited
//	case !d.Allowed: // 429 with d.Scope, d.Metric, d.Window, d.Limit, d.Remaining, d.RetryAfter
//	default: // forward; later lim.Settle(ctx, d.Reservation, cfg.Billable(in, out), time.Now())
//	}
//
// Every window counts requests (checked strictly) and tokens (optimistic
// first request: a window that has charged no tokens admits any charge, so
// an over-estimate never blocks a window outright). Checks run in the
// scope order of [Config], minute before day, requests before tokens; the
// first refusing one is reported in the [Decision].
//
// pkg/correction learns per provider and model how far estimates are from
// reported usage, so estimates improve with traffic.
//
// This package depends on no other package of the gateway but pkg/quota.
package ratelimit

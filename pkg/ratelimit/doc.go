// Package ratelimit admits LLM requests against fixed-window request and
// token limits, per user, per API key, per model, per provider and
// globally, on one instance (memory backend) or exactly across many (Redis
// backend).
//
// # Lifecycle
//
// The caller estimates a request's tokens, calls [Limiter.Reserve] before
// the vendor is contacted, and then settles the reservation exactly once:
// [Limiter.Settle] with the billable usage when the vendor reports it
// ([Config.Billable]), or [Limiter.Cancel] when the request failed without
// consuming quota (a 5xx, an Envoy local reply). A second Settle or Cancel
// of the same reservation does nothing. Time is always passed in, so tests
// use fixed instants.
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
// # Scopes and limits
//
// See [Config] for which scopes apply. [Config.Limits] are per identity:
// every user id and every API key id has its own counters. Overrides
// replace the whole Limits of a user or key. Shared caps are explicit:
// [Config.Global], [Config.PerProvider] and [Overrides.PerModel]. A request
// without a user id or key skips that scope.
//
// # Admission
//
// Windows are fixed UTC minutes and days, counted on the [quota] engine.
// Checks run in order (global, provider, model, key, user; minute before
// day; requests before tokens) and the first failing one is reported in the
// [Decision]. A request is refused when requests + 1 > request limit, or
// when tokens > 0 and (tokens >= token limit or tokens + charge > token
// limit): the "tokens > 0" clause is the optimistic first request, so an
// over-estimate never blocks a window outright. Admission is
// all-or-nothing. The charge is the estimated input tokens, plus, with
// [Config.CountOutputTokens], the request's output cap or
// [Config.DefaultMaxOutputTokens]; Settle replaces it with the actual count
// in each charged window that has not rotated since.
//
// # Backends
//
// "memory" is per process (single instance only) and bounded
// ([Config.MaxScopes]); "redis" is exact across instances on a single
// server, Sentinel or Cluster (see [quota.Redis]). Backend failures return
// errors wrapping [ErrBackendUnavailable]; the caller applies
// [Config.FailMode]. The package never logs: [Hooks] report health
// transitions and [Limiter.Status] serves /health.
//
// [Corrector] learns per provider and model how far estimates are from
// reported usage, so estimates improve with traffic.
//
// This package depends on no other package of the gateway but pkg/quota.
package ratelimit

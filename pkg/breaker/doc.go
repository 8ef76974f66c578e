// Package breaker is the gateway's circuit breaker for LLM vendors: it
// classifies vendor responses, keeps a circuit per "<provider>:<model>"
// key, and builds the degraded signal clients use to fall back to another
// provider.
//
// # Use
//
// The API is two-step, matching the ext_proc phases (gobreaker's TwoStep
// shape with time passed in):
//
//	adm, err := b.Allow(ctx, provider, model, now)   // request body: model known
//	if !adm.Allowed { reply DegradedResponse(provider, b.Signal(), SourceProxy) }
//	...
//	class := Classify(provider, status, header, body, envoyLocal)
//	v, err := b.Report(ctx, adm, Outcome{Class: class, Attempts: failed, Terminal: true}, now)
//	if v.Degrade { replace the response with DegradedResponse(provider, b.Signal(), SourceUpstream) }
//
// # State machine
//
// A closed key opens when failures inside the sliding window reach the
// threshold. An open key fast-fails until its cooldown ends; then exactly
// one probe is admitted (single flight across every instance sharing the
// store, through a lease that expires so a probe that never reports cannot
// wedge the key). A successful probe closes the key and clears its window;
// a degraded probe re-opens it for a full cooldown; a caller error, rate
// limit or cancellation on the probe releases the slot and changes nothing
// (a 4xx says nothing about the provider's health, seed §12.6).
//
// Global rate limits escalate to degraded once they keep arriving on a key
// across requests for the escalation window (first-seen kept in the store;
// gaps as long as the window, or a success, restart the clock). OpenAI's
// insufficient_quota force-opens the provider-wide key "<provider>", which
// Allow checks next to the model key; nothing else ever writes that key, so
// body-less requests (model "" → "<provider>:_unknown") cannot trip the
// whole provider (seed §12.1).
//
// Retry contribution: "on" counts every failed degraded attempt (a fully
// failing request with 2 retries counts 3, not the seed's 4, which counted
// the last attempt twice); "log" reports attempts through Hooks.OnAttempt
// only; "off" ignores them. In all modes the terminal failure counts once.
//
// Mode "log" runs the same state machine, probes included, but Allow
// always admits (Admission.WouldReject tells what enforce would have done)
// and Report never asks for a replacement.
//
// # Backends
//
// [Memory] serves one instance and stays bounded under attacker-chosen
// model names. [Redis] shares state between instances with one Lua script
// per call, keys under a per-provider hash tag (Redis Cluster safe), and
// one EVALSHA per Allow. A Breaker on Redis falls back to a private memory
// store while Redis is unreachable and returns when it answers again
// ([Breaker.Status]). Both backends store deadlines in the callers' clock
// and evaluate them against later calls' now, so expiry behaves the same on
// both; the shared test suite runs against each.
//
// The package never logs and never imports metrics: observability goes
// through [Hooks]. It does not know Envoy or ext_proc; the processor maps
// Admission and Verdict to ImmediateResponse and header/body mutations.
package breaker

package gateway

import (
	"context"
	"strings"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
)

// failoverSection is the /health "failover" section: per chain, the circuit
// of every target and where a new call would go now, as admission decides
// it (pkg/processor, stream.failOver): the requested target when its
// circuit admits; otherwise, when the chain fails over on circuit_open, the
// first target whose provider the gateway serves and whose circuit admits.
// The breaker is only peeked (no probe slot taken, no state moved), so
// reading /health never changes where calls go. Checks that depend on the
// call (its API, the gateway key's permissions, a cross-vendor hop needing
// an OpenAI chat-completions request) are not known here and may skip a
// target for a given call. served reports whether the gateway serves a
// provider; b may be nil (no breaker: every circuit admits).
func failoverSection(chains *failover.Set, b *breaker.Breaker, served func(provider string) bool, now func() time.Time) func(context.Context) any {
	return func(ctx context.Context) any {
		if !chains.Enabled() {
			return map[string]any{"enabled": false}
		}
		t := now()
		out := make([]map[string]any, 0, len(chains.Chains()))
		for _, c := range chains.Chains() {
			out = append(out, chainHealth(ctx, c, b, served, t))
		}
		return map[string]any{"enabled": true, "circuit_breaker": b.Enabled(), "chains": out}
	}
}

// chainHealth describes one chain. A chain keyed by a model pattern has no
// single requested circuit: it reports only where a call whose circuit is
// open would go (on_circuit_open); a literal key also reports serving, the
// target a new call for it would be served by ("" when none: the degraded
// 503).
func chainHealth(ctx context.Context, c *failover.Chain, b *breaker.Breaker, served func(string) bool, now time.Time) map[string]any {
	literal := !strings.ContainsAny(c.From.Model, "*?")
	var targets []map[string]any
	admits := func(tg failover.Target, requested bool) bool {
		entry := map[string]any{"target": tg.String()}
		if requested {
			entry["requested"] = true
		}
		targets = append(targets, entry)
		if !served(tg.Provider) {
			entry["served"] = false
			return false
		}
		v, err := b.Peek(ctx, tg.Provider, tg.Model, now)
		entry["circuit"] = v.State.String()
		if err != nil {
			entry["circuit"] = "unknown" // Allow fails open on a store error too
		}
		if !v.CooldownUntil.IsZero() {
			entry["cooldown_until"] = v.CooldownUntil.Unix()
		}
		entry["admits"] = v.Admits
		return v.Admits
	}
	requestedAdmits := literal && admits(c.From, true)
	next := ""
	for _, tg := range c.Targets {
		if admits(tg, false) && next == "" && c.On.Has(failover.CircuitOpen) {
			next = tg.String()
		}
	}
	out := map[string]any{"chain": c.Key, "targets": targets, "on_circuit_open": next}
	if literal {
		serving := next
		if requestedAdmits {
			serving = c.From.String()
		}
		out["serving"] = serving
	}
	return out
}

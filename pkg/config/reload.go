package config

import (
	"encoding/json"
	"reflect"
	"sort"
)

// Live reload (SIGHUP, see cmd/extproc) puts only these rules in force
// without a restart:
//
//   - features.rate_limiting limits: limits, overrides, global, per_provider;
//   - features.cost_tracking.budgets limits: per_key, per_user;
//   - prices: providers.<name>.models.
//
// Every other setting (listen addresses and log settings, which are
// environment variables; feature enablement; Redis addresses, key
// prefixes, fail modes, max scopes; the circuit breaker; cost record sinks;
// processing; provider enablement; count_output_tokens and
// default_max_output_tokens) is read once at start. A reload that changes
// one of them keeps the running value and reports its path
// ([RestartRequired]) so the change is not lost silently.

// RestartRequired lists, sorted, the JSON paths of the settings that differ
// between old and next and that a live reload cannot apply. Both must be
// loaded configurations ([Load]).
func RestartRequired(old, next Config) []string {
	a, b := live(old), live(next)
	var out []string
	diffPaths("", a, b, &out)
	sort.Strings(out)
	return out
}

// Reloadable returns running with next's live-reloadable rules (the list
// above) in force and everything else unchanged.
func Reloadable(running, next Config) Config {
	out := running
	out.Providers = make(map[string]Provider, len(running.Providers)+len(next.Providers))
	for name, p := range running.Providers {
		p.Models = nil
		out.Providers[name] = p
	}
	for name, p := range next.Providers {
		cur := out.Providers[name]
		cur.Models = p.Models
		out.Providers[name] = cur
	}
	rl, nrl := &out.Features.RateLimiting.Config, next.Features.RateLimiting.Config
	rl.Limits, rl.Overrides, rl.Global, rl.PerProvider = nrl.Limits, nrl.Overrides, nrl.Global, nrl.PerProvider
	b, nb := &out.Features.CostTracking.Budgets, next.Features.CostTracking.Budgets
	b.PerKey, b.PerUser = nb.PerKey, nb.PerUser
	return out
}

// live returns c as a JSON tree with the live-reloadable rules removed.
func live(c Config) any {
	var zero Config
	c = Reloadable(c, zero)
	for name, p := range c.Providers {
		if reflect.DeepEqual(p, Provider{}) {
			delete(c.Providers, name) // only models were set: nothing restart-only
		}
	}
	data, err := json.Marshal(c)
	if err != nil {
		return nil // a loaded Config always marshals
	}
	var tree any
	_ = json.Unmarshal(data, &tree)
	return tree
}

// diffPaths appends to out the paths under prefix where a and b differ,
// descending into objects so the report names the setting.
func diffPaths(prefix string, a, b any, out *[]string) {
	ma, okA := a.(map[string]any)
	mb, okB := b.(map[string]any)
	if !okA || !okB {
		if !reflect.DeepEqual(a, b) {
			*out = append(*out, prefix)
		}
		return
	}
	keys := map[string]struct{}{}
	for k := range ma {
		keys[k] = struct{}{}
	}
	for k := range mb {
		keys[k] = struct{}{}
	}
	for k := range keys {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		diffPaths(p, ma[k], mb[k], out)
	}
}

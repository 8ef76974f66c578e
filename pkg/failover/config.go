package failover

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Condition is a reason to move a call to the next target of its chain.
type Condition uint8

// Conditions, as named in the rules.
const (
	// CircuitOpen: the target's circuit (provider or model) is open in the
	// circuit breaker, locally or through its shared store.
	CircuitOpen Condition = 1 << iota
	// RateLimited: the vendor answered 429 (local or global rate limit).
	RateLimited
	// QuotaExhausted: the vendor's account quota is spent (OpenAI's
	// insufficient_quota 429, Gemini's RESOURCE_EXHAUSTED quota).
	QuotaExhausted
	// Upstream5xx: the vendor answered 5xx (Anthropic's 529 included), or
	// Envoy could not reach it.
	Upstream5xx
	// TimeoutBeforeFirstByte: no response header arrived in time.
	TimeoutBeforeFirstByte
)

// AllConditions is the default set: every condition fails over.
const AllConditions = CircuitOpen | RateLimited | QuotaExhausted | Upstream5xx | TimeoutBeforeFirstByte

var conditionNames = []struct {
	c    Condition
	name string
}{
	{CircuitOpen, "circuit_open"},
	{RateLimited, "rate_limited"},
	{QuotaExhausted, "quota_exhausted"},
	{Upstream5xx, "upstream_5xx"},
	{TimeoutBeforeFirstByte, "timeout_before_first_byte"},
}

// String returns the rule name of a single condition ("circuit_open"), or
// the names of a set joined by "," in declaration order.
func (c Condition) String() string {
	var names []string
	for _, n := range conditionNames {
		if c&n.c != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// Has reports whether every condition of x is in c.
func (c Condition) Has(x Condition) bool { return x != 0 && c&x == x }

// parseConditions reads rule names into a set. An empty list is the
// default, AllConditions.
func parseConditions(names []string) (Condition, error) {
	if len(names) == 0 {
		return AllConditions, nil
	}
	var set Condition
	for _, name := range names {
		found := false
		for _, n := range conditionNames {
			if n.name == name {
				set |= n.c
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown condition %q (want one of %s)", name, AllConditions)
		}
	}
	return set, nil
}

// Config is the features.failover block of the rules.
//
//	features:
//	  failover:
//	    enabled: true
//	    chains:
//	      "openai:gpt-4o": ["openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"]
//	      "gemini:gemini-2.5-*": ["gemini:gemini-2.5-flash"]
//	    conditions: [circuit_open, upstream_5xx]      # default: all five
//	    chain_conditions:
//	      "gemini:gemini-2.5-*": [circuit_open]
type Config struct {
	// Enabled turns failover on. Default false: an open circuit answers
	// the degraded 503 as without failover.
	Enabled bool `json:"enabled"`
	// Chains maps "provider:model" (the model may be a glob, see
	// pkg/glob) to the ordered "provider:model" targets that may serve a
	// call for it. Targets are literal model names.
	Chains map[string][]string `json:"chains"`
	// Conditions names what fails a call over, for every chain without
	// its own entry in ChainConditions. Default: all of circuit_open,
	// rate_limited, quota_exhausted, upstream_5xx and
	// timeout_before_first_byte.
	Conditions []string `json:"conditions"`
	// ChainConditions overrides Conditions per chain, keyed like Chains.
	ChainConditions map[string][]string `json:"chain_conditions"`
	// EnvoyChains lists the chain keys whose chain route and cluster are
	// in the Envoy configuration: a route matching the request header
	// x-llm-proxy-chain with the chain key, to a cluster with one host per
	// target at priorities 0 (the requested model), 1, 2... in the chain's
	// order, each naming its target in the host metadata
	// llm_proxy.failover/target (docs/failover.md). A call of such a chain
	// is sent there at admission, and Envoy retries it on the next target
	// before the first byte. Default none: every call keeps its vendor's
	// route, as in deployments without that Envoy configuration.
	EnvoyChains []string `json:"envoy_chains"`
}

// BeforeFirstByte are the conditions Envoy's retry policy on a chain
// route acts on: the vendor's 429, its 5xx, no response headers in time.
const BeforeFirstByte = RateLimited | Upstream5xx | TimeoutBeforeFirstByte

// ProviderInfo tells Compile what it needs to know about a provider named
// in a chain.
type ProviderInfo struct {
	// Known is true when the provider is configured.
	Known bool
	// HoldsCredentials is true when the gateway itself holds the vendor
	// key (providers.<p>.auth: gateway_keys). A cross-vendor hop needs
	// it: the client's key is for the vendor it asked.
	HoldsCredentials bool
}

// Compile validates c and builds the chains. lookup describes the providers
// the rules configure. Every problem is reported, each naming its chain.
// A disabled Config is checked the same way (a mistake is found before
// failover is turned on) and compiles to an empty Set.
func Compile(c Config, lookup func(provider string) ProviderInfo) (*Set, error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("features.failover.chains[%q]: %s", key, fmt.Sprintf(format, args...)))
	}
	defaults, err := parseConditions(c.Conditions)
	if err != nil {
		errs = append(errs, fmt.Errorf("features.failover.conditions: %w", err))
	}
	for key := range c.ChainConditions {
		if _, ok := c.Chains[key]; !ok {
			errs = append(errs, fmt.Errorf("features.failover.chain_conditions[%q]: no chain with this key", key))
		}
	}
	envoy := map[string]bool{}
	for _, key := range c.EnvoyChains {
		if _, ok := c.Chains[key]; !ok {
			errs = append(errs, fmt.Errorf("features.failover.envoy_chains: %q: no chain with this key", key))
		}
		envoy[key] = true
	}
	set := &Set{}
	keys := make([]string, 0, len(c.Chains))
	for key := range c.Chains {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		from, err := parseTarget(key, true)
		if err != nil {
			bad(key, "%v", err)
			continue
		}
		ch := &Chain{Key: key, From: from, On: defaults}
		if names, ok := c.ChainConditions[key]; ok {
			if ch.On, err = parseConditions(names); err != nil {
				bad(key, "conditions: %v", err)
			}
		}
		if envoy[key] {
			ch.Envoy = true
			if ch.On&BeforeFirstByte == 0 {
				bad(key, "in envoy_chains, but none of its conditions (%s) is one Envoy retries on (%s)", ch.On, BeforeFirstByte)
			}
		}
		fromInfo := lookup(from.Provider)
		if !fromInfo.Known {
			bad(key, "unknown provider %q", from.Provider)
		}
		targets := c.Chains[key]
		if len(targets) == 0 {
			bad(key, "no targets")
		}
		seen := map[Target]bool{}
		for i, s := range targets {
			t, err := parseTarget(s, false)
			if err != nil {
				bad(key, "target %d: %v", i, err)
				continue
			}
			switch info := lookup(t.Provider); {
			case seen[t]:
				bad(key, "target %d: %s is listed twice", i, t)
			case t == from:
				bad(key, "target %d: %s is the chain's own key (a cycle)", i, t)
			case !info.Known:
				bad(key, "target %d: unknown provider %q", i, t.Provider)
			case t.Provider != from.Provider && !info.HoldsCredentials:
				bad(key, "target %d: cross-vendor hop to %s needs providers.%s.auth: gateway_keys (the gateway must hold the %s key)", i, t, t.Provider, t.Provider)
			case t.Provider != from.Provider && fromInfo.Known && !fromInfo.HoldsCredentials:
				// A passthrough client's key is only checked by its own
				// vendor: serving it with the gateway's key of another
				// vendor would serve any key, valid or not.
				bad(key, "target %d: cross-vendor hop from %s needs providers.%s.auth: gateway_keys (only a gateway key can be served with another vendor's key)", i, from.Provider, from.Provider)
			}
			seen[t] = true
			ch.Targets = append(ch.Targets, t)
		}
		set.chains = append(set.chains, ch)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if !c.Enabled {
		return &Set{}, nil
	}
	set.sortForMatching()
	return set, nil
}

package failover

import (
	"fmt"
	"sort"
	"strings"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/glob"
)

// Target is one provider and model, written "provider:model" in the rules.
type Target struct {
	Provider string
	Model    string
}

// String returns "provider:model".
func (t Target) String() string { return t.Provider + ":" + t.Model }

// parseTarget reads "provider:model". The model may hold ':' (only the
// first one splits); pattern allows glob characters in the model.
func parseTarget(s string, pattern bool) (Target, error) {
	p, m, ok := strings.Cut(s, ":")
	switch {
	case !ok || p == "" || m == "":
		return Target{}, fmt.Errorf("%q is not provider:model", s)
	case strings.ToLower(p) != p || strings.ContainsAny(p, "*?/ "):
		return Target{}, fmt.Errorf("%q: provider must be a lower-case name", s)
	case !pattern && strings.ContainsAny(m, "*?"):
		return Target{}, fmt.Errorf("%q: a target names one model, not a pattern", s)
	}
	return Target{Provider: p, Model: m}, nil
}

// Chain is the failover list of one rules key.
type Chain struct {
	// Key is the rules key, "provider:model-pattern".
	Key string
	// From is Key parsed; From.Model may be a glob.
	From Target
	// Targets are tried in order after the requested target.
	Targets []Target
	// On is the set of conditions that move a call down this chain.
	On Condition
	// Envoy is true when the Envoy configuration carries this chain's
	// route and cluster (Config.EnvoyChains).
	Envoy bool
}

// literal reports whether the chain's model is a plain name.
func (c *Chain) literal() bool { return !strings.ContainsAny(c.From.Model, "*?") }

// Set is the compiled chains. The zero value and nil have no chains.
type Set struct {
	chains []*Chain // matching order: literal keys first, then longer patterns
}

func (s *Set) sortForMatching() {
	sort.SliceStable(s.chains, func(i, j int) bool {
		a, b := s.chains[i], s.chains[j]
		if a.literal() != b.literal() {
			return a.literal()
		}
		if len(a.From.Model) != len(b.From.Model) {
			return len(a.From.Model) > len(b.From.Model)
		}
		return a.Key < b.Key
	})
}

// Enabled reports whether any chain is in force.
func (s *Set) Enabled() bool { return s != nil && len(s.chains) > 0 }

// Chains returns the chains in matching order, for /health. The result is
// shared: do not modify it.
func (s *Set) Chains() []*Chain {
	if s == nil {
		return nil
	}
	return s.chains
}

// Lookup returns the chain for a requested provider and model: an exact
// key first, else the longest matching pattern (ties broken by key order,
// so the choice never depends on map order). ok is false when no chain
// applies. It does not allocate.
func (s *Set) Lookup(provider, model string) (*Chain, bool) {
	if s == nil || model == "" {
		return nil, false
	}
	for _, c := range s.chains {
		if c.From.Provider == provider && glob.Match(c.From.Model, model) {
			return c, true
		}
	}
	return nil, false
}

// HasEnvoyChains reports whether any chain in force has its route and
// cluster in the Envoy configuration.
func (s *Set) HasEnvoyChains() bool {
	if s == nil {
		return false
	}
	for _, c := range s.chains {
		if c.Envoy {
			return true
		}
	}
	return false
}

// Shape is what a request's API allows a failover to change.
type Shape uint8

// Shapes of requests.
const (
	// Native is a vendor's own API (Responses, Messages, generateContent,
	// embeddings...): only same-vendor targets can take it.
	Native Shape = iota
	// ChatCompletions is OpenAI's chat-completions shape, on OpenAI or on a
	// vendor's OpenAI-compatible endpoint: any vendor can take it.
	ChatCompletions
)

// Candidates appends to dst the targets that can serve a call for
// requested, in chain order: the requested target itself is skipped (a
// pattern key may match one of its own targets), and so is every
// cross-vendor target when shape is Native.
func (c *Chain) Candidates(dst []Target, requested Target, shape Shape) []Target {
	for _, t := range c.Targets {
		if t == requested {
			continue
		}
		if t.Provider != requested.Provider && shape != ChatCompletions {
			continue
		}
		dst = append(dst, t)
	}
	return dst
}

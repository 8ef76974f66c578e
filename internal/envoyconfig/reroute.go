package envoyconfig

import (
	"errors"
	"fmt"
	"strings"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
)

// Reroute is a :path a failover at admission sets with clear_route_cache,
// and where Envoy's re-selected route must send it.
type Reroute struct {
	// From is the request's original :path, To the one failover sets
	// (provider prefix, /meta/{user}/ and query included).
	From, To string
	// Vendor is the target's provider: its route, cluster and host must
	// take To.
	Vendor string
	// UpstreamPath is To as the vendor must receive it: without
	// /meta/{user} and the provider prefix, query kept.
	UpstreamPath string
}

// rerouteSources are the vendor APIs a call can fail over from, with the
// shape failover.Rewrite reads them as.
var rerouteSources = []struct {
	provider, model, path, query string
	shape                        failover.Shape
}{
	{"openai", "gpt-4o", "/v1/chat/completions", "", failover.ChatCompletions},
	{"openai", "gpt-4o", "/v1/responses", "", failover.Native},
	{"openai", "text-embedding-3-small", "/v1/embeddings", "", failover.Native},
	{"anthropic", "claude-sonnet-4-5", "/v1/messages", "beta=true", failover.Native},
	{"anthropic", "claude-sonnet-4-5", "/v1/chat/completions", "", failover.ChatCompletions},
	{"gemini", "gemini-2.5-pro", "/v1beta/models/gemini-2.5-pro:generateContent", "", failover.Native},
	{"gemini", "gemini-2.5-pro", "/v1beta/models/gemini-2.5-pro:streamGenerateContent", "alt=sse", failover.Native},
	{"gemini", "gemini-2.5-pro", "/v1beta/tunedModels/my-tune:generateContent", "", failover.Native},
	{"gemini", "gemini-2.5-pro", "/v1beta/openai/chat/completions", "", failover.ChatCompletions},
}

// rerouteTargets is one target per vendor.
var rerouteTargets = []failover.Target{
	{Provider: "openai", Model: "gpt-4o-mini"},
	{Provider: "anthropic", Model: "claude-haiku-4-5"},
	{Provider: "gemini", Model: "gemini-2.5-flash"},
}

// ReroutePaths returns every kind of :path failover.Rewrite produces for
// a re-route at admission: each vendor API the server fails over from,
// without and with a /meta/{user}/ prefix (and a query where the API has
// one), to a target of each vendor that can take it. The paths come from
// failover.Rewrite itself, so a change there shows up in every route test
// built on this. It is pure and safe for concurrent use.
func ReroutePaths() ([]Reroute, error) {
	var out []Reroute
	for _, src := range rerouteSources {
		for _, user := range []string{"", "alice@example.com"} {
			for _, t := range rerouteTargets {
				from := failover.Target{Provider: src.provider, Model: src.model}
				if t.Provider == from.Provider && t.Model == from.Model {
					continue
				}
				req := failover.Request{From: from, User: user, Path: src.path, RawQuery: src.query, Shape: src.shape,
					Body: []byte(`{"model":"` + src.model + `"}`)}
				rw, err := failover.Rewrite(req, t)
				if errors.Is(err, failover.ErrCannotRewrite) {
					continue
				}
				if err != nil {
					return nil, fmt.Errorf("rewrite %s%s for %s: %w", src.provider, src.path, t, err)
				}
				prefix := "/" + t.Provider
				if user != "" {
					prefix = "/meta/" + user + prefix
				}
				up, ok := strings.CutPrefix(rw.Path, prefix)
				if !ok {
					return nil, fmt.Errorf("rewritten path %s lacks %s", rw.Path, prefix)
				}
				out = append(out, Reroute{From: pathOf(user, src.provider, src.path, src.query), To: rw.Path, Vendor: t.Provider, UpstreamPath: up})
			}
		}
	}
	return out, nil
}

func pathOf(user, provider, path, query string) string {
	p := "/" + provider + path
	if user != "" {
		p = "/meta/" + user + p
	}
	if query != "" {
		p += "?" + query
	}
	return p
}

package envoyconfig_test

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoyconfig"
)

func TestMatchRouteAndRewritePath(t *testing.T) {
	vh := &routev3.VirtualHost{}
	require.NoError(t, envoyconfig.UnmarshalYAML([]byte(`
name: v
domains: ["*"]
routes:
- name: exact
  match: {path: /health}
  route: {cluster: c}
- name: chain
  match: {prefix: /, headers: [{name: x-chain, string_match: {exact: a}}]}
  route: {cluster: c}
- name: not-b
  match: {prefix: /x/, headers: [{name: x-b, present_match: true, invert_match: true}]}
  route: {cluster: c, prefix_rewrite: /y/}
- name: regex
  match: {safe_regex: {regex: "^/meta/[^/]+/v/.*"}}
  route: {cluster: c, regex_rewrite: {pattern: {regex: "^/meta/([^/]+)/v/"}, substitution: "/\\1/$/"}}
- name: separated
  match: {path_separated_prefix: /sep}
  route: {cluster: c, prefix_rewrite: /s}
- name: prefix
  match: {prefix: /p/}
  route: {cluster: c, prefix_rewrite: /}
`), vh))
	require.NoError(t, envoyconfig.ValidateMessage(vh))
	rs := vh.GetRoutes()
	tests := []struct {
		name, path, route, upstream string
		headers                     map[string]string
	}{
		{name: "exact ignores the query", path: "/health?x=1", route: "exact", upstream: "/health?x=1"},
		{name: "exact header", path: "/p/a", headers: map[string]string{"x-chain": "a"}, route: "chain", upstream: "/p/a"},
		{name: "other header value", path: "/p/a", headers: map[string]string{"x-chain": "b"}, route: "prefix", upstream: "/a"},
		{name: "inverted present header absent", path: "/x/1", route: "not-b", upstream: "/y/1"},
		{name: "inverted present header present", path: "/x/1", headers: map[string]string{"x-b": ""}, route: ""},
		{name: "regex on the path without query, query kept, group and dollar", path: "/meta/u/v/k?q=1", route: "regex", upstream: "/u/$/k?q=1"},
		{name: "regex is whole-string", path: "/a/meta/u/v/k", route: ""},
		{name: "path separated prefix alone", path: "/sep", route: "separated", upstream: "/s"},
		{name: "path separated prefix segment", path: "/sep/a?b", route: "separated", upstream: "/s/a?b"},
		{name: "path separated prefix is no string prefix", path: "/separate", route: ""},
		{name: "prefix", path: "/p/v1/chat?x", route: "prefix", upstream: "/v1/chat?x"},
		{name: "prefix is matched without the query", path: "/p?/", route: ""},
		{name: "regex keeps the fragment", path: "/meta/u/v/k#f", route: "regex", upstream: "/u/$/k#f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := envoyconfig.MatchRoute(rs, tt.path, tt.headers)
			if tt.route == "" {
				require.ErrorIs(t, err, envoyconfig.ErrNoRoute)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.route, r.GetName())
			require.Equal(t, tt.upstream, rewrite(t, r, tt.path))
		})
	}
}

func TestMatchRouteRejectsWhatItCannotJudge(t *testing.T) {
	for name, r := range map[string]*routev3.Route{
		"connect matcher": {Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_ConnectMatcher_{}}},
		"regex header":    {Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "h"}}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := envoyconfig.MatchRoute([]*routev3.Route{r}, "/", map[string]string{"h": "v"})
			require.Error(t, err)
			require.NotErrorIs(t, err, envoyconfig.ErrNoRoute)
		})
	}
}

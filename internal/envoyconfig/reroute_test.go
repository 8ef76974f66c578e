package envoyconfig_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoyconfig"
)

func reroutes(t *testing.T) []envoyconfig.Reroute {
	t.Helper()
	rr, err := envoyconfig.ReroutePaths()
	require.NoError(t, err)
	return rr
}

// TestReroutePathsCoverEveryHop checks the generator yields the hops the
// route tests must cover: same-vendor for every API, cross-vendor only
// for chat completions, to each vendor's OpenAI-compatible endpoint, with
// and without /meta/{user}/.
func TestReroutePathsCoverEveryHop(t *testing.T) {
	got := map[string]bool{}
	for _, r := range reroutes(t) {
		got[r.To] = true
		fromVendor := strings.Split(strings.TrimPrefix(strings.TrimPrefix(r.From, "/meta/alice@example.com"), "/"), "/")[0]
		if fromVendor != r.Vendor {
			require.Contains(t, []string{"/v1/chat/completions", "/v1beta/openai/chat/completions"}, r.UpstreamPath,
				"%s -> %s: only chat completions cross vendors", r.From, r.To)
		}
	}
	for _, want := range []string{
		"/anthropic/v1/chat/completions",
		"/gemini/v1beta/openai/chat/completions",
		"/openai/v1/chat/completions",
		"/meta/alice@example.com/anthropic/v1/chat/completions",
		"/meta/alice@example.com/gemini/v1beta/openai/chat/completions",
		"/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
		"/gemini/v1beta/models/gemini-2.5-flash:generateContent",
		"/anthropic/v1/messages?beta=true",
		"/openai/v1/responses",
		"/openai/v1/embeddings",
	} {
		require.True(t, got[want], "no reroute to %s", want)
	}
}

// TestEnvoyYAMLRoutesEveryReroute checks every :path a failover at
// admission sets is taken, once Envoy re-selects the route, by the
// target vendor's route in envoy.yaml and envoy-mock.yaml: its cluster,
// its Host and the vendor's own path; with ext_proc not disabled there.
func TestEnvoyYAMLRoutesEveryReroute(t *testing.T) {
	for _, p := range []string{prodPath, mockPath} {
		rs := routes(t, load(t, p))
		for _, rr := range reroutes(t) {
			t.Run(p+rr.To, func(t *testing.T) {
				r := route(t, rs, rr.To)
				require.Equal(t, rr.Vendor, r.GetRoute().GetCluster())
				require.Equal(t, vendorHosts[rr.Vendor], r.GetRoute().GetHostRewriteLiteral())
				require.Equal(t, rr.UpstreamPath, rewrite(t, r, rr.To))
				require.False(t, extProcDisabled(t, r))
			})
		}
	}
}

// istioRoutes builds the gateway routes Istio generates from routing.yaml's
// VirtualService, as pilot/pkg/networking/core/route/route.go does for a
// VirtualService (not Gateway API) on a gateway: one route per http entry
// and match, in order, named after the entry; uri prefix -> prefix, regex
// -> safe_regex; rewrite.uri -> prefix_rewrite, rewrite.uriRegexRewrite ->
// regex_rewrite, rewrite.authority -> host_rewrite_literal; the one
// destination -> cluster outbound|<port>||<host>; per-route filter
// configs only for fault and CORS policies (neither is set here).
func istioRoutes(t *testing.T) []*routev3.Route {
	t.Helper()
	vs := findDoc(t, k8sDocs(t, istioDir+"routing.yaml"), "VirtualService")
	var out []*routev3.Route
	for _, h := range get(t, vs, "spec", "http").([]any) {
		entry := h.(map[string]any)
		for k := range entry {
			require.Contains(t, []string{"name", "match", "rewrite", "route", "timeout", "retries"}, k,
				"VirtualService field %s is not translated by this test", k)
		}
		dests := get(t, h, "route").([]any)
		require.Len(t, dests, 1, "one destination per entry")
		action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: fmt.Sprintf("outbound|%v||%v",
			get(t, dests[0], "destination", "port", "number"), get(t, dests[0], "destination", "host"))}}
		if rw, ok := entry["rewrite"].(map[string]any); ok {
			if re, ok := rw["uriRegexRewrite"].(map[string]any); ok {
				action.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
					Pattern: &matcherv3.RegexMatcher{Regex: re["match"].(string)}, Substitution: re["rewrite"].(string)}
			} else if uri, ok := rw["uri"].(string); ok {
				action.PrefixRewrite = uri
			}
			if a, ok := rw["authority"].(string); ok {
				action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: a}
			}
		}
		for _, m := range get(t, h, "match").([]any) {
			match := &routev3.RouteMatch{}
			switch uri := get(t, m, "uri").(map[string]any); {
			case uri["prefix"] != nil:
				match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: uri["prefix"].(string)}
			case uri["regex"] != nil:
				match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: uri["regex"].(string)}}
			default:
				t.Fatalf("uri match %v is not translated by this test", uri)
			}
			out = append(out, &routev3.Route{Name: get(t, h, "name").(string), Match: match, Action: &routev3.Route_Route{Route: action}})
		}
	}
	return out
}

// TestIstioRoutesEveryReroute checks every :path a failover at admission
// sets reaches, on the routes Istio generates from routing.yaml, the
// target vendor's cluster with the vendor's Host and path; that cluster
// originates TLS to the vendor (its DestinationRule, SNI and SAN the
// vendor's host) and runs the per-attempt ext_proc filter of
// envoyfilter.yaml.
func TestIstioRoutesEveryReroute(t *testing.T) {
	rs := istioRoutes(t)
	tlsHosts := map[string]bool{}
	for _, d := range k8sDocs(t, istioDir+"routing.yaml") {
		if d["kind"] != "DestinationRule" {
			continue
		}
		host := get(t, d, "spec", "host").(string)
		require.Equal(t, "SIMPLE", get(t, d, "spec", "trafficPolicy", "tls", "mode"), host)
		require.Equal(t, host, get(t, d, "spec", "trafficPolicy", "tls", "sni"), host)
		require.Equal(t, []any{host}, get(t, d, "spec", "trafficPolicy", "tls", "subjectAltNames"), host)
		tlsHosts[host] = true
	}
	upstreamFiltered := map[string]bool{}
	for _, p := range istioFilter(t).Spec.ConfigPatches {
		if p.ApplyTo == "CLUSTER" {
			upstreamFiltered[p.Match.Cluster.Name] = true
		}
	}
	for _, rr := range reroutes(t) {
		t.Run(rr.To, func(t *testing.T) {
			host := vendorHosts[rr.Vendor]
			r := route(t, rs, rr.To)
			require.Equal(t, "outbound|80||"+host, r.GetRoute().GetCluster())
			require.Equal(t, host, r.GetRoute().GetHostRewriteLiteral())
			require.Equal(t, rr.UpstreamPath, rewrite(t, r, rr.To))
			require.True(t, tlsHosts[host], "no TLS origination to %s", host)
			require.True(t, upstreamFiltered[r.GetRoute().GetCluster()], "no per-attempt ext_proc on %s", r.GetRoute().GetCluster())
		})
	}
}

// TestIstioExtProcKeepsRouteCacheClearable pins what lets Envoy re-select
// the route after the server's clear_route_cache on an Istio gateway: the
// EnvoyFilter's ext_proc neither disables clearing nor retains the route
// (processor_state.cc: RETAIN and disable_clear_route_cache ignore the
// flag), and nothing configures ext_proc per route (Istio writes per-route
// filter configs only for fault, CORS and stateful sessions; no
// HTTP_ROUTE patch adds one), so no route disables the filter or
// overrides its settings.
func TestIstioExtProcKeepsRouteCacheClearable(t *testing.T) {
	var filters int
	for _, p := range istioFilter(t).Spec.ConfigPatches {
		switch p.ApplyTo {
		case "HTTP_FILTER":
			f := &hcmv3.HttpFilter{}
			require.NoError(t, envoyconfig.UnmarshalYAML(p.Patch.Value, f))
			e := &extprocv3.ExternalProcessor{}
			require.NoError(t, f.GetTypedConfig().UnmarshalTo(e))
			require.False(t, e.GetDisableClearRouteCache())
			require.Equal(t, extprocv3.ExternalProcessor_DEFAULT, e.GetRouteCacheAction())
			require.False(t, f.GetDisabled(), "a filter disabled by default runs only where a route enables it")
			filters++
		case "HTTP_ROUTE", "VIRTUAL_HOST":
			r := &routev3.Route{}
			if p.ApplyTo == "VIRTUAL_HOST" {
				vh := &routev3.VirtualHost{}
				require.NoError(t, envoyconfig.UnmarshalYAML(p.Patch.Value, vh))
				require.Empty(t, vh.GetTypedPerFilterConfig())
				continue
			}
			require.NoError(t, envoyconfig.UnmarshalYAML(p.Patch.Value, r))
			require.Empty(t, r.GetTypedPerFilterConfig())
		}
	}
	require.Equal(t, 1, filters)
	for _, r := range istioRoutes(t) {
		require.Empty(t, r.GetTypedPerFilterConfig())
	}
}

func istioFilter(t *testing.T) envoyFilter {
	t.Helper()
	var ef envoyFilter
	data, err := os.ReadFile(istioDir + "envoyfilter.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &ef))
	return ef
}

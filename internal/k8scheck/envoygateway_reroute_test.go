package k8scheck_test

import (
	"reflect"
	"regexp"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoyconfig"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/k8scheck"
)

// egRoute is a route Envoy Gateway generates from one HTTPRoute rule's
// match, with the HTTPRoute and Backend it came from.
type egRoute struct {
	route          *routev3.Route
	httpRoute      string
	backend        string
	backendKindSvc bool
}

// egRoutes builds the Envoy routes Envoy Gateway v1.9.1 generates from the
// example's HTTPRoutes, following internal/xds/translator/route.go:
// buildXdsRouteMatch (Exact -> path; PathPrefix "/" -> prefix "/", any
// other -> path_separated_prefix without the trailing '/';
// RegularExpression -> safe_regex) and buildXdsURLRewriteAction
// (ReplacePrefixMatch "" or "/" on a prefix match -> regex_rewrite
// "^"+QuoteMeta(prefix)+`\/*` -> "/", the envoyproxy/envoy#26055 workaround;
// another ReplacePrefixMatch -> prefix_rewrite without its trailing '/';
// ReplaceFullPath -> regex_rewrite "^/.*$"; an HTTPRouteFilter's
// ReplaceRegexMatch -> regex_rewrite; hostname literal ->
// host_rewrite_literal; hostname type Backend -> auto_host_rewrite).
// Fields it does not translate fail the test instead of being ignored.
func egRoutes(t *testing.T, objs map[string]k8scheck.Object) []egRoute {
	t.Helper()
	var out []egRoute
	for key, o := range objs {
		hr, ok := o.Value.(*gwapiv1.HTTPRoute)
		if !ok {
			continue
		}
		for _, rule := range hr.Spec.Rules {
			require.Len(t, rule.BackendRefs, 1, key)
			action := &routev3.RouteAction{}
			var pathRW func(prefix string)
			for _, f := range rule.Filters {
				switch f.Type {
				case gwapiv1.HTTPRouteFilterURLRewrite:
					rw := f.URLRewrite
					if rw.Hostname != nil {
						action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: string(*rw.Hostname)}
					}
					if p := rw.Path; p != nil {
						switch p.Type {
						case gwapiv1.PrefixMatchHTTPPathModifier:
							repl := *p.ReplacePrefixMatch
							pathRW = func(prefix string) {
								if repl == "" || repl == "/" {
									action.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
										Pattern: &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(prefix) + `\/*`}, Substitution: "/"}
									return
								}
								action.PrefixRewrite = strings.TrimSuffix(repl, "/")
							}
						case gwapiv1.FullPathHTTPPathModifier:
							action.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
								Pattern: &matcherv3.RegexMatcher{Regex: "^/.*$"}, Substitution: *p.ReplaceFullPath}
						default:
							t.Fatalf("%s: path modifier %s", key, p.Type)
						}
					}
				case gwapiv1.HTTPRouteFilterExtensionRef:
					require.Equal(t, "HTTPRouteFilter", string(f.ExtensionRef.Kind), key)
					rf := egGet[egv1a1.HTTPRouteFilter](t, objs, "HTTPRouteFilter", string(f.ExtensionRef.Name))
					rw := rf.Spec.URLRewrite
					require.NotNil(t, rw, key)
					if h := rw.Hostname; h != nil {
						require.Equal(t, egv1a1.BackendHTTPHostnameModifier, h.Type, key)
						action.HostRewriteSpecifier = &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}
					}
					if p := rw.Path; p != nil {
						require.Equal(t, egv1a1.RegexHTTPPathModifier, p.Type, key)
						action.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
							Pattern: &matcherv3.RegexMatcher{Regex: p.ReplaceRegexMatch.Pattern}, Substitution: p.ReplaceRegexMatch.Substitution}
					}
				default:
					t.Fatalf("%s: filter %s is not translated by this test", key, f.Type)
				}
			}
			b := rule.BackendRefs[0]
			matches := rule.Matches
			if len(matches) == 0 {
				matches = []gwapiv1.HTTPRouteMatch{{}}
			}
			for _, m := range matches {
				require.Empty(t, m.Headers, key)
				require.Empty(t, m.QueryParams, key)
				match := &routev3.RouteMatch{}
				prefix := "/"
				switch typ, value := ptrOr(m.Path.Type, string(gwapiv1.PathMatchPathPrefix)), *m.Path.Value; typ {
				case string(gwapiv1.PathMatchExact):
					match.PathSpecifier = &routev3.RouteMatch_Path{Path: value}
				case string(gwapiv1.PathMatchRegularExpression):
					match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: value}}
				case string(gwapiv1.PathMatchPathPrefix):
					prefix = value
					if value == "/" {
						match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
					} else {
						match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: strings.TrimSuffix(value, "/")}
					}
				}
				if pathRW != nil {
					require.NotEmpty(t, match.GetPathSeparatedPrefix()+match.GetPrefix(), "%s: prefix rewrite needs a prefix match", key)
					pathRW(prefix)
				}
				out = append(out, egRoute{
					route:     &routev3.Route{Name: key + "/" + string(*m.Path.Value), Match: match, Action: &routev3.Route_Route{Route: action}},
					httpRoute: o.Name, backend: string(b.Name), backendKindSvc: ptrOr(b.Kind, "Service") == "Service",
				})
			}
		}
	}
	return out
}

// TestEnvoyGatewayRoutesEveryReroute checks every :path a failover at
// admission sets (envoyconfig.ReroutePaths, from failover.Rewrite) is
// taken on Envoy Gateway's routes by exactly one route, so the order
// Envoy Gateway sorts routes in (internal/gatewayapi/sort.go: Exact >
// RegularExpression > PathPrefix, then longer first) cannot change the
// answer: the target vendor's HTTPRoute, its Backend (the vendor's host
// on 443, TLS verified against that host), Host the vendor's, the path
// the vendor's own; the ext_proc policy and the retry policy both attach
// to that HTTPRoute.
func TestEnvoyGatewayRoutesEveryReroute(t *testing.T) {
	objs := egObjects(t)
	rs := egRoutes(t, objs)
	hosts := map[string]string{"openai": "api.openai.com", "anthropic": "api.anthropic.com", "gemini": "generativelanguage.googleapis.com"}
	targeted := func(kind, policy, route string) bool {
		var refs []gwapiv1.LocalPolicyTargetReferenceWithSectionName
		switch kind {
		case "EnvoyExtensionPolicy":
			refs = egGet[egv1a1.EnvoyExtensionPolicy](t, objs, kind, policy).Spec.TargetRefs
		case "BackendTrafficPolicy":
			refs = egGet[egv1a1.BackendTrafficPolicy](t, objs, kind, policy).Spec.TargetRefs
		}
		for _, r := range refs {
			if r.Kind == "HTTPRoute" && string(r.Name) == route {
				return true
			}
		}
		return false
	}
	reroutes, err := envoyconfig.ReroutePaths()
	require.NoError(t, err)
	for _, rr := range reroutes {
		t.Run(rr.To, func(t *testing.T) {
			var hits []egRoute
			for _, r := range rs {
				if _, err := envoyconfig.MatchRoute([]*routev3.Route{r.route}, rr.To, nil); err == nil {
					hits = append(hits, r)
				}
			}
			require.Len(t, hits, 1, "routes taking %s", rr.To)
			r := hits[0]
			host := hosts[rr.Vendor]
			require.Equal(t, rr.Vendor, r.httpRoute)
			require.False(t, r.backendKindSvc)
			require.Equal(t, rr.Vendor, r.backend)
			be := egGet[egv1a1.Backend](t, objs, "Backend", r.backend)
			require.Len(t, be.Spec.Endpoints, 1)
			require.Equal(t, host, be.Spec.Endpoints[0].FQDN.Hostname)
			require.Equal(t, int32(443), be.Spec.Endpoints[0].FQDN.Port)
			tls := egGet[gwapiv1.BackendTLSPolicy](t, objs, "BackendTLSPolicy", r.backend)
			require.Equal(t, host, string(tls.Spec.Validation.Hostname))
			require.Equal(t, "Backend", string(tls.Spec.TargetRefs[0].Kind))
			require.Equal(t, r.backend, string(tls.Spec.TargetRefs[0].Name))
			a := r.route.GetRoute()
			if a.GetAutoHostRewrite().GetValue() {
				// auto_host_rewrite: the Host is the Backend endpoint's name.
				require.Equal(t, host, be.Spec.Endpoints[0].FQDN.Hostname)
			} else {
				require.Equal(t, host, a.GetHostRewriteLiteral())
			}
			up, err := envoyconfig.RewritePath(r.route, rr.To)
			require.NoError(t, err)
			require.Equal(t, rr.UpstreamPath, up)
			require.True(t, targeted("EnvoyExtensionPolicy", "llm-proxy-extproc", r.httpRoute), "ext_proc not enabled on %s", r.httpRoute)
			require.True(t, targeted("BackendTrafficPolicy", r.httpRoute, r.httpRoute), "no retry policy on %s", r.httpRoute)
		})
	}
}

// TestEnvoyGatewayExtProcKeepsRouteCacheClearable pins why a re-route
// works behind Envoy Gateway v1.9.1: its translator
// (internal/xds/translator/extproc.go, extProcConfig) never sets
// route_cache_action or disable_clear_route_cache, and the
// EnvoyExtensionPolicy API has no field that could (checked here by
// reflection, so an upgrade that adds one fails until extProcOf and this
// test follow it). The filter it builds is then DEFAULT: Envoy clears the
// route cache when the server's body reply asks to.
func TestEnvoyGatewayExtProcKeepsRouteCacheClearable(t *testing.T) {
	var walk func(typ reflect.Type, path string)
	seen := map[reflect.Type]bool{}
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := strings.ToLower(f.Name)
			require.False(t, strings.Contains(name, "routecache") || strings.Contains(name, "clearroute"),
				"egv1a1.ExtProc%s.%s can change route cache clearing: translate it in extProcOf", path, f.Name)
			walk(f.Type, path+"."+f.Name)
		}
	}
	walk(reflect.TypeOf(egv1a1.ExtProc{}), "")

	objs := egObjects(t)
	for key := range objs {
		require.False(t, strings.HasPrefix(key, "EnvoyPatchPolicy/"), "%s may patch the ext_proc filter", key)
	}
	eep := egGet[egv1a1.EnvoyExtensionPolicy](t, objs, "EnvoyExtensionPolicy", "llm-proxy-extproc")
	e := extProcOf(eep.Spec.ExtProc[0])
	require.Equal(t, extprocv3.ExternalProcessor_DEFAULT, e.GetRouteCacheAction())
	require.False(t, e.GetDisableClearRouteCache())
}

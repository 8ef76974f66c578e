package envoyconfig_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoyconfig"
)

const (
	prodPath = "../../envoy/envoy.yaml"
	mockPath = "../../envoy/envoy-mock.yaml"
)

// vendorHosts maps each vendor cluster to the host the routes rewrite to.
var vendorHosts = map[string]string{
	"openai":    "api.openai.com",
	"anthropic": "api.anthropic.com",
	"gemini":    "generativelanguage.googleapis.com",
}

func load(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := envoyconfig.Load(path)
	require.NoError(t, err)
	return b
}

func TestEveryEnvoyConfigIsValid(t *testing.T) {
	paths, err := filepath.Glob("../../envoy/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(paths), 2, "envoy.yaml and envoy-mock.yaml")
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			require.NoError(t, envoyconfig.Validate(load(t, p)))
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			require.NoError(t, envoyconfig.ValidateYAML(data))
		})
	}
}

// contractMode is the filter-level processing mode fixed in docs/architecture.md.
func contractMode() *extprocv3.ProcessingMode {
	return &extprocv3.ProcessingMode{
		RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
		RequestBodyMode:     extprocv3.ProcessingMode_BUFFERED,
		RequestTrailerMode:  extprocv3.ProcessingMode_SKIP,
		ResponseHeaderMode:  extprocv3.ProcessingMode_SEND,
		ResponseBodyMode:    extprocv3.ProcessingMode_NONE,
		ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
	}
}

func TestExtProcFilterMatchesContract(t *testing.T) {
	for _, p := range []string{prodPath, mockPath} {
		t.Run(filepath.Base(p), func(t *testing.T) {
			e, err := envoyconfig.ExtProcFilter(load(t, p))
			require.NoError(t, err)
			require.Empty(t, cmp.Diff(contractMode(), e.GetProcessingMode(), protocmp.Transform()))
			require.True(t, e.GetAllowModeOverride())
			require.True(t, e.GetFailureModeAllow(), "fail-open is the documented choice")
			require.Equal(t, "ext_proc", e.GetGrpcService().GetEnvoyGrpc().GetClusterName())
			require.Nil(t, e.GetGrpcService().GetTimeout(), "a stream deadline would cut long completions")
			require.Equal(t, []string{envoyconfig.MetadataNamespace}, e.GetMetadataOptions().GetReceivingNamespaces().GetUntyped())
			require.Positive(t, e.GetMessageTimeout().AsDuration())
			require.Nil(t, e.GetMaxMessageTimeout(), "the server never sends override_message_timeout")
			require.NotEqual(t, extprocv3.ExternalProcessor_RETAIN, e.GetRouteCacheAction(),
				"failover at admission re-routes with clear_route_cache")
			require.False(t, e.GetDisableClearRouteCache(), "failover at admission re-routes with clear_route_cache")
		})
	}
}

func TestExtProcFilterErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(h *hcmv3.HttpConnectionManager)
		want string
	}{
		{
			name: "none",
			edit: func(h *hcmv3.HttpConnectionManager) { h.HttpFilters = h.HttpFilters[2:] },
			want: "no ext_proc",
		},
		{
			name: "two",
			edit: func(h *hcmv3.HttpConnectionManager) {
				h.HttpFilters = append([]*hcmv3.HttpFilter{h.HttpFilters[1]}, h.HttpFilters...)
			},
			want: "2 ext_proc",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := load(t, prodPath)
			editHCM(t, b, tt.edit)
			_, err := envoyconfig.ExtProcFilter(b)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// normaliseClusters removes what may differ between the production and the
// mock bootstrap: endpoint addresses and TLS.
func normaliseClusters(b *bootstrapv3.Bootstrap) {
	for _, c := range b.GetStaticResources().GetClusters() {
		c.TransportSocket = nil
		for _, le := range c.GetLoadAssignment().GetEndpoints() {
			for _, ep := range le.GetLbEndpoints() {
				ep.GetEndpoint().GetAddress().GetSocketAddress().Address = ""
				ep.GetEndpoint().GetAddress().GetSocketAddress().PortSpecifier = nil
			}
		}
	}
}

func TestMockBootstrapDoesNotDrift(t *testing.T) {
	prod, mock := load(t, prodPath), load(t, mockPath)
	normaliseClusters(prod)
	normaliseClusters(mock)
	require.Empty(t, cmp.Diff(prod, mock, protocmp.Transform()),
		"envoy-mock.yaml may differ from envoy.yaml only in cluster addresses and TLS")
}

func clustersByName(b *bootstrapv3.Bootstrap) map[string]*clusterv3.Cluster {
	out := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		out[c.GetName()] = c
	}
	return out
}

func endpoint(t *testing.T, c *clusterv3.Cluster) (string, uint32) {
	t.Helper()
	eps := c.GetLoadAssignment().GetEndpoints()
	require.Len(t, eps, 1)
	require.Len(t, eps[0].GetLbEndpoints(), 1)
	sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	return sa.GetAddress(), sa.GetPortValue()
}

func TestVendorClusters(t *testing.T) {
	prod, mock := clustersByName(load(t, prodPath)), clustersByName(load(t, mockPath))
	for name, host := range vendorHosts {
		t.Run(name, func(t *testing.T) {
			addr, port := endpoint(t, prod[name])
			require.Equal(t, host, addr)
			require.EqualValues(t, 443, port)
			tls := &tlsv3.UpstreamTlsContext{}
			require.NoError(t, prod[name].GetTransportSocket().GetTypedConfig().UnmarshalTo(tls))
			require.Equal(t, host, tls.GetSni())
			vc := tls.GetCommonTlsContext().GetValidationContext()
			require.Equal(t, "/etc/ssl/certs/ca-certificates.crt", vc.GetTrustedCa().GetFilename())
			require.Len(t, vc.GetMatchTypedSubjectAltNames(), 1)
			require.Equal(t, host, vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact())

			addr, port = endpoint(t, mock[name])
			require.Equal(t, "fakellm", addr)
			require.EqualValues(t, 8080, port)
			require.Nil(t, mock[name].GetTransportSocket(), "the fake vendor speaks plain HTTP")
		})
	}
	// docker-compose.yml's servers: the mock profile's runs the demo's rules.
	for server, cs := range map[string]map[string]*clusterv3.Cluster{"extproc": prod, "extproc-mock": mock} {
		addr, port := endpoint(t, cs["ext_proc"])
		require.Equal(t, server, addr)
		require.EqualValues(t, 50051, port)
		addr, port = endpoint(t, cs["extproc_admin"])
		require.Equal(t, server, addr)
		require.EqualValues(t, 9003, port)
	}
}

func TestFilterOrder(t *testing.T) {
	hcms, err := envoyconfig.HTTPConnectionManagers(load(t, prodPath))
	require.NoError(t, err)
	require.Len(t, hcms, 1)
	var names []string
	for _, f := range hcms[0].GetHttpFilters() {
		names = append(names, f.GetName())
	}
	// CORS before ext_proc: preflights are answered without reaching the server.
	require.Equal(t, []string{"envoy.filters.http.cors", "envoy.filters.http.ext_proc", "envoy.filters.http.router"}, names)
}

func routes(t *testing.T, b *bootstrapv3.Bootstrap) []*routev3.Route {
	t.Helper()
	hcms, err := envoyconfig.HTTPConnectionManagers(b)
	require.NoError(t, err)
	require.Len(t, hcms, 1)
	vhs := hcms[0].GetRouteConfig().GetVirtualHosts()
	require.Len(t, vhs, 1)
	return vhs[0].GetRoutes()
}

// route returns the route Envoy picks for path on a request without the
// headers routes match on.
func route(t *testing.T, rs []*routev3.Route, path string) *routev3.Route {
	t.Helper()
	return routeWith(t, rs, path, nil)
}

// routeWith is route for a request with headers.
func routeWith(t *testing.T, rs []*routev3.Route, path string, headers map[string]string) *routev3.Route {
	t.Helper()
	r, err := envoyconfig.MatchRoute(rs, path, headers)
	require.NoError(t, err)
	return r
}

// rewrite applies the route's path rewrite the way the router does.
func rewrite(t *testing.T, r *routev3.Route, path string) string {
	t.Helper()
	out, err := envoyconfig.RewritePath(r, path)
	require.NoError(t, err)
	return out
}

func extProcDisabled(t *testing.T, r *routev3.Route) bool {
	t.Helper()
	a, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_proc"]
	if !ok {
		return false
	}
	pr := &extprocv3.ExtProcPerRoute{}
	require.NoError(t, a.UnmarshalTo(pr))
	return pr.GetDisabled()
}

func TestRoutes(t *testing.T) {
	rs := routes(t, load(t, prodPath))
	tests := []struct {
		name, path, cluster, upstreamPath, host string
		extProc                                 bool
	}{
		{name: "openai", path: "/openai/v1/chat/completions", cluster: "openai", upstreamPath: "/v1/chat/completions", host: "api.openai.com", extProc: true},
		{name: "anthropic", path: "/anthropic/v1/messages", cluster: "anthropic", upstreamPath: "/v1/messages", host: "api.anthropic.com", extProc: true},
		{name: "gemini", path: "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent", cluster: "gemini", upstreamPath: "/v1beta/models/gemini-2.0-flash:streamGenerateContent", host: "generativelanguage.googleapis.com", extProc: true},
		{name: "meta openai", path: "/meta/user-42/openai/v1/responses", cluster: "openai", upstreamPath: "/v1/responses", host: "api.openai.com", extProc: true},
		{name: "meta anthropic", path: "/meta/alice@example.com/anthropic/v1/messages", cluster: "anthropic", upstreamPath: "/v1/messages", host: "api.anthropic.com", extProc: true},
		{name: "meta gemini", path: "/meta/u/gemini/v1beta/models/x:generateContent", cluster: "gemini", upstreamPath: "/v1beta/models/x:generateContent", host: "generativelanguage.googleapis.com", extProc: true},
		{name: "meta path segment named like a provider", path: "/meta/openai/gemini/v1beta/models", cluster: "gemini", upstreamPath: "/v1beta/models", host: "generativelanguage.googleapis.com", extProc: true},
		// The :path a failover at admission sets for a cross-vendor target
		// (pkg/failover.Rewrite) reaches that vendor's OpenAI-compatible
		// endpoint through the vendor's own route.
		{name: "failover to anthropic's OpenAI-compatible endpoint", path: "/anthropic/v1/chat/completions", cluster: "anthropic", upstreamPath: "/v1/chat/completions", host: "api.anthropic.com", extProc: true},
		{name: "failover to gemini's OpenAI-compatible endpoint", path: "/meta/u/gemini/v1beta/openai/chat/completions", cluster: "gemini", upstreamPath: "/v1beta/openai/chat/completions", host: "generativelanguage.googleapis.com", extProc: true},
		{name: "health", path: "/health", cluster: "extproc_admin", upstreamPath: "/health"},
		{name: "prefix without slash is not a provider", path: "/openaix/v1/chat", cluster: ""},
		{name: "meta without provider", path: "/meta/u/other/v1", cluster: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := route(t, rs, tt.path)
			require.Equal(t, tt.extProc, !extProcDisabled(t, r))
			if tt.cluster == "" {
				require.EqualValues(t, 404, r.GetDirectResponse().GetStatus())
				return
			}
			a := r.GetRoute()
			require.Equal(t, tt.cluster, a.GetCluster())
			require.Equal(t, tt.upstreamPath, rewrite(t, r, tt.path))
			require.Equal(t, tt.host, a.GetHostRewriteLiteral())
		})
	}
}

func TestProviderRoutePolicies(t *testing.T) {
	for _, r := range routes(t, load(t, prodPath)) {
		a := r.GetRoute()
		if _, vendor := vendorHosts[a.GetCluster()]; !vendor {
			continue
		}
		t.Run(r.GetName(), func(t *testing.T) {
			require.NotNil(t, a.GetTimeout())
			require.Zero(t, a.GetTimeout().AsDuration(), "route timeout 0 never cuts streams")
			require.Positive(t, a.GetIdleTimeout().AsDuration())
			rp := a.GetRetryPolicy()
			require.Equal(t, "5xx,reset,connect-failure,retriable-status-codes", rp.GetRetryOn())
			require.EqualValues(t, 2, rp.GetNumRetries().GetValue())
			require.Contains(t, rp.GetRetriableStatusCodes(), uint32(429))
			if a.GetCluster() == "anthropic" {
				require.Contains(t, rp.GetRetriableStatusCodes(), uint32(529))
			}
			require.Nil(t, rp.GetPerTryTimeout(), "a per-try timeout would cut streams")
			require.Nil(t, rp.GetPerTryIdleTimeout(),
				"Envoy re-arms it on every body chunk: it would cut a healthy stream with a longer gap")
			require.NotNil(t, rp.GetRetryBackOff())
			hdrs := rp.GetRateLimitedRetryBackOff().GetResetHeaders()
			require.Len(t, hdrs, 2)
			require.Equal(t, "retry-after", hdrs[0].GetName())
			require.Equal(t, routev3.RetryPolicy_SECONDS, hdrs[0].GetFormat())
			require.Equal(t, "x-ratelimit-reset", hdrs[1].GetName())
		})
	}
}

func TestListenerBufferLimit(t *testing.T) {
	b := load(t, prodPath)
	ls := b.GetStaticResources().GetListeners()
	require.Len(t, ls, 1)
	require.EqualValues(t, 9002, ls[0].GetAddress().GetSocketAddress().GetPortValue())
	// Bounds BUFFERED bodies; must exceed the response buffer cap in configs/base.yml.
	require.GreaterOrEqual(t, ls[0].GetPerConnectionBufferLimitBytes().GetValue(), uint32(10<<20))
	require.Equal(t, "127.0.0.1", b.GetAdmin().GetAddress().GetSocketAddress().GetAddress())
}

// editHCM decodes the first connection manager of b, applies edit and packs
// it back.
func editHCM(t *testing.T, b *bootstrapv3.Bootstrap, edit func(h *hcmv3.HttpConnectionManager)) {
	t.Helper()
	f := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0]
	h := &hcmv3.HttpConnectionManager{}
	require.NoError(t, f.GetTypedConfig().UnmarshalTo(h))
	edit(h)
	a, err := anypb.New(h)
	require.NoError(t, err)
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
}

// editExtProc decodes the ext_proc filter, applies edit and packs it back.
func editExtProc(t *testing.T, b *bootstrapv3.Bootstrap, edit func(e *extprocv3.ExternalProcessor)) {
	t.Helper()
	editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
		f := h.GetHttpFilters()[1]
		e := &extprocv3.ExternalProcessor{}
		require.NoError(t, f.GetTypedConfig().UnmarshalTo(e))
		edit(e)
		a, err := anypb.New(e)
		require.NoError(t, err)
		f.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}
	})
}

func cluster(b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	return clustersByName(b)[name]
}

func TestBrokenConfigsAreRejected(t *testing.T) {
	text := func(old, repl string) func(t *testing.T, src string) string {
		return func(t *testing.T, src string) string {
			t.Helper()
			require.Contains(t, src, old)
			return strings.Replace(src, old, repl, 1)
		}
	}
	tests := []struct {
		name string
		// Exactly one of text and edit is set.
		text func(t *testing.T, src string) string
		edit func(t *testing.T, b *bootstrapv3.Bootstrap)
		want []string
	}{
		{
			name: "field typo",
			text: text("stat_prefix: llm_gateway", "stat_prefx: llm_gateway"),
			want: []string{`unknown field "stat_prefx"`},
		},
		{
			name: "unknown @type",
			text: text("envoy.extensions.filters.http.cors.v3.Cors\n", "envoy.extensions.filters.http.cors.v3.Corz\n"),
			want: []string{"envoy.extensions.filters.http.cors.v3.Corz", "not found"},
		},
		{
			name: "invalid yaml",
			text: text("static_resources:", "static_resources: ["),
			want: []string{"yaml"},
		},
		{
			name: "empty grpc cluster_name",
			text: text("envoy_grpc: { cluster_name: ext_proc }", `envoy_grpc: { cluster_name: "" }`),
			want: []string{"ExternalProcessor", "ClusterName", "at least 1"},
		},
		{
			name: "route to a missing cluster",
			text: text("cluster: openai\n", "cluster: open-ai\n"),
			want: []string{`cluster "open-ai" names no cluster`, "routes[2](meta_openai)"},
		},
		{
			name: "grpc cluster missing",
			text: text("envoy_grpc: { cluster_name: ext_proc }", "envoy_grpc: { cluster_name: extproc }"),
			want: []string{`envoy_grpc.cluster_name "extproc" names no cluster`},
		},
		{
			name: "ext_proc cluster without http2",
			edit: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				c := cluster(b, "ext_proc")
				a, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
					UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
						ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
							ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{
								HttpProtocolOptions: &corev3.Http1ProtocolOptions{},
							},
						},
					},
				})
				require.NoError(t, err)
				c.TypedExtensionProtocolOptions["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] = a
			},
			want: []string{`cluster "ext_proc" is used for gRPC but does not speak HTTP/2`},
		},
		{
			name: "router not last",
			edit: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
					f := h.HttpFilters
					f[1], f[2] = f[2], f[1]
				})
			},
			want: []string{`router filter "envoy.filters.http.router" must be the last http filter, but "envoy.filters.http.ext_proc" follows it`},
		},
		{
			name: "no router",
			edit: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				editHCM(t, b, func(h *hcmv3.HttpConnectionManager) { h.HttpFilters = h.HttpFilters[:2] })
			},
			want: []string{"no router filter"},
		},
		{
			name: "duplicate filter name",
			edit: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
					h.HttpFilters = append([]*hcmv3.HttpFilter{h.HttpFilters[0]}, h.HttpFilters...)
				})
			},
			want: []string{`duplicate http filter name "envoy.filters.http.cors"`},
		},
		{
			name: "per-route config for a missing filter",
			text: text("typed_per_filter_config:\n                envoy.filters.http.cors:", "typed_per_filter_config:\n                envoy.filters.http.corz:"),
			want: []string{`typed_per_filter_config key "envoy.filters.http.corz" names no http filter`},
		},
		{
			name: "metadata namespace not received",
			text: text(`untyped: ["llm_proxy"]`, `untyped: ["llm.gateway"]`),
			want: []string{`receiving_namespaces.untyped must include "llm_proxy"`},
		},
		{
			name: "both grpc and http service",
			edit: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				editExtProc(t, b, func(e *extprocv3.ExternalProcessor) {
					e.HttpService = &extprocv3.ExtProcHttpService{}
				})
			},
			want: []string{"grpc_service and http_service are both set"},
		},
		{
			name: "neither grpc nor http service",
			edit: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				editExtProc(t, b, func(e *extprocv3.ExternalProcessor) { e.GrpcService = nil })
			},
			want: []string{"neither grpc_service nor http_service"},
		},
		{
			name: "full duplex with fail-open and no trailers",
			edit: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				editExtProc(t, b, func(e *extprocv3.ExternalProcessor) {
					e.ProcessingMode.RequestBodyMode = extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED
				})
			},
			want: []string{"requires request_trailer_mode SEND", "failure_mode_allow cannot be true"},
		},
		{
			name: "route cache settings conflict",
			edit: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				editExtProc(t, b, func(e *extprocv3.ExternalProcessor) {
					e.DisableClearRouteCache = true
					e.RouteCacheAction = extprocv3.ExternalProcessor_CLEAR
				})
			},
			want: []string{"disable_clear_route_cache and a non-DEFAULT route_cache_action"},
		},
		{
			name: "tls without validation",
			edit: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				c := cluster(b, "anthropic")
				a, err := anypb.New(&tlsv3.UpstreamTlsContext{Sni: "api.anthropic.com"})
				require.NoError(t, err)
				c.TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: a}
			},
			want: []string{"clusters[4](anthropic).transport_socket", "accepts any server certificate"},
		},
		{
			name: "tls without name check",
			text: text("            match_typed_subject_alt_names:\n            - san_type: DNS\n              matcher: { exact: api.openai.com }\n", ""),
			want: []string{"(openai).transport_socket", "not the server name"},
		},
		{
			name: "deprecated field",
			edit: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				cluster(b, "ext_proc").Http2ProtocolOptions = &corev3.Http2ProtocolOptions{} //nolint:staticcheck // the point of the test
			},
			want: []string{"envoy.config.cluster.v3.Cluster.http2_protocol_options is deprecated"},
		},
		{
			name: "duplicate cluster",
			edit: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				sr := b.GetStaticResources()
				sr.Clusters = append(sr.Clusters, proto.Clone(cluster(b, "gemini")).(*clusterv3.Cluster))
			},
			want: []string{`duplicate cluster name "gemini"`},
		},
		{
			name: "several problems are reported together",
			text: func(t *testing.T, src string) string {
				src = text("cluster: anthropic\n", "cluster: anthropics\n")(t, src)
				src = text(`untyped: ["llm_proxy"]`, `untyped: []`)(t, src)
				return text("connect_timeout: 1s", "connect_timeout: -1s")(t, src)
			},
			want: []string{`"anthropics" names no cluster`, `must include "llm_proxy"`, "ConnectTimeout"},
		},
	}
	src, err := os.ReadFile(prodPath)
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.text != nil {
				err = envoyconfig.ValidateYAML([]byte(tt.text(t, string(src))))
			} else {
				b := load(t, prodPath)
				tt.edit(t, b)
				err = envoyconfig.Validate(b)
			}
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestBadInputNeverPanics(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "empty", in: "", want: "empty document"},
		{name: "null", in: "null", want: "empty document"},
		{name: "comment only", in: "# nothing\n", want: "empty document"},
		{name: "list", in: "- a\n- b\n", want: "Bootstrap"},
		{name: "scalar", in: "42", want: "Bootstrap"},
		{name: "unterminated", in: "{admin: ", want: "yaml"},
		{name: "wrong type", in: "static_resources: {clusters: 7}", want: "Bootstrap"},
		{name: "any without type", in: "static_resources: {listeners: [{name: l, filter_chains: [{filters: [{name: x, typed_config: {}}]}]}]}", want: "invalid empty type URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorContains(t, envoyconfig.ValidateYAML([]byte(tt.in)), tt.want)
		})
	}
	require.ErrorContains(t, envoyconfig.Validate(nil), "nil")
	require.ErrorContains(t, envoyconfig.ValidateMessage(nil), "nil")
	_, err := envoyconfig.Load("testdata/does-not-exist.yaml")
	require.ErrorContains(t, err, "read envoy config")
}

func TestUnregisteredAnyInBuiltConfig(t *testing.T) {
	b := load(t, prodPath)
	c := cluster(b, "openai")
	c.TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/example.Unknown"}}
	err := envoyconfig.Validate(b)
	require.ErrorContains(t, err, `cannot decode typed config "type.googleapis.com/example.Unknown"`)
}

func TestDynamicClustersAreNotResolved(t *testing.T) {
	src, err := os.ReadFile(prodPath)
	require.NoError(t, err)
	yml := strings.Replace(string(src), "cluster: openai\n", "cluster: from-cds\n", 1) +
		"dynamic_resources:\n  cds_config: { ads: {} }\n"
	require.NoError(t, envoyconfig.ValidateYAML([]byte(yml)))
}

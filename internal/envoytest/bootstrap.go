package envoytest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	previouspriov3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"

	// Typed configs a realistic bootstrap may embed; registering them lets
	// protojson resolve their Any @type.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dns/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/brotli/compressor/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/gzip/compressor/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/zstd/compressor/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/compressor/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/set_metadata/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// DefaultRouteTimeout is Envoy's route timeout when the field is absent.
const DefaultRouteTimeout = 15 * time.Second

// FromBootstrap reads an Envoy v3 bootstrap YAML (or JSON) file and builds
// the Config of its first listener's HTTP connection manager. clusterAddrs
// overrides cluster addresses by cluster name ("openai" ->
// "127.0.0.1:8080"); clusters keep their load_assignment address otherwise.
// TLS clusters are reached over plain HTTP.
func FromBootstrap(path string, clusterAddrs map[string]string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read bootstrap: %w", err)
	}
	cfg, err := ParseBootstrap(data, clusterAddrs)
	if err != nil {
		return Config{}, fmt.Errorf("bootstrap %s: %w", path, err)
	}
	return cfg, nil
}

// ParseBootstrap is FromBootstrap on in-memory YAML/JSON. Unknown fields,
// unregistered @types and protoc-gen-validate failures are errors.
func ParseBootstrap(data []byte, clusterAddrs map[string]string) (Config, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return Config{}, fmt.Errorf("yaml: %w", err)
	}
	var bs bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &bs); err != nil {
		return Config{}, fmt.Errorf("decode bootstrap: %w", err)
	}
	if err := bs.ValidateAll(); err != nil {
		return Config{}, fmt.Errorf("validate bootstrap: %w", err)
	}
	return fromBootstrap(&bs, clusterAddrs)
}

func fromBootstrap(bs *bootstrapv3.Bootstrap, clusterAddrs map[string]string) (Config, error) {
	var cfg Config
	sr := bs.GetStaticResources()
	if len(sr.GetListeners()) == 0 {
		return cfg, errors.New("no static listener")
	}
	ln := sr.GetListeners()[0]
	if sa := ln.GetAddress().GetSocketAddress(); sa != nil {
		cfg.ListenAddr = net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
	}
	if v := ln.GetPerConnectionBufferLimitBytes(); v != nil {
		cfg.BufferLimit = int(v.GetValue())
	}
	hcm, err := findHCM(ln.GetFilterChains())
	if err != nil {
		return cfg, err
	}
	cfg.UseRemoteAddress = hcm.GetUseRemoteAddress().GetValue()
	cfg.EnableTrailers = hcm.GetHttpProtocolOptions().GetEnableTrailers()
	if hcm.GetServerName() != "" {
		cfg.ServerName = hcm.GetServerName()
	}
	cfg.AccessLogFormat = accessLogFormat(hcm)

	cfg.Clusters = map[string]string{}
	for _, c := range sr.GetClusters() {
		if addr := clusterAddress(c); addr != "" {
			cfg.Clusters[c.GetName()] = addr
		}
		eps, err := clusterEndpoints(c, clusterAddrs)
		if err != nil {
			return cfg, fmt.Errorf("cluster %q: %w", c.GetName(), err)
		}
		if eps != nil {
			if cfg.ClusterEndpoints == nil {
				cfg.ClusterEndpoints = map[string][]Endpoint{}
			}
			cfg.ClusterEndpoints[c.GetName()] = eps
		}
	}
	for name, addr := range clusterAddrs {
		if _, ok := cfg.Clusters[name]; ok || !strings.Contains(name, ":") {
			cfg.Clusters[name] = addr
		}
	}
	for _, c := range sr.GetClusters() {
		cp, ok, err := clusterProtocol(c)
		if err != nil {
			return cfg, fmt.Errorf("cluster %q: %w", c.GetName(), err)
		}
		if ok {
			if cfg.ClusterProtocols == nil {
				cfg.ClusterProtocols = map[string]ClusterProtocol{}
			}
			cfg.ClusterProtocols[c.GetName()] = cp
		}
	}
	for _, c := range sr.GetClusters() {
		ep, ok, err := clusterUpstreamChain(c, cfg.Clusters)
		if err != nil {
			return cfg, fmt.Errorf("cluster %q: %w", c.GetName(), err)
		}
		if ok {
			if cfg.UpstreamExtProc == nil {
				cfg.UpstreamExtProc = map[string]*ExtProcConfig{}
			}
			cfg.UpstreamExtProc[c.GetName()] = ep
		}
	}

	extProcName := ""
	for _, hf := range hcm.GetHttpFilters() {
		tc := hf.GetTypedConfig()
		if tc == nil {
			continue
		}
		msg, err := tc.UnmarshalNew()
		if err != nil {
			return cfg, fmt.Errorf("http filter %q: %w", hf.GetName(), err)
		}
		if v, ok := msg.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				return cfg, fmt.Errorf("http filter %q: %w", hf.GetName(), err)
			}
		}
		switch m := msg.(type) {
		case *extprocv3.ExternalProcessor:
			if cfg.ExtProc != nil {
				return cfg, fmt.Errorf("http filter %q: more than one ext_proc filter: %w", hf.GetName(), errUnsupported)
			}
			ep, err := extProcConfig(hf.GetName(), m, cfg.Clusters)
			if err != nil {
				return cfg, fmt.Errorf("http filter %q: %w", hf.GetName(), err)
			}
			cfg.ExtProc = ep
			extProcName = hf.GetName()
		case *corsv3.Cors:
			if cfg.CORS != nil {
				return cfg, fmt.Errorf("http filter %q: more than one cors filter: %w", hf.GetName(), errUnsupported)
			}
			cfg.CORS = &CORSFilter{Name: hf.GetName(), AfterExtProc: cfg.ExtProc != nil}
		case *routerv3.Router:
			cfg.SuppressEnvoyHeaders = m.GetSuppressEnvoyHeaders()
			if len(m.GetUpstreamHttpFilters()) > 0 {
				ep, err := upstreamChain(m.GetUpstreamHttpFilters(), cfg.Clusters)
				if err != nil {
					return cfg, fmt.Errorf("router %q upstream_http_filters: %w", hf.GetName(), err)
				}
				cfg.RouterUpstreamExtProc = ep
			}
		}
	}

	rc := hcm.GetRouteConfig()
	if rc == nil {
		return cfg, fmt.Errorf("hcm without inline route_config (RDS): %w", errUnsupported)
	}
	for _, vh := range rc.GetVirtualHosts() {
		v := VirtualHost{
			Name:                          vh.GetName(),
			Domains:                       vh.GetDomains(),
			IncludeRequestAttemptCount:    vh.GetIncludeRequestAttemptCount(),
			IncludeAttemptCountInResponse: vh.GetIncludeAttemptCountInResponse(),
		}
		vhPerRoute, err := perRoute(vh.GetTypedPerFilterConfig(), extProcName)
		if err != nil {
			return cfg, fmt.Errorf("virtual host %q: %w", vh.GetName(), err)
		}
		if v.CORS, err = corsPerRoute(vh.GetTypedPerFilterConfig(), cfg.CORS); err != nil {
			return cfg, fmt.Errorf("virtual host %q: %w", vh.GetName(), err)
		}
		vhLegacyCORS, err := legacyCORS(vh.GetCors())
		if err != nil {
			return cfg, fmt.Errorf("virtual host %q cors: %w", vh.GetName(), err)
		}
		for i, r := range vh.GetRoutes() {
			rt, err := route(r, extProcName)
			if err != nil {
				return cfg, fmt.Errorf("virtual host %q route %d (%q): %w", vh.GetName(), i, r.GetName(), err)
			}
			if rt.CORS, err = corsPerRoute(r.GetTypedPerFilterConfig(), cfg.CORS); err != nil {
				return cfg, fmt.Errorf("virtual host %q route %d (%q): %w", vh.GetName(), i, r.GetName(), err)
			}
			if v.CORS == nil && rt.CORS == nil && cfg.CORS != nil {
				// Envoy reads the deprecated RouteAction/VirtualHost cors
				// fields only when no typed_per_filter_config policy applies.
				legacy, err := legacyCORS(r.GetRoute().GetCors())
				if err != nil {
					return cfg, fmt.Errorf("virtual host %q route %d (%q) cors: %w", vh.GetName(), i, r.GetName(), err)
				}
				rt.CORS = legacy
				if rt.CORS == nil {
					rt.CORS = vhLegacyCORS
				} else if vhLegacyCORS != nil {
					rt.CORS = mergeCORS(rt.CORS, vhLegacyCORS)
				}
			}
			if rt.ExtProc == nil {
				rt.ExtProc = vhPerRoute
			}
			v.Routes = append(v.Routes, rt)
		}
		cfg.VirtualHosts = append(cfg.VirtualHosts, v)
	}
	if err := cfg.validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// httpProtocolOptionsKey is the typed_extension_protocol_options key of
// envoy.extensions.upstreams.http.v3.HttpProtocolOptions.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// clusterProtocol reads the upstream protocol of a cluster from its
// HttpProtocolOptions (or the deprecated Cluster.http2_protocol_options /
// http_protocol_options). ok is false when the cluster sets none (HTTP/1.1
// with defaults). auto_config picks the protocol by ALPN, which the
// emulation (no TLS) cannot do: unsupported.
func clusterProtocol(c *clusterv3.Cluster) (ClusterProtocol, bool, error) {
	var cp ClusterProtocol
	a, found := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]
	if !found {
		// The deprecated Cluster fields still configure Envoy 1.37.
		switch {
		case c.GetHttp2ProtocolOptions() != nil:
			return ClusterProtocol{HTTP2: true}, true, nil
		case c.GetHttpProtocolOptions() != nil:
			return ClusterProtocol{EnableTrailers: c.GetHttpProtocolOptions().GetEnableTrailers()}, true, nil
		}
		return cp, false, nil
	}
	var opts upstreamhttpv3.HttpProtocolOptions
	if err := a.UnmarshalTo(&opts); err != nil {
		return cp, false, fmt.Errorf("%s: %w", httpProtocolOptionsKey, err)
	}
	switch {
	case opts.GetExplicitHttpConfig() != nil:
		e := opts.GetExplicitHttpConfig()
		cp.HTTP2 = e.GetHttp2ProtocolOptions() != nil
		cp.EnableTrailers = e.GetHttpProtocolOptions().GetEnableTrailers()
		if e.GetHttp3ProtocolOptions() != nil {
			return cp, false, fmt.Errorf("%s: http3_protocol_options: %w", httpProtocolOptionsKey, errUnsupported)
		}
	case opts.GetUseDownstreamProtocolConfig() != nil:
		// The emulated downstream is HTTP/1.1.
		cp.EnableTrailers = opts.GetUseDownstreamProtocolConfig().GetHttpProtocolOptions().GetEnableTrailers()
	case opts.GetAutoConfig() != nil:
		return cp, false, fmt.Errorf("%s: auto_config (ALPN): %w", httpProtocolOptionsKey, errUnsupported)
	}
	return cp, true, nil
}

// clusterUpstreamChain reads the cluster's upstream HTTP filter chain
// (HttpProtocolOptions.http_filters). ok is false when the cluster has no
// chain of its own (Envoy then uses the router's upstream_http_filters).
func clusterUpstreamChain(c *clusterv3.Cluster, clusters map[string]string) (*ExtProcConfig, bool, error) {
	a, found := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]
	if !found {
		return nil, false, nil
	}
	var opts upstreamhttpv3.HttpProtocolOptions
	if err := a.UnmarshalTo(&opts); err != nil {
		return nil, false, fmt.Errorf("%s: %w", httpProtocolOptionsKey, err)
	}
	if err := opts.ValidateAll(); err != nil {
		return nil, false, fmt.Errorf("%s: %w", httpProtocolOptionsKey, err)
	}
	if len(opts.GetHttpFilters()) == 0 {
		return nil, false, nil
	}
	ep, err := upstreamChain(opts.GetHttpFilters(), clusters)
	if err != nil {
		return nil, false, fmt.Errorf("http_filters: %w", err)
	}
	return ep, true, nil
}

// upstreamChain reads an upstream HTTP filter chain. Like Envoy's filter
// chain check it must end with the terminal envoy.filters.http.upstream_codec
// filter, which may appear nowhere else. It returns the chain's ext_proc
// filter (nil if none); more than one is unsupported. Other filters are
// parsed, validated and ignored.
func upstreamChain(filters []*hcmv3.HttpFilter, clusters map[string]string) (*ExtProcConfig, error) {
	var ep *ExtProcConfig
	for i, hf := range filters {
		tc := hf.GetTypedConfig()
		if tc == nil {
			return nil, fmt.Errorf("upstream http filter %q without typed_config: %w", hf.GetName(), errUnsupported)
		}
		msg, err := tc.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("upstream http filter %q: %w", hf.GetName(), err)
		}
		if v, ok := msg.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				return nil, fmt.Errorf("upstream http filter %q: %w", hf.GetName(), err)
			}
		}
		last := i == len(filters)-1
		switch m := msg.(type) {
		case *upstreamcodecv3.UpstreamCodec:
			if !last {
				return nil, fmt.Errorf("terminal filter %q (upstream_codec) must be the last upstream http filter", hf.GetName())
			}
			continue
		case *extprocv3.ExternalProcessor:
			if ep != nil {
				return nil, fmt.Errorf("upstream http filter %q: more than one ext_proc filter: %w", hf.GetName(), errUnsupported)
			}
			if ep, err = extProcConfig(hf.GetName(), m, clusters); err != nil {
				return nil, fmt.Errorf("upstream http filter %q: %w", hf.GetName(), err)
			}
		}
		if last {
			return nil, fmt.Errorf("non-terminal filter %q is the last upstream http filter: the chain must end with envoy.filters.http.upstream_codec", hf.GetName())
		}
	}
	return ep, nil
}

func findHCM(chains []*listenerv3.FilterChain) (*hcmv3.HttpConnectionManager, error) {
	for _, fc := range chains {
		for _, nf := range fc.GetFilters() {
			tc := nf.GetTypedConfig()
			if tc == nil {
				continue
			}
			var hcm hcmv3.HttpConnectionManager
			if !tc.MessageIs(&hcm) {
				continue
			}
			if err := tc.UnmarshalTo(&hcm); err != nil {
				return nil, fmt.Errorf("http_connection_manager: %w", err)
			}
			if err := hcm.ValidateAll(); err != nil {
				return nil, fmt.Errorf("http_connection_manager: %w", err)
			}
			return &hcm, nil
		}
	}
	return nil, errors.New("first listener has no http_connection_manager")
}

func accessLogFormat(hcm *hcmv3.HttpConnectionManager) map[string]any {
	for _, al := range hcm.GetAccessLog() {
		tc := al.GetTypedConfig()
		if tc == nil {
			continue
		}
		msg, err := tc.UnmarshalNew()
		if err != nil {
			continue
		}
		var sf *corev3.SubstitutionFormatString
		switch m := msg.(type) {
		case *streamv3.StdoutAccessLog:
			sf = m.GetLogFormat()
		case *streamv3.StderrAccessLog:
			sf = m.GetLogFormat()
		case *filev3.FileAccessLog:
			sf = m.GetLogFormat()
		}
		if js := sf.GetJsonFormat(); js != nil {
			return js.AsMap()
		}
	}
	return nil
}

// clusterEndpoints returns the hosts of a cluster whose load_assignment is
// more than one plain address (several endpoints, a priority above 0, an
// endpoint hostname or metadata); nil otherwise. overrides replaces an
// endpoint's address when it names the cluster (every endpoint) or the
// endpoint's own "host:port" (in any cluster).
func clusterEndpoints(c *clusterv3.Cluster, overrides map[string]string) ([]Endpoint, error) {
	lles := c.GetLoadAssignment().GetEndpoints()
	if c.GetType() == clusterv3.Cluster_LOGICAL_DNS && (len(lles) != 1 || len(lles[0].GetLbEndpoints()) != 1) {
		// logical_dns_cluster.cc refuses it at load.
		return nil, errors.New("LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint")
	}
	var eps []Endpoint
	rich := false
	for _, lle := range lles {
		for _, lb := range lle.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, fmt.Errorf("endpoint without socket_address: %w", errUnsupported)
			}
			addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
			ep := Endpoint{Address: addr, Priority: int(lle.GetPriority()), Hostname: lb.GetEndpoint().GetHostname()}
			if o, ok := overrides[addr]; ok {
				ep.Address = o
			}
			if o, ok := overrides[c.GetName()]; ok {
				ep.Address = o
			}
			if fm := lb.GetMetadata().GetFilterMetadata(); len(fm) > 0 {
				ep.Metadata = map[string]map[string]any{}
				for ns, st := range fm {
					ep.Metadata[ns] = st.AsMap()
				}
			}
			rich = rich || ep.Priority > 0 || ep.Hostname != "" || ep.Metadata != nil
			eps = append(eps, ep)
		}
	}
	if len(eps) < 2 && !rich {
		return nil, nil
	}
	return eps, nil
}

func clusterAddress(c *clusterv3.Cluster) string {
	for _, ep := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range ep.GetLbEndpoints() {
			if sa := lb.GetEndpoint().GetAddress().GetSocketAddress(); sa != nil {
				return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
			}
		}
	}
	return ""
}

func dur(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func extProcConfig(name string, m *extprocv3.ExternalProcessor, clusters map[string]string) (*ExtProcConfig, error) {
	ep := &ExtProcConfig{
		Name:                                    name,
		ProcessingMode:                          m.GetProcessingMode(),
		FailureModeAllow:                        m.GetFailureModeAllow(),
		MessageTimeout:                          dur(m.GetMessageTimeout()),
		MaxMessageTimeout:                       dur(m.GetMaxMessageTimeout()),
		AllowModeOverride:                       m.GetAllowModeOverride(),
		AllowedOverrideModes:                    m.GetAllowedOverrideModes(),
		SendBodyWithoutWaitingForHeaderResponse: m.GetSendBodyWithoutWaitingForHeaderResponse(),
		DisableImmediateResponse:                m.GetDisableImmediateResponse(),
		StatusOnError:                           int(m.GetStatusOnError().GetCode()),
		ReceivingNamespaces:                     m.GetMetadataOptions().GetReceivingNamespaces().GetUntyped(),
		ForwardingNamespaces:                    m.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(),
		RequestAttributes:                       m.GetRequestAttributes(),
		ResponseAttributes:                      m.GetResponseAttributes(),
		AllowedHeaders:                          stringMatchers(m.GetForwardRules().GetAllowedHeaders()),
		DisallowedHeaders:                       stringMatchers(m.GetForwardRules().GetDisallowedHeaders()),
		RouteCacheAction:                        m.GetRouteCacheAction().String(),
		DisableClearRouteCache:                  m.GetDisableClearRouteCache(),
		ObservabilityMode:                       m.GetObservabilityMode(),
	}
	if m.GetHttpService() != nil {
		return nil, fmt.Errorf("ext_proc http_service: %w", errUnsupported)
	}
	gs := m.GetGrpcService()
	switch {
	case gs.GetEnvoyGrpc() != nil:
		cn := gs.GetEnvoyGrpc().GetClusterName()
		addr, ok := clusters[cn]
		if !ok {
			return nil, fmt.Errorf("ext_proc cluster %q has no address", cn)
		}
		ep.Addr = addr
		ep.MaxReceiveMessageLength = int(gs.GetEnvoyGrpc().GetMaxReceiveMessageLength().GetValue())
	case gs.GetGoogleGrpc() != nil:
		ep.Addr = gs.GetGoogleGrpc().GetTargetUri()
	default:
		return nil, errors.New("ext_proc without grpc_service")
	}
	if mr := m.GetMutationRules(); mr != nil {
		ep.MutationRules = MutationRules{
			AllowAllRouting: mr.GetAllowAllRouting().GetValue(),
			AllowEnvoy:      mr.GetAllowEnvoy().GetValue(),
			DisallowSystem:  mr.GetDisallowSystem().GetValue(),
			DisallowAll:     mr.GetDisallowAll().GetValue(),
			DisallowIsError: mr.GetDisallowIsError().GetValue(),
		}
		var err error
		if re := mr.GetAllowExpression().GetRegex(); re != "" {
			if ep.MutationRules.AllowExpression, err = regexp.Compile("^(?:" + re + ")$"); err != nil {
				return nil, fmt.Errorf("allow_expression: %w", err)
			}
		}
		if re := mr.GetDisallowExpression().GetRegex(); re != "" {
			if ep.MutationRules.DisallowExpression, err = regexp.Compile("^(?:" + re + ")$"); err != nil {
				return nil, fmt.Errorf("disallow_expression: %w", err)
			}
		}
	}
	return ep, nil
}

func stringMatchers(l *matcherv3.ListStringMatcher) []StringMatcher {
	var out []StringMatcher
	for _, p := range l.GetPatterns() {
		out = append(out, stringMatcher(p))
	}
	return out
}

func stringMatcher(p *matcherv3.StringMatcher) StringMatcher {
	return StringMatcher{
		Exact:      p.GetExact(),
		Prefix:     p.GetPrefix(),
		Suffix:     p.GetSuffix(),
		Contains:   p.GetContains(),
		Regex:      p.GetSafeRegex().GetRegex(),
		IgnoreCase: p.GetIgnoreCase(),
	}
}

func route(r *routev3.Route, extProcName string) (Route, error) {
	rt := Route{Name: r.GetName()}
	m := r.GetMatch()
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		rt.Prefix = ps.Prefix
		if rt.Prefix == "" {
			rt.Prefix = "/"
		}
	case *routev3.RouteMatch_Path:
		rt.Path = ps.Path
	case *routev3.RouteMatch_SafeRegex:
		rt.Regex = ps.SafeRegex.GetRegex()
	case *routev3.RouteMatch_PathSeparatedPrefix:
		rt.PathSeparatedPrefix = ps.PathSeparatedPrefix
	default:
		return rt, fmt.Errorf("route match %T: %w", ps, errUnsupported)
	}
	if cs := m.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		rt.CaseInsensitive = true
	}
	for _, hm := range m.GetHeaders() {
		h := HeaderMatcher{Name: hm.GetName(), Invert: hm.GetInvertMatch()}
		switch s := hm.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_PresentMatch:
			p := s.PresentMatch
			h.Present = &p
		case *routev3.HeaderMatcher_StringMatch:
			sm := stringMatcher(s.StringMatch)
			h.Match = &sm
		case *routev3.HeaderMatcher_ExactMatch:
			h.Match = &StringMatcher{Exact: s.ExactMatch}
		case *routev3.HeaderMatcher_PrefixMatch:
			h.Match = &StringMatcher{Prefix: s.PrefixMatch}
		case *routev3.HeaderMatcher_SuffixMatch:
			h.Match = &StringMatcher{Suffix: s.SuffixMatch}
		case *routev3.HeaderMatcher_ContainsMatch:
			h.Match = &StringMatcher{Contains: s.ContainsMatch}
		case *routev3.HeaderMatcher_SafeRegexMatch:
			h.Match = &StringMatcher{Regex: s.SafeRegexMatch.GetRegex()}
		case nil:
		default:
			return rt, fmt.Errorf("header matcher %T: %w", s, errUnsupported)
		}
		rt.Headers = append(rt.Headers, h)
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		ra := a.Route
		cl, ok := ra.GetClusterSpecifier().(*routev3.RouteAction_Cluster)
		if !ok {
			return rt, fmt.Errorf("cluster specifier %T: %w", ra.GetClusterSpecifier(), errUnsupported)
		}
		rt.Cluster = cl.Cluster
		rt.PrefixRewrite = ra.GetPrefixRewrite()
		if rr := ra.GetRegexRewrite(); rr != nil {
			rt.RegexRewrite = &RegexRewrite{Pattern: rr.GetPattern().GetRegex(), Substitution: rr.GetSubstitution()}
		}
		rt.HostRewriteLiteral = ra.GetHostRewriteLiteral()
		rt.AutoHostRewrite = ra.GetAutoHostRewrite().GetValue()
		rt.Timeout = DefaultRouteTimeout
		if ra.GetTimeout() != nil {
			rt.Timeout = ra.GetTimeout().AsDuration()
		}
		if rp := ra.GetRetryPolicy(); rp != nil {
			p, err := retryPolicy(rp)
			if err != nil {
				return rt, err
			}
			rt.Retry = p
		}
	case *routev3.Route_DirectResponse:
		dr := a.DirectResponse
		body := dr.GetBody()
		text := body.GetInlineString()
		if b := body.GetInlineBytes(); len(b) > 0 {
			text = string(b)
		}
		if fn := body.GetFilename(); fn != "" {
			b, err := os.ReadFile(fn)
			if err != nil {
				return rt, fmt.Errorf("direct_response body: %w", err)
			}
			text = string(b)
		}
		rt.DirectResponse = &DirectResponse{Status: int(dr.GetStatus()), Body: text}
	default:
		return rt, fmt.Errorf("route action %T: %w", a, errUnsupported)
	}
	pr, err := perRoute(r.GetTypedPerFilterConfig(), extProcName)
	if err != nil {
		return rt, err
	}
	rt.ExtProc = pr
	return rt, nil
}

func retryPolicy(rp *routev3.RetryPolicy) (*RetryPolicy, error) {
	p := &RetryPolicy{
		RetryOn:           rp.GetRetryOn(),
		NumRetries:        1,
		PerTryTimeout:     dur(rp.GetPerTryTimeout()),
		PerTryIdleTimeout: dur(rp.GetPerTryIdleTimeout()),
		BaseInterval:      dur(rp.GetRetryBackOff().GetBaseInterval()),
		MaxInterval:       dur(rp.GetRetryBackOff().GetMaxInterval()),
	}
	if n := rp.GetNumRetries(); n != nil {
		p.NumRetries = int(n.GetValue())
		if p.NumRetries == 0 {
			p.RetryOn = "" // num_retries: 0 disables retries
		}
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		p.RetriableStatusCodes = append(p.RetriableStatusCodes, int(c))
	}
	if rl := rp.GetRateLimitedRetryBackOff(); rl != nil {
		for _, h := range rl.GetResetHeaders() {
			f := ResetSeconds
			if h.GetFormat() == routev3.RetryPolicy_UNIX_TIMESTAMP {
				f = ResetUnixTimestamp
			}
			p.RateLimitedResetHeaders = append(p.RateLimitedResetHeaders, ResetHeader{Name: h.GetName(), Format: f})
		}
		p.RateLimitedMaxInterval = dur(rl.GetMaxInterval())
	}
	if rpr := rp.GetRetryPriority(); rpr != nil {
		freq, err := retryPriority(rpr)
		if err != nil {
			return nil, fmt.Errorf("retry_priority %q: %w", rpr.GetName(), err)
		}
		p.PreviousPriorities = freq
	}
	if len(rp.GetRetryHostPredicate()) > 0 || rp.GetHostSelectionRetryMaxAttempts() > 0 {
		return nil, fmt.Errorf("retry_host_predicate: %w", errUnsupported)
	}
	return p, nil
}

// retryPriority reads a retry_priority: only
// envoy.retry_priorities.previous_priorities exists (Envoy refuses any
// other typed_config: no registered factory), and its config is validated
// as the factory's downcastAndValidate does (update_frequency > 0).
func retryPriority(rp *routev3.RetryPolicy_RetryPriority) (int, error) {
	tc := rp.GetTypedConfig()
	if tc == nil {
		return 0, errors.New("no typed_config")
	}
	msg, err := tc.UnmarshalNew()
	if err != nil {
		return 0, fmt.Errorf("typed_config: %w", err)
	}
	pp, ok := msg.(*previouspriov3.PreviousPrioritiesConfig)
	if !ok {
		return 0, fmt.Errorf("typed_config %s: no registered retry priority", proto.MessageName(msg))
	}
	if err := pp.ValidateAll(); err != nil {
		return 0, fmt.Errorf("typed_config: %w", err)
	}
	return int(pp.GetUpdateFrequency()), nil
}

// perRoute extracts the ext_proc ExtProcPerRoute from typed_per_filter_config.
func perRoute(tpfc map[string]*anypb.Any, name string) (*ExtProcPerRoute, error) {
	if name == "" {
		return nil, nil
	}
	a, ok := tpfc[name]
	if !ok {
		return nil, nil
	}
	msg, err := a.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("typed_per_filter_config %q: %w", name, err)
	}
	if fc, ok := msg.(*routev3.FilterConfig); ok {
		if fc.GetDisabled() {
			return &ExtProcPerRoute{Disabled: true}, nil
		}
		if fc.GetConfig() == nil {
			return nil, nil
		}
		if msg, err = fc.GetConfig().UnmarshalNew(); err != nil {
			return nil, fmt.Errorf("typed_per_filter_config %q: %w", name, err)
		}
	}
	pr, ok := msg.(*extprocv3.ExtProcPerRoute)
	if !ok {
		return nil, fmt.Errorf("typed_per_filter_config %q is %s, want ExtProcPerRoute", name, proto.MessageName(msg))
	}
	if err := pr.ValidateAll(); err != nil {
		return nil, fmt.Errorf("typed_per_filter_config %q: %w", name, err)
	}
	out := &ExtProcPerRoute{Disabled: pr.GetDisabled()}
	if o := pr.GetOverrides(); o != nil {
		out.ProcessingMode = o.GetProcessingMode()
		if fma := o.GetFailureModeAllow(); fma != nil {
			v := fma.GetValue()
			out.FailureModeAllow = &v
		}
		if mo := o.GetMetadataOptions(); mo != nil {
			out.OverrideMetadataOptions = true
			out.ReceivingNamespaces = mo.GetReceivingNamespaces().GetUntyped()
			out.ForwardingNamespaces = mo.GetForwardingNamespaces().GetUntyped()
		}
	}
	return out, nil
}

// corsPerRoute extracts the CORS filter's policy from typed_per_filter_config
// (the filter's configured name first, then the canonical name). It is nil
// when the chain has no CORS filter or no entry applies.
func corsPerRoute(tpfc map[string]*anypb.Any, cf *CORSFilter) (*CORSPolicy, error) {
	if cf == nil {
		return nil, nil
	}
	name := cf.Name
	a, ok := tpfc[name]
	if !ok {
		name = DefaultCORSFilterName
		if a, ok = tpfc[name]; !ok {
			return nil, nil
		}
	}
	msg, err := a.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("typed_per_filter_config %q: %w", name, err)
	}
	if fc, ok := msg.(*routev3.FilterConfig); ok {
		if fc.GetDisabled() {
			return &CORSPolicy{Disabled: true}, nil
		}
		if fc.GetConfig() == nil {
			return nil, nil
		}
		if msg, err = fc.GetConfig().UnmarshalNew(); err != nil {
			return nil, fmt.Errorf("typed_per_filter_config %q: %w", name, err)
		}
	}
	cp, ok := msg.(*corsv3.CorsPolicy)
	if !ok {
		return nil, fmt.Errorf("typed_per_filter_config %q is %s, want %s", name, proto.MessageName(msg), proto.MessageName(&corsv3.CorsPolicy{}))
	}
	if err := cp.ValidateAll(); err != nil {
		return nil, fmt.Errorf("typed_per_filter_config %q: %w", name, err)
	}
	return corsPolicy(cp)
}

// corsFields is what the typed and the deprecated CorsPolicy messages share.
type corsFields interface {
	GetAllowOriginStringMatch() []*matcherv3.StringMatcher
	GetAllowMethods() string
	GetAllowHeaders() string
	GetExposeHeaders() string
	GetMaxAge() string
	GetAllowCredentials() *wrapperspb.BoolValue
	GetForwardNotMatchingPreflights() *wrapperspb.BoolValue
	GetFilterEnabled() *corev3.RuntimeFractionalPercent
}

func corsPolicy(m corsFields) (*CORSPolicy, error) {
	p := &CORSPolicy{
		AllowMethods:  m.GetAllowMethods(),
		AllowHeaders:  m.GetAllowHeaders(),
		ExposeHeaders: m.GetExposeHeaders(),
		MaxAge:        m.GetMaxAge(),
	}
	for _, sm := range m.GetAllowOriginStringMatch() {
		if re := sm.GetSafeRegex().GetRegex(); re != "" {
			if _, err := regexp.Compile(re); err != nil {
				return nil, fmt.Errorf("allow_origin_string_match: %w", err)
			}
		}
		p.AllowOrigins = append(p.AllowOrigins, stringMatcher(sm))
	}
	if v := m.GetAllowCredentials(); v != nil {
		b := v.GetValue()
		p.AllowCredentials = &b
	}
	if v := m.GetForwardNotMatchingPreflights(); v != nil {
		b := v.GetValue()
		p.ForwardNotMatchingPreflights = &b
	}
	if fe := m.GetFilterEnabled(); fe != nil {
		switch n := fe.GetDefaultValue().GetNumerator(); {
		case n == 0:
			p.Disabled = true
		case n < fractionDenominator(fe.GetDefaultValue()):
			return nil, fmt.Errorf("cors filter_enabled below 100%%: %w", errUnsupported)
		}
	}
	return p, nil
}

func fractionDenominator(fp *typev3.FractionalPercent) uint32 {
	switch fp.GetDenominator() {
	case typev3.FractionalPercent_TEN_THOUSAND:
		return 10000
	case typev3.FractionalPercent_MILLION:
		return 1000000
	}
	return 100
}

// legacyCORS converts the deprecated route/virtual host cors field.
func legacyCORS(m *routev3.CorsPolicy) (*CORSPolicy, error) {
	if m == nil {
		return nil, nil
	}
	return corsPolicy(m)
}

// mergeCORS returns route with its empty fields taken from vhost, which is
// how Envoy resolves a route and a virtual host policy.
func mergeCORS(route, vhost *CORSPolicy) *CORSPolicy {
	p := *route
	if len(p.AllowOrigins) == 0 {
		p.AllowOrigins = vhost.AllowOrigins
	}
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&p.AllowMethods, vhost.AllowMethods}, {&p.AllowHeaders, vhost.AllowHeaders},
		{&p.ExposeHeaders, vhost.ExposeHeaders}, {&p.MaxAge, vhost.MaxAge},
	} {
		if *f.dst == "" {
			*f.dst = f.src
		}
	}
	if p.AllowCredentials == nil {
		p.AllowCredentials = vhost.AllowCredentials
	}
	if p.ForwardNotMatchingPreflights == nil {
		p.ForwardNotMatchingPreflights = vhost.ForwardNotMatchingPreflights
	}
	return &p
}

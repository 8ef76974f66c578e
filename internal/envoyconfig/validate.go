package envoyconfig

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// MetadataNamespace is the dynamic metadata namespace the ext_proc server
// writes. Every ext_proc filter must accept it in
// metadata_options.receiving_namespaces.untyped or Envoy drops the metadata.
const MetadataNamespace = "llm_proxy"

// ValidateYAML parses an Envoy bootstrap given as YAML or JSON and validates
// it with Validate. It is meant for configurations embedded in code or tests.
func ValidateYAML(data []byte) error {
	b, err := Parse(data)
	if err != nil {
		return err
	}
	return Validate(b)
}

// Validate checks a bootstrap the way Envoy would at start-up, as far as that
// is possible without Envoy: protoc-gen-validate rules on the bootstrap and on
// every nested Any, the message checks of ValidateMessage, and the
// cross-references: every cluster named by a route or an envoy_grpc service
// exists (when clusters are static), gRPC clusters speak HTTP/2, and cluster
// names are unique. It returns every problem found, joined with errors.Join,
// or nil.
func Validate(b *bootstrapv3.Bootstrap) error {
	if b == nil {
		return errors.New("nil bootstrap")
	}
	c := newChecker()
	walk("", b, true, c)
	c.crossCheck(b)
	return errors.Join(c.errs...)
}

// ValidateMessage checks one Envoy configuration message that is not a whole
// bootstrap, such as an HttpFilter or a Cluster patched in by an Istio
// EnvoyFilter: protoc-gen-validate rules on m and on every nested Any, no
// deprecated fields, and the message-local semantic checks (HTTP filter
// order in connection managers, ext_proc consistency and receiving
// namespace, per-route filter config keys, upstream TLS verification).
// Cluster references are not resolved. It returns every problem found, or nil.
func ValidateMessage(m proto.Message) error {
	if m == nil {
		return errors.New("nil message")
	}
	c := newChecker()
	walk("", m, true, c)
	return errors.Join(c.errs...)
}

// clusterRef is a cluster name used somewhere in the configuration.
type clusterRef struct {
	path  string
	name  string
	grpc  bool // used by an envoy_grpc service, so it must speak HTTP/2
	field string
}

// checker collects problems while walking a configuration tree.
type checker struct {
	errs []error
	refs []clusterRef
}

func newChecker() *checker { return &checker{} }

func (c *checker) addf(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	c.errs = append(c.errs, errors.New(msg))
}

func (c *checker) badAny(path string, a *anypb.Any, err error) {
	c.addf(path, "cannot decode typed config %q: %v", a.GetTypeUrl(), err)
}

func (c *checker) deprecated(path string, fd protoreflect.FieldDescriptor) {
	c.addf(path, "field %s is deprecated", fd.FullName())
}

func (c *checker) message(path string, m proto.Message, root bool) {
	if root {
		if v, ok := m.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				c.errs = append(c.errs, fmt.Errorf("%s: %w", orRoot(path, m), err))
			}
		}
	}
	switch t := m.(type) {
	case *hcmv3.HttpConnectionManager:
		c.checkHCM(path, t)
	case *extprocv3.ExternalProcessor:
		c.checkExtProc(path, t)
	case *extprocv3.ExtProcPerRoute:
		c.checkExtProcPerRoute(path, t)
	case *clusterv3.Cluster:
		c.checkClusterTLS(path, t)
	case *corev3.GrpcService:
		if eg := t.GetEnvoyGrpc(); eg != nil {
			c.refs = append(c.refs, clusterRef{path: path, name: eg.GetClusterName(), grpc: true, field: "envoy_grpc.cluster_name"})
		}
	case *routev3.RouteAction:
		if name := t.GetCluster(); name != "" {
			c.refs = append(c.refs, clusterRef{path: path, name: name, field: "cluster"})
		}
		for i, wc := range t.GetWeightedClusters().GetClusters() {
			if wc.GetName() != "" {
				c.refs = append(c.refs, clusterRef{path: fmt.Sprintf("%s.weighted_clusters.clusters[%d](%s)", path, i, wc.GetName()), name: wc.GetName(), field: "name"})
			}
		}
		for i, mp := range t.GetRequestMirrorPolicies() {
			if mp.GetCluster() != "" {
				c.refs = append(c.refs, clusterRef{path: fmt.Sprintf("%s.request_mirror_policies[%d]", path, i), name: mp.GetCluster(), field: "cluster"})
			}
		}
	}
}

func orRoot(path string, m proto.Message) string {
	if path != "" {
		return path
	}
	return string(m.ProtoReflect().Descriptor().Name())
}

// crossCheck resolves cluster references against the static clusters.
func (c *checker) crossCheck(b *bootstrapv3.Bootstrap) {
	clusters := map[string]*clusterv3.Cluster{}
	for i, cl := range b.GetStaticResources().GetClusters() {
		if _, dup := clusters[cl.GetName()]; dup {
			c.addf(fmt.Sprintf("static_resources.clusters[%d](%s)", i, cl.GetName()), "duplicate cluster name %q", cl.GetName())
			continue
		}
		clusters[cl.GetName()] = cl
	}
	// With CDS, clusters arrive at run time and references cannot be resolved.
	dynamic := b.GetDynamicResources().GetCdsConfig() != nil || b.GetDynamicResources().GetCdsResourcesLocator() != ""
	for _, r := range c.refs {
		if r.name == "" {
			continue // protoc-gen-validate reports empty names
		}
		cl, ok := clusters[r.name]
		if !ok {
			if !dynamic {
				c.addf(r.path, "%s %q names no cluster (have: %s)", r.field, r.name, strings.Join(sortedKeys(clusters), ", "))
			}
			continue
		}
		if r.grpc && !speaksHTTP2(cl) {
			c.addf(r.path, "cluster %q is used for gRPC but does not speak HTTP/2: set typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions].explicit_http_config.http2_protocol_options", r.name)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkHCM checks an HTTP connection manager's filter chain and the per-filter
// configuration keys of its inline route configuration.
func (c *checker) checkHCM(path string, h *hcmv3.HttpConnectionManager) {
	filters := h.GetHttpFilters()
	fp := join(path, "http_filters")
	if len(filters) == 0 {
		c.addf(fp, "no http filters: the router must be the last one")
		return
	}
	names := map[string]bool{}
	routerAt := -1
	for i, f := range filters {
		if names[f.GetName()] {
			c.addf(fmt.Sprintf("%s[%d]", fp, i), "duplicate http filter name %q", f.GetName())
		}
		names[f.GetName()] = true
		if isRouter(f) && routerAt < 0 {
			routerAt = i
		}
	}
	last := len(filters) - 1
	switch {
	case routerAt < 0:
		c.addf(fp, "no router filter: the last http filter is %q, it must be envoy.filters.http.router", filters[last].GetName())
	case routerAt != last:
		c.addf(fmt.Sprintf("%s[%d]", fp, routerAt), "router filter %q must be the last http filter, but %q follows it", filters[routerAt].GetName(), filters[last].GetName())
	}
	rc := h.GetRouteConfig()
	if rc == nil {
		return // RDS or scoped routes: keys cannot be checked here
	}
	rp := join(path, "route_config")
	check := func(p string, cfg map[string]*anypb.Any) {
		for _, k := range sortedKeys(cfg) {
			if !names[k] {
				c.addf(p, "typed_per_filter_config key %q names no http filter of this connection manager (have: %s)", k, strings.Join(sortedKeys(names), ", "))
			}
		}
	}
	for vi, vh := range rc.GetVirtualHosts() {
		vp := fmt.Sprintf("%s.virtual_hosts[%d]", rp, vi)
		if vh.GetName() != "" {
			vp += "(" + vh.GetName() + ")"
		}
		check(vp+".typed_per_filter_config", vh.GetTypedPerFilterConfig())
		for ri, r := range vh.GetRoutes() {
			p := fmt.Sprintf("%s.routes[%d]", vp, ri)
			if r.GetName() != "" {
				p += "(" + r.GetName() + ")"
			}
			check(p+".typed_per_filter_config", r.GetTypedPerFilterConfig())
			for wi, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
				check(fmt.Sprintf("%s.route.weighted_clusters.clusters[%d](%s).typed_per_filter_config", p, wi, wc.GetName()), wc.GetTypedPerFilterConfig())
			}
		}
	}
}

const routerType = "envoy.extensions.filters.http.router.v3.Router"

func isRouter(f *hcmv3.HttpFilter) bool {
	if tc := f.GetTypedConfig(); tc != nil {
		return string(tc.MessageName()) == routerType
	}
	return f.GetName() == "envoy.filters.http.router"
}

// checkExtProc mirrors the load-time checks of Envoy's ext_proc config.cc and
// the project's metadata contract.
func (c *checker) checkExtProc(path string, e *extprocv3.ExternalProcessor) {
	switch hasGRPC, hasHTTP := e.GetGrpcService() != nil, e.GetHttpService() != nil; {
	case hasGRPC && hasHTTP:
		c.addf(path, "ext_proc: grpc_service and http_service are both set; exactly one is allowed")
	case !hasGRPC && !hasHTTP:
		c.addf(path, "ext_proc: neither grpc_service nor http_service is set; exactly one is required")
	case hasHTTP:
		pm := e.GetProcessingMode()
		if pm.GetRequestBodyMode() != extprocv3.ProcessingMode_NONE || pm.GetResponseBodyMode() != extprocv3.ProcessingMode_NONE {
			c.addf(path, "ext_proc: http_service supports headers only; body modes must be NONE")
		}
		if pm.GetRequestTrailerMode() == extprocv3.ProcessingMode_SEND || pm.GetResponseTrailerMode() == extprocv3.ProcessingMode_SEND {
			c.addf(path, "ext_proc: http_service supports headers only; trailer modes must not be SEND")
		}
	}
	fds := c.checkProcessingMode(path+".processing_mode", e.GetProcessingMode())
	if fds && e.GetFailureModeAllow() {
		c.addf(path, "ext_proc: failure_mode_allow cannot be true with FULL_DUPLEX_STREAMED body mode")
	}
	if e.GetDisableClearRouteCache() && e.GetRouteCacheAction() != extprocv3.ExternalProcessor_DEFAULT {
		c.addf(path, "ext_proc: disable_clear_route_cache and a non-DEFAULT route_cache_action are mutually exclusive")
	}
	if !slices.Contains(e.GetMetadataOptions().GetReceivingNamespaces().GetUntyped(), MetadataNamespace) {
		c.addf(path, "ext_proc: metadata_options.receiving_namespaces.untyped must include %q, or Envoy drops the metadata the server writes", MetadataNamespace)
	}
}

func (c *checker) checkExtProcPerRoute(path string, p *extprocv3.ExtProcPerRoute) {
	o := p.GetOverrides()
	if o == nil {
		return
	}
	c.checkProcessingMode(path+".overrides.processing_mode", o.GetProcessingMode())
	if mo := o.GetMetadataOptions(); mo != nil && !slices.Contains(mo.GetReceivingNamespaces().GetUntyped(), MetadataNamespace) {
		c.addf(path, "ext_proc per-route overrides replace metadata_options; receiving_namespaces.untyped must still include %q", MetadataNamespace)
	}
}

// checkProcessingMode reports full-duplex modes without trailers and returns
// whether any body mode is FULL_DUPLEX_STREAMED.
func (c *checker) checkProcessingMode(path string, pm *extprocv3.ProcessingMode) bool {
	const fdsMode = extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED
	fds := false
	if pm.GetRequestBodyMode() == fdsMode {
		fds = true
		if pm.GetRequestTrailerMode() != extprocv3.ProcessingMode_SEND {
			c.addf(path, "ext_proc: request_body_mode FULL_DUPLEX_STREAMED requires request_trailer_mode SEND")
		}
	}
	if pm.GetResponseBodyMode() == fdsMode {
		fds = true
		if pm.GetResponseTrailerMode() != extprocv3.ProcessingMode_SEND {
			c.addf(path, "ext_proc: response_body_mode FULL_DUPLEX_STREAMED requires response_trailer_mode SEND")
		}
	}
	return fds
}

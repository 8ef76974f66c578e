package k8scheck_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoyconfig"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/k8scheck"
)

const egDir = "../../envoy/envoy-gateway"

// egObjects decodes every manifest of the Envoy Gateway example strictly.
func egObjects(t *testing.T) map[string]k8scheck.Object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(egDir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out := map[string]k8scheck.Object{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		objs, err := k8scheck.DecodeAll(data)
		require.NoError(t, err, f)
		for _, o := range objs {
			key := o.Kind + "/" + o.Name
			_, dup := out[key]
			require.False(t, dup, "%s defined twice", key)
			if o.Kind != "GatewayClass" {
				require.Equal(t, "llm-proxy", o.Namespace, key)
			}
			out[key] = o
		}
	}
	return out
}

func egGet[T any](t *testing.T, objs map[string]k8scheck.Object, kind, name string) *T {
	t.Helper()
	o, ok := objs[kind+"/"+name]
	require.True(t, ok, "no %s %s", kind, name)
	v, ok := o.Value.(*T)
	require.True(t, ok, "%s %s is %T", kind, name, o.Value)
	return v
}

var vendors = []string{"openai", "anthropic", "gemini"}

// TestEnvoyGatewayReferencesResolve checks every reference between the
// example's objects names an object of the example (or the Service the Helm
// chart creates with fullnameOverride=llm-proxy-extproc).
func TestEnvoyGatewayReferencesResolve(t *testing.T) {
	objs := egObjects(t)
	has := func(kind, name string) bool { _, ok := objs[kind+"/"+name]; return ok }
	gw := egGet[gwapiv1.Gateway](t, objs, "Gateway", "llm-gateway")
	require.True(t, has("GatewayClass", string(gw.Spec.GatewayClassName)))
	require.Equal(t, gwapiv1.GatewayController("gateway.envoyproxy.io/gatewayclass-controller"),
		egGet[gwapiv1.GatewayClass](t, objs, "GatewayClass", "llm-proxy").Spec.ControllerName)

	routeNames := []string{}
	for key, o := range objs {
		route, ok := o.Value.(*gwapiv1.HTTPRoute)
		if !ok {
			continue
		}
		routeNames = append(routeNames, o.Name)
		for _, p := range route.Spec.ParentRefs {
			require.True(t, has("Gateway", string(p.Name)), key)
		}
		for _, rule := range route.Spec.Rules {
			for _, b := range rule.BackendRefs {
				switch kind := ptrOr(b.Kind, "Service"); kind {
				case "Backend":
					require.Equal(t, "gateway.envoyproxy.io", string(*b.Group))
					require.True(t, has("Backend", string(b.Name)), "%s: Backend %s", key, b.Name)
				case "Service":
					require.Equal(t, "llm-proxy-extproc", string(b.Name), key)
				default:
					t.Fatalf("%s: backend kind %s", key, kind)
				}
			}
			for _, f := range rule.Filters {
				if f.Type == gwapiv1.HTTPRouteFilterExtensionRef {
					require.True(t, has(string(f.ExtensionRef.Kind), string(f.ExtensionRef.Name)), key)
				}
			}
		}
	}
	slices.Sort(routeNames)
	require.Equal(t, []string{"anthropic", "gemini", "llm-proxy-health", "openai"}, routeNames)

	for key, o := range objs {
		var refs []gwapiv1.LocalPolicyTargetReferenceWithSectionName
		switch v := o.Value.(type) {
		case *gwapiv1.BackendTLSPolicy:
			refs = v.Spec.TargetRefs
		case *egv1a1.EnvoyExtensionPolicy:
			refs = v.Spec.TargetRefs
		case *egv1a1.BackendTrafficPolicy:
			refs = v.Spec.TargetRefs
		case *egv1a1.ClientTrafficPolicy:
			refs = v.Spec.TargetRefs
		default:
			continue
		}
		require.NotEmpty(t, refs, key)
		for _, r := range refs {
			require.True(t, has(string(r.Kind), string(r.Name)), "%s targets %s %s", key, r.Kind, r.Name)
		}
	}
	eep := egGet[egv1a1.EnvoyExtensionPolicy](t, objs, "EnvoyExtensionPolicy", "llm-proxy-extproc")
	var targets []string
	for _, r := range eep.Spec.TargetRefs {
		targets = append(targets, string(r.Name))
	}
	require.Equal(t, vendors, targets, "ext_proc runs on the vendor routes only, never on /health")
}

func ptrOr[T ~string](p *T, def string) string {
	if p == nil {
		return def
	}
	return string(*p)
}

// extProcOf builds the ext_proc filter Envoy Gateway v1.9 generates for an
// EnvoyExtensionPolicy's extProc entry, following its translator
// (internal/xds/translator/extproc.go): header modes SEND when the request
// or response section is present, body modes from their body field, NONE
// otherwise; trailers SKIP; failOpen, messageTimeout, allowModeOverride
// and the metadata namespaces map one to one. The gRPC target is left out
// (Envoy Gateway names its own cluster).
func extProcOf(e egv1a1.ExtProc) *extprocv3.ExternalProcessor {
	body := func(m *egv1a1.ExtProcBodyProcessingMode) extprocv3.ProcessingMode_BodySendMode {
		if m == nil {
			return extprocv3.ProcessingMode_NONE
		}
		return map[egv1a1.ExtProcBodyProcessingMode]extprocv3.ProcessingMode_BodySendMode{
			egv1a1.StreamedExtProcBodyProcessingMode:          extprocv3.ProcessingMode_STREAMED,
			egv1a1.BufferedExtProcBodyProcessingMode:          extprocv3.ProcessingMode_BUFFERED,
			egv1a1.BufferedPartialExtBodyHeaderProcessingMode: extprocv3.ProcessingMode_BUFFERED_PARTIAL,
			egv1a1.FullDuplexStreamedExtBodyProcessingMode:    extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED,
		}[*m]
	}
	pm := &extprocv3.ProcessingMode{RequestHeaderMode: extprocv3.ProcessingMode_SKIP, ResponseHeaderMode: extprocv3.ProcessingMode_SKIP,
		RequestTrailerMode: extprocv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocv3.ProcessingMode_SKIP}
	out := &extprocv3.ExternalProcessor{ProcessingMode: pm}
	if m := e.ProcessingMode; m != nil {
		if m.Request != nil {
			pm.RequestHeaderMode, pm.RequestBodyMode = extprocv3.ProcessingMode_SEND, body(m.Request.Body)
		}
		if m.Response != nil {
			pm.ResponseHeaderMode, pm.ResponseBodyMode = extprocv3.ProcessingMode_SEND, body(m.Response.Body)
		}
		out.AllowModeOverride = m.AllowModeOverride
	}
	if e.FailOpen != nil {
		out.FailureModeAllow = *e.FailOpen
	}
	if e.MessageTimeout != nil {
		d, err := time.ParseDuration(string(*e.MessageTimeout))
		if err == nil {
			out.MessageTimeout = durationpb.New(d)
		}
	}
	if md := e.Metadata; md != nil {
		out.MetadataOptions = &extprocv3.MetadataOptions{}
		if md.AccessibleNamespaces != nil {
			out.MetadataOptions.ForwardingNamespaces = &extprocv3.MetadataOptions_MetadataNamespaces{Untyped: md.AccessibleNamespaces}
		}
		if md.WritableNamespaces != nil {
			out.MetadataOptions.ReceivingNamespaces = &extprocv3.MetadataOptions_MetadataNamespaces{Untyped: md.WritableNamespaces}
		}
	}
	return out
}

// notExpressible are the ext_proc fields of envoy/envoy.yaml that an
// EnvoyExtensionPolicy cannot set (README.md in envoy/envoy-gateway names
// what each costs).
var notExpressible = []string{"grpc_service", "mutation_rules", "stat_prefix"}

// TestEnvoyGatewayExtProcMatchesEnvoyYAML checks the policy's ext_proc
// filter equals envoy/envoy.yaml's in everything but the fields Envoy
// Gateway cannot express, and that those really are set there (so the
// README's list stays true).
func TestEnvoyGatewayExtProcMatchesEnvoyYAML(t *testing.T) {
	objs := egObjects(t)
	eep := egGet[egv1a1.EnvoyExtensionPolicy](t, objs, "EnvoyExtensionPolicy", "llm-proxy-extproc")
	require.Len(t, eep.Spec.ExtProc, 1)
	e := eep.Spec.ExtProc[0]
	require.Len(t, e.BackendRefs, 1)
	require.Equal(t, "llm-proxy-extproc", string(e.BackendRefs[0].Name))
	require.Equal(t, gwapiv1.PortNumber(50051), *e.BackendRefs[0].Port)

	b, err := envoyconfig.Load("../../envoy/envoy.yaml")
	require.NoError(t, err)
	want, err := envoyconfig.ExtProcFilter(b)
	require.NoError(t, err)
	want = proto.Clone(want).(*extprocv3.ExternalProcessor)

	got := extProcOf(e)
	// With a gRPC target (Envoy Gateway generates its own cluster), the
	// filter passes the go-control-plane rules.
	routed := proto.Clone(got).(*extprocv3.ExternalProcessor)
	routed.GrpcService = want.GetGrpcService()
	require.NoError(t, envoyconfig.ValidateMessage(routed))

	fields := want.ProtoReflect().Descriptor().Fields()
	for _, name := range notExpressible {
		fd := fields.ByName(protoreflect.Name(name))
		require.NotNil(t, fd, name)
		require.True(t, want.ProtoReflect().Has(fd), "envoy.yaml sets %s", name)
		want.ProtoReflect().Clear(fd)
	}
	require.True(t, proto.Equal(want, got), "the policy's ext_proc differs from envoy.yaml beyond %v:\nwant %v\ngot  %v",
		notExpressible, want, got)
}

// TestEnvoyGatewayRoutesMatchEnvoyYAML checks each vendor's route, rewrite,
// retry policy, Backend and TLS settings against envoy/envoy.yaml.
func TestEnvoyGatewayRoutesMatchEnvoyYAML(t *testing.T) {
	objs := egObjects(t)
	b, err := envoyconfig.Load("../../envoy/envoy.yaml")
	require.NoError(t, err)
	routes := envoyRoutes(t, b)
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	for _, v := range vendors {
		t.Run(v, func(t *testing.T) {
			prefix, meta := routes[v], routes["meta_"+v]
			require.NotNil(t, prefix)
			require.NotNil(t, meta)
			hr := egGet[gwapiv1.HTTPRoute](t, objs, "HTTPRoute", v)
			require.Len(t, hr.Spec.Rules, 2)

			// /<vendor>/...: prefix stripped, Host rewritten, no request timeout.
			r0 := hr.Spec.Rules[0]
			require.Equal(t, gwapiv1.PathMatchPathPrefix, *r0.Matches[0].Path.Type)
			require.Equal(t, prefix.GetMatch().GetPrefix(), *r0.Matches[0].Path.Value)
			rw := r0.Filters[0].URLRewrite
			require.Equal(t, prefix.GetRoute().GetHostRewriteLiteral(), string(*rw.Hostname))
			require.Equal(t, prefix.GetRoute().GetPrefixRewrite(), *rw.Path.ReplacePrefixMatch)
			requireNoTimeout(t, r0, prefix)

			// /meta/{user}/<vendor>/...: the same regex and rewrite.
			r1 := hr.Spec.Rules[1]
			require.Equal(t, gwapiv1.PathMatchRegularExpression, *r1.Matches[0].Path.Type)
			require.Equal(t, meta.GetMatch().GetSafeRegex().GetRegex(), *r1.Matches[0].Path.Value)
			f := egGet[egv1a1.HTTPRouteFilter](t, objs, "HTTPRouteFilter", string(r1.Filters[0].ExtensionRef.Name))
			require.Equal(t, egv1a1.BackendHTTPHostnameModifier, f.Spec.URLRewrite.Hostname.Type,
				"Host becomes the Backend's host name, as host_rewrite_literal")
			re := f.Spec.URLRewrite.Path.ReplaceRegexMatch
			require.Equal(t, meta.GetRoute().GetRegexRewrite().GetPattern().GetRegex(), re.Pattern)
			require.Equal(t, meta.GetRoute().GetRegexRewrite().GetSubstitution(), re.Substitution)
			requireNoTimeout(t, r1, meta)

			// The vendor endpoint and TLS identity.
			be := egGet[egv1a1.Backend](t, objs, "Backend", v)
			sa := clusters[v].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			require.Equal(t, sa.GetAddress(), be.Spec.Endpoints[0].FQDN.Hostname)
			require.Equal(t, int32(sa.GetPortValue()), be.Spec.Endpoints[0].FQDN.Port)
			for _, rule := range hr.Spec.Rules {
				require.Equal(t, gwapiv1.PortNumber(sa.GetPortValue()), *rule.BackendRefs[0].Port)
			}
			tlsPol := egGet[gwapiv1.BackendTLSPolicy](t, objs, "BackendTLSPolicy", v)
			var upstreamTLS tlsv3.UpstreamTlsContext
			require.NoError(t, clusters[v].GetTransportSocket().GetTypedConfig().UnmarshalTo(&upstreamTLS))
			require.Equal(t, upstreamTLS.GetSni(), string(tlsPol.Spec.Validation.Hostname))
			require.Equal(t, gwapiv1.WellKnownCACertificatesSystem, *tlsPol.Spec.Validation.WellKnownCACertificates)

			// Retries: the same count, triggers, status codes and back-off.
			btp := egGet[egv1a1.BackendTrafficPolicy](t, objs, "BackendTrafficPolicy", v)
			rp := prefix.GetRoute().GetRetryPolicy()
			require.True(t, proto.Equal(rp, meta.GetRoute().GetRetryPolicy()))
			require.Equal(t, int32(rp.GetNumRetries().GetValue()), *btp.Spec.Retry.NumRetries)
			var triggers []string
			for _, tr := range btp.Spec.Retry.RetryOn.Triggers {
				triggers = append(triggers, string(tr))
			}
			require.Equal(t, strings.Split(rp.GetRetryOn(), ","), triggers)
			var codes []uint32
			for _, c := range btp.Spec.Retry.RetryOn.HTTPStatusCodes {
				codes = append(codes, uint32(c))
			}
			require.Equal(t, rp.GetRetriableStatusCodes(), codes)
			base, err := time.ParseDuration(string(*btp.Spec.Retry.PerRetry.BackOff.BaseInterval))
			require.NoError(t, err)
			require.Equal(t, rp.GetRetryBackOff().GetBaseInterval().AsDuration(), base)
			maxI, err := time.ParseDuration(string(*btp.Spec.Retry.PerRetry.BackOff.MaxInterval))
			require.NoError(t, err)
			require.Equal(t, rp.GetRetryBackOff().GetMaxInterval().AsDuration(), maxI)
			require.Nil(t, btp.Spec.Retry.PerRetry.Timeout, "a per-try timeout would cut long streams")
			connect, err := time.ParseDuration(string(*btp.Spec.Timeout.TCP.ConnectTimeout))
			require.NoError(t, err)
			require.Equal(t, clusters[v].GetConnectTimeout().AsDuration(), connect)
		})
	}
}

func requireNoTimeout(t *testing.T, rule gwapiv1.HTTPRouteRule, r *routev3.Route) {
	t.Helper()
	require.Zero(t, r.GetRoute().GetTimeout().AsDuration(), "envoy.yaml disables the route timeout")
	require.NotNil(t, rule.Timeouts)
	d, err := time.ParseDuration(string(*rule.Timeouts.Request))
	require.NoError(t, err)
	require.Zero(t, d, "0s disables the request timeout")
}

// envoyRoutes indexes envoy.yaml's routes by name.
func envoyRoutes(t *testing.T, b *bootstrapv3.Bootstrap) map[string]*routev3.Route {
	t.Helper()
	hcms, err := envoyconfig.HTTPConnectionManagers(b)
	require.NoError(t, err)
	out := map[string]*routev3.Route{}
	for _, h := range hcms {
		for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				out[r.GetName()] = r
			}
		}
	}
	return out
}

// TestEnvoyGatewayListenerMatchesEnvoyYAML checks the ClientTrafficPolicy
// carries envoy.yaml's listener buffer limit and stream timeouts.
func TestEnvoyGatewayListenerMatchesEnvoyYAML(t *testing.T) {
	objs := egObjects(t)
	ctp := egGet[egv1a1.ClientTrafficPolicy](t, objs, "ClientTrafficPolicy", "llm-gateway")
	b, err := envoyconfig.Load("../../envoy/envoy.yaml")
	require.NoError(t, err)
	l := b.GetStaticResources().GetListeners()[0]
	require.Equal(t, int64(l.GetPerConnectionBufferLimitBytes().GetValue()), ctp.Spec.Connection.BufferLimit.Value())
	hcms, err := envoyconfig.HTTPConnectionManagers(b)
	require.NoError(t, err)
	idle, err := time.ParseDuration(string(*ctp.Spec.Timeout.HTTP.StreamIdleTimeout))
	require.NoError(t, err)
	require.Equal(t, hcms[0].GetStreamIdleTimeout().AsDuration(), idle)
	headers, err := time.ParseDuration(string(*ctp.Spec.Timeout.HTTP.RequestHeadersReceivedTimeout))
	require.NoError(t, err)
	require.Equal(t, hcms[0].GetRequestHeadersTimeout().AsDuration(), headers)
}

// TestEnvoyGatewayClustersMatchEnvoyYAML checks the circuit breakers,
// retry budgets and ext_proc keepalive carry envoy.yaml's cluster values.
func TestEnvoyGatewayClustersMatchEnvoyYAML(t *testing.T) {
	objs := egObjects(t)
	b, err := envoyconfig.Load("../../envoy/envoy.yaml")
	require.NoError(t, err)
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	requireThresholds := func(t *testing.T, cb *egv1a1.CircuitBreaker, c *clusterv3.Cluster) {
		t.Helper()
		th := c.GetCircuitBreakers().GetThresholds()[0]
		require.Equal(t, int64(th.GetMaxConnections().GetValue()), *cb.MaxConnections)
		require.Equal(t, int64(th.GetMaxPendingRequests().GetValue()), *cb.MaxPendingRequests)
		require.Equal(t, int64(th.GetMaxRequests().GetValue()), *cb.MaxParallelRequests)
		if rb := th.GetRetryBudget(); rb != nil {
			require.NotNil(t, cb.RetryBudget)
			den := int32(100)
			if cb.RetryBudget.Percent.Denominator != nil {
				den = *cb.RetryBudget.Percent.Denominator
			}
			require.InDelta(t, rb.GetBudgetPercent().GetValue(), 100*float64(cb.RetryBudget.Percent.Numerator)/float64(den), 1e-9)
			require.Equal(t, rb.GetMinRetryConcurrency().GetValue(), *cb.RetryBudget.MinRetryConcurrency)
		} else {
			require.Nil(t, cb.RetryBudget)
		}
	}
	for _, v := range vendors {
		t.Run(v, func(t *testing.T) {
			btp := egGet[egv1a1.BackendTrafficPolicy](t, objs, "BackendTrafficPolicy", v)
			requireThresholds(t, btp.Spec.CircuitBreaker, clusters[v])
		})
	}
	t.Run("ext_proc", func(t *testing.T) {
		eep := egGet[egv1a1.EnvoyExtensionPolicy](t, objs, "EnvoyExtensionPolicy", "llm-proxy-extproc")
		bs := eep.Spec.ExtProc[0].BackendSettings
		requireThresholds(t, bs.CircuitBreaker, clusters["ext_proc"])
		var opts upstreamhttpv3.HttpProtocolOptions
		require.NoError(t, clusters["ext_proc"].GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(&opts))
		ka := opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions().GetConnectionKeepalive()
		interval, err := time.ParseDuration(string(*bs.HTTP2.ConnectionKeepalive.Interval))
		require.NoError(t, err)
		require.Equal(t, ka.GetInterval().AsDuration(), interval)
		timeout, err := time.ParseDuration(string(*bs.HTTP2.ConnectionKeepalive.Timeout))
		require.NoError(t, err)
		require.Equal(t, ka.GetTimeout().AsDuration(), timeout)
	})
}

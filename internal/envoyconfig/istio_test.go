package envoyconfig_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoyconfig"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

const istioDir = "../../envoy/istio/"

type envoyFilter struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		WorkloadSelector struct {
			Labels map[string]string `json:"labels"`
		} `json:"workloadSelector"`
		ConfigPatches []struct {
			ApplyTo string `json:"applyTo"`
			Match   struct {
				Context  string `json:"context"`
				Listener struct {
					FilterChain struct {
						Filter struct {
							Name      string `json:"name"`
							SubFilter struct {
								Name string `json:"name"`
							} `json:"subFilter"`
						} `json:"filter"`
					} `json:"filterChain"`
				} `json:"listener"`
				Cluster struct {
					Name string `json:"name"`
				} `json:"cluster"`
				RouteConfiguration *struct {
					Vhost struct {
						Route struct {
							Name string `json:"name"`
						} `json:"route"`
					} `json:"vhost"`
				} `json:"routeConfiguration"`
			} `json:"match"`
			Patch struct {
				Operation string          `json:"operation"`
				Value     json.RawMessage `json:"value"`
			} `json:"patch"`
		} `json:"configPatches"`
	} `json:"spec"`
}

// k8sDocs splits a multi-document Kubernetes YAML file into JSON objects.
func k8sDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []map[string]any
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var m map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(doc), &m))
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

func findDoc(t *testing.T, docs []map[string]any, kind string) map[string]any {
	t.Helper()
	for _, d := range docs {
		if d["kind"] == kind {
			return d
		}
	}
	t.Fatalf("no %s", kind)
	return nil
}

// get walks a decoded JSON value by map keys and list indexes.
func get(t *testing.T, v any, keys ...any) any {
	t.Helper()
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			require.True(t, ok, "want an object at %q", k)
			v = m[k]
		case int:
			l, ok := v.([]any)
			require.True(t, ok, "want a list at %d", k)
			require.Less(t, k, len(l))
			v = l[k]
		}
	}
	return v
}

// extProcServiceCluster is the cluster Istio generates for the ext_proc
// Service's gRPC port.
func extProcServiceCluster(t *testing.T) string {
	t.Helper()
	svc := findDoc(t, k8sDocs(t, istioDir+"extproc.yaml"), "Service")
	name := get(t, svc, "metadata", "name")
	ns := get(t, svc, "metadata", "namespace")
	ports := get(t, svc, "spec", "ports").([]any)
	for _, p := range ports {
		if get(t, p, "name") == "grpc" {
			require.Equal(t, "grpc", get(t, p, "appProtocol"), "Istio picks HTTP/2 from appProtocol")
			return fmt.Sprintf("outbound|%v||%v.%v.svc.cluster.local", get(t, p, "port"), name, ns)
		}
	}
	t.Fatal("service has no grpc port")
	return ""
}

func TestIstioEnvoyFilterPatchesAreValidEnvoyConfig(t *testing.T) {
	data, err := os.ReadFile(istioDir + "envoyfilter.yaml")
	require.NoError(t, err)
	var ef envoyFilter
	require.NoError(t, yaml.Unmarshal(data, &ef))
	require.Equal(t, "networking.istio.io/v1alpha3", ef.APIVersion)
	require.Equal(t, "EnvoyFilter", ef.Kind)
	require.NotEmpty(t, ef.Spec.WorkloadSelector.Labels)

	want := extProcServiceCluster(t)
	seen := map[string]bool{}
	vendorClusters := map[string]bool{}
	patchedRoutes := map[string]bool{}
	for i, p := range ef.Spec.ConfigPatches {
		t.Run(fmt.Sprintf("%d_%s", i, p.ApplyTo), func(t *testing.T) {
			require.Equal(t, "GATEWAY", p.Match.Context)
			var m proto.Message
			switch p.ApplyTo {
			case "HTTP_FILTER":
				m = &hcmv3.HttpFilter{}
			case "CLUSTER":
				m = &clusterv3.Cluster{}
			case "LISTENER":
				m = &listenerv3.Listener{}
			case "VIRTUAL_HOST":
				m = &routev3.VirtualHost{}
			case "HTTP_ROUTE":
				m = &routev3.Route{}
			default:
				t.Fatalf("no proto type known for applyTo %s", p.ApplyTo)
			}
			require.NoError(t, envoyconfig.UnmarshalYAML(p.Patch.Value, m))
			if p.Patch.Operation == "MERGE" {
				// A MERGE value is partial; Istio merges it into the generated
				// object. Validate it merged into a stand-in for that object.
				var routeName string
				if rc := p.Match.RouteConfiguration; rc != nil {
					routeName = rc.Vhost.Route.Name
				}
				base := mergeBase(t, p.ApplyTo, p.Match.Cluster.Name, routeName)
				proto.Merge(base, m)
				m = base
			}
			require.NoError(t, envoyconfig.ValidateMessage(m))
			seen[p.ApplyTo] = true

			switch v := m.(type) {
			case *hcmv3.HttpFilter:
				require.Equal(t, "INSERT_BEFORE", p.Patch.Operation)
				require.Equal(t, "envoy.filters.network.http_connection_manager", p.Match.Listener.FilterChain.Filter.Name)
				require.Equal(t, "envoy.filters.http.router", p.Match.Listener.FilterChain.Filter.SubFilter.Name)
				e := &extprocv3.ExternalProcessor{}
				require.NoError(t, v.GetTypedConfig().UnmarshalTo(e))
				require.Equal(t, want, e.GetGrpcService().GetEnvoyGrpc().GetClusterName())

				// Apart from the gRPC target, the gateway's ext_proc filter is
				// the one of envoy/envoy.yaml.
				local, err := envoyconfig.ExtProcFilter(load(t, prodPath))
				require.NoError(t, err)
				e.GrpcService, local.GrpcService = nil, nil
				require.Empty(t, cmp.Diff(local, e, protocmp.Transform()))
			case *clusterv3.Cluster:
				if p.Patch.Operation == "ADD" {
					requireIstioChainCluster(t, v, want)
					seen["chain cluster"] = true
					return
				}
				require.Equal(t, "MERGE", p.Patch.Operation)
				if p.Match.Cluster.Name == want {
					require.NotNil(t, httpTwo(t, v), "the patch must pin HTTP/2")
					return
				}
				// A vendor cluster: the upstream filter chain of envoy.yaml's
				// router, pointed at the ext_proc Service.
				host := strings.TrimPrefix(p.Match.Cluster.Name, "outbound|80||")
				vendorClusters[host] = true
				o := protocolOptions(t, v)
				require.NotNil(t, o.GetExplicitHttpConfig().GetHttpProtocolOptions(), "HTTP/1.1 to the vendor, as envoy.yaml")
				requireClusterExtProc(t, o, want)
			case *routev3.VirtualHost:
				require.True(t, v.GetIncludeRequestAttemptCount())
				require.True(t, v.GetIncludeAttemptCountInResponse())
				seen["attempt counts"] = true
			case *routev3.Route:
				if p.Patch.Operation == "INSERT_FIRST" {
					// The chain route: first in every virtual host (no
					// route match), envoy.yaml's as it is.
					require.Empty(t, p.Match.RouteConfiguration.Vhost.Route.Name)
					local := routeWith(t, routes(t, load(t, prodPath)), "/openai/v1/chat/completions",
						map[string]string{chainHeader: exampleChain.key})
					require.Empty(t, cmp.Diff(local, v, protocmp.Transform()))
					seen["chain route"] = true
					return
				}
				name := p.Match.RouteConfiguration.Vhost.Route.Name
				patchedRoutes[name] = true
				local := localRoute(t, name).GetRoute().GetRetryPolicy()
				rp := v.GetRoute().GetRetryPolicy()
				require.Empty(t, cmp.Diff(local.GetRetryBackOff(), rp.GetRetryBackOff(), protocmp.Transform()))
				require.Empty(t, cmp.Diff(local.GetRateLimitedRetryBackOff(), rp.GetRateLimitedRetryBackOff(), protocmp.Transform()))
			case *listenerv3.Listener:
				require.GreaterOrEqual(t, v.GetPerConnectionBufferLimitBytes().GetValue(), uint32(10<<20))
				// The largest body the gateway sends is what the server's
				// default max_request_body_bytes accepts.
				require.EqualValues(t, config.DefaultMaxRequestBodyBytes, v.GetPerConnectionBufferLimitBytes().GetValue())
			}
		})
	}
	require.True(t, seen["HTTP_FILTER"])
	require.True(t, seen["CLUSTER"])
	require.True(t, seen["attempt counts"], "x-envoy-attempt-count on requests and final responses")
	require.True(t, seen["chain cluster"], "the chain cluster of envoy.yaml")
	require.True(t, seen["chain route"], "the chain route of envoy.yaml")
	for _, host := range vendorHosts {
		require.True(t, vendorClusters[host], "no upstream ext_proc filter on %s", host)
	}
	for _, r := range get(t, findDoc(t, k8sDocs(t, istioDir+"routing.yaml"), "VirtualService"), "spec", "http").([]any) {
		name := get(t, r, "name").(string)
		require.True(t, patchedRoutes[name], "route %s lacks envoy.yaml's retry back-off", name)
	}
}

// upstreamExtProc returns the ext_proc filter of the router's
// upstream_http_filters in b.
func upstreamExtProc(t *testing.T, b *bootstrapv3.Bootstrap) *extprocv3.ExternalProcessor {
	t.Helper()
	var out *extprocv3.ExternalProcessor
	editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
		for _, f := range h.GetHttpFilters() {
			if f.GetName() != "envoy.filters.http.router" {
				continue
			}
			r := &routerv3.Router{}
			require.NoError(t, f.GetTypedConfig().UnmarshalTo(r))
			for _, uf := range r.GetUpstreamHttpFilters() {
				if uf.GetName() == "envoy.filters.http.ext_proc" {
					out = &extprocv3.ExternalProcessor{}
					require.NoError(t, uf.GetTypedConfig().UnmarshalTo(out))
				}
			}
		}
	})
	require.NotNil(t, out, "envoy.yaml's router has an upstream ext_proc filter")
	return out
}

// localRoute returns envoy.yaml's route for a routing.yaml route name
// ("meta-openai" is envoy.yaml's "meta_openai").
func localRoute(t *testing.T, name string) *routev3.Route {
	t.Helper()
	want := strings.ReplaceAll(name, "-", "_")
	for _, r := range routes(t, load(t, prodPath)) {
		if r.GetName() == want {
			return r
		}
	}
	t.Fatalf("envoy.yaml has no route %s", want)
	return nil
}

// protocolOptions returns the cluster's HttpProtocolOptions.
// requireClusterExtProc checks a cluster's upstream filters: envoy.yaml's
// router upstream ext_proc, pointed at the ext_proc Service cluster want,
// then the codec.
func requireClusterExtProc(t *testing.T, o *upstreamhttpv3.HttpProtocolOptions, want string) {
	t.Helper()
	fs := o.GetHttpFilters()
	require.Len(t, fs, 2)
	require.Equal(t, "envoy.filters.http.upstream_codec", fs[1].GetName())
	e := &extprocv3.ExternalProcessor{}
	require.NoError(t, fs[0].GetTypedConfig().UnmarshalTo(e))
	require.Equal(t, want, e.GetGrpcService().GetEnvoyGrpc().GetClusterName())
	local := upstreamExtProc(t, load(t, prodPath))
	e.GrpcService, local.GrpcService = nil, nil
	require.Empty(t, cmp.Diff(local, e, protocmp.Transform()))
}

// requireIstioChainCluster checks the chain cluster an Istio gateway adds:
// envoy.yaml's failover cluster, with envoy.yaml's per-attempt ext_proc
// filter (pointed at the ext_proc Service cluster want) as a cluster-level
// upstream filter, Istio's gateways having no router upstream filters.
func requireIstioChainCluster(t *testing.T, c *clusterv3.Cluster, want string) {
	t.Helper()
	c = proto.Clone(c).(*clusterv3.Cluster)
	o := protocolOptions(t, c)
	requireClusterExtProc(t, o, want)
	o.HttpFilters = nil
	a, err := anypb.New(o)
	require.NoError(t, err)
	c.TypedExtensionProtocolOptions["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] = a
	prod := clustersByName(load(t, prodPath))[exampleChain.cluster]
	require.NotNil(t, prod)
	require.Empty(t, cmp.Diff(prod, c, protocmp.Transform()), "the chain cluster is envoy.yaml's")
}

func protocolOptions(t *testing.T, c *clusterv3.Cluster) *upstreamhttpv3.HttpProtocolOptions {
	t.Helper()
	a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	require.NotNil(t, a)
	o := &upstreamhttpv3.HttpProtocolOptions{}
	require.NoError(t, a.UnmarshalTo(o))
	return o
}

// mergeBase returns a stand-in for the object Istio generates and a MERGE
// patch modifies: the matching object of envoy/envoy.yaml.
func mergeBase(t *testing.T, applyTo, clusterName, routeName string) proto.Message {
	t.Helper()
	b := load(t, prodPath)
	switch applyTo {
	case "VIRTUAL_HOST":
		var vh *routev3.VirtualHost
		editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
			vh = proto.Clone(h.GetRouteConfig().GetVirtualHosts()[0]).(*routev3.VirtualHost)
		})
		vh.IncludeRequestAttemptCount, vh.IncludeAttemptCountInResponse = false, false
		return vh
	case "HTTP_ROUTE":
		r := proto.Clone(localRoute(t, routeName)).(*routev3.Route)
		// Assume the worst generated route: retries without any back-off.
		r.GetRoute().GetRetryPolicy().RetryBackOff = nil
		r.GetRoute().GetRetryPolicy().RateLimitedRetryBackOff = nil
		return r
	case "CLUSTER":
		c := proto.Clone(cluster(b, "ext_proc")).(*clusterv3.Cluster)
		c.Name = clusterName
		c.LoadAssignment.ClusterName = clusterName
		// Assume the worst generated cluster: no protocol options at all.
		c.TypedExtensionProtocolOptions = nil
		return c
	case "LISTENER":
		return proto.Clone(b.GetStaticResources().GetListeners()[0])
	}
	t.Fatalf("no merge base for %s", applyTo)
	return nil
}

// httpTwo returns the cluster's explicit HTTP/2 options, or nil.
func httpTwo(t *testing.T, c *clusterv3.Cluster) proto.Message {
	t.Helper()
	a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if a == nil {
		return nil
	}
	o := &upstreamhttpv3.HttpProtocolOptions{}
	require.NoError(t, a.UnmarshalTo(o))
	if h2 := o.GetExplicitHttpConfig().GetHttp2ProtocolOptions(); h2 != nil {
		return h2
	}
	return nil
}

func TestIstioExtProcDeployment(t *testing.T) {
	docs := k8sDocs(t, istioDir+"extproc.yaml")
	dep := findDoc(t, docs, "Deployment")
	c := get(t, dep, "spec", "template", "spec", "containers", 0)
	require.Equal(t, "/ready", get(t, c, "readinessProbe", "httpGet", "path"))
	require.Equal(t, "/health", get(t, c, "livenessProbe", "httpGet", "path"))
	require.NotNil(t, get(t, c, "resources", "requests", "cpu"))
	require.NotNil(t, get(t, c, "resources", "limits", "memory"))

	env := map[string]string{}
	for _, e := range get(t, c, "env").([]any) {
		env[get(t, e, "name").(string)] = get(t, e, "value").(string)
	}
	require.Equal(t, ":50051", env["GRPC_ADDR"])
	require.Equal(t, ":9003", env["ADMIN_ADDR"])

	// Every config file listed is the image's base or a mounted ConfigMap key,
	// and together they load with the server's own config loader.
	cm := findDoc(t, docs, "ConfigMap")
	mount := get(t, c, "volumeMounts", 0, "mountPath").(string)
	require.Equal(t, get(t, cm, "metadata", "name"), get(t, dep, "spec", "template", "spec", "volumes", 0, "configMap", "name"))
	var layers [][]byte
	for _, f := range config.SplitPaths(env["LLM_PROXY_CONFIG"]) {
		if f == "configs/base.yml" {
			b, err := os.ReadFile("../../configs/base.yml")
			require.NoError(t, err)
			layers = append(layers, b)
			continue
		}
		require.True(t, strings.HasPrefix(f, mount+"/"), "%s is neither in the image nor mounted", f)
		data, ok := get(t, cm, "data", strings.TrimPrefix(f, mount+"/")).(string)
		require.True(t, ok, "ConfigMap has no key for %s", f)
		layers = append(layers, []byte(data))
	}
	_, err := config.Parse(func(string) string { return "" }, layers...)
	require.NoError(t, err)

	ports := map[string]float64{}
	for _, p := range get(t, findDoc(t, docs, "Service"), "spec", "ports").([]any) {
		ports[get(t, p, "name").(string)] = get(t, p, "port").(float64)
	}
	require.Equal(t, map[string]float64{"grpc": 50051, "http-admin": 9003}, ports)
}

func TestIstioRoutingMirrorsEnvoyRoutes(t *testing.T) {
	docs := k8sDocs(t, istioDir+"routing.yaml")
	vs := findDoc(t, docs, "VirtualService")
	rewrites := map[string]string{}
	for _, r := range get(t, vs, "spec", "http").([]any) {
		name := get(t, r, "name").(string)
		require.Equal(t, "0s", get(t, r, "timeout"), name)
		require.Contains(t, get(t, r, "retries", "retryOn"), "429", name)
		rewrites[name] = get(t, r, "rewrite", "authority").(string)
		require.Equal(t, rewrites[name], get(t, r, "route", 0, "destination", "host"), name)
	}
	for provider, host := range vendorHosts {
		require.Equal(t, host, rewrites[provider])
		require.Equal(t, host, rewrites["meta-"+provider])
	}
	se := findDoc(t, docs, "ServiceEntry")
	var hosts []string
	for _, h := range get(t, se, "spec", "hosts").([]any) {
		hosts = append(hosts, h.(string))
	}
	for _, host := range vendorHosts {
		require.Contains(t, hosts, host)
	}
}

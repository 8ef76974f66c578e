package k8scheck_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoyconfig"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/k8scheck"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

const chartDir = "../../deploy/helm/llm-proxy-extproc"

var release = k8scheck.Release{Name: "gw", Namespace: "llm-proxy"}

// everythingOn turns on every optional part of the chart.
func everythingOn() map[string]any {
	return map[string]any{
		"adminToken": map[string]any{"existingSecret": "llm-proxy-admin", "key": "token"},
		"secretEnv":  []any{map[string]any{"name": "REDIS_URL", "secretName": "llm-proxy-redis", "key": "url"}},
		"env":        []any{map[string]any{"name": "LLM_PROXY_ALLOW_TEST_MODE", "value": "0"}},
		"rules": map[string]any{
			"overrides.yml": map[string]any{"processing": map[string]any{"response_buffer_limit_bytes": 2097152}},
			"zz-guards.yml": map[string]any{"features": map[string]any{
				"rate_limiting": map[string]any{"enabled": true, "backend": "redis", "redis": map[string]any{"url": "${REDIS_URL}"},
					"limits": map[string]any{"requests_per_minute": 60}},
				"circuit_breaker": map[string]any{"enabled": true},
			}},
		},
		"stateVolume":               map[string]any{"persistentVolumeClaim": map[string]any{"claimName": "cost-records"}},
		"autoscaling":               map[string]any{"enabled": true, "minReplicas": 3, "maxReplicas": 12},
		"serviceMonitor":            map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}},
		"envoy":                     map[string]any{"enabled": true},
		"nodeSelector":              map[string]any{"kubernetes.io/os": "linux"},
		"tolerations":               []any{map[string]any{"key": "llm", "operator": "Exists", "effect": "NoSchedule"}},
		"topologySpreadConstraints": []any{map[string]any{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/component": "extproc"}}}},
		"podAnnotations":            map[string]any{"example.com/team": "platform"},
	}
}

// rendered is a chart rendering, decoded.
type rendered struct {
	objects []k8scheck.Object
}

func render(t *testing.T, values map[string]any) rendered {
	t.Helper()
	ms, err := k8scheck.RenderChart(t.Context(), chartDir, release, values)
	require.NoError(t, err)
	var r rendered
	for _, m := range ms {
		obj, err := k8scheck.Decode(m.YAML)
		require.NoError(t, err, "%s:\n%s", m.Template, m.YAML)
		require.Equal(t, release.Namespace, obj.Namespace, "%s %s", obj.Kind, obj.Name)
		r.objects = append(r.objects, obj)
	}
	return r
}

func (r rendered) kinds() []string {
	var out []string
	for _, o := range r.objects {
		out = append(out, o.Kind+"/"+o.Name)
	}
	slices.Sort(out)
	return out
}

func get[T any](t *testing.T, r rendered, kind, name string) *T {
	t.Helper()
	for _, o := range r.objects {
		if o.Kind == kind && o.Name == name {
			v, ok := o.Value.(*T)
			require.True(t, ok, "%s %s is %T", kind, name, o.Value)
			return v
		}
	}
	t.Fatalf("no %s %s among %v", kind, name, r.kinds())
	return nil
}

func TestChartRendersStrictlyTypedObjects(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
		want   []string
	}{
		{"defaults", nil, []string{"ConfigMap/gw-llm-proxy-extproc-rules", "Deployment/gw-llm-proxy-extproc",
			"PodDisruptionBudget/gw-llm-proxy-extproc", "Service/gw-llm-proxy-extproc", "Service/gw-llm-proxy-extproc-headless",
			"ServiceAccount/gw-llm-proxy-extproc"}},
		{"everything on", everythingOn(), []string{"ConfigMap/gw-llm-proxy-extproc-envoy", "ConfigMap/gw-llm-proxy-extproc-rules",
			"Deployment/gw-llm-proxy-extproc", "Deployment/gw-llm-proxy-extproc-envoy",
			"HorizontalPodAutoscaler/gw-llm-proxy-extproc", "PodDisruptionBudget/gw-llm-proxy-extproc",
			"PodDisruptionBudget/gw-llm-proxy-extproc-envoy", "Service/gw-llm-proxy-extproc",
			"Service/gw-llm-proxy-extproc-envoy", "Service/gw-llm-proxy-extproc-headless",
			"ServiceAccount/gw-llm-proxy-extproc", "ServiceMonitor/gw-llm-proxy-extproc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, tt.values)
			require.Equal(t, tt.want, r.kinds())
			checkServer(t, r, tt.values != nil)
		})
	}
}

// checkServer checks the server's objects fit together and match what
// cmd/extproc expects.
func checkServer(t *testing.T, r rendered, all bool) {
	const name = "gw-llm-proxy-extproc"
	dep := get[appsv1.Deployment](t, r, "Deployment", name)
	pod := dep.Spec.Template
	sel, err := metaSelector(dep.Spec.Selector.MatchLabels)
	require.NoError(t, err)
	require.True(t, sel.Matches(labels.Set(pod.Labels)), "the Deployment selects its own pods")
	require.Len(t, pod.Spec.Containers, 1)
	c := pod.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	require.Equal(t, map[string]int32{"grpc": 50051, "http-admin": 9003}, ports)

	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		_, dup := env[e.Name]
		require.False(t, dup, "env %s set twice", e.Name)
		env[e.Name] = e
	}
	require.Equal(t, ":50051", env["GRPC_ADDR"].Value)
	require.Equal(t, ":9003", env["ADMIN_ADDR"].Value)
	shutdown, err := time.ParseDuration(env["SHUTDOWN_TIMEOUT"].Value)
	require.NoError(t, err)
	require.Greater(t, time.Duration(*pod.Spec.TerminationGracePeriodSeconds)*time.Second, shutdown,
		"the grace period outlasts the server's drain")

	// Probes: /ready on the admin port, the gRPC health service on the
	// ext_proc port (cmd/extproc registers grpc.health.v1 for "").
	require.Equal(t, "/ready", c.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, "http-admin", c.ReadinessProbe.HTTPGet.Port.StrVal)
	require.NotNil(t, c.LivenessProbe.GRPC)
	require.Equal(t, ports["grpc"], c.LivenessProbe.GRPC.Port)

	// Rule files: LLM_PROXY_CONFIG names the base file, then every mounted
	// file in order; the merged set is valid for the server's own loader.
	cm := get[corev1.ConfigMap](t, r, "ConfigMap", name+"-rules")
	files := strings.Split(env["LLM_PROXY_CONFIG"].Value, ",")
	require.Equal(t, "configs/base.yml", files[0])
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == "rules" {
			mount = &c.VolumeMounts[i]
		}
	}
	require.NotNil(t, mount)
	dir := t.TempDir()
	local := []string{"../../configs/base.yml"}
	for _, f := range files[1:] {
		base, ok := strings.CutPrefix(f, mount.MountPath+"/")
		require.True(t, ok, f)
		data, ok := cm.Data[base]
		require.True(t, ok, "%s is in the ConfigMap", base)
		require.NoError(t, os.WriteFile(filepath.Join(dir, base), []byte(data), 0o600))
		local = append(local, filepath.Join(dir, base))
	}
	require.Len(t, files, 1+len(cm.Data), "every rule file is listed")
	_, err = config.Load(local, func(string) string { return "redis://redis:6379/0" })
	require.NoError(t, err, "the chart's rules load with the server's loader")
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil {
			get[corev1.ConfigMap](t, r, "ConfigMap", v.ConfigMap.Name)
		}
	}
	require.Len(t, pod.Annotations["checksum/rules"], 64, "a SHA-256 of the rules rolls the pods on change")

	// Services select the pods and target named ports.
	for _, svcName := range []string{name, name + "-headless"} {
		svc := get[corev1.Service](t, r, "Service", svcName)
		require.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)), svcName)
		for _, p := range svc.Spec.Ports {
			require.Contains(t, ports, p.TargetPort.StrVal, "%s targets a named container port", svcName)
		}
		require.Equal(t, "grpc", *svc.Spec.Ports[0].AppProtocol, "HTTP/2 to ext_proc")
	}
	require.Equal(t, corev1.ClusterIPNone, get[corev1.Service](t, r, "Service", name+"-headless").Spec.ClusterIP)

	pdb := get[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", name)
	pdbSel, err := metaSelector(pdb.Spec.Selector.MatchLabels)
	require.NoError(t, err)
	require.True(t, pdbSel.Matches(labels.Set(pod.Labels)))

	if !all {
		require.NotContains(t, env, "LLM_PROXY_ADMIN_TOKEN")
		require.Equal(t, int32(2), *dep.Spec.Replicas)
		return
	}
	tok := env["LLM_PROXY_ADMIN_TOKEN"].ValueFrom.SecretKeyRef
	require.Equal(t, "llm-proxy-admin", tok.Name)
	require.Equal(t, "token", tok.Key)
	require.Equal(t, "llm-proxy-redis", env["REDIS_URL"].ValueFrom.SecretKeyRef.Name)
	require.Nil(t, dep.Spec.Replicas, "the HPA owns the replica count")
	hpa := get[autoscalingv2.HorizontalPodAutoscaler](t, r, "HorizontalPodAutoscaler", name)
	require.Equal(t, autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name}, hpa.Spec.ScaleTargetRef)
	require.Equal(t, int32(12), hpa.Spec.MaxReplicas)

	sm := get[monitoringv1.ServiceMonitor](t, r, "ServiceMonitor", name)
	smSel, err := metaSelector(sm.Spec.Selector.MatchLabels)
	require.NoError(t, err)
	var scraped []string
	for _, o := range r.objects {
		if svc, ok := o.Value.(*corev1.Service); ok && smSel.Matches(labels.Set(svc.Labels)) {
			scraped = append(scraped, svc.Name)
		}
	}
	require.Equal(t, []string{name}, scraped, "each pod is scraped once")
	require.Equal(t, "http-admin", sm.Spec.Endpoints[0].Port)
	require.Equal(t, "/metrics", sm.Spec.Endpoints[0].Path)
	require.Equal(t, "prom", sm.Labels["release"])
}

func metaSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return labels.Nothing(), nil
	}
	return labels.SelectorFromSet(m), nil
}

func TestChartRulesChecksumFollowsRules(t *testing.T) {
	sum := func(values map[string]any) string {
		dep := get[appsv1.Deployment](t, render(t, values), "Deployment", "gw-llm-proxy-extproc")
		return dep.Spec.Template.Annotations["checksum/rules"]
	}
	base := sum(nil)
	require.Equal(t, base, sum(nil))
	require.NotEqual(t, base, sum(map[string]any{"rules": map[string]any{"overrides.yml": map[string]any{
		"processing": map[string]any{"response_buffer_limit_bytes": 4096}}}}))
}

// TestChartEnvoyBootstrap validates the bundled Envoy configuration with
// the go-control-plane check and checks that it is envoy/envoy.yaml with
// only the ext_proc and admin endpoints moved to the release's pods.
func TestChartEnvoyBootstrap(t *testing.T) {
	r := render(t, map[string]any{"envoy": map[string]any{"enabled": true}})
	cm := get[corev1.ConfigMap](t, r, "ConfigMap", "gw-llm-proxy-extproc-envoy")
	b, err := envoyconfig.Parse([]byte(cm.Data["envoy.yaml"]))
	require.NoError(t, err)
	require.NoError(t, envoyconfig.Validate(b))

	const peers = "gw-llm-proxy-extproc-headless.llm-proxy.svc.cluster.local"
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	for name, port := range map[string]uint32{"ext_proc": 50051, "extproc_admin": 9003} {
		sa := clusters[name].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		require.Equal(t, peers, sa.GetAddress(), name)
		require.Equal(t, port, sa.GetPortValue(), name)
		require.Equal(t, clusterv3.Cluster_STRICT_DNS, clusters[name].GetType(), "%s resolves every pod", name)
		sa.Address = "extproc"
	}
	repo, err := envoyconfig.Load("../../envoy/envoy.yaml")
	require.NoError(t, err)
	require.True(t, proto.Equal(repo, b), "the chart's Envoy is envoy/envoy.yaml with only the two endpoints changed")

	dep := get[appsv1.Deployment](t, r, "Deployment", "gw-llm-proxy-extproc-envoy")
	c := dep.Spec.Template.Spec.Containers[0]
	require.Equal(t, []string{"-c", "/etc/envoy/envoy.yaml", "--log-level", "warn"}, c.Args)
	require.Equal(t, "/etc/envoy", c.VolumeMounts[0].MountPath)
	require.Equal(t, cm.Name, dep.Spec.Template.Spec.Volumes[0].ConfigMap.Name)
	listener := b.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue()
	require.Equal(t, int32(listener), c.Ports[0].ContainerPort, "the container port is the bootstrap's listener")
	svc := get[corev1.Service](t, r, "Service", "gw-llm-proxy-extproc-envoy")
	require.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels)))
	serverPods := get[appsv1.Deployment](t, r, "Deployment", "gw-llm-proxy-extproc").Spec.Template.Labels
	require.False(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(serverPods)), "Envoy's Service selects only Envoy")
}

func TestChartRefusesNoRules(t *testing.T) {
	_, err := k8scheck.RenderChart(t.Context(), chartDir, release, map[string]any{"includeBaseRules": false, "rules": map[string]any{"overrides.yml": nil}})
	require.ErrorContains(t, err, "no rule files")
}

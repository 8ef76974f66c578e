package composecheck_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoyconfig"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

const root = "../.."

// loadProject loads docker-compose.yml as `docker compose` would with the
// given profiles and an empty environment.
func loadProject(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	wd, err := filepath.Abs(root)
	require.NoError(t, err)
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  wd,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(wd, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}, loader.WithProfiles(profiles), func(o *loader.Options) { o.ResolvePaths = true })
	require.NoError(t, err)
	return p.WithoutUnresolvedOptionalDependencies()
}

func serviceNames(p *types.Project) []string {
	names := p.ServiceNames()
	slices.Sort(names)
	return names
}

func TestProfiles(t *testing.T) {
	tests := []struct {
		name     string
		profiles []string
		want     []string
	}{
		{name: "default runs against real vendors", want: []string{"envoy", "extproc", "redis"}},
		{name: "mock adds the fake vendor and the demo's server", profiles: []string{"mock"},
			want: []string{"envoy", "extproc", "extproc-mock", "fakellm", "redis"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := loadProject(t, tt.profiles...)
			require.Equal(t, tt.want, serviceNames(p))
			for _, s := range p.Services {
				for dep := range s.DependsOn {
					require.Contains(t, tt.want, dep, "%s depends on a service that is not started", s.Name)
				}
			}
		})
	}
	p := loadProject(t, "mock")
	require.Equal(t, []string{"mock"}, p.Services["fakellm"].Profiles)
	require.Equal(t, []string{"mock"}, p.Services["extproc-mock"].Profiles)
	for _, name := range []string{"envoy", "extproc", "redis"} {
		require.Empty(t, p.Services[name].Profiles, "%s must start without a profile", name)
	}
}

func TestImagesArePinned(t *testing.T) {
	p := loadProject(t, "mock")
	m := regexp.MustCompile(`^envoyproxy/envoy:v1\.(\d+)\.(\d+)$`).FindStringSubmatch(p.Services["envoy"].Image)
	require.NotNil(t, m, "envoy image must be pinned to an exact release: %s", p.Services["envoy"].Image)
	minor, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.GreaterOrEqual(t, minor, 37, "Envoy 1.37+: local replies reach ext_proc, upstream filters keep 5xx retries (README)")
	require.Regexp(t, `^redis:7\.\d+\.\d+-alpine$`, p.Services["redis"].Image)
}

// published returns the service's published ports as "hostIP:published->target".
func published(s types.ServiceConfig) []string {
	var out []string
	for _, pc := range s.Ports {
		out = append(out, pc.HostIP+":"+pc.Published+"->"+strconv.Itoa(int(pc.Target)))
	}
	slices.Sort(out)
	return out
}

func TestPorts(t *testing.T) {
	p := loadProject(t, "mock")
	require.ElementsMatch(t, []string{":9002->9002", "127.0.0.1:9901->9901"}, published(p.Services["envoy"]))
	require.Equal(t, []string{":9003->9003"}, published(p.Services["extproc"]))
	require.Equal(t, []string{":9004->9003"}, published(p.Services["extproc-mock"]), "both run under mock: another host port")
	require.Empty(t, published(p.Services["redis"]), "redis stays on the compose network")
	for _, pc := range p.Services["fakellm"].Ports {
		require.Equal(t, "127.0.0.1", pc.HostIP)
	}
}

func TestHealthchecksAndDependencies(t *testing.T) {
	p := loadProject(t, "mock")
	for _, name := range []string{"envoy", "extproc", "extproc-mock", "redis"} {
		hc := p.Services[name].HealthCheck
		require.NotNil(t, hc, name)
		require.False(t, hc.Disable, name)
		require.NotEmpty(t, hc.Test, name)
		require.Equal(t, "CMD", hc.Test[0], "%s: exec form, no shell needed", name)
	}
	dep := func(svc, on string) types.ServiceDependency {
		d, ok := p.Services[svc].DependsOn[on]
		require.True(t, ok, "%s must depend on %s", svc, on)
		return d
	}
	require.Equal(t, types.ServiceConditionHealthy, dep("extproc", "redis").Condition)
	require.True(t, dep("extproc", "redis").Required)
	require.Equal(t, types.ServiceConditionHealthy, dep("envoy", "extproc").Condition)
	require.False(t, dep("envoy", "fakellm").Required, "fakellm exists only under the mock profile")
	require.Equal(t, types.ServiceConditionHealthy, dep("envoy", "extproc-mock").Condition)
	require.False(t, dep("envoy", "extproc-mock").Required, "extproc-mock exists only under the mock profile")

	// The extproc probe is the static binary the Dockerfile puts in the image.
	for _, name := range []string{"extproc", "extproc-mock"} {
		hc := p.Services[name].HealthCheck.Test
		require.Equal(t, "/usr/local/bin/healthcheck", hc[1])
		require.Contains(t, hc[2], ":9003/ready")
	}
	require.Regexp(t, `(?m)^COPY --from=\S+ /out/healthcheck /usr/local/bin/healthcheck$`, dockerfile(t))
}

func TestBindMountsExist(t *testing.T) {
	p := loadProject(t, "mock")
	wd, err := filepath.Abs(root)
	require.NoError(t, err)
	n := 0
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			n++
			rel, err := filepath.Rel(wd, v.Source)
			require.NoError(t, err)
			require.False(t, strings.HasPrefix(rel, ".."), "%s mounts %s from outside the repository", s.Name, v.Source)
			st, err := os.Stat(v.Source)
			require.NoError(t, err, "%s mounts a missing file", s.Name)
			require.False(t, st.IsDir(), "%s: mount single files, not directories", v.Source)
			require.True(t, v.ReadOnly, "%s: configuration mounts are read-only", v.Source)
		}
	}
	require.Equal(t, 2, n, "envoy.yaml and envoy-mock.yaml")
}

func dockerfile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	require.NoError(t, err)
	return string(b)
}

func TestDockerfileTargets(t *testing.T) {
	df := dockerfile(t)
	stages := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?im)^FROM\s+\S+\s+AS\s+(\S+)\s*$`).FindAllStringSubmatch(df, -1) {
		stages[strings.ToLower(m[1])] = true
	}
	args := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^ARG\s+([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(df, -1) {
		args[m[1]] = true
	}
	p := loadProject(t, "mock")
	built := 0
	for _, s := range p.Services {
		if s.Build == nil {
			continue
		}
		built++
		require.True(t, stages[strings.ToLower(s.Build.Target)], "%s: Dockerfile has no stage %q", s.Name, s.Build.Target)
		for a := range s.Build.Args {
			require.True(t, args[a], "%s: Dockerfile declares no ARG %s", s.Name, a)
		}
	}
	require.Equal(t, 3, built, "extproc (twice: the mock profile's server too) and fakellm are built here")
	require.Regexp(t, `(?m)^FROM gcr\.io/distroless/static\S*:nonroot AS extproc$`, df)
	require.Regexp(t, `(?m)^FROM gcr\.io/distroless/static\S*:nonroot AS fakellm$`, df)
	require.Contains(t, df, `-X main.version=${VERSION}`)
	require.Contains(t, df, "CGO_ENABLED=0")
	require.Contains(t, df, "-trimpath")
	require.Contains(t, df, "--mount=type=cache,target=/go/pkg/mod")
}

func environment(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

func port(t *testing.T, addr string) uint32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.ParseUint(p, 10, 16)
	require.NoError(t, err)
	return uint32(n)
}

// endpointOf returns the single endpoint of a static cluster.
func endpointOf(t *testing.T, b *bootstrapv3.Bootstrap, cluster string) (string, uint32) {
	t.Helper()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == cluster {
			sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			return sa.GetAddress(), sa.GetPortValue()
		}
	}
	t.Fatalf("no cluster %s", cluster)
	return "", 0
}

// TestEnvoyReachesServices checks that the compose services listen where the
// Envoy bootstraps send traffic.
func TestEnvoyReachesServices(t *testing.T) {
	p := loadProject(t, "mock")
	fake := environment(p.Services["fakellm"])
	for file, server := range map[string]string{"envoy.yaml": "extproc", "envoy-mock.yaml": "extproc-mock"} {
		t.Run(file, func(t *testing.T) {
			b, err := envoyconfig.Load(filepath.Join(root, "envoy", file))
			require.NoError(t, err)
			extproc := environment(p.Services[server])
			host, pt := endpointOf(t, b, "ext_proc")
			require.Equal(t, server, host)
			require.Equal(t, port(t, extproc["GRPC_ADDR"]), pt)
			host, pt = endpointOf(t, b, "extproc_admin")
			require.Equal(t, server, host)
			require.Equal(t, port(t, extproc["ADMIN_ADDR"]), pt)
			if file == "envoy-mock.yaml" {
				for _, vendor := range []string{"openai", "anthropic", "gemini"} {
					host, pt = endpointOf(t, b, vendor)
					require.Equal(t, "fakellm", host)
					require.Equal(t, port(t, fake["FAKELLM_ADDR"]), pt)
				}
			}
		})
	}
}

// rules loads the rule files a service names in LLM_PROXY_CONFIG, from the
// image (COPY configs/), with the service's environment.
func rules(t *testing.T, s types.ServiceConfig) config.Config {
	t.Helper()
	require.Regexp(t, `(?m)^COPY configs/ /app/configs/$`, dockerfile(t))
	require.Regexp(t, `(?m)^WORKDIR /app$`, dockerfile(t))
	env := environment(s)
	var layers [][]byte
	for _, f := range config.SplitPaths(env["LLM_PROXY_CONFIG"]) {
		require.True(t, strings.HasPrefix(f, "configs/"), "%s: %s is not in the image", s.Name, f)
		b, err := os.ReadFile(filepath.Join(root, f))
		require.NoError(t, err)
		layers = append(layers, b)
	}
	cfg, err := config.Parse(func(k string) string { return env[k] }, layers...)
	require.NoError(t, err, s.Name)
	return cfg
}

func TestExtprocEnvironment(t *testing.T) {
	p := loadProject(t)
	env := environment(p.Services["extproc"])
	require.Equal(t, ":50051", env["GRPC_ADDR"])
	require.Equal(t, ":9003", env["ADMIN_ADDR"])
	require.Equal(t, "json", env["LOG_FORMAT"])
	require.Equal(t, "info", env["LOG_LEVEL"])
	// The default rule files are in the image and load.
	rules(t, p.Services["extproc"])
}

// TestMockProfileRunsEveryGuard checks the demo's server: the mock profile's
// rules load with its environment and turn every guard on, with small
// limits, over backends it can reach, writing cost records where the
// read-only container has a volume.
func TestMockProfileRunsEveryGuard(t *testing.T) {
	p := loadProject(t, "mock")
	s := p.Services["extproc-mock"]
	cfg := rules(t, s)
	f := cfg.Features
	require.True(t, f.RateLimiting.Enabled, "rate limits")
	require.Positive(t, f.RateLimiting.Limits.RequestsPerMinute)
	require.LessOrEqual(t, f.RateLimiting.Limits.RequestsPerMinute, int64(10), "small enough to hit from a shell")
	require.True(t, f.CircuitBreaker.Enabled, "circuit breaker")
	require.Equal(t, "enforce", f.CircuitBreaker.Mode)
	require.True(t, f.CostTracking.Enabled, "cost records")
	require.True(t, f.CostTracking.Budgets.Enabled, "budgets")
	require.Positive(t, f.CostTracking.Budgets.PerUser.Default.DailyUSD)

	// Backends: in process, or the compose Redis the service waits for.
	for name, backend := range map[string]string{"rate_limiting": f.RateLimiting.Backend,
		"circuit_breaker": f.CircuitBreaker.Backend, "budgets": f.CostTracking.Budgets.Backend} {
		if backend == "redis" {
			_, ok := s.DependsOn["redis"]
			require.True(t, ok, "%s on redis: extproc-mock must depend on redis", name)
		} else {
			require.Equal(t, "memory", backend, name)
		}
	}
	// Cost records land on the mounted volume: the root file system is
	// read-only.
	require.True(t, s.ReadOnly)
	require.NotEmpty(t, f.CostTracking.Sinks)
	for _, sink := range f.CostTracking.Sinks {
		require.Equal(t, "file", sink.Type)
		mounted := false
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume && strings.HasPrefix(sink.File.Path, v.Target+"/") {
				mounted = true
			}
		}
		require.True(t, mounted, "cost records at %s are on no volume", sink.File.Path)
	}
	// The same rules as make demo: one set of demo limits.
	require.Equal(t, "configs/base.yml,configs/demo.yml", environment(s)["LLM_PROXY_CONFIG"])
	demo, err := os.ReadFile(filepath.Join(root, "scripts", "demo.sh"))
	require.NoError(t, err)
	require.Contains(t, string(demo), "configs/base.yml,configs/demo.yml")
}

// TestEnvoyCommand checks the start script: both bootstraps are mounted where
// it looks for them, and its admin overlay merges into a valid bootstrap that
// listens where the host port mapping points.
func TestEnvoyCommand(t *testing.T) {
	p := loadProject(t, "mock")
	s := p.Services["envoy"]
	script := strings.Join(s.Command, " ")
	mounted := map[string]bool{}
	for _, v := range s.Volumes {
		mounted[v.Target] = true
	}
	for _, f := range []string{"envoy.yaml", "envoy-mock.yaml"} {
		require.Contains(t, script, "cfg="+f)
		require.True(t, mounted["/etc/envoy/"+f], "%s is not mounted", f)
	}
	require.Contains(t, script, `-c "/etc/envoy/$cfg"`)
	require.Contains(t, script, "getent hosts fakellm")

	m := regexp.MustCompile(`--config-yaml '([^']*)'`).FindStringSubmatch(script)
	require.NotNil(t, m, "admin overlay")
	overlay, err := envoyconfig.Parse([]byte(m[1]))
	require.NoError(t, err)
	b, err := envoyconfig.Load(filepath.Join(root, "envoy", "envoy.yaml"))
	require.NoError(t, err)
	proto.Merge(b, overlay) // what Envoy does with --config-yaml
	require.NoError(t, envoyconfig.Validate(b))
	sa := b.GetAdmin().GetAddress().GetSocketAddress()
	require.Equal(t, "0.0.0.0", sa.GetAddress())
	var adminPublished bool
	for _, pc := range s.Ports {
		if pc.Target == sa.GetPortValue() {
			adminPublished = true
			require.Equal(t, "127.0.0.1", pc.HostIP, "the admin API is published on the host loopback only")
		}
	}
	require.True(t, adminPublished)
}

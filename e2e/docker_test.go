package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
)

// TestScenariosDocker runs the scenario table against a real Envoy: the
// official image pinned in docker-compose.yml with envoy/envoy-mock.yaml, our
// server and the fake vendor built from the Dockerfile, on one Docker
// network. It needs a Docker engine and E2E_DOCKER=1 (make e2e-docker).
func TestScenariosDocker(t *testing.T) {
	if os.Getenv("E2E_DOCKER") == "" {
		t.Skip("Docker runner skipped: set E2E_DOCKER=1 (make e2e-docker) on a machine with a Docker engine")
	}
	testcontainers.SkipIfProviderIsNotHealthy(t)
	s := startDocker(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			s.reset(t)
			sc.run(t, s)
		})
	}
}

type docker struct {
	url     string
	fakeURL string
	envoy   testcontainers.Container

	mu        sync.Mutex
	logOffset int // access-log lines that belong to earlier scenarios
}

var composeEnvoyImage = regexp.MustCompile(`(?m)^\s*image:\s*(envoyproxy/envoy:\S+)`)

func startDocker(t *testing.T) *docker {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	compose, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	m := composeEnvoyImage.FindSubmatch(compose)
	require.NotNil(t, m, "docker-compose.yml pins an envoyproxy/envoy image")

	nw, err := network.New(ctx)
	require.NoError(t, err)
	testcontainers.CleanupNetwork(t, nw)

	build := func(target string) testcontainers.FromDockerfile {
		return testcontainers.FromDockerfile{Context: "..", Dockerfile: "Dockerfile", KeepImage: true,
			BuildOptionsModifier: func(o *client.ImageBuildOptions) { o.Target = target }}
	}
	start := func(req testcontainers.ContainerRequest) testcontainers.Container {
		c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
		testcontainers.CleanupContainer(t, c)
		require.NoError(t, err, "start %s", req.Name)
		return c
	}
	fake := start(testcontainers.ContainerRequest{
		FromDockerfile: build("fakellm"), ExposedPorts: []string{"8080/tcp"},
		Networks: []string{nw.Name}, NetworkAliases: map[string][]string{nw.Name: {"fakellm"}},
		WaitingFor: wait.ForListeningPort("8080/tcp"),
	})
	start(testcontainers.ContainerRequest{
		FromDockerfile: build("extproc"), ExposedPorts: []string{"50051/tcp", "9003/tcp"},
		Env:      map[string]string{"GRPC_ADDR": ":50051", "ADMIN_ADDR": ":9003", "LOG_FORMAT": "json"},
		Networks: []string{nw.Name}, NetworkAliases: map[string][]string{nw.Name: {"extproc-mock"}}, // envoy-mock.yaml's ext_proc host
		WaitingFor: wait.ForHTTP("/ready").WithPort("9003/tcp"),
	})
	envoy := start(testcontainers.ContainerRequest{
		Image: string(m[1]), ExposedPorts: []string{"9002/tcp"},
		Files: []testcontainers.ContainerFile{{HostFilePath: "../envoy/envoy-mock.yaml",
			ContainerFilePath: "/etc/envoy/envoy.yaml", FileMode: 0o644}},
		Cmd:        []string{"envoy", "-c", "/etc/envoy/envoy.yaml", "--log-level", "warn"},
		Networks:   []string{nw.Name},
		WaitingFor: wait.ForHTTP("/health").WithPort("9002/tcp").WithStartupTimeout(2 * time.Minute),
	})
	endpoint := func(c testcontainers.Container, port string) string {
		ep, err := c.PortEndpoint(ctx, port, "http")
		require.NoError(t, err)
		return ep
	}
	return &docker{url: endpoint(envoy, "9002/tcp"), fakeURL: endpoint(fake, "8080/tcp"), envoy: envoy}
}

func (d *docker) URL() string { return d.url }

// reset forgets the fake's calls and the access-log lines written so far.
func (d *docker) reset(t *testing.T) {
	t.Helper()
	resp, err := httpClient().Post(d.fakeURL+"/__fake/reset", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	lines := d.accessLines(t)
	d.mu.Lock()
	d.logOffset = len(lines)
	d.mu.Unlock()
}

func (d *docker) VendorCalls(t *testing.T) []fakevendor.Call {
	t.Helper()
	resp, err := httpClient().Get(d.fakeURL + "/__fake/calls")
	require.NoError(t, err)
	defer resp.Body.Close()
	var wire []struct {
		fakevendor.Call
		Body string `json:"body"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&wire))
	out := make([]fakevendor.Call, len(wire))
	for i, w := range wire {
		out[i] = w.Call
		out[i].Body = []byte(w.Body)
	}
	return out
}

// accessLines returns Envoy's JSON access-log lines (stdout), in order.
func (d *docker) accessLines(t *testing.T) []map[string]any {
	t.Helper()
	rc, err := d.envoy.Logs(t.Context())
	require.NoError(t, err)
	defer rc.Close()
	var out []map[string]any
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["response_code"] != nil {
			out = append(out, m)
		}
	}
	return out
}

func (d *docker) AccessLog(t *testing.T, n int) []map[string]any {
	t.Helper()
	var got []map[string]any
	require.Eventually(t, func() bool {
		lines := d.accessLines(t)
		d.mu.Lock()
		off := d.logOffset
		d.mu.Unlock()
		if len(lines) < off+n {
			return false
		}
		got = lines[off:]
		return true
	}, 20*time.Second, 100*time.Millisecond, fmt.Sprintf("waiting for %d access-log lines", n))
	return got
}

package envoyconfig_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	previouspriov3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoytest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// chainHeader is the request header the ext_proc server sets at admission
// (with the route cache cleared) to send a call to its chain's route.
const chainHeader = "x-llm-proxy-chain"

// exampleChain is the chain envoy.yaml carries: the rules key and its
// targets in order, the requested target first.
var exampleChain = struct {
	key, cluster string
	targets      []string
}{
	key: "openai:gpt-4o", cluster: "failover_openai_gpt_4o",
	targets: []string{"openai:gpt-4o", "openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5", "gemini:gemini-2.5-flash"},
}

// TestFailoverChainRoute pins the chain's route: selected only by the
// chain header, so a call without it keeps its vendor route; the
// retry policy walks the cluster's priorities (previous_priorities, one
// retry per further target) on the conditions of a failure before the
// first byte; :authority follows each attempt's host.
func TestFailoverChainRoute(t *testing.T) {
	for _, p := range []string{prodPath, mockPath} {
		t.Run(p, func(t *testing.T) {
			rs := routes(t, load(t, p))
			require.Equal(t, "openai", route(t, rs, "/openai/v1/chat/completions").GetRoute().GetCluster(),
				"without the chain header the vendor route applies")
			for _, path := range []string{"/openai/v1/chat/completions", "/meta/u/openai/v1/chat/completions", "/anthropic/v1/messages"} {
				r := routeWith(t, rs, path, map[string]string{chainHeader: exampleChain.key})
				require.Equal(t, exampleChain.cluster, r.GetRoute().GetCluster(), path)
			}
			a := routeWith(t, rs, "/openai/v1/chat/completions", map[string]string{chainHeader: exampleChain.key}).GetRoute()
			require.True(t, a.GetAutoHostRewrite().GetValue())
			require.Empty(t, a.GetPrefixRewrite(), "the upstream ext_proc sets each attempt's path")
			require.Nil(t, a.GetRegexRewrite())
			require.Zero(t, a.GetTimeout().AsDuration(), "route timeout 0 never cuts streams")
			require.Positive(t, a.GetIdleTimeout().AsDuration())
			rp := a.GetRetryPolicy()
			require.Equal(t, "5xx,reset,connect-failure,retriable-status-codes", rp.GetRetryOn())
			require.Contains(t, rp.GetRetriableStatusCodes(), uint32(429))
			require.Contains(t, rp.GetRetriableStatusCodes(), uint32(529))
			require.EqualValues(t, len(exampleChain.targets)-1, rp.GetNumRetries().GetValue())
			require.Positive(t, rp.GetPerTryTimeout().AsDuration(), "timeout_before_first_byte")
			require.Nil(t, rp.GetPerTryIdleTimeout(), "it would cut a healthy stream with a longer gap")
			require.Nil(t, rp.GetRateLimitedRetryBackOff(), "the next target need not wait for the failed one's reset")
			require.Equal(t, "envoy.retry_priorities.previous_priorities", rp.GetRetryPriority().GetName())
			pp := &previouspriov3.PreviousPrioritiesConfig{}
			require.NoError(t, rp.GetRetryPriority().GetTypedConfig().UnmarshalTo(pp))
			require.EqualValues(t, 1, pp.GetUpdateFrequency(), "every retry moves to the next priority")
			require.Empty(t, rp.GetRetryHostPredicate())
		})
	}
}

// TestFailoverChainCluster pins the chain's cluster: one host per target
// at priorities 0..n-1 in chain order, each host the target's vendor with
// its hostname (for auto_host_rewrite and per-host SNI) and metadata naming
// the target; TLS verifies each host by its own name.
func TestFailoverChainCluster(t *testing.T) {
	prod, mock := clustersByName(load(t, prodPath)), clustersByName(load(t, mockPath))
	for name, cs := range map[string]map[string]*clusterv3.Cluster{"prod": prod, "mock": mock} {
		t.Run(name, func(t *testing.T) {
			c := cs[exampleChain.cluster]
			require.NotNil(t, c)
			require.Equal(t, clusterv3.Cluster_STRICT_DNS, c.GetType(), "LOGICAL_DNS allows one endpoint")
			eps := c.GetLoadAssignment().GetEndpoints()
			require.Len(t, eps, len(exampleChain.targets))
			for i, target := range exampleChain.targets {
				require.EqualValues(t, i, eps[i].GetPriority())
				require.Len(t, eps[i].GetLbEndpoints(), 1)
				lb := eps[i].GetLbEndpoints()[0]
				vendor, _, _ := strings.Cut(target, ":")
				require.Equal(t, vendorHosts[vendor], lb.GetEndpoint().GetHostname(), target)
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				if name == "prod" {
					require.Equal(t, vendorHosts[vendor], sa.GetAddress())
					require.EqualValues(t, 443, sa.GetPortValue())
				} else {
					require.Equal(t, "fakellm", sa.GetAddress())
				}
				md := lb.GetMetadata().GetFilterMetadata()["llm_proxy.failover"].GetFields()
				require.Equal(t, target, md["target"].GetStringValue())
				require.Equal(t, exampleChain.key, md["chain"].GetStringValue())
			}
			if name == "mock" {
				require.Nil(t, c.GetTransportSocket())
				return
			}
			tls := &tlsv3.UpstreamTlsContext{}
			require.NoError(t, c.GetTransportSocket().GetTypedConfig().UnmarshalTo(tls))
			require.Empty(t, tls.GetSni(), "one SNI cannot name every vendor")
			require.True(t, tls.GetAutoHostSni())
			require.True(t, tls.GetAutoSniSanValidation())
			require.Equal(t, "/etc/ssl/certs/ca-certificates.crt", tls.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename())
		})
	}
}

// TestFailoverChainInEmulator runs envoy-mock.yaml in the Envoy-faithful
// emulator: a request with the chain header whose first two targets fail
// before any byte (503, then 429) is answered by the third, each attempt
// sent to the next priority's host with that host's name as :authority.
func TestFailoverChainInEmulator(t *testing.T) {
	var mu sync.Mutex
	var hosts []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		hosts = append(hosts, r.Host)
		n := len(hosts)
		mu.Unlock()
		switch n {
		case 1:
			w.WriteHeader(503)
		case 2:
			w.WriteHeader(429)
		default:
			_, _ = fmt.Fprint(w, `{"ok":true}`)
		}
	}))
	t.Cleanup(fake.Close)
	addr := strings.TrimPrefix(fake.URL, "http://")
	cfg, err := envoytest.FromBootstrap(mockPath, map[string]string{exampleChain.cluster: addr})
	require.NoError(t, err)
	// No ext_proc server in this test: the filters are left out, the
	// routing and retry configuration is what is exercised.
	cfg.ExtProc, cfg.RouterUpstreamExtProc, cfg.UpstreamExtProc, cfg.CORS = nil, nil, nil, nil
	cfg.Sleep = func(context.Context, time.Duration) error { return nil }
	cfg.OnViolation = envoytest.Strict(t)
	f, err := envoytest.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)

	req, err := http.NewRequest(http.MethodPost, s.URL+"/openai/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o"}`))
	require.NoError(t, err)
	req.Header.Set(chainHeader, exampleChain.key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, `{"ok":true}`, string(body))
	mu.Lock()
	require.Equal(t, []string{"api.openai.com", "api.openai.com", "api.anthropic.com"}, hosts)
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log, err := f.WaitAccessLog(ctx, 1)
	require.NoError(t, err)
	e := log[0]
	require.Equal(t, 3, e.Attempts)
	for i, a := range e.UpstreamAttempts {
		require.Equal(t, i, a.Priority)
	}
}

// TestFailoverChainUpstreamFilter pins what the chain route's attempts
// need of the router's upstream ext_proc filter: the host's target
// attribute, and mode_override honoured (the server asks for each
// attempt's body to set the target's model).
func TestFailoverChainUpstreamFilter(t *testing.T) {
	for _, p := range []string{prodPath, mockPath} {
		t.Run(p, func(t *testing.T) {
			e := upstreamExtProc(t, load(t, p))
			require.Contains(t, e.GetRequestAttributes(), processor.ChainTargetAttribute)
			require.True(t, e.GetAllowModeOverride())
			require.Empty(t, e.GetAllowedOverrideModes(), "any body mode may be asked for")
			require.False(t, e.GetSendBodyWithoutWaitingForHeaderResponse(), "it disables mode_override")
		})
	}
}

package envoytest

import (
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
)

// targetAttr is the host metadata attribute the upstream ext_proc asks for.
const targetAttr = "xds.upstream_host_metadata.filter_metadata['llm.target']['target']"

// chainConfig routes /chain/ to cluster "chain" whose hosts are the given
// upstreams at priorities 0, 1, 2..., each with hostname h<i>.example and
// metadata llm.target/target = "t<i>", with auto_host_rewrite and retry.
// The router's upstream ext_proc (at upAddr, request body BUFFERED) asks
// for targetAttr and upstream.address.
func chainConfig(downAddr, upAddr string, retry *RetryPolicy, hosts ...string) Config {
	var eps []Endpoint
	for i, h := range hosts {
		eps = append(eps, Endpoint{Address: h, Priority: i, Hostname: "h" + strconv.Itoa(i) + ".example",
			Metadata: map[string]map[string]any{"llm.target": {"target": "t" + strconv.Itoa(i)}}})
	}
	return Config{
		ExtProc: &ExtProcConfig{Addr: downAddr, MessageTimeout: 2 * time.Second},
		RouterUpstreamExtProc: &ExtProcConfig{Name: "envoy.filters.http.ext_proc.upstream", Addr: upAddr, MessageTimeout: 2 * time.Second,
			ProcessingMode:    mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE),
			RequestAttributes: []string{targetAttr, "upstream.address", "xds.upstream_host_metadata.filter_metadata['llm.target']['nope']"}},
		VirtualHosts: []VirtualHost{{
			Name: "llm", Domains: []string{"*"}, IncludeRequestAttemptCount: true, IncludeAttemptCountInResponse: true,
			Routes: []Route{{Name: "chain", Prefix: "/chain/", PrefixRewrite: "/", AutoHostRewrite: true, Cluster: "chain", Retry: retry}},
		}},
		ClusterEndpoints: map[string][]Endpoint{"chain": eps},
		Sleep:            (&sleepRecorder{}).sleep,
	}
}

func TestRetryWalksPrioritiesWithPreviousPriorities(t *testing.T) {
	// Attempt n goes to priority n: 503 from priority 0, a retriable 429
	// from priority 1, 200 from priority 2.
	ups := []*upstream{
		startUpstream(t, statusesUpstream(503)),
		startUpstream(t, statusesUpstream(429)),
		startUpstream(t, okUpstream(`{"ok":true}`)),
	}
	down := &recorder{}
	_, downAddr := startProc(t, respond(down, nil))
	up, upAddr := startUpstreamProc(t, func(i int, req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		switch req.Request.(type) {
		case *extprocsvc.ProcessingRequest_RequestHeaders:
			return nil // headers are held with the body (BUFFERED)
		case *extprocsvc.ProcessingRequest_RequestBody:
			// The attributes came with request_headers, the stream's first
			// message; the test reads them back below. The reply overwrites
			// what this filter owns for the attempt's target.
			target := "t" + strconv.Itoa(i)
			body := `{"model":"` + target + `"}`
			return withCommon(req, &extprocsvc.CommonResponse{
				HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
					setHeader(":path", "/"+target+"/v1/chat"), setHeader("x-target-"+target, "1"),
					setHeader("content-length", strconv.Itoa(len(body))),
				}},
				BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(body)}},
			})
		}
		return nil
	})
	cfg := chainConfig(downAddr, upAddr, &RetryPolicy{RetryOn: "5xx,reset,connect-failure,retriable-status-codes",
		RetriableStatusCodes: []int{429}, NumRetries: 2, PreviousPriorities: 1}, ups[0].URL, ups[1].URL, ups[2].URL)
	cfg.OnViolation = Strict(t)
	f, s := startFront(t, cfg)

	resp, body, err := do(t, "POST", s.URL+"/chain/v1/chat/completions", `{"model":"orig"}`, nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, `{"ok":true}`, body)
	require.Equal(t, "3", resp.Header.Get("X-Envoy-Attempt-Count"))
	e := waitLog(t, f, 1)[0]

	// Each host got exactly one attempt, rewritten for its own target:
	// auto_host_rewrite put the host's hostname in :authority, the body is
	// the attempt's own rewrite of the replayed original, and the shared
	// header map carries the earlier attempts' headers along
	// (UpstreamRequest::acceptHeadersFromRouter decodes the router's
	// downstream_headers_ on every attempt).
	for i, u := range ups {
		reqs := u.requests()
		require.Len(t, reqs, 1, "host %d", i)
		r := reqs[0]
		ti := "t" + strconv.Itoa(i)
		require.Equal(t, "/"+ti+"/v1/chat", r.Path)
		require.Equal(t, "h"+strconv.Itoa(i)+".example", r.Host)
		require.Equal(t, `{"model":"`+ti+`"}`, r.Body)
		require.Equal(t, strconv.Itoa(i+1), r.Header.Get("X-Envoy-Attempt-Count"))
		for j := range 3 {
			require.Equal(t, j <= i, r.Header.Get("X-Target-T"+strconv.Itoa(j)) == "1", "host %d header of attempt %d", i, j)
		}
	}

	// Every attempt's upstream ext_proc learnt its host from the attributes
	// of its first message and saw the original body, never the previous
	// attempt's rewrite (Filter::doRetry replays the router's buffer).
	require.Len(t, up.kinds(), 3)
	for i := range 3 {
		msgs := up.stream(i)
		attrs := msgs[0].GetAttributes()["envoy.filters.http.ext_proc"].GetFields()
		require.Equal(t, "t"+strconv.Itoa(i), attrs[targetAttr].GetStringValue())
		require.Equal(t, strings.TrimPrefix(ups[i].URL, "http://"), attrs["upstream.address"].GetStringValue())
		_, missing := attrs["xds.upstream_host_metadata.filter_metadata['llm.target']['nope']"]
		require.False(t, missing, "a missing metadata key is an evaluation error: left out")
		rh := msgs[0].GetRequestHeaders().GetHeaders()
		require.Equal(t, "h"+strconv.Itoa(i)+".example", hdr(t, rh, ":authority"))
		require.Equal(t, `{"model":"orig"}`, string(msgs[1].GetRequestBody().GetBody()))
		if i > 0 {
			// The previous attempt's :path rewrite is in the shared map.
			require.Equal(t, "/t"+strconv.Itoa(i-1)+"/v1/chat", hdr(t, rh, ":path"))
		}
	}

	require.Equal(t, 3, e.Attempts)
	require.Equal(t, strings.TrimPrefix(ups[2].URL, "http://"), e.UpstreamHost)
	for i, a := range e.UpstreamAttempts {
		require.Equal(t, i, a.Priority)
		require.Equal(t, strings.TrimPrefix(ups[i].URL, "http://"), a.Host)
		require.Equal(t, []int{503, 429, 200}[i], a.Status)
	}
	// Only the final attempt's response reaches the downstream filter.
	require.Equal(t, []string{"request_headers", "response_headers"}, down.kinds())
}

// attemptPriorities runs one request against a cluster of n hosts that all
// answer 503 and returns the priority of each attempt.
func attemptPriorities(t *testing.T, retry *RetryPolicy, n int) []int {
	t.Helper()
	var hosts []string
	for range n {
		hosts = append(hosts, startUpstream(t, statusesUpstream(503)).URL)
	}
	_, downAddr := startProc(t, respond(&recorder{}, nil))
	_, upAddr := startUpstreamProc(t, nil)
	cfg := chainConfig(downAddr, upAddr, retry, hosts...)
	cfg.OnViolation = Strict(t)
	f, s := startFront(t, cfg)
	resp, _, err := do(t, "POST", s.URL+"/chain/x", `{}`, nil)
	require.NoError(t, err)
	require.Equal(t, 503, resp.StatusCode)
	var got []int
	for _, a := range waitLog(t, f, 1)[0].UpstreamAttempts {
		got = append(got, a.Priority)
	}
	return got
}

// TestPreviousPrioritiesLoad pins determinePriorityLoad of
// previous_priorities.cc: fewer attempted hosts than update_frequency keep
// the original load; every update_frequency attempts the attempted
// priorities are excluded; with none left the original load is used.
func TestPreviousPrioritiesLoad(t *testing.T) {
	tests := []struct {
		name  string
		retry *RetryPolicy
		hosts int
		want  []int
	}{
		{name: "no retry priority: the original load every time", hosts: 3,
			retry: &RetryPolicy{RetryOn: "5xx", NumRetries: 2}, want: []int{0, 0, 0}},
		{name: "update_frequency 1", hosts: 3,
			retry: &RetryPolicy{RetryOn: "5xx", NumRetries: 2, PreviousPriorities: 1}, want: []int{0, 1, 2}},
		{name: "update_frequency 2", hosts: 3,
			retry: &RetryPolicy{RetryOn: "5xx", NumRetries: 3, PreviousPriorities: 2}, want: []int{0, 0, 1, 1}},
		{name: "every priority attempted: back to the original load", hosts: 2,
			retry: &RetryPolicy{RetryOn: "5xx", NumRetries: 3, PreviousPriorities: 1}, want: []int{0, 1, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, attemptPriorities(t, tc.retry, tc.hosts))
		})
	}
}

// TestPriorityRetryOnConnectFailureAndPerTryTimeout: a host that refuses
// the connection (connect-failure) or does not answer within
// per_try_timeout (router.cc onPerTryTimeout, retried as a reset) moves
// the request to the next priority.
func TestPriorityRetryOnConnectFailureAndPerTryTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := ln.Addr().String()
	require.NoError(t, ln.Close())
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	slow := startUpstream(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	good := startUpstream(t, okUpstream(`ok`))
	_, downAddr := startProc(t, respond(&recorder{}, nil))
	_, upAddr := startUpstreamProc(t, nil)
	cfg := chainConfig(downAddr, upAddr, &RetryPolicy{RetryOn: "5xx,reset,connect-failure", NumRetries: 2,
		PerTryTimeout: 300 * time.Millisecond, PreviousPriorities: 1}, refused, slow.URL, good.URL)
	f, s := startFront(t, cfg)
	resp, body, err := do(t, "POST", s.URL+"/chain/x", `{}`, nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "ok", body)
	e := waitLog(t, f, 1)[0]
	var outcomes []AttemptOutcome
	for _, a := range e.UpstreamAttempts {
		outcomes = append(outcomes, a.Outcome)
	}
	require.Equal(t, []AttemptOutcome{AttemptReset, AttemptPerTryTimeout, AttemptResponse}, outcomes)
	require.Equal(t, "remote connection failure", e.UpstreamAttempts[0].ResetReason)
	require.Len(t, good.requests(), 1)
}

// TestPriorityNoRetryAfterResponseStarted: once the response headers went
// downstream and bytes reached the client, a reset of the body is not
// retried on the next priority (the router only retries before
// onUpstreamHeaders passed a response on); the client's stream is cut.
func TestPriorityNoRetryAfterResponseStarted(t *testing.T) {
	abort := make(chan struct{})
	cut := startUpstream(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte("data: 1\n\n"))
		w.(http.Flusher).Flush()
		<-abort
		panic(http.ErrAbortHandler)
	})
	next := startUpstream(t, okUpstream(`ok`))
	_, downAddr := startProc(t, respond(&recorder{}, nil))
	_, upAddr := startUpstreamProc(t, nil)
	cfg := chainConfig(downAddr, upAddr, &RetryPolicy{RetryOn: "5xx,reset", NumRetries: 1, PreviousPriorities: 1}, cut.URL, next.URL)
	f, s := startFront(t, cfg)
	resp, err := http.Post(s.URL+"/chain/x", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	first := make([]byte, len("data: 1\n\n"))
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err)
	close(abort)
	_, err = io.ReadAll(resp.Body)
	require.Error(t, err, "the client sees the stream cut")
	e := waitLog(t, f, 1)[0]
	require.True(t, e.Reset)
	require.Equal(t, 1, e.Attempts)
	require.Empty(t, next.requests())
}

// TestPriorityUpstreamLocalReplyIsFinal: an upstream filter's local reply on
// priority 0 is never retried on priority 1
// (UpstreamFilterManager::sendLocalReply answers downstream).
func TestPriorityUpstreamLocalReplyIsFinal(t *testing.T) {
	first := startUpstream(t, okUpstream(`first`))
	next := startUpstream(t, okUpstream(`next`))
	_, downAddr := startProc(t, respond(&recorder{}, nil))
	_, upAddr := startUpstreamProc(t, func(_ int, req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if req.GetRequestHeaders() != nil {
			return immediateReply(503, `{"error":"no"}`)
		}
		return nil
	})
	cfg := chainConfig(downAddr, upAddr, &RetryPolicy{RetryOn: "5xx", NumRetries: 1, PreviousPriorities: 1}, first.URL, next.URL)
	f, s := startFront(t, cfg)
	resp, body, err := do(t, "POST", s.URL+"/chain/x", `{}`, nil)
	require.NoError(t, err)
	require.Equal(t, 503, resp.StatusCode)
	require.Equal(t, `{"error":"no"}`, body)
	e := waitLog(t, f, 1)[0]
	require.Equal(t, 1, e.Attempts)
	require.Equal(t, AttemptLocalReply, e.UpstreamAttempts[0].Outcome)
	require.Empty(t, first.requests())
	require.Empty(t, next.requests())
}

func TestClusterEndpointsValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{name: "auto_host_rewrite with host_rewrite_literal", mutate: func(c *Config) {
			c.VirtualHosts[0].Routes[0].HostRewriteLiteral = "x"
		}, want: "one host_rewrite_specifier"},
		{name: "negative update_frequency", mutate: func(c *Config) {
			c.VirtualHosts[0].Routes[0].Retry.PreviousPriorities = -1
		}, want: "update_frequency must be greater than 0"},
		{name: "cluster without endpoints", mutate: func(c *Config) {
			c.ClusterEndpoints["chain"] = nil
		}, want: `cluster "chain": no endpoints`},
		{name: "negative priority", mutate: func(c *Config) {
			c.ClusterEndpoints["chain"][0].Priority = -1
		}, want: "negative priority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := chainConfig("127.0.0.1:1", "127.0.0.1:2", &RetryPolicy{RetryOn: "5xx", PreviousPriorities: 1}, "127.0.0.1:3")
			tc.mutate(&cfg)
			_, err := New(cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestFromBootstrapChainCluster(t *testing.T) {
	cfg, err := FromBootstrap("testdata/chain.yaml", map[string]string{
		"api.anthropic.com:443": "127.0.0.1:8082", "ext_proc": "127.0.0.1:1234",
	})
	require.NoError(t, err)
	rt := cfg.VirtualHosts[0].Routes[0]
	require.True(t, rt.AutoHostRewrite)
	require.Equal(t, 1, rt.Retry.PreviousPriorities)
	require.Equal(t, 2, rt.Retry.NumRetries)
	require.Equal(t, []int{429}, rt.Retry.RetriableStatusCodes)
	require.Equal(t, 30*time.Second, rt.Retry.PerTryTimeout)
	eps := cfg.ClusterEndpoints["chain"]
	require.Len(t, eps, 3)
	for i, want := range []struct{ addr, host, target string }{
		{"api.openai.com:443", "api.openai.com", "openai:gpt-4o"},
		{"127.0.0.1:8082", "api.anthropic.com", "anthropic:claude-sonnet-4-5"},
		{"generativelanguage.googleapis.com:443", "generativelanguage.googleapis.com", "gemini:gemini-2.5-flash"},
	} {
		require.Equal(t, i, eps[i].Priority)
		require.Equal(t, want.addr, eps[i].Address, "an endpoint address override")
		require.Equal(t, want.host, eps[i].Hostname)
		require.Equal(t, want.target, eps[i].Metadata["llm_proxy.target"]["target"])
	}
	_, single := cfg.ClusterEndpoints["ext_proc"]
	require.False(t, single, "a one-address cluster stays in Clusters")
	require.Equal(t, "127.0.0.1:1234", cfg.Clusters["ext_proc"])
	_, isCluster := cfg.Clusters["api.anthropic.com:443"]
	require.False(t, isCluster, "an endpoint override is not a cluster")
	f, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// TestParseBootstrapChainErrors: configurations real Envoy refuses at load.
func TestParseBootstrapChainErrors(t *testing.T) {
	good, err := os.ReadFile("testdata/chain.yaml")
	require.NoError(t, err)
	tests := []struct {
		name      string
		old, repl string
		wantErr   string
	}{
		{name: "update_frequency 0 (PreviousPrioritiesConfig validation)",
			old: "update_frequency: 1", repl: "update_frequency: 0", wantErr: "UpdateFrequency: value must be greater than 0"},
		{name: "a retry priority with another config type (no registered factory)",
			old:  "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig\n                        update_frequency: 1",
			repl: "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", wantErr: "no registered retry priority"},
		{name: "auto_host_rewrite and host_rewrite_literal (one oneof)",
			old: "auto_host_rewrite: true", repl: "auto_host_rewrite: true\n                  host_rewrite_literal: x", wantErr: "oneof"},
		{name: "several endpoints in a LOGICAL_DNS cluster (logical_dns_cluster.cc)",
			old: "type: STRICT_DNS", repl: "type: LOGICAL_DNS", wantErr: "LOGICAL_DNS clusters must have a single"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mutated := strings.Replace(string(good), tc.old, tc.repl, 1)
			require.NotEqual(t, string(good), mutated, "mutation did not apply")
			_, err := ParseBootstrap([]byte(mutated), nil)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// x-envoy-max-retries, set by a filter before the router, takes precedence
// over num_retries (RetryStateImpl's constructor, when the route retries on
// anything) and never reaches an upstream: RetryStateImpl::create consumes
// it and the other retry headers.
func TestMaxRetriesHeader(t *testing.T) {
	tests := []struct {
		name     string
		value    string
		retryOn  string
		attempts int
	}{
		{"lowers the limit", "1", "5xx", 2},
		{"none at all", "0", "5xx", 1},
		{"raises it too", "3", "5xx", 4},
		{"whitespace and plus sign, as absl::SimpleAtoi", " +1 ", "5xx", 2},
		{"not a number: num_retries", "one", "5xx", 3},
		{"negative: num_retries", "-1", "5xx", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hosts []*upstream
			var urls []string
			for range 4 {
				u := startUpstream(t, statusesUpstream(503))
				hosts = append(hosts, u)
				urls = append(urls, u.URL)
			}
			_, downAddr := startProc(t, respond(&recorder{}, func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
				if req.GetRequestHeaders() == nil {
					return nil
				}
				return withCommon(req, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
					SetHeaders: []*corev3.HeaderValueOption{setHeader("x-envoy-max-retries", tt.value)}}})
			}))
			_, upAddr := startUpstreamProc(t, nil)
			cfg := chainConfig(downAddr, upAddr, &RetryPolicy{RetryOn: tt.retryOn, NumRetries: 2, PreviousPriorities: 1}, urls...)
			cfg.ExtProc.MutationRules.AllowEnvoy = true
			cfg.OnViolation = Strict(t)
			_, s := startFront(t, cfg)
			resp, _, err := do(t, "POST", s.URL+"/chain/v1/chat/completions", `{"model":"orig"}`, nil)
			require.NoError(t, err)
			require.Equal(t, 503, resp.StatusCode)
			require.Equal(t, strconv.Itoa(tt.attempts), resp.Header.Get("X-Envoy-Attempt-Count"))
			for i, u := range hosts {
				reqs := u.requests()
				if i >= tt.attempts {
					require.Empty(t, reqs, "host %d", i)
					continue
				}
				require.Len(t, reqs, 1, "host %d", i)
				require.Empty(t, reqs[0].Header.Get("X-Envoy-Max-Retries"), "consumed by the router")
			}
		})
	}
}

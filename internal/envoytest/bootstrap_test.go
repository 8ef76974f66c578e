package envoytest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

func TestFromBootstrap(t *testing.T) {
	cfg, err := FromBootstrap("testdata/bootstrap.yaml", map[string]string{"ext_proc": "127.0.0.1:1234", "openai": "127.0.0.1:8080"})
	require.NoError(t, err)

	require.Equal(t, "0.0.0.0:9002", cfg.ListenAddr)
	require.Equal(t, 4194304, cfg.BufferLimit)
	require.True(t, cfg.UseRemoteAddress)
	require.Equal(t, map[string]any{"code": "%RESPONSE_CODE%", "model": "%DYNAMIC_METADATA(llm_proxy:model)%"}, cfg.AccessLogFormat)
	require.Equal(t, map[string]string{
		"ext_proc": "127.0.0.1:1234", "openai": "127.0.0.1:8080",
		"extproc_admin": "extproc:9003", "gemini": "generativelanguage.googleapis.com:443",
	}, cfg.Clusters)
	require.Equal(t, map[string]ClusterProtocol{"ext_proc": {HTTP2: true}, "openai": {EnableTrailers: true}}, cfg.ClusterProtocols)

	ep := cfg.ExtProc
	require.NotNil(t, ep)
	require.Equal(t, "envoy.filters.http.ext_proc", ep.Name)
	require.Equal(t, "127.0.0.1:1234", ep.Addr)
	require.Equal(t, 3*time.Second, ep.MessageTimeout)
	require.Equal(t, 30*time.Second, ep.MaxMessageTimeout)
	require.True(t, ep.AllowModeOverride)
	require.False(t, ep.FailureModeAllow)
	require.True(t, proto.Equal(&extprocv3.ProcessingMode{
		RequestHeaderMode: extprocv3.ProcessingMode_SEND, RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
		RequestTrailerMode: extprocv3.ProcessingMode_SKIP, ResponseHeaderMode: extprocv3.ProcessingMode_SEND,
		ResponseBodyMode: extprocv3.ProcessingMode_NONE, ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
	}, ep.ProcessingMode))
	require.Equal(t, []string{"llm_proxy"}, ep.ReceivingNamespaces)
	require.Equal(t, []string{"request.id"}, ep.RequestAttributes)
	require.True(t, ep.MutationRules.AllowAllRouting)
	require.True(t, ep.MutationRules.DisallowExpression.MatchString("x-internal-a"))
	require.False(t, ep.MutationRules.DisallowExpression.MatchString("a-x-internal-a"))

	require.Len(t, cfg.VirtualHosts, 1)
	routes := cfg.VirtualHosts[0].Routes
	require.Len(t, routes, 5)
	health, meta, openai, gemini, teapot := routes[0], routes[1], routes[2], routes[3], routes[4]
	require.Equal(t, "/health", health.Path)
	require.Equal(t, 5*time.Second, health.Timeout)
	require.True(t, health.ExtProc.Disabled)
	require.Equal(t, "/meta/[^/]+/(openai|anthropic|gemini)/.*", meta.Regex)
	require.Equal(t, &RegexRewrite{Pattern: "^/meta/[^/]+/[a-z]+/", Substitution: "/"}, meta.RegexRewrite)
	require.Equal(t, DefaultRouteTimeout, meta.Timeout, "absent timeout is Envoy's 15 s")
	require.Equal(t, time.Duration(0), openai.Timeout)
	require.Equal(t, "/", openai.PrefixRewrite)
	require.Equal(t, "api.openai.com", openai.HostRewriteLiteral)
	require.Equal(t, &RetryPolicy{
		RetryOn: "5xx,reset,connect-failure,retriable-status-codes", NumRetries: 3, RetriableStatusCodes: []int{429},
		PerTryTimeout: 60 * time.Second, BaseInterval: 200 * time.Millisecond, MaxInterval: 2 * time.Second,
		RateLimitedResetHeaders: []ResetHeader{{Name: "retry-after", Format: ResetSeconds}, {Name: "x-ratelimit-reset", Format: ResetUnixTimestamp}},
		RateLimitedMaxInterval:  20 * time.Second,
	}, openai.Retry)
	require.NotNil(t, gemini.ExtProc)
	require.True(t, *gemini.ExtProc.FailureModeAllow)
	require.Equal(t, extprocv3.ProcessingMode_STREAMED, gemini.ExtProc.ProcessingMode.GetResponseBodyMode())
	require.Equal(t, &DirectResponse{Status: 418, Body: "short and stout"}, teapot.DirectResponse)

	f, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func TestParseBootstrapErrors(t *testing.T) {
	good, err := os.ReadFile("testdata/bootstrap.yaml")
	require.NoError(t, err)
	tests := []struct {
		name    string
		mutate  func(string) string
		wantErr string
	}{
		{name: "unknown field", mutate: func(s string) string {
			return strings.Replace(s, "allow_mode_override: true", "allow_mode_overide: true", 1)
		},
			wantErr: "allow_mode_overide"},
		{name: "unregistered type", mutate: func(s string) string {
			return strings.Replace(s, "envoy.extensions.filters.http.cors.v3.Cors", "envoy.extensions.filters.http.nope.v3.Nope", 1)
		}, wantErr: "nope"},
		{name: "pgv failure", mutate: func(s string) string {
			return strings.Replace(s, "cluster_name: ext_proc }", "cluster_name: \"\" }", 1)
		},
			wantErr: "ClusterName"},
		{name: "auto_config needs ALPN", mutate: func(s string) string {
			return strings.Replace(s, "explicit_http_config: { http_protocol_options: { enable_trailers: true } }", "auto_config: {}", 1)
		}, wantErr: "auto_config"},
		{name: "full duplex unsupported", mutate: func(s string) string {
			return strings.Replace(s, "request_body_mode: BUFFERED", "request_body_mode: FULL_DUPLEX_STREAMED", 1)
		}, wantErr: "unsupported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBootstrap([]byte(tc.mutate(string(good))), nil)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
	_, err = FromBootstrap(filepath.Join(t.TempDir(), "missing.yaml"), nil)
	require.Error(t, err)
}

func TestBootstrapEndToEnd(t *testing.T) {
	rec := &recorder{}
	_, addr := startProc(t, respond(rec, nil))
	up := startUpstream(t, okUpstream(`{"id":"x"}`))
	cfg, err := FromBootstrap("testdata/bootstrap.yaml", map[string]string{"ext_proc": addr, "openai": up.URL, "extproc_admin": up.URL})
	require.NoError(t, err)
	f, s := startFront(t, cfg)

	resp, body, err := do(t, "POST", s.URL+"/openai/v1/chat/completions", `{"model":"m"}`, nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, `{"id":"x"}`, body)
	r := up.requests()[0]
	require.Equal(t, "/v1/chat/completions", r.Path)
	require.Equal(t, "api.openai.com", r.Host)
	require.Equal(t, []string{"request_headers", "request_body(eos)", "response_headers"}, rec.kinds())

	resp, _, err = do(t, "GET", s.URL+"/health", "", nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	resp, body, err = do(t, "GET", s.URL+"/teapot", "", nil)
	require.NoError(t, err)
	require.Equal(t, 418, resp.StatusCode)
	require.Equal(t, "short and stout", body)
	e := waitLog(t, f, 3)
	require.Equal(t, "direct_response", e[2].Details)
	require.Len(t, rec.kinds(), 5, "health route is ext_proc-disabled; teapot passes the filter")
	require.Empty(t, f.Violations())
}

func TestFromBootstrapUpstreamFilters(t *testing.T) {
	cfg, err := FromBootstrap("testdata/upstream.yaml", nil)
	require.NoError(t, err)
	vh := cfg.VirtualHosts[0]
	require.True(t, vh.IncludeRequestAttemptCount)
	require.True(t, vh.IncludeAttemptCountInResponse)

	require.Len(t, cfg.UpstreamExtProc, 2)
	oa := cfg.UpstreamExtProc["openai"]
	require.NotNil(t, oa)
	require.Equal(t, "envoy.filters.http.ext_proc.upstream", oa.Name)
	require.Equal(t, "127.0.0.1:50052", oa.Addr)
	require.Equal(t, 2*time.Second, oa.MessageTimeout)
	require.True(t, oa.FailureModeAllow)
	require.Equal(t, extprocv3.ProcessingMode_BUFFERED, oa.ProcessingMode.GetRequestBodyMode())
	require.Equal(t, []string{"llm.upstream"}, oa.ReceivingNamespaces)
	plain, ok := cfg.UpstreamExtProc["plain"]
	require.True(t, ok, "a chain without ext_proc still overrides the router chain")
	require.Nil(t, plain)
	_, ok = cfg.UpstreamExtProc["gemini"]
	require.False(t, ok, "no http_filters: the router's upstream_http_filters apply")
	require.NotNil(t, cfg.RouterUpstreamExtProc)
	require.Equal(t, "127.0.0.1:50052", cfg.RouterUpstreamExtProc.Addr)
	require.Equal(t, 4*time.Second, cfg.RouterUpstreamExtProc.MessageTimeout)
	require.Equal(t, "127.0.0.1:50051", cfg.ExtProc.Addr)

	f, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func TestParseBootstrapUpstreamChainErrors(t *testing.T) {
	good, err := os.ReadFile("testdata/upstream.yaml")
	require.NoError(t, err)
	codec := `
        - name: envoy.filters.http.upstream_codec
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
    load_assignment:
      cluster_name: plain`
	tests := []struct {
		name    string
		mutate  func(string) string
		wantErr string
	}{
		{name: "chain not ending in upstream_codec", mutate: func(s string) string {
			// Drop the openai chain's codec: header_mutation becomes last.
			return strings.Replace(s, `        - name: envoy.filters.http.upstream_codec
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
    load_assignment:
      cluster_name: openai`, `    load_assignment:
      cluster_name: openai`, 1)
		}, wantErr: `cluster "openai": http_filters: non-terminal filter "envoy.filters.http.header_mutation" is the last upstream http filter`},
		{name: "upstream_codec not last", mutate: func(s string) string {
			return strings.Replace(s, codec, `
        - name: envoy.filters.http.upstream_codec
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
        - name: envoy.filters.http.upstream_codec
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
    load_assignment:
      cluster_name: plain`, 1)
		}, wantErr: `cluster "plain": http_filters: terminal filter "envoy.filters.http.upstream_codec" (upstream_codec) must be the last`},
		{name: "router chain without codec", mutate: func(s string) string {
			return strings.Replace(s, `                  message_timeout: 4s
              - name: envoy.filters.http.upstream_codec
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
`, `                  message_timeout: 4s
`, 1)
		}, wantErr: `upstream_http_filters: non-terminal filter "envoy.filters.http.ext_proc" is the last`},
		{name: "ext_proc cluster without address", mutate: func(s string) string {
			return strings.Replace(s, "envoy_grpc: { cluster_name: ext_proc_upstream }\n            message_timeout: 2s", "envoy_grpc: { cluster_name: nope }\n            message_timeout: 2s", 1)
		}, wantErr: `ext_proc cluster "nope" has no address`},
		{name: "two ext_proc filters", mutate: func(s string) string {
			return strings.Replace(s, codec, `
        - name: a
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
            grpc_service: { envoy_grpc: { cluster_name: ext_proc } }
        - name: b
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
            grpc_service: { envoy_grpc: { cluster_name: ext_proc } }`+codec, 1)
		}, wantErr: "more than one ext_proc filter"},
		{name: "unsupported upstream body mode", mutate: func(s string) string {
			return strings.Replace(s, "request_body_mode: BUFFERED", "request_body_mode: FULL_DUPLEX_STREAMED", 1)
		}, wantErr: `cluster "openai" http_filters: body mode FULL_DUPLEX_STREAMED`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mutated := tc.mutate(string(good))
			require.NotEqual(t, string(good), mutated, "mutation did not apply")
			_, err := ParseBootstrap([]byte(mutated), nil)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestBootstrapUpstreamEndToEnd(t *testing.T) {
	down := &recorder{}
	_, downAddr := startProc(t, respond(down, nil))
	up, upAddr := startUpstreamProc(t, nil)
	srv := startUpstream(t, statusesUpstream(503, 200))
	cfg, err := FromBootstrap("testdata/upstream.yaml", map[string]string{
		"ext_proc": downAddr, "ext_proc_upstream": upAddr, "openai": srv.URL, "plain": srv.URL, "gemini": srv.URL,
	})
	require.NoError(t, err)
	cfg.Sleep = (&sleepRecorder{}).sleep
	cfg.OnViolation = Strict(t)
	f, s := startFront(t, cfg)

	resp, body, err := do(t, "POST", s.URL+"/openai/v1/chat/completions", `{"model":"m"}`, nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "attempt 1", body)
	require.Equal(t, "2", resp.Header.Get("X-Envoy-Attempt-Count"))
	want := []string{"request_headers", "request_body(eos)", "response_headers"}
	require.Equal(t, [][]string{want, want}, up.kinds(), "cluster chain: BUFFERED request body, one stream per attempt")

	resp, _, err = do(t, "GET", s.URL+"/plain/x", "", nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Len(t, up.kinds(), 2, "the plain cluster's own chain has no ext_proc")

	resp, _, err = do(t, "GET", s.URL+"/gemini/v1beta/models", "", nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	kinds := up.kinds()
	require.Len(t, kinds, 3)
	require.Equal(t, []string{"request_headers(eos)", "response_headers"}, kinds[2], "router upstream_http_filters")
	require.Equal(t, "/v1beta/models", hdr(t, up.stream(2)[0].GetRequestHeaders().GetHeaders(), ":path"))
	e := waitLog(t, f, 3)
	require.Len(t, e[0].UpstreamAttempts, 2)
	require.Len(t, e[1].UpstreamAttempts, 1)
	require.Zero(t, e[1].UpstreamAttempts[0].ExtProcStreams)
}

package envoytest

import (
	"io"
	"net/http"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
)

const testOrigin = "https://app.example.com"

func corsTestPolicy() *CORSPolicy {
	yes := true
	return &CORSPolicy{
		AllowOrigins:     []StringMatcher{{Exact: testOrigin}, {Suffix: ".example.org"}},
		AllowMethods:     "GET, POST",
		AllowHeaders:     "authorization, content-type",
		ExposeHeaders:    "x-request-id, retry-after",
		MaxAge:           "600",
		AllowCredentials: &yes,
	}
}

// corsConfig routes everything to u through ext_proc at addr with a CORS
// filter (before or after ext_proc) and the vhost policy p.
func corsConfig(addr string, u *upstream, after bool, p *CORSPolicy, routeP *CORSPolicy) Config {
	cfg := basicConfig(addr, u, mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE))
	cfg.Routes = nil
	cfg.VirtualHosts = []VirtualHost{{Name: "vh", Domains: []string{"*"}, CORS: p, Routes: []Route{
		{Name: "narrow", Prefix: "/narrow/", Cluster: "up", CORS: routeP},
		{Name: "all", Prefix: "/", Cluster: "up"},
	}}}
	cfg.CORS = &CORSFilter{AfterExtProc: after}
	return cfg
}

func TestCORSPreflight(t *testing.T) {
	no := false
	tests := []struct {
		name       string
		after      bool
		policy     *CORSPolicy
		path       string
		hdr        map[string]string
		wantLocal  bool // answered by the CORS filter
		wantHeader map[string]string
		wantAbsent []string
	}{
		{
			name: "allowed origin answered before ext_proc", path: "/v1/chat",
			hdr:       map[string]string{"Origin": testOrigin, "Access-Control-Request-Method": "POST"},
			wantLocal: true,
			wantHeader: map[string]string{
				"Access-Control-Allow-Origin": testOrigin, "Access-Control-Allow-Methods": "GET, POST",
				"Access-Control-Allow-Headers": "authorization, content-type", "Access-Control-Max-Age": "600",
				"Access-Control-Allow-Credentials": "true",
				// The filter's own encodeHeaders runs on its preflight reply.
				"Access-Control-Expose-Headers": "x-request-id, retry-after",
			},
		},
		{
			name: "wildcards echo the requested method and headers", path: "/v1/chat",
			policy:    &CORSPolicy{AllowOrigins: []StringMatcher{{Regex: `https://[a-z]+\.example\.org`}}, AllowMethods: "*", AllowHeaders: "*"},
			hdr:       map[string]string{"Origin": "https://ui.example.org", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-api-key"},
			wantLocal: true,
			wantHeader: map[string]string{
				"Access-Control-Allow-Origin": "https://ui.example.org", "Access-Control-Allow-Methods": "PUT",
				"Access-Control-Allow-Headers": "x-api-key",
			},
			wantAbsent: []string{"Access-Control-Allow-Credentials", "Access-Control-Max-Age", "Access-Control-Expose-Headers"},
		},
		{
			name: "disallowed origin is forwarded by default", path: "/v1/chat",
			hdr:        map[string]string{"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"},
			wantAbsent: []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods"},
		},
		{
			name: "disallowed origin answered without allow-origin when not forwarded", path: "/v1/chat",
			policy: func() *CORSPolicy {
				p := corsTestPolicy()
				p.ForwardNotMatchingPreflights = &no
				return p
			}(),
			hdr:        map[string]string{"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"},
			wantLocal:  true,
			wantHeader: map[string]string{"Access-Control-Allow-Methods": "GET, POST", "Access-Control-Allow-Credentials": "true"},
			wantAbsent: []string{"Access-Control-Allow-Origin", "Access-Control-Expose-Headers"},
		},
		{
			name: "OPTIONS without access-control-request-method is not a preflight", path: "/v1/chat",
			hdr:        map[string]string{"Origin": testOrigin},
			wantHeader: map[string]string{"Access-Control-Allow-Origin": testOrigin},
		},
		{
			name: "after ext_proc: ext_proc sees the request, not the upstream", after: true, path: "/v1/chat",
			hdr:       map[string]string{"Origin": testOrigin, "Access-Control-Request-Method": "POST"},
			wantLocal: true,
			wantHeader: map[string]string{
				"Access-Control-Allow-Origin": testOrigin, "Access-Control-Allow-Methods": "GET, POST",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			proc, addr := startProc(t, respond(rec, nil))
			u := startUpstream(t, okUpstream(`{}`))
			p := tc.policy
			if p == nil {
				p = corsTestPolicy()
			}
			f, s := startFront(t, corsConfig(addr, u, tc.after, p, nil))
			resp, body, err := do(t, http.MethodOptions, s.URL+tc.path, "", tc.hdr)
			require.NoError(t, err)
			require.Equal(t, 200, resp.StatusCode)
			for k, v := range tc.wantHeader {
				require.Equal(t, v, resp.Header.Get(k), k)
			}
			for _, k := range tc.wantAbsent {
				require.NotContains(t, resp.Header, http.CanonicalHeaderKey(k))
			}
			log := waitLog(t, f, 1)
			switch {
			case tc.wantLocal:
				require.Empty(t, body)
				require.Equal(t, "0", resp.Header.Get("Content-Length"))
				require.Empty(t, u.requests(), "the router never sees a preflight answered by CORS")
				require.Equal(t, "cors_response", log[0].Details)
				require.Equal(t, 200, log[0].Status)
				if tc.after {
					// ext_proc ran before CORS: it saw the request headers and,
					// as an earlier encoder filter, the preflight reply.
					require.Equal(t, []string{"request_headers(eos)", "response_headers(eos)"}, rec.kinds())
				} else {
					// The preflight reply traverses the whole encoder chain
					// (commonEncodePrefix starts at encoder_filters_.begin()):
					// ext_proc never saw the request, yet gets one stream with
					// the reply's response_headers.
					require.Equal(t, 1, proc.streamCount(), "a CORS preflight reply opens an ext_proc stream")
					require.Equal(t, []string{"response_headers(eos)"}, rec.kinds())
					st, _ := headerOf(rec.all()[0].GetResponseHeaders().GetHeaders(), ":status")
					require.Equal(t, "200", st)
				}
			default:
				require.Len(t, u.requests(), 1)
				require.Equal(t, "via_upstream", log[0].Details)
				require.Equal(t, 1, proc.streamCount())
			}
		})
	}
}

func TestCORSResponses(t *testing.T) {
	atRequestHeaders := func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if r.GetRequestHeaders() != nil {
			return immediate(429, `{"error":"slow down"}`, "rate limited")
		}
		return nil
	}
	atRequestBody := func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if r.GetRequestBody() != nil {
			return immediate(429, `{"error":"slow down"}`, "rate limited")
		}
		return nil
	}
	atResponseHeaders := func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if r.GetResponseHeaders() != nil {
			return immediate(502, "bad", "response rejected")
		}
		return nil
	}
	no := false
	tests := []struct {
		name       string
		after      bool
		routeP     *CORSPolicy
		path       string
		origin     string
		handler    handler
		wantStatus int
		wantCORS   bool
		wantCreds  string
		wantExpose string
	}{
		{name: "upstream response", path: "/v1", origin: testOrigin, wantStatus: 200, wantCORS: true, wantCreds: "true", wantExpose: "x-request-id, retry-after"},
		{name: "suffix match", path: "/v1", origin: "https://ui.example.org", wantStatus: 200, wantCORS: true, wantCreds: "true", wantExpose: "x-request-id, retry-after"},
		{name: "disallowed origin", path: "/v1", origin: "https://evil.test", wantStatus: 200},
		{name: "no origin", path: "/v1", wantStatus: 200},
		{name: "request headers ImmediateResponse, cors before ext_proc", path: "/v1", origin: testOrigin, handler: atRequestHeaders, wantStatus: 429, wantCORS: true, wantCreds: "true", wantExpose: "x-request-id, retry-after"},
		{name: "request body ImmediateResponse, cors before ext_proc", path: "/v1", origin: testOrigin, handler: atRequestBody, wantStatus: 429, wantCORS: true, wantCreds: "true", wantExpose: "x-request-id, retry-after"},
		{name: "response headers ImmediateResponse bypasses cors", path: "/v1", origin: testOrigin, handler: atResponseHeaders, wantStatus: 502},
		{name: "request headers ImmediateResponse: cors after ext_proc never saw the request", after: true, path: "/v1", origin: testOrigin, handler: atRequestHeaders, wantStatus: 429},
		{name: "request body ImmediateResponse, cors after ext_proc: BUFFERED still holds the headers", after: true, path: "/v1", origin: testOrigin, handler: atRequestBody, wantStatus: 429},
		{name: "upstream response, cors after ext_proc", after: true, path: "/v1", origin: testOrigin, wantStatus: 200, wantCORS: true, wantCreds: "true", wantExpose: "x-request-id, retry-after"},
		{
			name: "route policy wins field by field", path: "/narrow/x", origin: "https://only.example.com",
			routeP:     &CORSPolicy{AllowOrigins: []StringMatcher{{Exact: "https://only.example.com"}}, AllowCredentials: &no},
			wantStatus: 200, wantCORS: true, wantExpose: "x-request-id, retry-after",
		},
		{
			name: "route origins replace the vhost's", path: "/narrow/x", origin: testOrigin,
			routeP:     &CORSPolicy{AllowOrigins: []StringMatcher{{Exact: "https://only.example.com"}}},
			wantStatus: 200,
		},
		{
			name: "route disables cors", path: "/narrow/x", origin: testOrigin,
			routeP: &CORSPolicy{Disabled: true}, wantStatus: 200,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, tc.handler))
			u := startUpstream(t, okUpstream(`{}`))
			f, s := startFront(t, corsConfig(addr, u, tc.after, corsTestPolicy(), tc.routeP))
			hdr := map[string]string{}
			if tc.origin != "" {
				hdr["Origin"] = tc.origin
			}
			resp, _, err := do(t, http.MethodPost, s.URL+tc.path, `{"model":"m"}`, hdr)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			if tc.wantCORS {
				require.Equal(t, tc.origin, resp.Header.Get("Access-Control-Allow-Origin"))
			} else {
				require.NotContains(t, resp.Header, "Access-Control-Allow-Origin")
			}
			require.Equal(t, tc.wantCreds, resp.Header.Get("Access-Control-Allow-Credentials"))
			require.Equal(t, tc.wantExpose, resp.Header.Get("Access-Control-Expose-Headers"))
			require.NotContains(t, resp.Header, "Access-Control-Allow-Methods", "only preflights get allow-methods")
			waitLog(t, f, 1)
		})
	}
}

func TestCORSAfterExtProcSeenByExtProc(t *testing.T) {
	// With cors after ext_proc, the upstream response passes the CORS filter
	// first: ext_proc's response_headers already carry the CORS headers.
	rec := &recorder{}
	_, addr := startProc(t, respond(rec, nil))
	u := startUpstream(t, okUpstream(`{}`))
	f, s := startFront(t, corsConfig(addr, u, true, corsTestPolicy(), nil))
	_, _, err := do(t, http.MethodGet, s.URL+"/v1", "", map[string]string{"Origin": testOrigin})
	require.NoError(t, err)
	waitLog(t, f, 1)
	var seen bool
	for _, r := range rec.all() {
		if rh := r.GetResponseHeaders(); rh != nil {
			v, ok := headerOf(rh.GetHeaders(), "access-control-allow-origin")
			require.True(t, ok)
			require.Equal(t, testOrigin, v)
			seen = true
		}
	}
	require.True(t, seen)
}

func TestFromBootstrapCORS(t *testing.T) {
	cfg, err := FromBootstrap("testdata/cors.yaml", nil)
	require.NoError(t, err)
	require.Equal(t, &CORSFilter{Name: "envoy.filters.http.cors"}, cfg.CORS)
	require.Len(t, cfg.VirtualHosts, 1)
	vh := cfg.VirtualHosts[0]
	yes, no := true, false
	require.Equal(t, &CORSPolicy{
		AllowOrigins: []StringMatcher{
			{Exact: "https://app.example.com"}, {Suffix: ".example.org"}, {Regex: `https://[a-z]+\.dev\.test`},
			{Prefix: "http://localhost"}, {Contains: "trusted"},
		},
		AllowMethods: "GET, POST, OPTIONS", AllowHeaders: "authorization, content-type",
		ExposeHeaders: "x-request-id, retry-after", MaxAge: "86400", AllowCredentials: &yes,
	}, vh.CORS)
	require.Equal(t, &CORSPolicy{AllowOrigins: []StringMatcher{{Exact: "https://only.example.com"}}, AllowCredentials: &no}, vh.Routes[0].CORS)
	require.Nil(t, vh.Routes[1].CORS)

	// End to end with the bootstrap's policies.
	rec := &recorder{}
	proc, addr := startProc(t, respond(rec, nil))
	u := startUpstream(t, okUpstream(`{}`))
	cfg.ExtProc.Addr = addr
	cfg.Clusters["up"] = u.URL
	f, s := startFront(t, cfg)
	resp, _, err := do(t, http.MethodOptions, s.URL+"/v1/chat", "", map[string]string{"Origin": "https://abc.dev.test", "Access-Control-Request-Method": "POST"})
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "https://abc.dev.test", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Equal(t, "86400", resp.Header.Get("Access-Control-Max-Age"))
	require.Equal(t, 1, proc.streamCount(), "the preflight reply passes ext_proc's encoder")

	resp, _, err = do(t, http.MethodGet, s.URL+"/strict/x", "", map[string]string{"Origin": "https://only.example.com"})
	require.NoError(t, err)
	require.Equal(t, "https://only.example.com", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Credentials"), "route allow_credentials false wins")
	require.Equal(t, "x-request-id, retry-after", resp.Header.Get("Access-Control-Expose-Headers"), "vhost expose_headers inherited")
	waitLog(t, f, 2)
}

func TestParseBootstrapCORSErrors(t *testing.T) {
	tests := []struct {
		name, policy, want string
	}{
		{name: "wrong per-route type", policy: `"@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute
                    disabled: true`, want: "want envoy.extensions.filters.http.cors.v3.CorsPolicy"},
		{name: "partial filter_enabled", policy: `"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
                    filter_enabled: { default_value: { numerator: 50 } }`, want: "filter_enabled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBootstrap([]byte(corsBootstrap(tc.policy)), nil)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func corsBootstrap(policy string) string {
	return `static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          http_filters:
          - name: envoy.filters.http.cors
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200 }
                typed_per_filter_config:
                  envoy.filters.http.cors:
                    ` + policy + "\n"
}

func TestParseBootstrapCORSLegacyAndDisabled(t *testing.T) {
	legacy := `static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          http_filters:
          - name: my-cors
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
          route_config:
            virtual_hosts:
            - name: legacy
              domains: ["legacy"]
              cors:
                allow_origin_string_match: [{ exact: "https://a.test" }]
                expose_headers: x-a
              routes:
              - match: { prefix: "/r" }
                route: { cluster: up, cors: { allow_methods: GET, allow_credentials: true } }
              - match: { prefix: "/" }
                route: { cluster: up }
            - name: typed
              domains: ["*"]
              typed_per_filter_config:
                my-cors:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
                  allow_origin_string_match: [{ exact: "https://b.test" }]
              routes:
              - match: { prefix: "/" }
                route: { cluster: up }
                typed_per_filter_config:
                  envoy.filters.http.cors:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
  clusters:
  - name: up
    load_assignment:
      cluster_name: up
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } } }] }]
`
	cfg, err := ParseBootstrap([]byte(legacy), nil)
	require.NoError(t, err)
	require.Equal(t, &CORSFilter{Name: "my-cors"}, cfg.CORS)
	yes := true
	lv := cfg.VirtualHosts[0]
	require.Nil(t, lv.CORS)
	require.Equal(t, &CORSPolicy{AllowOrigins: []StringMatcher{{Exact: "https://a.test"}}, AllowMethods: "GET", ExposeHeaders: "x-a", AllowCredentials: &yes},
		lv.Routes[0].CORS, "deprecated route cors merged over the vhost's")
	require.Equal(t, &CORSPolicy{AllowOrigins: []StringMatcher{{Exact: "https://a.test"}}, ExposeHeaders: "x-a"}, lv.Routes[1].CORS)
	tv := cfg.VirtualHosts[1]
	require.Equal(t, &CORSPolicy{AllowOrigins: []StringMatcher{{Exact: "https://b.test"}}}, tv.CORS, "configured filter name")
	require.Equal(t, &CORSPolicy{Disabled: true}, tv.Routes[0].CORS, "canonical name fallback, disabled FilterConfig")
}

// A local reply traverses every encoder filter, including one whose
// decodeHeaders ran after ext_proc let the request headers go: with a
// STREAMED request body, CORS placed after ext_proc has latched the origin
// when ext_proc answers request_body with an ImmediateResponse.
func TestCORSAfterExtProcSeesStreamedBodyImmediateResponse(t *testing.T) {
	_, addr := startProc(t, respond(&recorder{}, func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if r.GetRequestBody() != nil {
			return immediate(429, `{"error":"slow down"}`, "rate limited")
		}
		return nil
	}))
	u := startUpstream(t, okUpstream(`{}`))
	cfg := corsConfig(addr, u, true, corsTestPolicy(), nil)
	cfg.ExtProc.ProcessingMode = mode(extprocv3.ProcessingMode_STREAMED, extprocv3.ProcessingMode_NONE)
	// The body follows once the request_headers reply let the headers go
	// (and so through CORS's decodeHeaders).
	gate := afterEvent(&cfg, isRequestHeadersReply)
	f, s := startFront(t, cfg)
	pr, pw := io.Pipe()
	go func() {
		<-gate
		_, _ = io.WriteString(pw, `{"model":"m"}`)
		_ = pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPost, s.URL+"/v1", pr)
	require.NoError(t, err)
	req.Header.Set("Origin", testOrigin)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, 429, resp.StatusCode)
	require.Equal(t, testOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	require.Equal(t, "x-request-id, retry-after", resp.Header.Get("Access-Control-Expose-Headers"))
	waitLog(t, f, 1)
}

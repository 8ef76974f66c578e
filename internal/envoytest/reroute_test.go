package envoytest

import (
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
)

// A request re-routed by a request body reply, as a failover at admission
// does it: Envoy's DecodingProcessorState::clearRouteCache
// (source/extensions/filters/http/ext_proc/processor_state.cc) runs after
// every body callback and clears the route cache when the reply carries a
// header_mutation and clear_route_cache (route_cache_action DEFAULT), or
// always with CLEAR; it never does with RETAIN (or
// disable_clear_route_cache), nor without a header_mutation. The router
// picks the route at its decodeHeaders, which in BUFFERED mode runs only
// after the body reply: the new route's rewrites, host and cluster apply,
// while the ext_proc filter keeps the per-route config it merged from the
// original route.
func TestBodyReplyClearRouteCacheReroutes(t *testing.T) {
	const newBody = `{"model":"b-model"}`
	tests := []struct {
		name     string
		bodyMode extprocv3.ProcessingMode_BodySendMode
		action   string // route_cache_action
		clear    bool
		mutate   bool // the reply carries a header_mutation
		path     string
		want     string // upstream that served: "A", "B" or "" (local reply)
		wantPath string
		status   int
		violates string
	}{
		{name: "buffered, header mutation and clear: the new route", bodyMode: extprocv3.ProcessingMode_BUFFERED,
			clear: true, mutate: true, path: "/b/v1/x?q=1", want: "B", wantPath: "/v1/x?q=1", status: 200},
		{name: "buffered, header mutation without clear: the cached route", bodyMode: extprocv3.ProcessingMode_BUFFERED,
			mutate: true, path: "/b/v1/x", want: "A", status: 200},
		{name: "buffered, clear without header mutation: ignored", bodyMode: extprocv3.ProcessingMode_BUFFERED,
			clear: true, want: "A", wantPath: "/a-rewritten/a/v1/x", status: 200,
			violates: "clear_route_cache without header_mutation"},
		{name: "route_cache_action CLEAR clears without the flag", bodyMode: extprocv3.ProcessingMode_BUFFERED,
			action: "CLEAR", mutate: true, path: "/b/v1/x", want: "B", wantPath: "/v1/x", status: 200},
		{name: "route_cache_action RETAIN keeps the route", bodyMode: extprocv3.ProcessingMode_BUFFERED,
			action: "RETAIN", clear: true, mutate: true, path: "/b/v1/x", want: "A", status: 200},
		{name: "a new path no route matches: 404 route_not_found", bodyMode: extprocv3.ProcessingMode_BUFFERED,
			clear: true, mutate: true, path: "/nowhere", status: 404},
		{name: "a new path on a direct_response route: its answer", bodyMode: extprocv3.ProcessingMode_BUFFERED,
			clear: true, mutate: true, path: "/direct", status: 418},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
				if !r.GetRequestBody().GetEndOfStream() {
					return nil
				}
				c := &extprocsvc.CommonResponse{ClearRouteCache: tt.clear}
				if tt.mutate {
					c.HeaderMutation = &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(":path", tt.path)}}
					if tt.bodyMode == extprocv3.ProcessingMode_BUFFERED {
						c.HeaderMutation.SetHeaders = append(c.HeaderMutation.SetHeaders,
							setHeader("content-length", strconv.Itoa(len(newBody))))
						c.BodyMutation = &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(newBody)}}
					}
				}
				return withCommon(r, c)
			}))
			upA := startUpstream(t, okUpstream("A"))
			upB := startUpstream(t, okUpstream("B"))
			cfg := Config{
				ExtProc: &ExtProcConfig{Addr: addr, ProcessingMode: mode(tt.bodyMode, extprocv3.ProcessingMode_NONE),
					RouteCacheAction: tt.action, MessageTimeout: 30 * time.Second},
				Routes: []Route{
					{Name: "b", Prefix: "/b/", Cluster: "b", PrefixRewrite: "/", HostRewriteLiteral: "b.example",
						// The ext_proc filter merged the original route's
						// per-route config at decodeHeaders: the new route's
						// is not applied to this request.
						ExtProc: &ExtProcPerRoute{Disabled: true}},
					{Name: "direct", Path: "/direct", DirectResponse: &DirectResponse{Status: 418, Body: "teapot"}},
					{Name: "a", Prefix: "/a/", Cluster: "a", PrefixRewrite: "/a-rewritten/a/", HostRewriteLiteral: "a.example"},
				},
				Clusters: map[string]string{"a": upA.URL, "b": upB.URL},
			}
			f, s := startFront(t, cfg)
			resp, body, err := do(t, "POST", s.URL+"/a/v1/x", `{"model":"a-model"}`, map[string]string{"content-type": "application/json"})
			require.NoError(t, err)
			require.Equal(t, tt.status, resp.StatusCode, body)
			log := waitLog(t, f, 1)
			switch tt.want {
			case "":
				require.Empty(t, upA.requests())
				require.Empty(t, upB.requests())
				if tt.status == 404 {
					require.Equal(t, "route_not_found", log[0].Details)
				}
			case "A":
				require.Equal(t, "A", body)
				require.Empty(t, upB.requests())
				if tt.wantPath != "" {
					// With the path mutated under a cached route, that
					// route's prefix_rewrite applies to a path it did not
					// match: not asserted.
					require.Equal(t, tt.wantPath, upA.requests()[0].Path)
				}
				require.Equal(t, "a.example", upA.requests()[0].Host)
			case "B":
				require.Equal(t, "B", body)
				require.Empty(t, upA.requests())
				got := upB.requests()[0]
				require.Equal(t, tt.wantPath, got.Path, "the new route's prefix_rewrite")
				require.Equal(t, "b.example", got.Host, "the new route's host_rewrite_literal")
				require.Equal(t, newBody, got.Body)
				require.EqualValues(t, len(newBody), got.ContentLength)
				require.Equal(t, "b", log[0].RouteName)
				require.Equal(t, "b", log[0].Cluster)
				require.Contains(t, rec.kinds(), "response_headers",
					"the original route's per-route config stays in force: ext_proc still sees the response")
			}
			var details []string
			for _, v := range f.Violations() {
				details = append(details, v.Detail)
			}
			if tt.violates == "" {
				require.Empty(t, details)
			} else {
				require.Contains(t, details, tt.violates)
			}
		})
	}
}

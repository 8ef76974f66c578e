package envoytest

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestApplyHeaderMutation(t *testing.T) {
	base := func() headerMap {
		return headerMap{{":authority", "a.example"}, {":path", "/p"}, {":method", "POST"}, {":scheme", "http"},
			{"content-length", "3"}, {"x-keep", "1"}, {"x-dup", "a"}, {"x-dup", "b"}}
	}
	tests := []struct {
		name      string
		m         *extprocsvc.HeaderMutation
		rules     MutationRules
		replacing bool
		removeCL  bool
		wantErr   bool
		want      map[string][]string
		rejected  int
		notes     int
	}{
		{name: "remove then set", m: &extprocsvc.HeaderMutation{RemoveHeaders: []string{"X-Keep"}, SetHeaders: []*corev3.HeaderValueOption{setHeader("x-keep", "2")}},
			want: map[string][]string{"x-keep": {"2"}}},
		{name: "set overwrites all duplicates", m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("x-dup", "c")}},
			want: map[string][]string{"x-dup": {"c"}}},
		{name: "append adds", m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-dup", RawValue: []byte("c")}, Append: wrapperspb.Bool(true)}}},
			want: map[string][]string{"x-dup": {"a", "b", "c"}}},
		{name: "append_action ignored, overwrite applied", m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-dup", RawValue: []byte("c")}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT}}},
			want: map[string][]string{"x-dup": {"c"}}, notes: 1},
		{name: "value only becomes empty", m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-v", Value: "text"}}}},
			want: map[string][]string{"x-v": {""}}, notes: 1},
		{name: "value and raw_value is an error", m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-v", Value: "a", RawValue: []byte("b")}}}},
			wantErr: true},
		{name: "invalid value is an error", m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("x-v", "a\r\nb")}}, wantErr: true},
		{name: "invalid name is an error", m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("bad name", "a")}}, wantErr: true},
		{name: "pseudo removal ignored", m: &extprocsvc.HeaderMutation{RemoveHeaders: []string{":path", "host"}},
			want: map[string][]string{":path": {"/p"}}, rejected: 2},
		{name: "routing headers blocked", m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(":authority", "b"), setHeader(":method", "GET"), setHeader("host", "c")}},
			want: map[string][]string{":authority": {"a.example"}, ":method": {"POST"}}, rejected: 3},
		{name: "routing allowed with allow_all_routing", rules: MutationRules{AllowAllRouting: true},
			m:    &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(":authority", "b.example")}},
			want: map[string][]string{":authority": {"b.example"}}},
		{name: ":method allowed when replacing", replacing: true, m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(":method", "GET")}},
			want: map[string][]string{":method": {"GET"}}},
		{name: ":path set allowed", m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(":path", "/q")}},
			want: map[string][]string{":path": {"/q"}}},
		{name: "x-envoy blocked", m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("x-envoy-retry-on", "5xx")}},
			want: map[string][]string{"x-envoy-retry-on": nil}, rejected: 1},
		{name: "x-envoy allowed with allow_envoy", rules: MutationRules{AllowEnvoy: true}, m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("x-envoy-retry-on", "5xx")}},
			want: map[string][]string{"x-envoy-retry-on": {"5xx"}}},
		{name: "disallow_is_error fails", rules: MutationRules{DisallowIsError: true}, m: &extprocsvc.HeaderMutation{RemoveHeaders: []string{":path"}}, wantErr: true},
		{name: "bad :status ignored", m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(":status", "100")}}, rejected: 1},
		{name: "disallow_system blocks :path", rules: MutationRules{DisallowSystem: true}, m: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(":path", "/q")}},
			want: map[string][]string{":path": {"/p"}}, rejected: 1},
		{name: "disallow_expression", rules: MutationRules{DisallowExpression: regexp.MustCompile("^x-secret.*$")},
			m:    &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("x-secret-a", "1"), setHeader("x-ok", "1")}},
			want: map[string][]string{"x-secret-a": nil, "x-ok": {"1"}}, rejected: 1},
		{name: "content-length skipped when removed for the body mode", removeCL: true,
			m:    &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-length", "10")}},
			want: map[string][]string{"content-length": {"3"}}, notes: 1},
		{name: "too many entries", m: &extprocsvc.HeaderMutation{RemoveHeaders: make([]string, 101)}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := base()
			out, err := applyHeaderMutation(&h, tc.m, mutationContext{rules: tc.rules, replacing: tc.replacing, removeCL: tc.removeCL})
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			for k, v := range tc.want {
				require.Equal(t, v, h.values(k), k)
			}
			require.Len(t, out.rejected, tc.rejected)
			require.Len(t, out.notes, tc.notes)
		})
	}
}

func TestMutationsReachUpstreamAndClient(t *testing.T) {
	rec := &recorder{}
	_, addr := startProc(t, respond(rec, func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		switch {
		case req.GetRequestHeaders() != nil:
			return withCommon(req, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
				RemoveHeaders: []string{"x-llm-proxy-user"},
				SetHeaders:    []*corev3.HeaderValueOption{setHeader("authorization", "Bearer real"), setHeader(":path", "/v1/rewritten")},
			}})
		case req.GetResponseHeaders() != nil:
			return withCommon(req, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{setHeader("x-proxy", "yes"), setHeader(":status", "201")},
			}})
		}
		return nil
	}))
	up := startUpstream(t, okUpstream(`{}`))
	f, s := startFront(t, basicConfig(addr, up, nil))
	resp, _, err := do(t, "GET", s.URL+"/v1/orig", "", map[string]string{"X-Llm-Proxy-User": "u1"})
	require.NoError(t, err)
	require.Equal(t, 201, resp.StatusCode)
	require.Equal(t, "yes", resp.Header.Get("X-Proxy"))
	require.Equal(t, "envoy", resp.Header.Get("Server"))
	r := up.requests()[0]
	require.Equal(t, "/v1/rewritten", r.Path)
	require.Equal(t, "Bearer real", r.Header.Get("Authorization"))
	require.Empty(t, r.Header.Get("X-Llm-Proxy-User"))
	waitLog(t, f, 1)
	require.Empty(t, f.Violations())
}

func TestInvalidMutationIs500(t *testing.T) {
	_, addr := startProc(t, respond(&recorder{}, func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if req.GetRequestHeaders() != nil {
			return withCommon(req, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-a", Value: "v", RawValue: []byte("r")}}},
			}})
		}
		return nil
	}))
	up := startUpstream(t, okUpstream(`{}`))
	cfg := basicConfig(addr, up, nil)
	cfg.ExtProc.FailureModeAllow = true // header mutation failures ignore fail-open
	f, s := startFront(t, cfg)
	resp, _, err := do(t, "GET", s.URL+"/x", "", nil)
	require.NoError(t, err)
	require.Equal(t, 500, resp.StatusCode)
	require.Empty(t, up.requests())
	waitLog(t, f, 1)
	require.Equal(t, []ViolationKind{KindInvalidMutation}, violationKinds(f))
}

func TestContentLengthRules(t *testing.T) {
	replaceBody := func(newBody string, fixCL bool) handler {
		return func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
			if req.GetRequestBody() != nil {
				c := &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(newBody)}}}
				if fixCL {
					c.HeaderMutation = &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-length", strconv.Itoa(len(newBody)))}}
				}
				return withCommon(req, c)
			}
			return nil
		}
	}
	tests := []struct {
		name       string
		mode       *extprocv3.ProcessingMode
		h          handler
		wantStatus int
		wantBody   string
		wantCL     int64 // -1 chunked
	}{
		{name: "BUFFERED+SEND length change without fix is 500", mode: mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE),
			h: replaceBody("longer body", false), wantStatus: 500},
		{name: "BUFFERED+SEND with content-length fixed", mode: mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE),
			h: replaceBody("longer body", true), wantStatus: 200, wantBody: "longer body", wantCL: 11},
		{name: "STREAMED removes content-length", mode: mode(extprocv3.ProcessingMode_STREAMED, extprocv3.ProcessingMode_NONE),
			h: replaceBody("longer body", false), wantStatus: 200, wantBody: "longer body", wantCL: -1},
		{name: "BUFFERED with header SKIP removes content-length", mode: &extprocv3.ProcessingMode{
			RequestHeaderMode: extprocv3.ProcessingMode_SKIP, RequestBodyMode: extprocv3.ProcessingMode_BUFFERED, ResponseHeaderMode: extprocv3.ProcessingMode_SKIP},
			h: replaceBody("longer body", false), wantStatus: 200, wantBody: "longer body", wantCL: -1},
		{name: "NONE keeps content-length", mode: mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_NONE),
			wantStatus: 200, wantBody: "abc", wantCL: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startProc(t, respond(&recorder{}, tc.h))
			up := startUpstream(t, okUpstream(`{}`))
			f, s := startFront(t, basicConfig(addr, up, tc.mode))
			resp, _, err := do(t, "POST", s.URL+"/x", "abc", nil)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			waitLog(t, f, 1)
			if tc.wantStatus != 200 {
				require.Empty(t, up.requests())
				require.Contains(t, violationKinds(f), KindContentLength)
				return
			}
			r := up.requests()[0]
			require.Equal(t, tc.wantBody, r.Body)
			require.Equal(t, tc.wantCL, r.ContentLength)
			require.Empty(t, f.Violations())
		})
	}
}

func TestModeOverride(t *testing.T) {
	streamed := &extprocv3.ProcessingMode{ResponseBodyMode: extprocv3.ProcessingMode_STREAMED}
	overrideAt := func(kindResponse bool, removeCL bool) handler {
		return func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
			switch {
			case req.GetResponseHeaders() != nil && kindResponse:
				c := &extprocsvc.CommonResponse{}
				if removeCL {
					c.HeaderMutation = &extprocsvc.HeaderMutation{RemoveHeaders: []string{"content-length"}}
				}
				r := withCommon(req, c)
				r.ModeOverride = streamed
				return r
			case req.GetResponseBody() != nil:
				return withCommon(req, &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{
					Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(strings.ToUpper(string(req.GetResponseBody().GetBody())) + "!")}}})
			}
			return nil
		}
	}
	tests := []struct {
		name      string
		allow     bool
		without   bool
		removeCL  bool
		wantBody  string
		wantKinds []ViolationKind
		wantMsgs  []string
	}{
		{name: "honoured with allow_mode_override", allow: true, removeCL: true, wantBody: `{"A":1}!`,
			wantMsgs: []string{"request_headers(eos)", "response_headers", "response_body(eos)"}},
		{name: "ignored without allow_mode_override", allow: false, wantBody: `{"a":1}`,
			wantKinds: []ViolationKind{KindIgnoredField}, wantMsgs: []string{"request_headers(eos)", "response_headers"}},
		{name: "ignored with send_body_without_waiting", allow: true, without: true, wantBody: `{"a":1}`,
			wantKinds: []ViolationKind{KindIgnoredField}, wantMsgs: []string{"request_headers(eos)", "response_headers"}},
		{name: "content-length left in place breaks framing", allow: true, removeCL: false,
			wantKinds: []ViolationKind{KindFraming}, wantMsgs: []string{"request_headers(eos)", "response_headers", "response_body(eos)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, overrideAt(true, tc.removeCL)))
			cfg := basicConfig(addr, &upstream{}, mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_NONE))
			// The body arrives once the headers reply (and its override) was
			// applied: a STREAMED body message, not the one-message path of a
			// body that came in whole while the reply was pending.
			up := startUpstream(t, gatedOK(afterEvent(&cfg, isResponseHeadersReply), `{"a":1}`))
			cfg.Clusters["up"] = up.URL
			cfg.ExtProc.AllowModeOverride = tc.allow
			cfg.ExtProc.SendBodyWithoutWaitingForHeaderResponse = tc.without
			f, s := startFront(t, cfg)
			resp, body, err := do(t, "GET", s.URL+"/x", "", nil)
			waitLog(t, f, 1)
			require.Equal(t, tc.wantMsgs, rec.kinds())
			require.Equal(t, tc.wantKinds, violationKinds(f))
			if tc.wantBody == "" {
				// The client sees a short or overlong body.
				if err == nil {
					require.NotEqual(t, int64(len(body)), resp.ContentLength)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantBody, body)
		})
	}
}

func TestModeOverrideOnlyOnHeadersReplies(t *testing.T) {
	rec := &recorder{}
	_, addr := startProc(t, respond(rec, func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if req.GetRequestBody() != nil {
			r := cont(req)
			r.ModeOverride = &extprocv3.ProcessingMode{ResponseHeaderMode: extprocv3.ProcessingMode_SKIP}
			return r
		}
		return nil
	}))
	up := startUpstream(t, okUpstream(`{}`))
	cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE))
	cfg.ExtProc.AllowModeOverride = true
	f, s := startFront(t, cfg)
	_, _, err := do(t, "POST", s.URL+"/x", "abc", nil)
	require.NoError(t, err)
	waitLog(t, f, 1)
	require.Equal(t, []string{"request_headers", "request_body(eos)", "response_headers"}, rec.kinds())
	require.Equal(t, []ViolationKind{KindIgnoredField}, violationKinds(f))
}

func TestModeOverrideAtRequestHeadersSkipsResponse(t *testing.T) {
	// The contract's "no provider" path: override everything off and end the stream.
	fn := func(st extprocsvc.ExternalProcessor_ProcessServer) error {
		req, err := st.Recv()
		if err != nil {
			return nil
		}
		r := cont(req)
		r.ModeOverride = &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_NONE,
			ResponseHeaderMode: extprocv3.ProcessingMode_SKIP, ResponseBodyMode: extprocv3.ProcessingMode_NONE}
		return st.Send(r)
	}
	p, addr := startProc(t, fn)
	up := startUpstream(t, okUpstream(`{}`))
	cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE))
	cfg.ExtProc.AllowModeOverride = true
	f, s := startFront(t, cfg)
	resp, _, err := do(t, "POST", s.URL+"/other", "abc", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	waitLog(t, f, 1)
	require.Equal(t, "abc", up.requests()[0].Body)
	require.Equal(t, 1, p.streamCount())
	require.Empty(t, f.Violations())
}

func TestClearRouteCacheReroutes(t *testing.T) {
	for _, clear := range []bool{false, true} {
		t.Run(strconv.FormatBool(clear), func(t *testing.T) {
			_, addr := startProc(t, respond(&recorder{}, func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
				if r.GetRequestHeaders() != nil {
					return withCommon(r, &extprocsvc.CommonResponse{ClearRouteCache: clear, HeaderMutation: &extprocsvc.HeaderMutation{
						SetHeaders: []*corev3.HeaderValueOption{setHeader(":path", "/b/x")}}})
				}
				return nil
			}))
			upA := startUpstream(t, okUpstream("A"))
			upB := startUpstream(t, okUpstream("B"))
			cfg := Config{
				ExtProc:  &ExtProcConfig{Addr: addr},
				Routes:   []Route{{Name: "b", Prefix: "/b/", Cluster: "b"}, {Name: "a", Prefix: "/", Cluster: "a"}},
				Clusters: map[string]string{"a": upA.URL, "b": upB.URL},
			}
			f, s := startFront(t, cfg)
			_, body, err := do(t, "GET", s.URL+"/a/x", "", nil)
			require.NoError(t, err)
			if clear {
				require.Equal(t, "B", body)
			} else {
				require.Equal(t, "A", body, "without clear_route_cache the cached route stays")
				require.Equal(t, "/b/x", upA.requests()[0].Path)
			}
			waitLog(t, f, 1)
			require.Empty(t, f.Violations())
		})
	}
}

// Envoy matches allowed_override_modes against the effective mode (the
// override over the filter-level mode, DEFAULT header/trailer modes keep the
// filter's value), not against the raw override message.
func TestAllowedOverrideModesUseEffectiveMode(t *testing.T) {
	filterMode := &extprocv3.ProcessingMode{RequestHeaderMode: extprocv3.ProcessingMode_SEND,
		ResponseHeaderMode: extprocv3.ProcessingMode_SEND, ResponseTrailerMode: extprocv3.ProcessingMode_SKIP}
	streamedSend := &extprocv3.ProcessingMode{ResponseHeaderMode: extprocv3.ProcessingMode_SEND,
		ResponseBodyMode: extprocv3.ProcessingMode_STREAMED, ResponseTrailerMode: extprocv3.ProcessingMode_SKIP}
	tests := []struct {
		name     string
		override *extprocv3.ProcessingMode
		allowed  []*extprocv3.ProcessingMode
		honoured bool
	}{
		{name: "DEFAULT header modes resolve to the filter's SEND/SKIP",
			override: &extprocv3.ProcessingMode{ResponseBodyMode: extprocv3.ProcessingMode_STREAMED},
			allowed:  []*extprocv3.ProcessingMode{streamedSend}, honoured: true},
		{name: "raw DEFAULT entry no longer matches a resolved mode",
			override: &extprocv3.ProcessingMode{ResponseBodyMode: extprocv3.ProcessingMode_STREAMED},
			allowed:  []*extprocv3.ProcessingMode{{ResponseBodyMode: extprocv3.ProcessingMode_STREAMED}}, honoured: false},
		{name: "request_header_mode is not compared",
			override: &extprocv3.ProcessingMode{RequestHeaderMode: extprocv3.ProcessingMode_SKIP, ResponseBodyMode: extprocv3.ProcessingMode_STREAMED},
			allowed:  []*extprocv3.ProcessingMode{streamedSend}, honoured: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
				if req.GetResponseHeaders() != nil {
					r := cont(req)
					r.ModeOverride = tc.override
					return r
				}
				return nil
			}))
			up := startUpstream(t, okUpstream(`{"a":1}`))
			cfg := basicConfig(addr, up, filterMode)
			cfg.ExtProc.AllowModeOverride = true
			cfg.ExtProc.AllowedOverrideModes = tc.allowed
			f, s := startFront(t, cfg)
			_, body, err := do(t, "GET", s.URL+"/x", "", nil)
			require.NoError(t, err)
			require.Equal(t, `{"a":1}`, body)
			waitLog(t, f, 1)
			if tc.honoured {
				require.Equal(t, []string{"request_headers(eos)", "response_headers", "response_body(eos)"}, rec.kinds())
				require.Empty(t, f.Violations())
			} else {
				require.Equal(t, []string{"request_headers(eos)", "response_headers"}, rec.kinds())
				require.Equal(t, []ViolationKind{KindIgnoredField}, violationKinds(f))
			}
		})
	}
}

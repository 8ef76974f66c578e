package envoytest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"
)

func immediate(code int, body, details string, hdrs ...*corev3.HeaderValueOption) *extprocsvc.ProcessingResponse {
	ir := &extprocsvc.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode(code)}, Body: []byte(body), Details: details}
	if len(hdrs) > 0 {
		ir.Headers = &extprocsvc.HeaderMutation{SetHeaders: hdrs}
	}
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: ir}}
}

func TestImmediateResponseByPhase(t *testing.T) {
	sse := func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i := 0; i < 3; i++ {
			_, _ = fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
		}
	}
	upstream503 := func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(503)
		_, _ = w.Write([]byte("overloaded"))
	}
	tests := []struct {
		name        string
		mode        *extprocv3.ProcessingMode
		upstream    func(int, http.ResponseWriter, *http.Request)
		at          func(*extprocsvc.ProcessingRequest) bool
		reply       *extprocsvc.ProcessingResponse
		wantStatus  int
		wantBody    string
		wantCT      string
		wantUp      int
		wantReset   bool
		wantDetails string
		// gateBody makes the SSE upstream send its events only once the
		// response_headers reply was handled (the headers then went on).
		gateBody bool
	}{
		{
			name: "request headers: local reply, upstream not called", mode: mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE),
			upstream: okUpstream(`{}`), at: func(r *extprocsvc.ProcessingRequest) bool { return r.GetRequestHeaders() != nil },
			reply:      immediate(401, `{"error":"no key"}`, "missing api key", setHeader("content-type", "application/json")),
			wantStatus: 401, wantBody: `{"error":"no key"}`, wantCT: "application/json", wantDetails: "missing_api_key",
		},
		{
			name: "request body: default text/plain, status <200 becomes 200", mode: mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE),
			upstream: okUpstream(`{}`), at: func(r *extprocsvc.ProcessingRequest) bool { return r.GetRequestBody() != nil },
			reply:      immediate(0, "cached", ""),
			wantStatus: 200, wantBody: "cached", wantCT: "text/plain",
		},
		{
			name: "response headers: direct reply replaces the upstream 503", mode: mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_NONE),
			upstream: upstream503, at: func(r *extprocsvc.ProcessingRequest) bool { return r.GetResponseHeaders() != nil },
			reply:      immediate(429, `{"error":"slow down"}`, "rate_limited", setHeader("content-type", "application/json"), setHeader("retry-after", "3")),
			wantStatus: 429, wantBody: `{"error":"slow down"}`, wantCT: "application/json", wantUp: 1, wantDetails: "rate_limited",
		},
		{
			name: "buffered response body: direct reply", mode: mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_BUFFERED),
			upstream: okUpstream(`{"a":1}`), at: func(r *extprocsvc.ProcessingRequest) bool { return r.GetResponseBody() != nil },
			reply:      immediate(502, "bad", "bad_upstream_body"),
			wantStatus: 502, wantBody: "bad", wantCT: "text/plain", wantUp: 1, wantDetails: "bad_upstream_body",
		},
		{
			name: "streamed response body after headers: downstream reset", mode: mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_STREAMED),
			upstream: sse, at: func(r *extprocsvc.ProcessingRequest) bool { return r.GetResponseBody() != nil },
			reply: immediate(500, "x", "too_late"), gateBody: true,
			wantStatus: 200, wantUp: 1, wantReset: true, wantDetails: "too_late",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
				if tc.at(r) {
					return tc.reply
				}
				return nil
			}))
			cfg := basicConfig(addr, &upstream{}, tc.mode)
			h := tc.upstream
			if tc.gateBody {
				gate := afterEvent(&cfg, isResponseHeadersReply)
				h = func(_ int, w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Type", "text/event-stream")
					w.WriteHeader(200)
					w.(http.Flusher).Flush()
					<-gate
					for i := 0; i < 3; i++ {
						_, _ = fmt.Fprintf(w, "data: %d\n\n", i)
						w.(http.Flusher).Flush()
					}
				}
			}
			up := startUpstream(t, h)
			cfg.Clusters["up"] = up.URL
			f, s := startFront(t, cfg)
			resp, body, err := do(t, "POST", s.URL+"/x", "abc", nil)
			e := waitLog(t, f, 1)
			require.Len(t, up.requests(), tc.wantUp)
			require.Equal(t, tc.wantDetails, e[0].Details)
			if tc.wantReset {
				require.Error(t, err, "client must see a truncated response")
				require.True(t, e[0].Reset)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			require.Equal(t, tc.wantBody, body)
			require.Equal(t, tc.wantCT, resp.Header.Get("Content-Type"))
			require.Empty(t, f.Violations())
			// The filter that answered never sees response headers for its own reply.
			for _, k := range rec.kinds() {
				if strings.HasPrefix(tc.name, "request") {
					require.NotContains(t, k, "response")
				}
			}
		})
	}
}

func TestContinueAndReplace(t *testing.T) {
	rec := &recorder{}
	_, addr := startProc(t, respond(rec, func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if r.GetResponseHeaders() != nil {
			return withCommon(r, &extprocsvc.CommonResponse{
				Status:         extprocsvc.CommonResponse_CONTINUE_AND_REPLACE,
				HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(":status", "400"), setHeader("content-type", "application/json")}},
				BodyMutation:   &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(`{"error":"replaced"}`)}},
			})
		}
		return nil
	}))
	up := startUpstream(t, okUpstream(`{"original":"body that is long"}`))
	f, s := startFront(t, basicConfig(addr, up, mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_BUFFERED)))
	resp, body, err := do(t, "GET", s.URL+"/x", "", nil)
	require.NoError(t, err)
	require.Equal(t, 400, resp.StatusCode)
	require.Equal(t, `{"error":"replaced"}`, body)
	waitLog(t, f, 1)
	require.Equal(t, []string{"request_headers(eos)", "response_headers"}, rec.kinds(), "no body message after CONTINUE_AND_REPLACE")
	require.Empty(t, f.Violations())
}

func TestBufferLimits(t *testing.T) {
	tests := []struct {
		name       string
		mode       *extprocv3.ProcessingMode
		reqBody    string
		respBody   string
		wantStatus int
		wantUp     int
		wantMsgs   []string
	}{
		{name: "buffered request over limit is 413", mode: mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE),
			reqBody: strings.Repeat("x", 200), respBody: "{}", wantStatus: 413,
			wantMsgs: []string{"request_headers", "response_headers"}},
		{name: "buffered response over limit is 500", mode: mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_BUFFERED),
			reqBody: "{}", respBody: strings.Repeat("y", 200), wantStatus: 500, wantUp: 1,
			// response_headers may be cut off by the stream reset.
			wantMsgs: []string{"request_headers"}},
		{name: "buffered partial sends up to the limit", mode: mode(extprocv3.ProcessingMode_BUFFERED_PARTIAL, extprocv3.ProcessingMode_NONE),
			reqBody: strings.Repeat("z", 200), respBody: "{}", wantStatus: 200, wantUp: 1,
			wantMsgs: []string{"request_headers", "request_body(eos)", "response_headers"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, nil))
			up := startUpstream(t, okUpstream(tc.respBody))
			cfg := basicConfig(addr, up, tc.mode)
			cfg.BufferLimit = 100
			f, s := startFront(t, cfg)
			resp, _, err := do(t, "POST", s.URL+"/x", tc.reqBody, nil)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			waitLog(t, f, 1)
			require.Len(t, up.requests(), tc.wantUp)
			got := rec.kinds()
			require.GreaterOrEqual(t, len(got), len(tc.wantMsgs))
			require.Equal(t, tc.wantMsgs, got[:len(tc.wantMsgs)])
			for _, k := range got {
				require.NotEqual(t, "response_body(eos)", k, "the server never sees an oversized body")
			}
			if tc.wantUp == 1 {
				require.Equal(t, tc.reqBody, up.requests()[0].Body)
			}
		})
	}
}

func TestDynamicMetadataAndAccessLog(t *testing.T) {
	md := func(ns string, fields map[string]any) *structpb.Struct {
		inner, err := structpb.NewStruct(fields)
		if err != nil {
			panic(err)
		}
		return &structpb.Struct{Fields: map[string]*structpb.Value{ns: structpb.NewStructValue(inner)}}
	}
	rec := &recorder{}
	_, addr := startProc(t, respond(rec, func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		switch {
		case r.GetRequestHeaders() != nil:
			resp := cont(r)
			resp.DynamicMetadata = md("llm_proxy", map[string]any{"provider": "openai", "model": "gpt"})
			return resp
		case r.GetResponseHeaders() != nil:
			resp := cont(r)
			resp.DynamicMetadata = md("other", map[string]any{"x": 1})
			return resp
		case r.GetResponseBody() != nil:
			resp := cont(r)
			resp.DynamicMetadata = md("llm_proxy", map[string]any{"total_tokens": 42})
			return resp
		}
		return nil
	}))
	up := startUpstream(t, okUpstream(`{"usage":{}}`))
	cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_BUFFERED))
	cfg.ExtProc.ReceivingNamespaces = []string{"llm_proxy"}
	cfg.ExtProc.ForwardingNamespaces = []string{"llm_proxy"}
	out := &syncWriter{w: &strings.Builder{}}
	cfg.AccessLog = out
	cfg.AccessLogFormat = map[string]any{"status": "%RESPONSE_CODE%", "provider": "%DYNAMIC_METADATA(llm_proxy:provider)%",
		"tokens": "%DYNAMIC_METADATA(llm_proxy:total_tokens)%", "line": "%REQ(:METHOD)% %RESPONSE_CODE% %DYNAMIC_METADATA(nope:x)%"}
	f, s := startFront(t, cfg)
	_, _, err := do(t, "GET", s.URL+"/x", "", nil)
	require.NoError(t, err)
	e := waitLog(t, f, 1)
	require.Equal(t, map[string]map[string]any{"llm_proxy": {"provider": "openai", "model": "gpt", "total_tokens": float64(42)}}, e[0].DynamicMetadata)
	require.Equal(t, []ViolationKind{KindIgnoredField}, violationKinds(f))
	require.Equal(t, 1, e[0].Attempts)
	require.Equal(t, 200, e[0].Status)
	require.Equal(t, "via_upstream", e[0].Details)
	// Forwarded namespace reaches later messages.
	msgs := rec.all()
	require.Nil(t, msgs[0].GetMetadataContext().GetFilterMetadata()["llm_proxy"])
	require.Equal(t, "openai", msgs[1].GetMetadataContext().GetFilterMetadata()["llm_proxy"].AsMap()["provider"])
	require.Contains(t, out.String(), `"provider":"openai"`)
	require.Contains(t, out.String(), `"tokens":42`)
	require.Contains(t, out.String(), `"status":200`)
	require.Contains(t, out.String(), `"line":"GET 200 -"`) // Envoy reads :METHOD from the request
}

func TestPerRouteConfig(t *testing.T) {
	rec := &recorder{}
	p, addr := startProc(t, respond(rec, nil))
	up := startUpstream(t, okUpstream(`{}`))
	cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE))
	cfg.Routes = []Route{
		{Name: "health", Path: "/healthz", DirectResponse: &DirectResponse{Status: 200, Body: "ok"}, ExtProc: &ExtProcPerRoute{Disabled: true}},
		{Name: "direct-with-extproc", Path: "/direct", DirectResponse: &DirectResponse{Status: 200, Body: "hi"}},
		{Name: "buffered-resp", Prefix: "/gemini/", Cluster: "up", ExtProc: &ExtProcPerRoute{ProcessingMode: mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_BUFFERED)}},
		{Name: "all", Prefix: "/", Cluster: "up"},
	}
	f, s := startFront(t, cfg)

	resp, body, err := do(t, "GET", s.URL+"/healthz", "", nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "ok", body)
	waitLog(t, f, 1)
	require.Equal(t, 0, p.streamCount(), "disabled route opens no stream")

	_, body, err = do(t, "GET", s.URL+"/direct", "", nil)
	require.NoError(t, err)
	require.Equal(t, "hi", body)
	waitLog(t, f, 2)
	require.Equal(t, []string{"request_headers(eos)", "response_headers"}, rec.kinds(), "direct responses pass the encoder chain")

	_, _, err = do(t, "POST", s.URL+"/gemini/v1", "q", nil)
	require.NoError(t, err)
	waitLog(t, f, 3)
	require.Equal(t, []string{"request_headers(eos)", "response_headers", "request_headers", "response_headers", "response_body(eos)"}, rec.kinds())
	require.Empty(t, up.requests()[0].Header.Get("X-Envoy-Original-Path"))
}

// A BUFFERED request body over the buffer limit: the filter manager answers
// 413 (ActiveStreamDecoderFilter::requestDataTooLarge, details
// request_payload_too_large) through the whole encoder chain, so ext_proc,
// which never marked processing complete, processes the local reply like
// any response. Before it the server saw only request_headers, whether or
// not their reply had arrived when the limit was crossed (then the 413's
// response_headers arrive while request_headers is still unanswered);
// request_body is never sent.
func TestRequestOverLimitIs413ThroughExtProc(t *testing.T) {
	for _, holdHeaders := range []bool{false, true} {
		t.Run(fmt.Sprintf("request_headers reply pending=%v", holdHeaders), func(t *testing.T) {
			rec := &recorder{}
			fn := respond(rec, nil)
			if holdHeaders {
				fn = func(st extprocsvc.ExternalProcessor_ProcessServer) error {
					var reqs []*extprocsvc.ProcessingRequest
					for i := 0; i < 2; i++ { // request_headers, then the 413's response_headers
						r, err := st.Recv()
						if err != nil {
							return nil
						}
						rec.add(r)
						reqs = append(reqs, r)
					}
					for _, r := range reqs {
						resp := cont(r)
						if r.GetRequestHeaders() != nil {
							md, _ := structpb.NewStruct(map[string]any{"phase": "request_headers"})
							resp.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{"llm_proxy": structpb.NewStructValue(md)}}
						}
						if err := st.Send(resp); err != nil {
							return nil
						}
					}
					return respond(rec, nil)(st)
				}
			}
			_, addr := startProc(t, fn)
			up := startUpstream(t, okUpstream(`{}`))
			cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_BUFFERED))
			cfg.BufferLimit = 100
			cfg.ExtProc.ReceivingNamespaces = []string{"llm_proxy"}
			f, s := startFront(t, cfg)
			resp, body, err := do(t, "POST", s.URL+"/x", strings.Repeat("x", 200), nil)
			require.NoError(t, err)
			require.Equal(t, 413, resp.StatusCode)
			require.Equal(t, "Payload Too Large", body)
			e := waitLog(t, f, 1)[0]
			require.Equal(t, "request_payload_too_large", e.Details)
			require.Empty(t, up.requests())
			require.Equal(t, []string{"request_headers", "response_headers", "response_body(eos)"}, rec.kinds())
			rh := rec.all()[1].GetResponseHeaders().GetHeaders()
			st, _ := headerOf(rh, ":status")
			ct, _ := headerOf(rh, "content-type")
			require.Equal(t, "413", st)
			require.Equal(t, "text/plain", ct)
			require.Equal(t, "Payload Too Large", string(rec.all()[2].GetResponseBody().GetBody()))
			require.Empty(t, f.Violations())
			if holdHeaders {
				// The late request_headers reply still writes its dynamic
				// metadata (onReceiveMessage sets it before handling).
				require.Equal(t, map[string]map[string]any{"llm_proxy": {"phase": "request_headers"}}, e.DynamicMetadata)
			}
		})
	}
}

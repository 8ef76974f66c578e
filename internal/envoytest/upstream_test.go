package envoytest

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// perStream is a scripted ext_proc server that records every Process stream
// separately (stream i = the i-th stream the server accepted).
type perStream struct {
	mu      sync.Mutex
	streams [][]*extprocsvc.ProcessingRequest
	ends    []error
}

// streamHandler answers message req of stream i; nil means plain CONTINUE,
// and errBlock makes the server wait for the stream to end without replying.
type streamHandler func(i int, req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse

var errBlock = &extprocsvc.ProcessingResponse{}

func (p *perStream) proc(h streamHandler) procFunc {
	return func(st extprocsvc.ExternalProcessor_ProcessServer) error {
		p.mu.Lock()
		i := len(p.streams)
		p.streams = append(p.streams, nil)
		p.ends = append(p.ends, nil)
		p.mu.Unlock()
		for {
			req, err := st.Recv()
			if err != nil {
				p.mu.Lock()
				p.ends[i] = err
				p.mu.Unlock()
				return nil
			}
			p.mu.Lock()
			p.streams[i] = append(p.streams[i], req)
			p.mu.Unlock()
			var resp *extprocsvc.ProcessingResponse
			if h != nil {
				resp = h(i, req)
			}
			if resp == errBlock {
				continue
			}
			if resp == nil {
				resp = cont(req)
			}
			if err := st.Send(resp); err != nil {
				return nil
			}
		}
	}
}

func (p *perStream) kinds() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([][]string, len(p.streams))
	for i, s := range p.streams {
		for _, q := range s {
			out[i] = append(out[i], reqKind(q))
		}
	}
	return out
}

func (p *perStream) stream(i int) []*extprocsvc.ProcessingRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*extprocsvc.ProcessingRequest(nil), p.streams[i]...)
}

// waitEnds waits until n streams ended and returns how each ended.
func (p *perStream) waitEnds(t *testing.T, n int) []error {
	t.Helper()
	var ends []error
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.ends) != n {
			return false
		}
		for _, e := range p.ends {
			if e == nil {
				return false
			}
		}
		ends = append([]error(nil), p.ends...)
		return true
	}, 5*time.Second, 5*time.Millisecond)
	return ends
}

func startUpstreamProc(t *testing.T, h streamHandler) (*perStream, string) {
	t.Helper()
	p := &perStream{}
	_, addr := startProc(t, p.proc(h))
	return p, addr
}

// statusesUpstream answers the n-th request with statuses[n] (the last one
// repeats) and body "attempt n".
func statusesUpstream(statuses ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(statuses[min(n, len(statuses)-1)])
		_, _ = fmt.Fprintf(w, "attempt %d", n)
	}
}

func hdr(t *testing.T, hm *corev3.HeaderMap, key string) string {
	t.Helper()
	v, ok := headerOf(hm, key)
	require.True(t, ok, "header %q missing", key)
	return v
}

func immediateReply(code typev3.StatusCode, body string) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: code},
		Body:    []byte(body),
		Details: "upstream ext_proc said no",
		Headers: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-type", "application/json")}},
	}}}
}

func setStatus(req *extprocsvc.ProcessingRequest, code string) *extprocsvc.ProcessingResponse {
	return withCommon(req, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
		SetHeaders: []*corev3.HeaderValueOption{setHeader(":status", code)}}})
}

// upstreamConfig routes /openai/ to cluster "up" (rewritten like the real
// bootstrap) with a downstream ext_proc at downAddr and an upstream ext_proc
// at upAddr on the cluster.
func upstreamConfig(downAddr, upAddr, cluster string, retry *RetryPolicy, upMode *extprocv3.ProcessingMode) Config {
	return Config{
		ExtProc: &ExtProcConfig{Addr: downAddr, MessageTimeout: 2 * time.Second, ForwardingNamespaces: []string{"llm.up"}},
		UpstreamExtProc: map[string]*ExtProcConfig{"up": {
			Name: "envoy.filters.http.ext_proc.upstream", Addr: upAddr, MessageTimeout: 2 * time.Second,
			ProcessingMode: upMode, ReceivingNamespaces: []string{"llm.up"},
		}},
		VirtualHosts: []VirtualHost{{
			Name: "llm", Domains: []string{"*"}, IncludeRequestAttemptCount: true, IncludeAttemptCountInResponse: true,
			Routes: []Route{{Name: "openai", Prefix: "/openai/", PrefixRewrite: "/", HostRewriteLiteral: "api.openai.com",
				Cluster: "up", Retry: retry}},
		}},
		Clusters: map[string]string{"up": cluster},
		Sleep:    (&sleepRecorder{}).sleep,
	}
}

func TestUpstreamExtProcStreamPerAttempt(t *testing.T) {
	down := &recorder{}
	_, downAddr := startProc(t, respond(down, nil))
	up, upAddr := startUpstreamProc(t, nil)
	srv := startUpstream(t, statusesUpstream(503, 503, 200))
	cfg := upstreamConfig(downAddr, upAddr, srv.URL, &RetryPolicy{RetryOn: "5xx", NumRetries: 2},
		mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE))
	cfg.OnViolation = Strict(t)
	f, s := startFront(t, cfg)

	resp, body, err := do(t, "POST", s.URL+"/openai/v1/chat/completions", `{"m":1}`, nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "attempt 2", body)
	require.Equal(t, "3", resp.Header.Get("X-Envoy-Attempt-Count"), "include_attempt_count_in_response")
	e := waitLog(t, f, 1)[0]

	// The upstream saw three requests, each with its attempt number.
	reqs := srv.requests()
	require.Len(t, reqs, 3)
	for i, r := range reqs {
		require.Equal(t, "/v1/chat/completions", r.Path)
		require.Equal(t, "api.openai.com", r.Host)
		require.Equal(t, `{"m":1}`, r.Body)
		require.Equal(t, strconv.Itoa(i+1), r.Header.Get("X-Envoy-Attempt-Count"))
		require.Equal(t, e.RequestID, r.Header.Get("X-Request-Id"))
	}

	// One upstream ext_proc stream per attempt, each seeing that attempt's
	// request (as the upstream sees it) and its response headers.
	want := []string{"request_headers", "request_body(eos)", "response_headers"}
	require.Equal(t, [][]string{want, want, want}, up.kinds())
	for i := range 3 {
		msgs := up.stream(i)
		rh := msgs[0].GetRequestHeaders().GetHeaders()
		require.Equal(t, "/v1/chat/completions", hdr(t, rh, ":path"))
		require.Equal(t, "api.openai.com", hdr(t, rh, ":authority"))
		require.Equal(t, "/openai/v1/chat/completions", hdr(t, rh, "x-envoy-original-path"))
		require.Equal(t, strconv.Itoa(i+1), hdr(t, rh, "x-envoy-attempt-count"))
		require.Equal(t, e.RequestID, hdr(t, rh, "x-request-id"), "correlates with the downstream stream")
		require.Equal(t, `{"m":1}`, string(msgs[1].GetRequestBody().GetBody()))
		respH := msgs[2].GetResponseHeaders().GetHeaders()
		require.Equal(t, []string{"503", "503", "200"}[i], hdr(t, respH, ":status"))
		_, ok := headerOf(respH, "x-envoy-upstream-service-time")
		require.False(t, ok, "the router adds it after the upstream filters")
	}
	for _, end := range up.waitEnds(t, 3) {
		require.Equal(t, codes.Canceled, status.Code(end))
	}

	// The downstream ext_proc sees the original request and only the final response.
	require.Equal(t, []string{"request_headers", "response_headers"}, down.kinds())
	dm := down.all()
	_, ok := headerOf(dm[0].GetRequestHeaders().GetHeaders(), "x-envoy-attempt-count")
	require.False(t, ok)
	require.Equal(t, "/openai/v1/chat/completions", hdr(t, dm[0].GetRequestHeaders().GetHeaders(), ":path"))
	require.Equal(t, "200", hdr(t, dm[1].GetResponseHeaders().GetHeaders(), ":status"))
	require.Equal(t, "3", hdr(t, dm[1].GetResponseHeaders().GetHeaders(), "x-envoy-attempt-count"))

	require.Equal(t, 3, e.Attempts)
	require.Equal(t, 1, e.ExtProcStreams)
	require.Len(t, e.UpstreamAttempts, 3)
	for i, a := range e.UpstreamAttempts {
		require.Equal(t, i+1, a.Number)
		require.Equal(t, []int{503, 503, 200}[i], a.Status)
		require.Equal(t, []AttemptOutcome{AttemptRetried, AttemptRetried, AttemptResponse}[i], a.Outcome)
		require.Equal(t, 1, a.ExtProcStreams)
		require.Len(t, a.ExtProcSent, 3)
		require.Len(t, a.ExtProcReceived, 3)
	}
}

func TestUpstreamImmediateResponseIsFinal(t *testing.T) {
	tests := []struct {
		name      string
		phase     func(*extprocsvc.ProcessingRequest) bool
		wantCalls int
		wantKinds []string
	}{
		{name: "at response_headers replaces a retriable 503",
			phase:     func(r *extprocsvc.ProcessingRequest) bool { return r.GetResponseHeaders() != nil },
			wantCalls: 1, wantKinds: []string{"request_headers(eos)", "response_headers"}},
		{name: "at request_headers: the upstream is never called",
			phase:     func(r *extprocsvc.ProcessingRequest) bool { return r.GetRequestHeaders() != nil },
			wantCalls: 0, wantKinds: []string{"request_headers(eos)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			down := &recorder{}
			_, downAddr := startProc(t, respond(down, nil))
			up, upAddr := startUpstreamProc(t, func(_ int, r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
				if tc.phase(r) {
					return immediateReply(typev3.StatusCode_TooManyRequests, `{"error":"slow down"}`)
				}
				return nil
			})
			srv := startUpstream(t, statusesUpstream(503))
			f, s := startFront(t, upstreamConfig(downAddr, upAddr, srv.URL, &RetryPolicy{RetryOn: "5xx", NumRetries: 2}, nil))

			resp, body, err := do(t, "GET", s.URL+"/openai/v1/models", "", nil)
			require.NoError(t, err)
			require.Equal(t, 429, resp.StatusCode)
			require.Equal(t, `{"error":"slow down"}`, body)
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			require.Empty(t, resp.Header.Get("X-Envoy-Attempt-Count"), "not a router reply: no attempt count")
			e := waitLog(t, f, 1)[0]
			require.Equal(t, "upstream_ext_proc_said_no", e.Details)
			require.Equal(t, 1, e.Attempts, "no retry after an upstream local reply")
			require.Len(t, srv.requests(), tc.wantCalls)
			require.Equal(t, [][]string{tc.wantKinds}, up.kinds())
			require.Equal(t, AttemptLocalReply, e.UpstreamAttempts[0].Outcome)
			require.Zero(t, e.UpstreamAttempts[0].Status)

			// The local reply travels through the downstream filter chain.
			require.Equal(t, []string{"request_headers(eos)", "response_headers"}, down.kinds())
			rh := down.all()[1].GetResponseHeaders().GetHeaders()
			require.Equal(t, "429", hdr(t, rh, ":status"))
			require.Equal(t, "application/json", hdr(t, rh, "content-type"))
			require.Empty(t, f.Violations())
		})
	}
}

func TestUpstreamStatusMutationDrivesRetry(t *testing.T) {
	tests := []struct {
		name         string
		upstream     []int
		rewrite      map[int]string // stream -> new :status
		wantStatus   int
		wantBody     string
		wantStatuses []int // per attempt, as the router saw them
		wantUpstream []string
	}{
		{name: "200 rewritten to 503 is retried", upstream: []int{200}, rewrite: map[int]string{0: "503"},
			wantStatus: 200, wantBody: "attempt 1", wantStatuses: []int{503, 200}, wantUpstream: []string{"200", "200"}},
		{name: "503 rewritten to 200 is final", upstream: []int{503}, rewrite: map[int]string{0: "200"},
			wantStatus: 200, wantBody: "attempt 0", wantStatuses: []int{200}, wantUpstream: []string{"503"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			down := &recorder{}
			_, downAddr := startProc(t, respond(down, nil))
			up, upAddr := startUpstreamProc(t, func(i int, r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
				if code, ok := tc.rewrite[i]; ok && r.GetResponseHeaders() != nil {
					return setStatus(r, code)
				}
				return nil
			})
			srv := startUpstream(t, statusesUpstream(tc.upstream...))
			cfg := upstreamConfig(downAddr, upAddr, srv.URL, &RetryPolicy{RetryOn: "5xx", NumRetries: 2}, nil)
			cfg.OnViolation = Strict(t)
			f, s := startFront(t, cfg)

			resp, body, err := do(t, "GET", s.URL+"/openai/v1/models", "", nil)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			require.Equal(t, tc.wantBody, body)
			e := waitLog(t, f, 1)[0]
			var statuses []int
			for _, a := range e.UpstreamAttempts {
				statuses = append(statuses, a.Status)
			}
			require.Equal(t, tc.wantStatuses, statuses)
			require.Len(t, srv.requests(), len(tc.wantStatuses))
			var seen []string
			for i := range tc.wantStatuses {
				seen = append(seen, hdr(t, up.stream(i)[1].GetResponseHeaders().GetHeaders(), ":status"))
			}
			require.Equal(t, tc.wantUpstream, seen, "the upstream ext_proc sees the raw upstream status")
			require.Equal(t, strconv.Itoa(tc.wantStatus), hdr(t, down.all()[1].GetResponseHeaders().GetHeaders(), ":status"))
		})
	}
}

func TestUpstreamConnectFailureCancelsStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())

	down := &recorder{}
	_, downAddr := startProc(t, respond(down, nil))
	up, upAddr := startUpstreamProc(t, nil)
	cfg := upstreamConfig(downAddr, upAddr, closed, &RetryPolicy{RetryOn: "connect-failure", NumRetries: 1}, nil)
	cfg.OnViolation = Strict(t)
	f, s := startFront(t, cfg)

	resp, body, err := do(t, "GET", s.URL+"/openai/v1/models", "", nil)
	require.NoError(t, err)
	require.Equal(t, 503, resp.StatusCode)
	require.Equal(t, "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused", body)
	require.Equal(t, "2", resp.Header.Get("X-Envoy-Attempt-Count"), "router local replies carry the attempt count")

	e := waitLog(t, f, 1)[0]
	require.Equal(t, "URX,UF", e.ResponseFlags)
	require.Equal(t, 2, e.Attempts)
	for _, a := range e.UpstreamAttempts {
		require.Equal(t, AttemptReset, a.Outcome)
		require.Equal(t, "remote connection failure", a.ResetReason)
	}
	// Each attempt's filter sent its request headers; the connect runs in
	// parallel, so its failure may cancel the stream before the server
	// even read them. Whatever the server saw ended cancelled, without
	// response_headers.
	for i, a := range e.UpstreamAttempts {
		require.Len(t, a.ExtProcSent, 1)
		require.Equal(t, strconv.Itoa(i+1), hdr(t, a.ExtProcSent[0].GetRequestHeaders().GetHeaders(), "x-envoy-attempt-count"))
	}
	require.Eventually(t, func() bool {
		for _, k := range up.kinds() {
			if len(k) > 1 || len(k) == 1 && k[0] != "request_headers(eos)" {
				return false
			}
		}
		return true
	}, 5*time.Second, 5*time.Millisecond)
	// (Whether the server then sees the cancellation of a stream cancelled
	// that early is up to grpc-go; the emulator cancelled each attempt's.)
	rh := down.all()[1].GetResponseHeaders().GetHeaders()
	require.Equal(t, "503", hdr(t, rh, ":status"))
	require.Equal(t, "2", hdr(t, rh, "x-envoy-attempt-count"))
}

func TestUpstreamPerTryTimeoutResetsStream(t *testing.T) {
	_, downAddr := startProc(t, respond(&recorder{}, nil))
	// Attempt 1's response_headers never get an answer: the per-try timeout
	// (not the 2 s message timeout) ends the attempt.
	up, upAddr := startUpstreamProc(t, func(i int, r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if i == 0 && r.GetResponseHeaders() != nil {
			return errBlock
		}
		return nil
	})
	srv := startUpstream(t, statusesUpstream(200))
	f, s := startFront(t, upstreamConfig(downAddr, upAddr, srv.URL,
		&RetryPolicy{RetryOn: "5xx", NumRetries: 1, PerTryTimeout: 400 * time.Millisecond}, nil))

	resp, body, err := do(t, "GET", s.URL+"/openai/v1/models", "", nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "attempt 1", body)
	e := waitLog(t, f, 1)[0]
	require.Equal(t, AttemptPerTryTimeout, e.UpstreamAttempts[0].Outcome)
	require.Equal(t, AttemptResponse, e.UpstreamAttempts[1].Outcome)
	ends := up.waitEnds(t, 2)
	require.Equal(t, codes.Canceled, status.Code(ends[0]))
	require.Equal(t, []string{"request_headers(eos)", "response_headers"}, up.kinds()[0])
	require.Empty(t, f.Violations(), "a per-try timeout is not the server's fault")
}

func TestUpstreamMetadataAndSharedRequestHeaders(t *testing.T) {
	down := &recorder{}
	_, downAddr := startProc(t, respond(down, nil))
	up, upAddr := startUpstreamProc(t, func(i int, r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		switch {
		case r.GetRequestHeaders() != nil:
			// append=true adds a value; clear_route_cache is ignored upstream.
			return withCommon(r, &extprocsvc.CommonResponse{ClearRouteCache: true, HeaderMutation: &extprocsvc.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-hop", RawValue: []byte(strconv.Itoa(i))},
					Append: wrapperspb.Bool(true)}}}})
		case r.GetResponseHeaders() != nil:
			resp := cont(r)
			resp.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{
				"llm.up": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
					"attempt": structpb.NewNumberValue(float64(i + 1)),
					"first":   structpb.NewBoolValue(i == 0),
				}}),
			}}
			return resp
		}
		return nil
	})
	srv := startUpstream(t, statusesUpstream(503, 200))
	f, s := startFront(t, upstreamConfig(downAddr, upAddr, srv.URL, &RetryPolicy{RetryOn: "5xx", NumRetries: 1}, nil))

	resp, _, err := do(t, "GET", s.URL+"/openai/v1/models", "", nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	e := waitLog(t, f, 1)[0]
	require.Len(t, up.kinds(), 2)

	// The upstream filters mutate the router's request header map, which
	// every attempt shares: attempt 2 carries attempt 1's mutation too.
	reqs := srv.requests()
	require.Equal(t, []string{"0"}, reqs[0].Header.Values("X-Hop"))
	require.Equal(t, []string{"0", "1"}, reqs[1].Header.Values("X-Hop"))
	require.Equal(t, []string{"0"}, func() []string {
		var v []string
		for _, h := range up.stream(1)[0].GetRequestHeaders().GetHeaders().GetHeaders() {
			if h.GetKey() == "x-hop" {
				v = append(v, string(h.GetRawValue()))
			}
		}
		return v
	}(), "attempt 2's upstream ext_proc sees attempt 1's mutation")

	// Per-attempt record, and the shared StreamInfo (last write wins).
	require.Equal(t, map[string]map[string]any{"llm.up": {"attempt": 1.0, "first": true}}, e.UpstreamAttempts[0].UpstreamDynamicMetadata)
	require.Equal(t, map[string]map[string]any{"llm.up": {"attempt": 2.0, "first": false}}, e.UpstreamAttempts[1].UpstreamDynamicMetadata)
	require.Equal(t, map[string]map[string]any{"llm.up": {"attempt": 2.0, "first": false}}, e.DynamicMetadata)
	// The downstream ext_proc forwards that namespace on its next message.
	md := down.all()[1].GetMetadataContext().GetFilterMetadata()["llm.up"]
	require.Equal(t, 2.0, md.GetFields()["attempt"].GetNumberValue())

	var attempts []int
	for _, v := range f.Violations() {
		require.Equal(t, KindIgnoredField, v.Kind)
		require.Contains(t, v.Detail, "clear_route_cache in an upstream ext_proc filter")
		attempts = append(attempts, v.Attempt)
	}
	require.Equal(t, []int{1, 2}, attempts)
}

func TestUpstreamChainSelection(t *testing.T) {
	_, downAddr := startProc(t, respond(&recorder{}, nil))
	clusterProc, clusterAddr := startUpstreamProc(t, nil)
	routerProc, routerAddr := startUpstreamProc(t, nil)
	srv := startUpstream(t, statusesUpstream(200))
	cfg := Config{
		ExtProc: &ExtProcConfig{Addr: downAddr},
		UpstreamExtProc: map[string]*ExtProcConfig{
			"own":   {Addr: clusterAddr},
			"plain": nil, // own chain without ext_proc: the router chain does not apply
		},
		RouterUpstreamExtProc: &ExtProcConfig{Addr: routerAddr},
		Routes: []Route{
			{Name: "own", Prefix: "/own", Cluster: "own"},
			{Name: "plain", Prefix: "/plain", Cluster: "plain"},
			{Name: "other", Prefix: "/other", Cluster: "other"},
		},
		Clusters: map[string]string{"own": srv.URL, "plain": srv.URL, "other": srv.URL},
	}
	f, s := startFront(t, cfg)
	for _, p := range []string{"/own", "/plain", "/other"} {
		resp, _, err := do(t, "GET", s.URL+p, "", nil)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
	}
	waitLog(t, f, 3)
	require.Len(t, clusterProc.kinds(), 1)
	require.Equal(t, "/own", hdr(t, clusterProc.stream(0)[0].GetRequestHeaders().GetHeaders(), ":path"))
	require.Len(t, routerProc.kinds(), 1)
	require.Equal(t, "/other", hdr(t, routerProc.stream(0)[0].GetRequestHeaders().GetHeaders(), ":path"))
}

func TestUpstreamExtProcErrorIsFinal(t *testing.T) {
	tests := []struct {
		name        string
		failOpen    bool
		wantStatus  int
		wantBody    string
		wantDetails string
		wantTries   int
	}{
		{name: "fail closed: status_on_error, not retried", wantStatus: 500, wantTries: 1,
			wantDetails: "ext_proc_error_gRPC_error_13{boom}"},
		{name: "failure_mode_allow: the raw 503 is retried", failOpen: true, wantStatus: 200, wantBody: "attempt 1",
			wantDetails: "via_upstream", wantTries: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			down := &recorder{}
			_, downAddr := startProc(t, respond(down, nil))
			// The first attempt's stream fails after request_headers; later
			// ones answer normally.
			var streams atomic.Int32
			_, upAddr := startProc(t, func(st extprocsvc.ExternalProcessor_ProcessServer) error {
				if streams.Add(1) > 1 {
					return respond(&recorder{}, nil)(st)
				}
				req, err := st.Recv()
				if err != nil {
					return err
				}
				if err := st.Send(cont(req)); err != nil {
					return err
				}
				if _, err := st.Recv(); err != nil { // response_headers
					return err
				}
				return status.Error(codes.Internal, "boom")
			})
			srv := startUpstream(t, statusesUpstream(503, 200))
			cfg := upstreamConfig(downAddr, upAddr, srv.URL, &RetryPolicy{RetryOn: "5xx", NumRetries: 2}, nil)
			cfg.UpstreamExtProc["up"].FailureModeAllow = tc.failOpen
			f, s := startFront(t, cfg)

			resp, body, err := do(t, "GET", s.URL+"/openai/v1/models", "", nil)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			require.Equal(t, tc.wantBody, body)
			e := waitLog(t, f, 1)[0]
			require.Equal(t, tc.wantDetails, e.Details)
			require.Equal(t, tc.wantTries, e.Attempts)
			require.Len(t, srv.requests(), tc.wantTries)
			v := f.Violations()
			require.Len(t, v, 1)
			require.Equal(t, KindGRPCError, v[0].Kind)
			require.Equal(t, 1, v[0].Attempt)
			require.Contains(t, v[0].String(), "(upstream ext_proc, attempt 1)")
			require.Equal(t, strconv.Itoa(tc.wantStatus), hdr(t, down.all()[1].GetResponseHeaders().GetHeaders(), ":status"))
		})
	}
}

// Envoy asks the pool for a connection before the upstream filter chain
// runs (UpstreamRequest::acceptHeadersFromRouter: newStream, then
// decodeHeaders): a connect failure ends the attempt while the upstream
// ext_proc's request_headers is still unanswered. The server's stream is
// cancelled, and nothing it might have replied lands.
func TestUpstreamConnectFailureBeatsUnansweredUpstreamFilter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())

	_, downAddr := startProc(t, respond(&recorder{}, nil))
	// The upstream filter's server never answers: only the failed connect
	// can end the attempt before the 2 s message timeout.
	_, upAddr := startUpstreamProc(t, func(int, *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse { return errBlock })
	cfg := upstreamConfig(downAddr, upAddr, closed, nil, nil)
	cfg.OnViolation = Strict(t)
	f, s := startFront(t, cfg)

	resp, _, err := do(t, "GET", s.URL+"/openai/v1/models", "", nil)
	require.NoError(t, err)
	require.Equal(t, 503, resp.StatusCode, "the connect failure, not the message timeout (504)")
	e := waitLog(t, f, 1)[0]
	require.Equal(t, "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}", e.Details)
	require.Equal(t, "UF", e.ResponseFlags)
	require.Len(t, e.UpstreamAttempts, 1)
	require.Equal(t, AttemptReset, e.UpstreamAttempts[0].Outcome)
	require.Empty(t, e.UpstreamAttempts[0].UpstreamDynamicMetadata)
	require.Len(t, e.UpstreamAttempts[0].ExtProcSent, 1, "request_headers went out")
	require.Empty(t, e.UpstreamAttempts[0].ExtProcReceived, "and were never answered")
}

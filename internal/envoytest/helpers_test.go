package envoytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// procFunc scripts one ext_proc stream.
type procFunc func(st extprocsvc.ExternalProcessor_ProcessServer) error

type scriptedProc struct {
	extprocsvc.UnimplementedExternalProcessorServer
	fn procFunc

	mu      sync.Mutex
	streams int
}

func (p *scriptedProc) Process(st extprocsvc.ExternalProcessor_ProcessServer) error {
	p.mu.Lock()
	p.streams++
	p.mu.Unlock()
	return p.fn(st)
}

func (p *scriptedProc) streamCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.streams
}

// startProc runs a scripted ext_proc gRPC server on loopback.
func startProc(t *testing.T, fn procFunc) (*scriptedProc, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &scriptedProc{fn: fn}
	s := grpc.NewServer()
	extprocsvc.RegisterExternalProcessorServer(s, p)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return p, ln.Addr().String()
}

// recorder collects the messages a responder received.
type recorder struct {
	mu   sync.Mutex
	reqs []*extprocsvc.ProcessingRequest
	ends []error
}

func (r *recorder) add(req *extprocsvc.ProcessingRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
}

func (r *recorder) all() []*extprocsvc.ProcessingRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*extprocsvc.ProcessingRequest(nil), r.reqs...)
}

func (r *recorder) endErrs() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.ends...)
}

// kinds lists the message kinds received, e.g. "request_headers(eos)".
func (r *recorder) kinds() []string {
	var out []string
	for _, q := range r.all() {
		out = append(out, reqKind(q))
	}
	return out
}

func reqKind(q *extprocsvc.ProcessingRequest) string {
	eos := func(b bool) string {
		if b {
			return "(eos)"
		}
		return ""
	}
	switch v := q.Request.(type) {
	case *extprocsvc.ProcessingRequest_RequestHeaders:
		return "request_headers" + eos(v.RequestHeaders.GetEndOfStream())
	case *extprocsvc.ProcessingRequest_RequestBody:
		return "request_body" + eos(v.RequestBody.GetEndOfStream())
	case *extprocsvc.ProcessingRequest_RequestTrailers:
		return "request_trailers"
	case *extprocsvc.ProcessingRequest_ResponseHeaders:
		return "response_headers" + eos(v.ResponseHeaders.GetEndOfStream())
	case *extprocsvc.ProcessingRequest_ResponseBody:
		return "response_body" + eos(v.ResponseBody.GetEndOfStream())
	case *extprocsvc.ProcessingRequest_ResponseTrailers:
		return "response_trailers"
	}
	return "?"
}

// handler answers one request; returning nil means "plain CONTINUE".
type handler func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse

// respond is a procFunc answering every message with h (or CONTINUE).
func respond(rec *recorder, h handler) procFunc {
	return func(st extprocsvc.ExternalProcessor_ProcessServer) error {
		for {
			req, err := st.Recv()
			if err != nil {
				rec.mu.Lock()
				rec.ends = append(rec.ends, err)
				rec.mu.Unlock()
				if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
					return nil
				}
				return err
			}
			rec.add(req)
			var resp *extprocsvc.ProcessingResponse
			if h != nil {
				resp = h(req)
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

// cont is the plain CONTINUE reply for req.
func cont(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
	return withCommon(req, &extprocsvc.CommonResponse{})
}

// withCommon builds the reply matching req's type carrying c.
func withCommon(req *extprocsvc.ProcessingRequest, c *extprocsvc.CommonResponse) *extprocsvc.ProcessingResponse {
	switch req.Request.(type) {
	case *extprocsvc.ProcessingRequest_RequestHeaders:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocsvc.HeadersResponse{Response: c}}}
	case *extprocsvc.ProcessingRequest_RequestBody:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestBody{RequestBody: &extprocsvc.BodyResponse{Response: c}}}
	case *extprocsvc.ProcessingRequest_RequestTrailers:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocsvc.TrailersResponse{HeaderMutation: c.GetHeaderMutation()}}}
	case *extprocsvc.ProcessingRequest_ResponseHeaders:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocsvc.HeadersResponse{Response: c}}}
	case *extprocsvc.ProcessingRequest_ResponseBody:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseBody{ResponseBody: &extprocsvc.BodyResponse{Response: c}}}
	case *extprocsvc.ProcessingRequest_ResponseTrailers:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocsvc.TrailersResponse{HeaderMutation: c.GetHeaderMutation()}}}
	}
	return nil
}

func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}}
}

func headerOf(hm *corev3.HeaderMap, key string) (string, bool) {
	for _, h := range hm.GetHeaders() {
		if h.GetKey() == key {
			return string(h.GetRawValue()), true
		}
	}
	return "", false
}

// upstreamReq is what the fake upstream saw.
type upstreamReq struct {
	Method, Path, Host string
	Header             http.Header
	Body               string
	ContentLength      int64
	TransferEncoding   []string
}

type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []upstreamReq
}

func (u *upstream) requests() []upstreamReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]upstreamReq(nil), u.reqs...)
}

// startUpstream runs a fake upstream; h writes the response for the n-th
// request (0-based).
func startUpstream(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		n := len(u.reqs)
		u.reqs = append(u.reqs, upstreamReq{Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Header: r.Header.Clone(),
			Body: string(b), ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding})
		u.mu.Unlock()
		h(n, w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func okUpstream(body string) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

// startFront builds and starts a Front; cfg.Clusters["up"] should be set by the caller.
func startFront(t *testing.T, cfg Config) (*Front, *Server) {
	t.Helper()
	f, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := f.Start(ctx, "")
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		_ = s.Close()
		_ = f.Close()
	})
	return f, s
}

// basicConfig routes everything to upstream u through ext_proc at addr; an
// upstream without a server leaves the cluster address for the caller.
func basicConfig(addr string, u *upstream, mode *extprocv3.ProcessingMode) Config {
	url := ""
	if u.Server != nil {
		url = u.URL
	}
	return Config{
		ExtProc:  &ExtProcConfig{Addr: addr, ProcessingMode: mode, MessageTimeout: 2 * time.Second},
		Routes:   []Route{{Name: "all", Prefix: "/", Cluster: "up"}},
		Clusters: map[string]string{"up": url},
	}
}

func mode(reqBody, respBody extprocv3.ProcessingMode_BodySendMode) *extprocv3.ProcessingMode {
	return &extprocv3.ProcessingMode{
		RequestHeaderMode:  extprocv3.ProcessingMode_SEND,
		RequestBodyMode:    reqBody,
		ResponseHeaderMode: extprocv3.ProcessingMode_SEND,
		ResponseBodyMode:   respBody,
	}
}

// do sends a request and returns status, headers and body (err if the body
// was cut).
func do(t *testing.T, method, url, body string, hdr map[string]string) (*http.Response, string, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func waitLog(t *testing.T, f *Front, n int) []AccessLogEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := f.WaitAccessLog(ctx, n)
	require.NoError(t, err)
	return e
}

func violationKinds(f *Front) []ViolationKind {
	var out []ViolationKind
	for _, v := range f.Violations() {
		out = append(out, v.Kind)
	}
	return out
}

type fakeTB struct {
	mu   sync.Mutex
	errs []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) errors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.errs...)
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.(fmt.Stringer).String()
}

// afterEvent returns a channel closed once an exchange of cfg's Front has
// handled an event matching match (hooks chain).
func afterEvent(cfg *Config, match func(ev any) bool) <-chan struct{} {
	ch := make(chan struct{})
	var once sync.Once
	prev := cfg.onEvent
	cfg.onEvent = func(ev any) {
		if prev != nil {
			prev(ev)
		}
		if match(ev) {
			once.Do(func() { close(ch) })
		}
	}
	return ch
}

// isReply matches the handling of a server reply for which pick is true.
func isReply(pick func(*extprocsvc.ProcessingResponse) bool) func(any) bool {
	return func(ev any) bool {
		e, ok := ev.(evReply)
		return ok && e.fl.up == nil && pick(e.resp)
	}
}

func isResponseHeadersReply(ev any) bool {
	return isReply(func(r *extprocsvc.ProcessingResponse) bool { return r.GetResponseHeaders() != nil })(ev)
}

func isRequestHeadersReply(ev any) bool {
	return isReply(func(r *extprocsvc.ProcessingResponse) bool { return r.GetRequestHeaders() != nil })(ev)
}

// isUpstreamEnd matches the router handling the last upstream body chunk.
func isUpstreamEnd(ev any) bool {
	e, ok := ev.(evUpData)
	return ok && e.eos
}

// gatedOK answers 200 with body and its content-length, sending the headers
// at once and the body only after gate is closed.
func gatedOK(gate <-chan struct{}, body string) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		select {
		case <-gate:
		case <-time.After(10 * time.Second): // hang guard
		}
		_, _ = io.WriteString(w, body)
	}
}

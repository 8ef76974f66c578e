package envoytest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// AttemptOutcome says how an upstream attempt ended.
type AttemptOutcome string

// Attempt outcomes recorded in UpstreamAttempt.Outcome.
const (
	// AttemptResponse: the router passed this attempt's response downstream.
	AttemptResponse AttemptOutcome = "response"
	// AttemptRetried: the response headers (after the upstream filters) were
	// retriable and another attempt followed.
	AttemptRetried AttemptOutcome = "retried"
	// AttemptReset: connect failure or reset before the router got response
	// headers (see ResetReason), or a reset of the response body.
	AttemptReset AttemptOutcome = "reset"
	// AttemptPerTryTimeout: per_try_timeout expired before response headers.
	AttemptPerTryTimeout AttemptOutcome = "per_try_timeout"
	// AttemptPerTryIdleTimeout: per_try_idle_timeout expired: no response
	// headers or body data for that long, before or during the response.
	AttemptPerTryIdleTimeout AttemptOutcome = "per_try_idle_timeout"
	// AttemptRouteTimeout: the route timeout expired during this attempt.
	AttemptRouteTimeout AttemptOutcome = "route_timeout"
	// AttemptLocalReply: the attempt's upstream filter sent a local reply
	// (ImmediateResponse, ext_proc error or timeout); it is final.
	AttemptLocalReply AttemptOutcome = "local_reply"
	// AttemptCancelled: the HTTP stream ended otherwise (downstream local
	// reply, client disconnect, ...).
	AttemptCancelled AttemptOutcome = "cancelled"
)

// UpstreamAttempt is what the router and the attempt's upstream filter chain
// recorded about one upstream attempt.
type UpstreamAttempt struct {
	// Number is the 1-based attempt number (the x-envoy-attempt-count value).
	Number int `json:"attempt"`
	// Host is host:port of the host the attempt went to; Priority its
	// priority in the cluster.
	Host     string `json:"upstream_host"`
	Priority int    `json:"priority"`
	// Status is the response status the router saw for this attempt, i.e.
	// after the upstream filters; 0 when no response headers reached it.
	Status int `json:"status,omitempty"`
	// Outcome says how the attempt ended.
	Outcome AttemptOutcome `json:"outcome"`
	// ResetReason is set for AttemptReset, in Envoy's words
	// (Http::Utility::resetReasonToString): "remote connection failure",
	// "connection timeout", "connection termination", "remote reset".
	ResetReason string `json:"reset_reason,omitempty"`
	// UpstreamDynamicMetadata is the dynamic_metadata (receiving namespaces
	// only) that this attempt's upstream ext_proc filter set. Envoy's
	// upstream filters write into the downstream request's StreamInfo
	// (UpstreamFilterManager::streamInfo returns it), so the same values are
	// also merged into AccessLogEntry.DynamicMetadata.
	UpstreamDynamicMetadata map[string]map[string]any `json:"upstream_dynamic_metadata,omitempty"`
	// ExtProcStreams is the number of Process streams the attempt's upstream
	// ext_proc filter opened (0 or 1).
	ExtProcStreams int `json:"ext_proc_streams"`
	// ExtProcSent / ExtProcReceived are the messages exchanged on that
	// stream, in order.
	ExtProcSent     []*extprocsvc.ProcessingRequest  `json:"-"`
	ExtProcReceived []*extprocsvc.ProcessingResponse `json:"-"`
}

// attempt is one upstream try. Like Envoy's UpstreamRequest it owns a new
// upstream filter chain: an ext_proc filter (pass-through when none is
// configured for the cluster) followed by the upstream codec, which sends
// the request over HTTP/1.1.
type attempt struct {
	r      *router
	n      int
	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time
	perTry *time.Timer
	// idleStop stops the armed per_try_idle_timeout timer (nil: not armed);
	// idleGen tells a stale expiry from the current one.
	idleStop func() bool
	idleGen  int
	fl       *filter
	// host is the cluster host this attempt goes to, chosen before its
	// upstream filter chain was created.
	host *upHost

	// Codec state (request direction, after the upstream filters).
	method     string
	body       *bodyPipe
	sent       bool
	declaredCL int64
	bodyLen    int64

	resp       *http.Response
	gotHeaders bool // the router received response headers
	dead       bool

	status      int
	outcome     AttemptOutcome
	resetReason string
	meta        metadata
}

func newAttempt(r *router, n int, cfg *ExtProcConfig) *attempt {
	ctx, cancel := context.WithCancel(context.Background())
	a := &attempt{r: r, n: n, ctx: ctx, cancel: cancel, start: time.Now(), declaredCL: -1, meta: metadata{}}
	a.fl = newFilter(r.x, cfg, nil)
	a.fl.up = a
	a.fl.dec.next = codecSink{a: a}
	a.fl.enc.next = responseSink{a: a}
	return a
}

// kill ends the attempt: the upstream request is cancelled and the upstream
// filter chain destroyed (its ext_proc stream is closed; the server sees
// the cancellation). outcome is recorded unless one is already set.
func (a *attempt) kill(outcome AttemptOutcome) {
	if a.outcome == "" {
		a.outcome = outcome
	}
	if a.dead {
		return
	}
	a.dead = true
	a.cancel()
	if a.perTry != nil {
		a.perTry.Stop()
	}
	if a.idleStop != nil {
		a.idleStop()
	}
	if a.resp != nil {
		_ = a.resp.Body.Close()
	}
	if a.body != nil {
		a.body.close(nil)
	}
	a.fl.destroy()
}

func (a *attempt) logEntry() UpstreamAttempt {
	return UpstreamAttempt{
		Number:                  a.n,
		Host:                    a.host.url.Host,
		Priority:                a.host.priority,
		Status:                  a.status,
		Outcome:                 a.outcome,
		ResetReason:             a.resetReason,
		UpstreamDynamicMetadata: a.meta.asMap(),
		ExtProcStreams:          a.fl.streams,
		ExtProcSent:             a.fl.sent,
		ExtProcReceived:         a.fl.received,
	}
}

// codecSink is the upstream codec filter: the request direction's sink of
// an attempt's upstream filter chain. It opens the upstream request when the
// chain lets the headers through (Envoy connects in parallel with the
// chain; the emulation connects afterwards, so a connect failure is always
// seen after the upstream ext_proc answered request_headers).
type codecSink struct{ a *attempt }

func (c codecSink) headers(h headerMap, eos bool) {
	a := c.a
	r := a.r
	if a.dead || a.sent {
		return
	}
	// The upstream filters worked on the router's header map.
	r.upHeaders = h.clone()
	a.sent = true
	a.method, _ = h.get(":method")
	if cl, ok := h.get("content-length"); ok {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
			a.declaredCL = n
		}
	}
	a.body = newBodyPipe()
	if eos {
		a.body.close(nil)
	}
	req, err := a.newRequest(h, eos)
	if err != nil {
		a.kill(AttemptReset)
		a.resetReason = "local reset"
		r.localReply(localReply{status: 503, body: "upstream connect error or disconnect/reset before headers. reset reason: " + err.Error(), details: "upstream_reset_before_response_started{local_reset}", flag: "LR"})
		return
	}
	x := r.x
	transport := x.f.transport
	if x.cfg.ClusterProtocols[r.cluster].HTTP2 {
		transport = x.f.h2transport
	}
	go func() {
		resp, err := transport.RoundTrip(req)
		x.post(evUpHeaders{a: a, resp: resp, err: err})
	}()
}

func (c codecSink) data(b []byte, eos bool) {
	a := c.a
	if a.dead || a.body == nil {
		return
	}
	a.bodyLen += int64(len(b))
	a.body.write(b)
	if eos {
		c.end(nil)
	}
}

func (c codecSink) trailers(t headerMap) {
	a := c.a
	if a.dead || a.body == nil {
		return
	}
	c.end(t.httpHeader())
}

// end closes the request body and checks its framing.
func (c codecSink) end(trailers http.Header) {
	a := c.a
	a.body.close(trailers)
	if a.declaredCL >= 0 && a.bodyLen != a.declaredCL {
		a.fl.violation(KindFraming, fmt.Sprintf("request content-length %d but %d body bytes sent upstream", a.declaredCL, a.bodyLen), "upstream sees a malformed request")
	}
}

// newRequest builds the upstream HTTP request from the headers the upstream
// filter chain let through.
func (a *attempt) newRequest(h headerMap, eos bool) (*http.Request, error) {
	path, _ := h.get(":path")
	pu, err := url.ParseRequestURI(path)
	if err != nil {
		return nil, fmt.Errorf("invalid :path %q: %w", path, err)
	}
	u := *a.host.url
	u.Path, u.RawPath, u.RawQuery = pu.Path, pu.RawPath, pu.RawQuery
	var body io.Reader = http.NoBody
	var trailer http.Header
	if !eos {
		trailer = http.Header{}
		body = a.body.reader(a.ctx, trailer)
	}
	req, err := http.NewRequestWithContext(a.ctx, a.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build upstream request: %w", err)
	}
	req.Header = h.httpHeader()
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""}
	}
	req.Header.Del("Content-Length")
	authority, _ := h.get(":authority")
	req.Host = authority
	switch {
	case eos:
		req.ContentLength = 0
	case a.declaredCL >= 0:
		req.ContentLength = a.declaredCL
	default:
		req.ContentLength = -1
	}
	req.Trailer = trailer
	return req, nil
}

// responseSink is the response direction's sink of an attempt's upstream
// filter chain: the router (Envoy's UpstreamRequest::decodeHeaders ->
// Router::onUpstreamHeaders).
type responseSink struct{ a *attempt }

func (s responseSink) headers(h headerMap, eos bool) { s.a.r.onUpstreamHeaders(s.a, h, eos) }
func (s responseSink) data(b []byte, eos bool)       { s.a.r.onUpstreamData(s.a, b, eos) }
func (s responseSink) trailers(t headerMap)          { s.a.r.onUpstreamTrailers(s.a, t) }

// bodyPipe carries an attempt's request body from the loop goroutine to the
// transport, which may start reading before the body is complete.
type bodyPipe struct {
	mu       sync.Mutex
	data     []byte
	done     bool
	trailers http.Header
	changed  chan struct{}
}

func newBodyPipe() *bodyPipe { return &bodyPipe{changed: make(chan struct{})} }

func (b *bodyPipe) write(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.data = append(b.data, p...)
	close(b.changed)
	b.changed = make(chan struct{})
}

// close ends the body; trailers (may be nil) are sent after it.
func (b *bodyPipe) close(trailers http.Header) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	b.trailers = trailers
	close(b.changed)
	b.changed = make(chan struct{})
}

// reader returns a reader of the whole body; at EOF it copies the trailers
// into dst (the request's Trailer map).
func (b *bodyPipe) reader(ctx context.Context, dst http.Header) io.Reader {
	return &pipeReader{b: b, ctx: ctx, dst: dst}
}

type pipeReader struct {
	b   *bodyPipe
	ctx context.Context
	off int
	dst http.Header
}

func (pr *pipeReader) Read(p []byte) (int, error) {
	for {
		pr.b.mu.Lock()
		if pr.off < len(pr.b.data) {
			n := copy(p, pr.b.data[pr.off:])
			pr.off += n
			pr.b.mu.Unlock()
			return n, nil
		}
		if pr.b.done {
			for k, v := range pr.b.trailers {
				pr.dst[k] = v
			}
			pr.b.mu.Unlock()
			return 0, io.EOF
		}
		ch := pr.b.changed
		pr.b.mu.Unlock()
		select {
		case <-ch:
		case <-pr.ctx.Done():
			return 0, pr.ctx.Err()
		}
	}
}

package envoytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Router events.
type (
	evUpHeaders struct {
		a    *attempt
		resp *http.Response
		err  error
	}
	evUpData struct {
		a    *attempt
		data []byte
		eos  bool
	}
	evUpTrailers struct {
		a *attempt
		t headerMap
	}
	evUpReset struct {
		a   *attempt
		err error
	}
	evRouteTimeout  struct{ gen int }
	evPerTryTimeout struct{ a *attempt }
	evRetry         struct{ gen int }
)

// attempt is one upstream try.
type attempt struct {
	n      int
	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time
	perTry *time.Timer
	resp   *http.Response
	dead   bool
}

// router emulates envoy.filters.http.router: it is the sink of the request
// direction and the source of the response direction.
type router struct {
	x          *exchange
	route      *Route
	base       *url.URL
	cluster    string
	host       string
	upHeaders  headerMap
	body       *replayBuffer
	upTrailers headerMap
	reqDone    bool
	started    bool

	attempts    int
	cur         *attempt
	all         []*attempt
	retryGen    int
	backoffs    int
	respStarted bool
	upDone      bool
	stopped     bool
	retryable   bool // the last outcome was retriable (for URX)

	routeTimer *time.Timer
	routeGen   int
	bodyLen    int64
	declaredCL int64
}

// cancel stops every attempt and timer.
func (r *router) cancel() {
	r.stopped = true
	for _, a := range r.all {
		a.dead = true
		a.cancel()
		if a.perTry != nil {
			a.perTry.Stop()
		}
		if a.resp != nil {
			_ = a.resp.Body.Close()
		}
	}
	if r.routeTimer != nil {
		r.routeTimer.Stop()
	}
	r.routeGen++
	r.retryGen++
	if r.body != nil {
		r.body.close()
	}
}

// headers is the request direction's sink: the router decides the route
// and starts the first attempt.
func (r *router) headers(h headerMap, eos bool) {
	x := r.x
	route := x.route
	if x.routeCleared {
		_, route = x.f.match(h)
	}
	r.route = route
	if route == nil {
		x.localReply(localReply{status: 404, details: "route_not_found", flag: "NR"})
		return
	}
	if dr := route.DirectResponse; dr != nil {
		x.localReply(localReply{status: dr.Status, body: dr.Body, details: "direct_response"})
		return
	}
	r.cluster = route.Cluster
	base, ok := x.f.clusters[route.Cluster]
	if !ok {
		x.localReply(localReply{status: 503, details: "cluster_not_found", flag: "NC"})
		return
	}
	r.base = base
	r.host = base.Host
	r.upHeaders = r.rewrite(h.clone(), route)
	r.declaredCL = -1
	if cl, ok := r.upHeaders.get("content-length"); ok {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
			r.declaredCL = n
		}
	}
	r.body = newReplayBuffer()
	r.started = true
	if eos {
		r.requestComplete()
	}
	r.startAttempt()
}

func (r *router) data(b []byte, eos bool) {
	if !r.started || r.stopped {
		return
	}
	r.bodyLen += int64(len(b))
	r.body.write(b)
	if eos {
		r.requestComplete()
	}
}

func (r *router) trailers(t headerMap) {
	if !r.started || r.stopped {
		return
	}
	r.upTrailers = t
	r.requestComplete()
}

// requestComplete runs when the router saw the end of the request: the
// route and per-try timers start now.
func (r *router) requestComplete() {
	if r.reqDone {
		return
	}
	r.reqDone = true
	r.body.close()
	if r.declaredCL >= 0 && r.bodyLen != r.declaredCL {
		r.x.violation(KindFraming, fmt.Sprintf("request content-length %d but %d body bytes sent upstream", r.declaredCL, r.bodyLen), "upstream sees a malformed request")
	}
	if t := r.route.Timeout; t > 0 {
		gen := r.routeGen
		x := r.x
		r.routeTimer = time.AfterFunc(t, func() { x.post(evRouteTimeout{gen: gen}) })
	}
	if r.cur != nil {
		r.armPerTry(r.cur)
	}
}

// rewrite applies prefix_rewrite / regex_rewrite / host_rewrite_literal and
// the router's request headers.
func (r *router) rewrite(h headerMap, route *Route) headerMap {
	path, _ := h.get(":path")
	newPath := path
	switch {
	case route.PrefixRewrite != "" && route.Prefix != "":
		if len(path) >= len(route.Prefix) {
			newPath = route.PrefixRewrite + path[len(route.Prefix):]
		}
	case route.RegexRewrite != nil:
		p, q, hasQ := strings.Cut(path, "?")
		re := regexp.MustCompile(route.RegexRewrite.Pattern)
		p = re.ReplaceAllString(p, envoySubstitution(route.RegexRewrite.Substitution))
		newPath = p
		if hasQ {
			newPath += "?" + q
		}
	}
	if newPath != path {
		h.set(":path", newPath)
		if !r.x.cfg.SuppressEnvoyHeaders {
			h.set("x-envoy-original-path", path)
		}
	}
	if route.HostRewriteLiteral != "" {
		h.set(":authority", route.HostRewriteLiteral)
	}
	if !r.x.cfg.SuppressEnvoyHeaders {
		t := route.Timeout
		if route.Retry != nil && route.Retry.PerTryTimeout > 0 && (t == 0 || route.Retry.PerTryTimeout < t) {
			t = route.Retry.PerTryTimeout
		}
		if t > 0 {
			h.set("x-envoy-expected-rq-timeout-ms", strconv.FormatInt(t.Milliseconds(), 10))
		}
	}
	return h
}

var substRef = regexp.MustCompile(`\\(\d)`)

// envoySubstitution converts RE2 \N references to Go's ${N}.
func envoySubstitution(s string) string {
	s = strings.ReplaceAll(s, "$", "$$")
	return substRef.ReplaceAllString(s, "$${$1}")
}

func (r *router) startAttempt() {
	x := r.x
	r.attempts++
	ctx, cancel := context.WithCancel(context.Background())
	a := &attempt{n: r.attempts, ctx: ctx, cancel: cancel, start: time.Now()}
	r.cur = a
	r.all = append(r.all, a)
	req, err := r.newRequest(ctx)
	if err != nil {
		cancel()
		x.localReply(localReply{status: 503, body: "upstream connect error or disconnect/reset before headers. reset reason: " + err.Error(), details: "upstream_reset_before_response_started{local_reset}", flag: "LR"})
		return
	}
	if r.reqDone {
		r.armPerTry(a)
	}
	transport := x.f.transport
	go func() {
		resp, err := transport.RoundTrip(req)
		x.post(evUpHeaders{a: a, resp: resp, err: err})
	}()
}

func (r *router) newRequest(ctx context.Context) (*http.Request, error) {
	h := r.upHeaders
	method, _ := h.get(":method")
	path, _ := h.get(":path")
	pu, err := url.ParseRequestURI(path)
	if err != nil {
		return nil, fmt.Errorf("invalid :path %q: %w", path, err)
	}
	u := *r.base
	u.Path, u.RawPath, u.RawQuery = pu.Path, pu.RawPath, pu.RawQuery
	var body io.Reader = http.NoBody
	var trailer http.Header
	if !r.reqDone || r.bodyLen > 0 || len(r.upTrailers) > 0 {
		trailer = http.Header{}
		body = r.body.reader(ctx, trailer, func() http.Header { return r.upTrailers.httpHeader() })
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
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
	case body == http.NoBody:
		req.ContentLength = 0
	case r.declaredCL >= 0:
		req.ContentLength = r.declaredCL
	default:
		req.ContentLength = -1
	}
	req.Trailer = trailer
	return req, nil
}

func (r *router) armPerTry(a *attempt) {
	if r.route.Retry == nil || r.route.Retry.PerTryTimeout <= 0 || a.perTry != nil {
		return
	}
	x := r.x
	a.perTry = time.AfterFunc(r.route.Retry.PerTryTimeout, func() { x.post(evPerTryTimeout{a: a}) })
}

// handle processes router events.
func (r *router) handle(ev any) {
	switch e := ev.(type) {
	case evUpHeaders:
		r.onHeaders(e)
	case evUpData:
		if e.a.dead || e.a != r.cur {
			return
		}
		r.x.ep.enc.onData(e.data, e.eos)
		if e.eos {
			r.upstreamComplete()
		}
	case evUpTrailers:
		if e.a.dead || e.a != r.cur {
			return
		}
		r.upstreamComplete()
		r.x.ep.enc.onTrailers(e.t)
	case evUpReset:
		if e.a.dead || e.a != r.cur {
			return
		}
		r.upstreamComplete()
		r.x.details = "upstream_reset_after_response_started{" + resetReason(e.err) + "}"
		r.x.addFlag("UR")
		r.x.reset()
	case evRouteTimeout:
		if e.gen != r.routeGen || r.upDone || r.stopped {
			return
		}
		r.x.addFlag("UT")
		if !r.respStarted {
			r.x.localReply(localReply{status: 504, body: "upstream request timeout", details: "upstream_response_timeout", flag: "UT"})
			return
		}
		r.x.details = "upstream_response_timeout"
		r.x.reset()
	case evPerTryTimeout:
		a := e.a
		if a.dead || a != r.cur || a.resp != nil {
			return
		}
		a.dead = true
		a.cancel()
		if r.retryOnReset(false) && r.retry(nil) {
			return
		}
		r.x.localReply(localReply{status: 504, body: "upstream request timeout", details: "upstream_per_try_timeout", flag: "UT"})
	case evRetry:
		if e.gen != r.retryGen || r.stopped {
			return
		}
		r.startAttempt()
	}
}

func (r *router) upstreamComplete() {
	r.upDone = true
	if r.routeTimer != nil {
		r.routeTimer.Stop()
	}
}

func (r *router) onHeaders(e evUpHeaders) {
	a := e.a
	if a.dead || a != r.cur || r.stopped {
		if e.resp != nil {
			_ = e.resp.Body.Close()
		}
		return
	}
	if a.perTry != nil {
		a.perTry.Stop()
	}
	x := r.x
	if e.err != nil {
		connFail := isConnectFailure(e.err)
		reason := resetReason(e.err)
		r.retryable = r.retryOnReset(connFail)
		if r.retryable && r.retry(nil) {
			return
		}
		flag := "UC"
		if connFail {
			flag = "UF"
		}
		if r.retryable {
			x.addFlag("URX")
		}
		x.localReply(localReply{
			status:  503,
			body:    "upstream connect error or disconnect/reset before headers. reset reason: " + reason,
			details: "upstream_reset_before_response_started{" + reason + "}",
			flag:    flag,
		})
		return
	}
	resp := e.resp
	a.resp = resp
	r.retryable = r.retryOnStatus(resp.StatusCode)
	if r.retryable && r.retry(resp.Header) {
		_ = resp.Body.Close()
		a.resp = nil
		return
	}
	if r.retryable {
		x.addFlag("URX")
	}
	r.respStarted = true
	h := headerMap{{key: ":status", value: strconv.Itoa(resp.StatusCode)}}
	h = fromHTTP(h, resp.Header)
	if resp.ContentLength >= 0 {
		h.set("content-length", strconv.FormatInt(resp.ContentLength, 10))
	}
	if !x.cfg.SuppressEnvoyHeaders {
		h.set("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(a.start).Milliseconds(), 10))
	}
	eos := resp.ContentLength == 0 || x.r.Method == http.MethodHead || resp.StatusCode == 204 || resp.StatusCode == 304
	if eos {
		_ = resp.Body.Close()
		r.upstreamComplete()
	} else {
		go r.pump(a, resp)
	}
	x.upstreamResponse(h, eos)
}

// pump forwards the upstream body chunk by chunk as the transport delivers it.
func (r *router) pump(a *attempt, resp *http.Response) {
	x := r.x
	defer resp.Body.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		chunk := append([]byte(nil), buf[:n]...)
		switch {
		case err == nil:
			if n > 0 {
				x.post(evUpData{a: a, data: chunk})
			}
		case errors.Is(err, io.EOF):
			tr := trailerMap(resp.Trailer)
			if len(tr) == 0 {
				x.post(evUpData{a: a, data: chunk, eos: true})
				return
			}
			if n > 0 {
				x.post(evUpData{a: a, data: chunk})
			}
			x.post(evUpTrailers{a: a, t: tr})
			return
		default:
			if n > 0 {
				x.post(evUpData{a: a, data: chunk})
			}
			x.post(evUpReset{a: a, err: err})
			return
		}
	}
}

// retryOn reports whether policy contains the named condition.
func (r *router) retryOn(cond string) bool {
	p := r.route.Retry
	if p == nil {
		return false
	}
	for _, c := range strings.Split(p.RetryOn, ",") {
		if strings.TrimSpace(c) == cond {
			return true
		}
	}
	return false
}

func (r *router) retryOnStatus(code int) bool {
	switch {
	case r.retryOn("5xx") && code >= 500:
		return true
	case r.retryOn("gateway-error") && (code == 502 || code == 503 || code == 504):
		return true
	case r.retryOn("retriable-4xx") && code == 409:
		return true
	case r.retryOn("retriable-status-codes"):
		for _, c := range r.route.Retry.RetriableStatusCodes {
			if c == code {
				return true
			}
		}
	}
	return false
}

// retryOnReset: Envoy counts any reset (and per-try timeout) as retriable
// for 5xx, gateway-error and reset; connect-failure only for connection
// failures.
func (r *router) retryOnReset(connFail bool) bool {
	if r.retryOn("5xx") || r.retryOn("gateway-error") || r.retryOn("reset") || r.retryOn("refused-stream") {
		return true
	}
	return connFail && r.retryOn("connect-failure")
}

// retry schedules the next attempt after a back-off; false when retries are
// exhausted or the body was too large to buffer.
func (r *router) retry(respHeader http.Header) bool {
	p := r.route.Retry
	limit := p.NumRetries
	if limit <= 0 {
		limit = 1
	}
	if r.attempts > limit || r.bodyLen > int64(r.x.cfg.BufferLimit) {
		return false
	}
	if r.cur != nil {
		r.cur.dead = true
		r.cur.cancel()
	}
	r.cur = nil
	delay := r.backoff(p, respHeader)
	r.retryGen++
	gen := r.retryGen
	x := r.x
	sleep := x.cfg.Sleep
	go func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-x.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := sleep(ctx, delay); err != nil {
			return
		}
		x.post(evRetry{gen: gen})
	}()
	return true
}

// backoff computes Envoy's retry delay: a rate-limit reset header when
// configured and parsable within max_interval (jittered lower bound), else
// the fully jittered exponential back-off.
func (r *router) backoff(p *RetryPolicy, h http.Header) time.Duration {
	r.backoffs++
	if h != nil && len(p.RateLimitedResetHeaders) > 0 {
		maxI := p.RateLimitedMaxInterval
		if maxI <= 0 {
			maxI = DefaultRateLimitedMaxInterval
		}
		for _, rh := range p.RateLimitedResetHeaders {
			v := strings.TrimSpace(h.Get(rh.Name))
			if v == "" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				continue
			}
			var d time.Duration
			switch rh.Format {
			case ResetSeconds:
				d = time.Duration(n) * time.Second
			case ResetUnixTimestamp:
				d = time.Unix(n, 0).Sub(r.x.cfg.Now())
				if d <= 0 {
					continue
				}
			}
			if d > maxI {
				continue
			}
			return d + r.x.cfg.Jitter(d/2)
		}
	}
	base := p.BaseInterval
	if base <= 0 {
		base = DefaultRetryBaseInterval
	}
	maxI := p.MaxInterval
	if maxI <= 0 {
		maxI = 10 * base
	}
	n := r.backoffs
	if n > 30 {
		n = 30
	}
	upper := time.Duration((int64(1)<<n)-1) * base
	if upper > maxI || upper <= 0 {
		upper = maxI
	}
	d := r.x.cfg.Jitter(upper)
	if d > maxI {
		d = maxI
	}
	return d
}

func isConnectFailure(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func resetReason(err error) string {
	switch {
	case isConnectFailure(err):
		return "connection failure"
	case errors.Is(err, syscall.ECONNRESET):
		return "remote reset"
	}
	return "connection termination"
}

// replayBuffer keeps the request body the router has seen so every attempt
// can read it from the start while more may still arrive.
type replayBuffer struct {
	mu      sync.Mutex
	data    []byte
	done    bool
	changed chan struct{}
}

func newReplayBuffer() *replayBuffer { return &replayBuffer{changed: make(chan struct{})} }

func (b *replayBuffer) write(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.data = append(b.data, p...)
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *replayBuffer) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	close(b.changed)
	b.changed = make(chan struct{})
}

// reader returns a reader of the whole body; at EOF it copies the trailers
// produced by src into dst (the request's Trailer map).
func (b *replayBuffer) reader(ctx context.Context, dst http.Header, src func() http.Header) io.Reader {
	return &replayReader{b: b, ctx: ctx, dst: dst, src: src}
}

type replayReader struct {
	b   *replayBuffer
	ctx context.Context
	off int
	dst http.Header
	src func() http.Header
}

func (rr *replayReader) Read(p []byte) (int, error) {
	for {
		rr.b.mu.Lock()
		if rr.off < len(rr.b.data) {
			n := copy(p, rr.b.data[rr.off:])
			rr.off += n
			rr.b.mu.Unlock()
			return n, nil
		}
		if rr.b.done {
			if rr.dst != nil && rr.src != nil {
				for k, v := range rr.src() {
					rr.dst[k] = v
				}
			}
			rr.b.mu.Unlock()
			return 0, io.EOF
		}
		ch := rr.b.changed
		rr.b.mu.Unlock()
		select {
		case <-ch:
		case <-rr.ctx.Done():
			return 0, rr.ctx.Err()
		}
	}
}

package envoytest

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
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
	evUpConnect     struct {
		a   *attempt
		err error
	}
	evPerTryIdle struct {
		a   *attempt
		gen int
	}
	evRetry struct{ gen int }
)

// router emulates envoy.filters.http.router: it is the sink of the request
// direction and the source of the response direction. Each attempt runs its
// own upstream filter chain (see attempt); the router decides on retries
// from the response headers that chain lets through.
type router struct {
	x       *exchange
	vhost   *VirtualHost
	route   *Route
	cluster string
	// hosts are the route cluster's hosts by priority; host is the
	// address of the latest attempt's host (for the access log).
	hosts []*upHost
	host  string
	// attempted are the priorities of the hosts attempted so far
	// (RetryState::onHostAttempted); excluded and retryPrio are the
	// previous_priorities plugin's state: the priorities it took out of the
	// load, and the priority its last computed load sends to (-1: the
	// cluster's original load).
	attempted []int
	excluded  map[int]bool
	retryPrio int
	// upHeaders is the request header map the router owns. Like Envoy's
	// downstream header map it is shared by every attempt's upstream filter
	// chain, so request header mutations by an upstream filter carry over to
	// later attempts.
	upHeaders  headerMap
	reqBody    []byte // the request body seen so far, replayed to each attempt
	upTrailers headerMap
	reqDone    bool
	started    bool

	attempts int
	cur      *attempt
	all      []*attempt
	retryGen int
	// nextBackoff is the exponential strategy's next interval (0: unused).
	nextBackoff time.Duration
	respStarted bool
	upDone      bool
	stopped     bool
	retryable   bool // the last outcome was retriable (for URX)

	routeTimer *time.Timer
	routeGen   int
	bodyLen    int64
	// maxRetries is x-envoy-max-retries when the router honoured it, -1
	// otherwise (the route's num_retries applies).
	maxRetries int
}

// cancel stops every attempt and timer.
func (r *router) cancel() {
	r.stopped = true
	for _, a := range r.all {
		a.kill(AttemptCancelled)
	}
	if r.routeTimer != nil {
		r.routeTimer.Stop()
	}
	r.routeGen++
	r.retryGen++
}

// headers is the request direction's sink: the router decides the route
// and starts the first attempt.
func (r *router) headers(h headerMap, eos bool) {
	x := r.x
	vhost, route := x.vhost, x.route
	if x.routeCleared {
		vhost, route = x.f.match(h)
	}
	r.vhost, r.route = vhost, route
	if route == nil {
		x.localReply(localReply{status: 404, details: "route_not_found", flag: "NR"})
		return
	}
	if dr := route.DirectResponse; dr != nil {
		x.localReply(localReply{status: dr.Status, body: dr.Body, details: "direct_response"})
		return
	}
	r.cluster = route.Cluster
	hosts, ok := x.f.hosts[route.Cluster]
	if !ok {
		x.localReply(localReply{status: 503, details: "cluster_not_found", flag: "NC"})
		return
	}
	r.hosts = hosts
	r.retryPrio = -1
	r.upHeaders = r.rewrite(h.clone(), route)
	r.maxRetries = r.consumeRetryHeaders(route)
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
	r.reqBody = append(r.reqBody, b...)
	if eos {
		r.requestComplete()
	}
	if a := r.cur; a != nil && !a.dead {
		a.fl.dec.onData(b, eos)
	}
}

func (r *router) trailers(t headerMap) {
	if !r.started || r.stopped {
		return
	}
	r.upTrailers = t
	r.requestComplete()
	if a := r.cur; a != nil && !a.dead {
		a.fl.dec.onTrailers(t.clone())
	}
}

// requestComplete runs when the router saw the end of the request: the
// route and per-try timers start now.
func (r *router) requestComplete() {
	if r.reqDone {
		return
	}
	r.reqDone = true
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

// chooseHost is the cluster load balancer's pick for the next attempt, made
// before the attempt's upstream filter chain exists (Filter::decodeHeaders
// and Filter::doRetry both call createConnPool). With every host healthy
// the original priority load sends everything to the lowest priority that
// has hosts; within a priority the first host is taken (no load balancing
// is emulated). Only retries consult the retry priority
// (Router::Filter::determinePriorityLoad: "We only modify the priority
// load on retries").
func (r *router) chooseHost() *upHost {
	prio := r.hosts[0].priority
	if p := r.route.Retry; p != nil && p.PreviousPriorities > 0 && r.attempts > 1 {
		prio = r.previousPriorities(p.PreviousPriorities, prio)
	}
	for _, h := range r.hosts {
		if h.priority == prio {
			return h
		}
	}
	return r.hosts[0]
}

// previousPriorities is PreviousPrioritiesRetryPriority::determinePriorityLoad
// (source/extensions/retry/priority/previous_priorities/previous_priorities.cc)
// for healthy hosts: with fewer attempted hosts than update_frequency the
// original load (orig) applies; every update_frequency attempts the
// attempted hosts' priorities are excluded and the whole load goes to the
// lowest priority left with hosts. When none is left the original load
// applies (the plugin's reset loop assigns to copies, so the exclusions
// stay). Between updates the last computed load is kept.
func (r *router) previousPriorities(freq, orig int) int {
	n := len(r.attempted)
	switch {
	case n < freq:
		return orig
	case n%freq == 0:
		if r.excluded == nil {
			r.excluded = map[int]bool{}
		}
		for _, p := range r.attempted {
			r.excluded[p] = true
		}
		for _, h := range r.hosts {
			if !r.excluded[h.priority] {
				r.retryPrio = h.priority
				return h.priority
			}
		}
		return orig
	}
	if r.retryPrio < 0 {
		return orig
	}
	return r.retryPrio
}

// startAttempt creates the next attempt with a new upstream filter chain
// and replays the request (headers, the body seen so far, trailers) into it.
func (r *router) startAttempt() {
	x := r.x
	r.attempts++
	if r.vhost != nil && r.vhost.IncludeRequestAttemptCount {
		// The router writes the count into the shared request header map
		// before the upstream filter chain runs.
		r.upHeaders.set("x-envoy-attempt-count", strconv.Itoa(r.attempts))
	}
	host := r.chooseHost()
	r.host = host.url.Host
	r.attempted = append(r.attempted, host.priority)
	if r.route.AutoHostRewrite && host.hostname != "" {
		// UpstreamRequest::onPoolReady: updateAuthority(host->hostname())
		// on the shared header map, once per attempt.
		r.upHeaders.set(":authority", host.hostname)
	}
	upCfg := x.cfg.upstreamExtProc(r.cluster)
	a := newAttempt(r, r.attempts, upCfg)
	a.host = host
	r.cur = a
	r.all = append(r.all, a)
	if upCfg != nil {
		r.connect(a)
	}
	if r.reqDone {
		r.armPerTry(a)
	}
	eos := r.reqDone && len(r.reqBody) == 0 && r.upTrailers == nil
	a.fl.dec.onHeaders(r.upHeaders.clone(), eos)
	if eos || a.dead {
		return
	}
	dataEOS := r.reqDone && r.upTrailers == nil
	if len(r.reqBody) > 0 || dataEOS {
		a.fl.dec.onData(append([]byte(nil), r.reqBody...), dataEOS)
	}
	if r.upTrailers != nil && !a.dead {
		a.fl.dec.onTrailers(r.upTrailers.clone())
	}
}

// connect starts the attempt's upstream connection in parallel with its
// upstream filter chain, as UpstreamRequest::acceptHeadersFromRouter calls
// conn_pool_->newStream before filter_manager_->decodeHeaders: a connect
// failure then ends the attempt whether or not the upstream ext_proc has
// answered request_headers (its stream is cancelled, an unanswered
// message's metadata never lands). The emulation probes with its own TCP
// connection (only for chains with an upstream filter, where the order is
// visible); the request itself still goes through the HTTP transport.
func (r *router) connect(a *attempt) {
	x := r.x
	host := a.host.url.Host
	dialer := x.f.dialer
	go func() {
		c, err := dialer.DialContext(a.ctx, "tcp", host)
		if err == nil {
			_ = c.Close()
			return
		}
		if a.ctx.Err() == nil {
			x.post(evUpConnect{a: a, err: err})
		}
	}()
}

// armPerTry starts the attempt's per-try timers once the request is
// complete (UpstreamRequest::setupPerTryTimeout).
func (r *router) armPerTry(a *attempt) {
	p := r.route.Retry
	if p == nil {
		return
	}
	x := r.x
	if p.PerTryTimeout > 0 && a.perTry == nil {
		a.perTry = time.AfterFunc(p.PerTryTimeout, func() { x.post(evPerTryTimeout{a: a}) })
	}
	if p.PerTryIdleTimeout > 0 && a.idleStop == nil {
		r.resetIdle(a)
	}
}

// resetIdle (re-)arms the per_try_idle_timeout of an attempt whose timer is
// set up (UpstreamRequest::resetPerTryIdleTimer: on setup, on response
// headers and on every response body chunk).
func (r *router) resetIdle(a *attempt) {
	p := r.route.Retry
	if p == nil || p.PerTryIdleTimeout <= 0 || a.dead {
		return
	}
	if a.idleStop != nil {
		a.idleStop()
	}
	a.idleGen++
	gen := a.idleGen
	x := r.x
	after := x.cfg.afterFunc
	if after == nil {
		after = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	a.idleStop = after(p.PerTryIdleTimeout, func() { x.post(evPerTryIdle{a: a, gen: gen}) })
}

// localReply sends a router-generated local reply; like Envoy's
// modify_headers_ it carries x-envoy-attempt-count when the virtual host
// asks for it and an attempt was made.
func (r *router) localReply(lr localReply) {
	if r.vhost != nil && r.vhost.IncludeAttemptCountInResponse && r.attempts > 0 {
		n := strconv.Itoa(r.attempts)
		lr.mutate = func(h *headerMap) { h.set("x-envoy-attempt-count", n) }
	}
	r.x.localReply(lr)
}

// handle processes router events.
func (r *router) handle(ev any) {
	switch e := ev.(type) {
	case evUpHeaders:
		r.onCodecHeaders(e)
	case evUpData:
		if !e.a.dead {
			e.a.fl.enc.onData(e.data, e.eos)
		}
	case evUpTrailers:
		if !e.a.dead {
			e.a.fl.enc.onTrailers(e.t)
		}
	case evUpReset:
		a := e.a
		if a.dead || a != r.cur {
			return
		}
		if !a.gotHeaders {
			// The upstream filter chain still holds the response headers:
			// for the router this is a reset before headers.
			r.attemptReset(a, e.err)
			return
		}
		ur := classifyReset(e.err)
		a.outcome, a.resetReason = AttemptReset, ur.reason
		a.kill(AttemptReset)
		r.upstreamComplete()
		r.x.details = ur.details("upstream_reset_after_response_started")
		r.x.addFlag("UR")
		r.x.reset()
	case evRouteTimeout:
		if e.gen != r.routeGen || r.upDone || r.stopped {
			return
		}
		if r.cur != nil && r.cur.outcome == "" {
			r.cur.outcome = AttemptRouteTimeout
		}
		r.x.addFlag("UT")
		if !r.respStarted {
			r.localReply(localReply{status: 504, body: "upstream request timeout", details: "upstream_response_timeout", flag: "UT"})
			return
		}
		r.x.details = "upstream_response_timeout"
		r.x.reset()
	case evPerTryTimeout:
		a := e.a
		if a.dead || a != r.cur || a.gotHeaders {
			return
		}
		a.kill(AttemptPerTryTimeout)
		if r.retryOnReset(false) && r.retry(nil) {
			return
		}
		r.localReply(localReply{status: 504, body: "upstream request timeout", details: "upstream_per_try_timeout", flag: "UT"})
	case evUpConnect:
		a := e.a
		if a.dead || a != r.cur || a.gotHeaders || r.stopped {
			return
		}
		// onPoolFailure: the attempt dies wherever its filter chain is.
		r.attemptReset(a, e.err)
	case evPerTryIdle:
		a := e.a
		if a.dead || a != r.cur || e.gen != a.idleGen || r.upDone || r.stopped {
			return
		}
		a.kill(AttemptPerTryIdleTimeout)
		if !r.respStarted {
			if r.retryOnReset(false) && r.retry(nil) {
				return
			}
			r.localReply(localReply{status: 504, body: "upstream request timeout", details: "upstream_per_try_idle_timeout", flag: "UT"})
			return
		}
		// onPerTryTimeoutCommon -> onUpstreamAbort: with the response
		// started, sendLocalReply resets the downstream stream.
		r.upstreamComplete()
		r.x.details = "upstream_per_try_idle_timeout"
		r.x.addFlag("UT")
		r.x.reset()
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

// onCodecHeaders handles the upstream codec's outcome for an attempt: a
// transport error, or response headers that now enter the attempt's
// upstream filter chain.
func (r *router) onCodecHeaders(e evUpHeaders) {
	a := e.a
	if a.dead || a != r.cur || r.stopped {
		if e.resp != nil {
			_ = e.resp.Body.Close()
		}
		return
	}
	if e.err != nil {
		r.attemptReset(a, e.err)
		return
	}
	resp := e.resp
	a.resp = resp
	h := headerMap{{key: ":status", value: strconv.Itoa(resp.StatusCode)}}
	h = fromHTTP(h, resp.Header)
	if resp.ContentLength >= 0 {
		h.set("content-length", strconv.FormatInt(resp.ContentLength, 10))
	}
	eos := resp.ContentLength == 0 || a.method == http.MethodHead || resp.StatusCode == 204 || resp.StatusCode == 304
	if eos {
		_ = resp.Body.Close()
	} else {
		go r.pump(a, resp)
	}
	a.fl.enc.onHeaders(h, eos)
}

// attemptReset handles an attempt that ended without response headers
// reaching the router (connect failure, reset, transport error): retry, or
// the 503 local reply. The attempt's upstream filter is torn down without
// ever sending response_headers.
func (r *router) attemptReset(a *attempt, err error) {
	x := r.x
	ur := classifyReset(err)
	a.outcome, a.resetReason = AttemptReset, ur.reason
	a.kill(AttemptReset)
	r.retryable = r.retryOnReset(ur.connFail)
	if r.retryable && r.retry(nil) {
		return
	}
	flag := "UC"
	switch {
	case ur.connFail:
		flag = "UF"
	case ur.reason == "remote reset":
		flag = "UR"
	}
	if r.retryable {
		x.addFlag("URX")
	}
	r.localReply(localReply{
		status:  503,
		body:    ur.body(r.attempts > 1),
		details: ur.details("upstream_reset_before_response_started"),
		flag:    flag,
	})
}

// onUpstreamHeaders receives the response headers an attempt's upstream
// filter chain let through (so mutations there, e.g. of :status, count) and
// makes the retry decision; only a final response goes downstream.
func (r *router) onUpstreamHeaders(a *attempt, h headerMap, eos bool) {
	x := r.x
	if a.dead || a != r.cur || r.stopped {
		return
	}
	a.gotHeaders = true
	if a.perTry != nil {
		a.perTry.Stop()
	}
	if a.idleStop != nil {
		r.resetIdle(a)
	}
	code := 0
	if v, ok := h.get(":status"); ok {
		code, _ = strconv.Atoi(v)
	}
	a.status = code
	r.retryable = r.retryOnStatus(code)
	if r.retryable && r.retry(h.httpHeader()) {
		return
	}
	if r.retryable {
		x.addFlag("URX")
	}
	a.outcome = AttemptResponse
	r.respStarted = true
	if !x.cfg.SuppressEnvoyHeaders {
		h.set("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(a.start).Milliseconds(), 10))
	}
	if r.vhost != nil && r.vhost.IncludeAttemptCountInResponse {
		h.set("x-envoy-attempt-count", strconv.Itoa(r.attempts))
	}
	if eos {
		r.upstreamComplete()
	}
	x.upstreamResponse(h, eos)
}

// onUpstreamData / onUpstreamTrailers forward the final attempt's response
// body and trailers, as the upstream filter chain lets them through.
func (r *router) onUpstreamData(a *attempt, b []byte, eos bool) {
	if a.dead || a != r.cur || !r.respStarted || r.stopped {
		return
	}
	if a.idleStop != nil {
		if eos {
			a.idleStop()
		} else {
			r.resetIdle(a)
		}
	}
	if eos {
		r.upstreamComplete()
	}
	r.x.encHead.data(b, eos)
}

func (r *router) onUpstreamTrailers(a *attempt, t headerMap) {
	if a.dead || a != r.cur || !r.respStarted || r.stopped {
		return
	}
	if a.idleStop != nil {
		a.idleStop()
	}
	r.upstreamComplete()
	r.x.encHead.trailers(t)
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
			if cp := x.cfg.ClusterProtocols[r.cluster]; !cp.HTTP2 && !cp.EnableTrailers {
				// Envoy's HTTP/1 codec drops trailers unless enable_trailers.
				tr = nil
			}
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

// retryHeaders are the request headers Envoy's retry state consumes
// (RetryStateImpl::create removes them, honoured or not, so none reaches an
// upstream). Only x-envoy-max-retries is emulated.
var retryHeaders = []string{"x-envoy-max-retries", "x-envoy-retry-on", "x-envoy-retry-grpc-on",
	"x-envoy-hedge-on-per-try-timeout", "x-envoy-retriable-header-names", "x-envoy-retriable-status-codes",
	"x-envoy-upstream-rq-per-try-timeout-ms"}

// consumeRetryHeaders removes retryHeaders from the upstream request and
// returns the retry limit x-envoy-max-retries sets, -1 for none. As in
// RetryStateImpl's constructor, the header takes precedence over
// num_retries when the route retries on anything (retry_on_ != 0) and its
// value parses as an unsigned integer (absl::SimpleAtoi: surrounding ASCII
// whitespace and a leading '+' allowed); it may raise the limit as well as
// lower it.
func (r *router) consumeRetryHeaders(route *Route) int {
	limit := -1
	if v, ok := r.upHeaders.get("x-envoy-max-retries"); ok && route.Retry != nil && strings.TrimSpace(route.Retry.RetryOn) != "" {
		v = strings.TrimPrefix(strings.TrimSpace(v), "+")
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			limit = int(min(n, math.MaxInt32))
		}
	}
	for i, name := range retryHeaders {
		if _, ok := r.upHeaders.get(name); ok && i > 0 {
			r.x.violation(KindUnsupported, name+" request header", "removed without effect by the harness")
		}
		r.upHeaders.del(name)
	}
	return limit
}

// retry schedules the next attempt after a back-off; false when retries are
// exhausted or the body was too large to buffer.
func (r *router) retry(respHeader http.Header) bool {
	p := r.route.Retry
	limit := p.NumRetries
	if limit <= 0 {
		limit = 1
	}
	if r.maxRetries >= 0 {
		limit = r.maxRetries
	}
	if r.attempts > limit || r.bodyLen > int64(r.x.cfg.BufferLimit) {
		return false
	}
	if r.cur != nil {
		r.cur.kill(AttemptRetried)
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

// backoff computes Envoy's retry delay (retry_state_impl.cc,
// enableBackoffTimer): a rate-limit reset header when configured, parsable,
// at most max_interval and over 1 ms gives a JitteredLowerBoundBackOffStrategy
// delay in [interval, 1.5·interval) that does not advance the exponential
// strategy; otherwise JitteredExponentialBackOffStrategy (backoff_strategy.cc)
// returns a uniform delay in [0, interval) where interval starts at
// base_interval and doubles after each use while below max_interval/2, then
// stays at max_interval.
func (r *router) backoff(p *RetryPolicy, h http.Header) time.Duration {
	if d, ok := r.rateLimitedInterval(p, h); ok {
		return d + r.x.cfg.Jitter(d/2)
	}
	base := p.BaseInterval
	if base <= 0 {
		base = DefaultRetryBaseInterval
	}
	maxI := p.MaxInterval
	if maxI <= 0 {
		maxI = 10 * base
	}
	if r.nextBackoff == 0 {
		r.nextBackoff = base
	}
	interval := r.nextBackoff
	if r.nextBackoff < maxI/2 {
		r.nextBackoff *= 2
	} else {
		r.nextBackoff = maxI
	}
	return r.x.cfg.Jitter(interval)
}

// rateLimitedInterval is RetryStateImpl::parseResetInterval: the first reset
// header whose interval is within rate_limited_retry_back_off.max_interval,
// used only when it is over 1 ms.
func (r *router) rateLimitedInterval(p *RetryPolicy, h http.Header) (time.Duration, bool) {
	if h == nil || len(p.RateLimitedResetHeaders) == 0 {
		return 0, false
	}
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
			d = time.Unix(n, 0).Sub(r.x.cfg.Now()).Truncate(time.Millisecond)
			if d <= 0 {
				continue
			}
		}
		if d > maxI {
			continue
		}
		return d, d.Milliseconds() > 1
	}
	return 0, false
}

func isConnectFailure(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// upstreamReset is an upstream failure as Envoy's router reports it: the
// StreamResetReason text (Http::Utility::resetReasonToString) and the
// transport failure reason of the connection.
type upstreamReset struct {
	reason    string
	transport string
	connFail  bool
}

// classifyReset maps a transport error to Envoy's reset reason. A failed
// connect is a pool failure: RemoteConnectionFailure with the socket's
// "delayed connect error: <strerror>" (connection_impl.cc), or
// ConnectionTimeout; on an established HTTP/1 connection any close or read
// error is ConnectionTermination (codec_client.cc, onEvent); "remote reset"
// is an HTTP/2 RST_STREAM.
func classifyReset(err error) upstreamReset {
	switch {
	case isStreamReset(err):
		return upstreamReset{reason: "remote reset"}
	case isConnectFailure(err):
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return upstreamReset{reason: "connection timeout", connFail: true}
		}
		var errno syscall.Errno
		detail := err.Error()
		if errors.As(err, &errno) {
			detail = strerror(errno)
		}
		return upstreamReset{reason: "remote connection failure", transport: "delayed connect error: " + detail, connFail: true}
	}
	return upstreamReset{reason: "connection termination"}
}

// isStreamReset reports an HTTP/2 RST_STREAM from the upstream (net/http's
// bundled HTTP/2 client reports it as "stream error: ...").
func isStreamReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "stream error:")
}

// strerror renders errno as glibc's strerror does (Go's texts are lower case).
func strerror(e syscall.Errno) string {
	s := e.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// details is the router's response code details for the reset
// (router.cc, onUpstreamReset): "<basic>{<reason>[|<transport>]}" with
// spaces replaced by "_" (StringUtil::replaceAllEmptySpace).
func (u upstreamReset) details(basic string) string {
	d := basic + "{" + u.reason
	if u.transport != "" {
		d += "|" + u.transport
	}
	return strings.ReplaceAll(d+"}", " ", "_")
}

// body is the 503 local reply body; retried says the request was retried.
func (u upstreamReset) body(retried bool) string {
	b := "upstream connect error or disconnect/reset before headers. "
	if retried {
		b += "retried and the latest "
	}
	b += "reset reason: " + u.reason
	if u.transport != "" {
		b += ", transport failure reason: " + u.transport
	}
	return b
}

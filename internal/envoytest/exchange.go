package envoytest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Events delivered to an exchange's loop.
type (
	evDownData struct {
		data []byte
		eos  bool
	}
	evDownTrailers struct{ t headerMap }
	evDownErr      struct{ err error }
	evReply        struct {
		fl   *filter
		ps   *procStream
		resp *extprocsvc.ProcessingResponse
	}
	evStreamEnd struct {
		fl  *filter
		ps  *procStream
		err error
	}
	evTimer struct {
		d   *direction
		gen int
	}
)

// exchange is one downstream HTTP stream: HCM + ext_proc filter + router.
// All its state is owned by the handler goroutine running loop.
type exchange struct {
	f   *Front
	cfg *Config
	log *slog.Logger
	w   http.ResponseWriter
	r   *http.Request

	events   chan any
	done     chan struct{}
	internal []any
	start    time.Time

	origHeaders  headerMap
	requestID    string
	vhost        *VirtualHost
	route        *Route
	routeCleared bool

	ep   *filter
	rt   *router
	down *downstream
	// cors is the CORS filter (nil when the chain has none); encHead is the
	// first encoder filter a router response or router local reply enters.
	cors    *corsFilter
	encHead sink

	respEncoding bool // response headers entered the encoder chain
	finished     bool
	resetDown    bool
	reqAborted   bool

	status    int
	details   string
	flags     []string
	dynMeta   metadata
	bytesRecv int64

	immediateResponses int
}

// post delivers an event from another goroutine; it gives up once the
// exchange is over.
func (x *exchange) post(ev any) {
	select {
	case x.events <- ev:
	case <-x.done:
	}
}

// queue schedules an event from the loop goroutine itself.
func (x *exchange) queue(ev any) { x.internal = append(x.internal, ev) }

func (x *exchange) addFlag(flag string) {
	for _, f := range x.flags {
		if f == flag {
			return
		}
	}
	x.flags = append(x.flags, flag)
}

func (x *exchange) violation(kind ViolationKind, detail, outcome string) {
	x.violationAt(0, kind, detail, outcome)
}

// violationAt records a violation seen by the upstream filter of the given
// attempt (0: downstream).
func (x *exchange) violationAt(attempt int, kind ViolationKind, detail, outcome string) {
	x.f.record(Violation{RequestID: x.requestID, Method: x.r.Method, Path: x.r.URL.RequestURI(), Attempt: attempt,
		Kind: kind, Detail: detail, Outcome: outcome})
}

// serve runs the whole exchange.
func (x *exchange) serve() {
	rc := http.NewResponseController(x.w)
	_ = rc.EnableFullDuplex()
	x.down = &downstream{x: x, w: x.w, rc: rc, declared: -1}

	h := x.requestHeaders()
	x.origHeaders = h.clone()
	x.vhost, x.route = x.f.match(h)
	x.ep = newFilter(x, x.cfg.ExtProc, x.route)
	x.rt = &router{x: x}
	x.ep.dec.next = x.rt
	x.ep.enc.next = x.down
	x.encHead = dirSink{x.ep.enc}
	if cc := x.cfg.CORS; cc != nil {
		x.cors = &corsFilter{x: x}
		if cc.AfterExtProc {
			// http_filters: ext_proc, cors, router.
			x.ep.dec.next = corsDecoder{c: x.cors, next: x.rt}
			x.cors.next = dirSink{x.ep.enc}
			x.encHead = x.cors
		} else {
			// http_filters: cors, ext_proc, router.
			x.ep.enc.next = x.cors
			x.cors.next = x.down
		}
	}

	eos := x.r.ContentLength == 0 && len(x.r.TransferEncoding) == 0
	readerDone := make(chan struct{})
	if eos {
		close(readerDone)
	} else {
		go func() {
			defer close(readerDone)
			x.readDownstream()
		}()
	}
	if x.cors == nil || x.cfg.CORS.AfterExtProc || !x.cors.decodeHeaders(h) {
		x.ep.dec.onHeaders(h, eos)
	}
	x.loop()
	x.cleanup()
	close(x.done)
	select {
	case <-readerDone:
	default:
		// The response ended before the request body: like Envoy, stop
		// reading (the connection is not reused).
		_ = rc.SetReadDeadline(time.Now())
		<-readerDone
	}
	x.f.finishLog(x)
	if x.resetDown {
		panic(http.ErrAbortHandler)
	}
}

func (x *exchange) loop() {
	for !x.finished {
		if len(x.internal) > 0 {
			ev := x.internal[0]
			x.internal = x.internal[1:]
			x.handle(ev)
			continue
		}
		select {
		case ev := <-x.events:
			x.handle(ev)
		case <-x.r.Context().Done():
			x.addFlag("DC")
			x.finished = true
		}
	}
}

func (x *exchange) handle(ev any) {
	if h := x.cfg.onEvent; h != nil {
		defer h(ev)
	}
	switch e := ev.(type) {
	case evDownData:
		x.bytesRecv += int64(len(e.data))
		if !x.reqAborted {
			x.ep.dec.onData(e.data, e.eos)
		}
	case evDownTrailers:
		if !x.reqAborted {
			x.ep.dec.onTrailers(e.t)
		}
	case evDownErr:
		if !x.reqAborted {
			x.addFlag("DC")
			x.reset()
		}
	case evReply:
		e.fl.onReply(e.ps, e.resp)
	case evStreamEnd:
		e.fl.onStreamEnd(e.ps, e.err)
	case evTimer:
		e.d.f.onTimeout(e.d, e.gen)
	default:
		x.rt.handle(ev)
	}
}

func (x *exchange) cleanup() {
	if x.ep.stream != nil && !x.ep.stream.closed {
		x.ep.closeStream()
	}
	x.ep.dec.stopTimer()
	x.ep.enc.stopTimer()
	x.rt.cancel()
}

// readDownstream feeds the request body into the loop, chunk by chunk as the
// codec delivers it.
func (x *exchange) readDownstream() {
	buf := make([]byte, 16<<10)
	for {
		n, err := x.r.Body.Read(buf)
		chunk := append([]byte(nil), buf[:n]...)
		switch {
		case err == nil:
			if n > 0 {
				x.post(evDownData{data: chunk})
			}
		case errors.Is(err, io.EOF):
			tr := trailerMap(x.r.Trailer)
			if !x.cfg.EnableTrailers {
				tr = nil // the HTTP/1 codec drops them
			}
			if len(tr) == 0 {
				x.post(evDownData{data: chunk, eos: true})
				return
			}
			if n > 0 {
				x.post(evDownData{data: chunk})
			}
			x.post(evDownTrailers{t: tr})
			return
		default:
			if n > 0 {
				x.post(evDownData{data: chunk})
			}
			x.post(evDownErr{err: err})
			return
		}
	}
}

// trailerMap converts received trailers (net/http pre-declares keys with
// empty values) to a header map; nil when there are none.
func trailerMap(t http.Header) headerMap {
	present := http.Header{}
	for k, vs := range t {
		for _, v := range vs {
			if v != "" {
				present[k] = append(present[k], v)
			}
		}
	}
	if len(present) == 0 {
		return nil
	}
	return fromHTTP(nil, present)
}

// requestHeaders builds the request header map as Envoy's HCM hands it to the
// filter chain.
func (x *exchange) requestHeaders() headerMap {
	r := x.r
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	h := headerMap{
		{key: ":authority", value: r.Host},
		{key: ":path", value: r.RequestURI},
		{key: ":method", value: r.Method},
		{key: ":scheme", value: scheme},
	}
	h = fromHTTP(h, r.Header)
	if v, ok := h.get("x-request-id"); ok && v != "" {
		x.requestID = v
	} else {
		x.requestID = newUUID()
		h.set("x-request-id", x.requestID)
	}
	if _, ok := h.get("x-forwarded-proto"); !ok {
		h.add("x-forwarded-proto", scheme)
	}
	if x.cfg.UseRemoteAddress {
		ip := clientIP(r.RemoteAddr)
		if prev, ok := h.get("x-forwarded-for"); ok && prev != "" {
			h.set("x-forwarded-for", prev+","+ip)
		} else {
			h.set("x-forwarded-for", ip)
		}
		if a := net.ParseIP(ip); a != nil && (a.IsLoopback() || a.IsPrivate()) {
			h.set("x-envoy-internal", "true")
		}
	}
	return h
}

func clientIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

// newUUID returns a random RFC 4122 version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// localReply is a response generated by Envoy itself.
type localReply struct {
	status  int
	body    string
	details string
	flag    string
	mutate  func(*headerMap)
}

// localReply sends lr with the outcome Envoy's sendLocalReply has at this
// point: through the encoder filter chain when no response has started,
// directly when response headers are held in the chain, or a stream reset
// when headers already went downstream.
//
// Through the chain means through all of it, whichever filter sent the
// reply: FilterManager::sendLocalReplyViaFilterChain and
// ActiveStreamDecoderFilter::encodeHeaders (the CORS preflight) call
// encodeHeaders(nullptr, ...), and commonEncodePrefix starts a nullptr
// filter at encoder_filters_.begin(). Encoder filters whose decodeHeaders
// never ran still see it (ext_proc merges its per-route config in
// encodeHeaders for this reason); ext_proc passes its own replies through
// because it marked processing complete before sending them.
func (x *exchange) localReply(lr localReply) {
	if x.finished {
		return
	}
	x.details = lr.details
	if lr.flag != "" {
		x.addFlag(lr.flag)
	}
	x.abortRequest()
	h := headerMap{{key: ":status", value: strconv.Itoa(lr.status)}}
	if lr.body != "" {
		h.add("content-type", "text/plain")
	}
	if lr.mutate != nil {
		lr.mutate(&h)
	}
	h.set("content-length", strconv.Itoa(len(lr.body)))
	h.set(":status", strconv.Itoa(lr.status))
	if x.down.headersSent {
		x.reset()
		return
	}
	if x.respEncoding {
		// sendDirectLocalReply: bypass the filter chain.
		x.ep.enc.dead = true
		x.ep.enc.stopTimer()
		x.down.headers(h, lr.body == "")
		if lr.body != "" {
			x.down.data([]byte(lr.body), true)
		}
		return
	}
	x.respEncoding = true
	start := x.encHead
	start.headers(h, lr.body == "")
	if lr.body != "" {
		start.data([]byte(lr.body), true)
	}
}

// abortRequest stops the request path: the upstream request is reset and
// further request data is dropped.
func (x *exchange) abortRequest() {
	x.reqAborted = true
	x.ep.dec.dead = true
	x.ep.dec.stopTimer()
	x.rt.cancel()
}

// reset resets the downstream stream (HTTP/1.1: connection closed, the
// client sees a truncated response).
func (x *exchange) reset() {
	if x.finished {
		return
	}
	x.resetDown = true
	x.finished = true
	x.abortRequest()
}

// upstreamResponse hands the router's response headers to the encoder chain.
func (x *exchange) upstreamResponse(h headerMap, eos bool) {
	x.respEncoding = true
	x.details = "via_upstream"
	x.encHead.headers(h, eos)
}

func (x *exchange) setMetadata(ns string, st *structpb.Struct) {
	if x.dynMeta == nil {
		x.dynMeta = metadata{}
	}
	x.dynMeta.merge(ns, st)
}

// metadata is dynamic metadata by namespace (StreamInfo filter_metadata).
type metadata map[string]*structpb.Struct

// merge writes the fields of st into namespace ns (setDynamicMetadata).
func (m metadata) merge(ns string, st *structpb.Struct) {
	cur, ok := m[ns]
	if !ok {
		cur = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		m[ns] = cur
	}
	for k, v := range st.GetFields() {
		cur.Fields[k] = v
	}
}

// asMap converts m for the access log; nil when empty.
func (m metadata) asMap() map[string]map[string]any {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]map[string]any, len(m))
	for ns, st := range m {
		out[ns] = st.AsMap()
	}
	return out
}

func (x *exchange) metadataContext(ns []string) *corev3.Metadata {
	md := &corev3.Metadata{}
	for _, n := range ns {
		if st, ok := x.dynMeta[n]; ok {
			if md.FilterMetadata == nil {
				md.FilterMetadata = map[string]*structpb.Struct{}
			}
			md.FilterMetadata[n] = st
		}
	}
	return md
}

// forwardable applies forward_rules to the headers sent to the server.
func (x *exchange) forwardable(cfg *ExtProcConfig, h headerMap) headerMap {
	if len(cfg.AllowedHeaders) == 0 && len(cfg.DisallowedHeaders) == 0 {
		return h
	}
	var out headerMap
	for _, e := range h {
		if len(cfg.AllowedHeaders) > 0 && !anyMatch(cfg.AllowedHeaders, e.key) {
			continue
		}
		if anyMatch(cfg.DisallowedHeaders, e.key) {
			continue
		}
		out = append(out, e)
	}
	return out
}

func anyMatch(ms []StringMatcher, s string) bool {
	for _, m := range ms {
		if m.matches(s) {
			return true
		}
	}
	return false
}

// downstream writes the response to the client.
type downstream struct {
	x           *exchange
	w           http.ResponseWriter
	rc          *http.ResponseController
	headersSent bool
	declared    int64
	written     int64
	respHeaders http.Header
}

func (d *downstream) headers(h headerMap, eos bool) {
	x := d.x
	if x.finished {
		return
	}
	code := 502
	if v, ok := h.get(":status"); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 100 && n <= 999 {
			code = n
		}
	}
	wh := d.w.Header()
	for k := range wh {
		delete(wh, k)
	}
	for k, vs := range h.httpHeader() {
		wh[k] = vs
	}
	wh.Set("Server", x.cfg.ServerName)
	if _, ok := wh["Content-Type"]; !ok {
		wh["Content-Type"] = nil // no sniffing: Envoy never adds a content type
	}
	if cl, ok := h.get("content-length"); ok {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
			d.declared = n
		}
	}
	d.respHeaders = wh.Clone()
	x.status = code
	d.headersSent = true
	d.w.WriteHeader(code)
	if eos {
		d.end()
		return
	}
	_ = d.rc.Flush()
}

func (d *downstream) data(b []byte, eos bool) {
	x := d.x
	if x.finished {
		return
	}
	if len(b) > 0 {
		if d.declared >= 0 && d.written+int64(len(b)) > d.declared {
			x.violation(KindFraming, fmt.Sprintf("response body longer than content-length %d", d.declared), "client sees a malformed response")
			d.declared = -1 // report once
		}
		n, err := d.w.Write(b)
		d.written += int64(n)
		if err != nil {
			if !errors.Is(err, http.ErrContentLength) {
				x.addFlag("DC")
			}
			x.finished = true
			return
		}
		_ = d.rc.Flush()
	}
	if eos {
		d.end()
	}
}

func (d *downstream) trailers(t headerMap) {
	if d.x.finished {
		return
	}
	if !d.x.cfg.EnableTrailers {
		// The HTTP/1 codec ends the chunked body without them.
		d.end()
		return
	}
	wh := d.w.Header()
	for k, vs := range t.httpHeader() {
		for _, v := range vs {
			wh.Add(http.TrailerPrefix+k, v)
		}
	}
	d.end()
}

func (d *downstream) end() {
	x := d.x
	if d.declared >= 0 && d.written != d.declared && x.r.Method != http.MethodHead && x.status != 204 && x.status != 304 {
		x.violation(KindFraming, fmt.Sprintf("response content-length %d but %d body bytes", d.declared, d.written), "client sees a malformed response")
	}
	x.finished = true
}

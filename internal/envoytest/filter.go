package envoytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// msgKind is the kind of an ext_proc message.
type msgKind int

const (
	kindHeaders msgKind = iota
	kindBody
	kindTrailers
)

func (k msgKind) String() string {
	return [...]string{"headers", "body", "trailers"}[k]
}

// sink receives what a filter direction lets through, in order.
type sink interface {
	headers(h headerMap, eos bool)
	data(b []byte, eos bool)
	trailers(t headerMap)
}

// procStream is one ext_proc Process stream.
type procStream struct {
	s        extprocsvc.ExternalProcessor_ProcessClient
	cancel   context.CancelFunc
	recvDone chan struct{}
	closed   bool // closed by the filter or ended by the server
}

// filter is one ext_proc filter instance: the downstream one of an HTTP
// stream, or the upstream one of a single upstream attempt.
type filter struct {
	x      *exchange
	cfg    *ExtProcConfig
	client extprocsvc.ExternalProcessorClient
	// up is the attempt of an upstream (per-attempt) filter; nil downstream.
	up *attempt
	// base is the filter-level processing mode (the base for mode_override).
	base     *extprocv3.ProcessingMode
	failOpen bool
	recvNS   []string
	fwdNS    []string

	stream    *procStream
	complete  bool // processing complete: everything passes through
	destroyed bool // the filter chain was torn down (upstream attempt ended)
	firstSent bool
	dec, enc  *direction

	// streams, sent and received record the Process stream for the access log.
	streams  int
	sent     []*extprocsvc.ProcessingRequest
	received []*extprocsvc.ProcessingResponse
}

// outstanding is a message waiting for its reply.
type outstanding struct {
	kind      msgKind
	data      []byte
	eos       bool
	bodyMode  extprocv3.ProcessingMode_BodySendMode
	overrides int // override_message_timeout uses (at most one)
}

// direction is one of the two per-stream state machines (Envoy's
// decoding_state_ / encoding_state_).
type direction struct {
	f    *filter
	req  bool
	next sink

	sendHeaders  bool
	body         extprocv3.ProcessingMode_BodySendMode
	sendTrailers bool

	started     bool // headers seen
	headers     headerMap
	headersEOS  bool
	headersHeld bool
	headersFwd  bool
	removeCL    bool // content-length removed at header time
	bodyEOS     bool // the source finished the body (eos data or trailers)
	dataSeen    bool // a data frame arrived (Envoy's bufferedData() != nullptr)
	held        []byte
	after       []byte // BUFFERED_PARTIAL data that arrived after the partial message
	partialSent bool
	bodySent    bool // BUFFERED message sent
	bodyEOSSent bool // a body message with end_of_stream was sent
	trailers    headerMap
	hasTrailers bool
	trailersFwd bool
	eosFwd      bool
	replaced    bool // CONTINUE_AND_REPLACE: no further messages, original body drained
	drain       bool // original body must be dropped
	dead        bool // stream aborted in this direction (local reply)
	attrsSent   bool
	pending     []*outstanding

	timer    *time.Timer
	timerGen int
}

func (d *direction) name() string {
	if d.req {
		return "request"
	}
	return "response"
}

// newFilter builds a filter instance; a nil cfg gives a pass-through filter
// (no ext_proc in the chain). route carries the per-route config (nil for
// upstream filters).
func newFilter(x *exchange, cfg *ExtProcConfig, route *Route) *filter {
	f := &filter{x: x, cfg: cfg}
	if cfg == nil {
		f.complete = true
		f.dec = &direction{f: f, req: true}
		f.enc = &direction{f: f}
		return f
	}
	f.client = x.f.procClients[cfg.Addr]
	f.base = cfg.ProcessingMode
	if f.base == nil {
		f.base = &extprocv3.ProcessingMode{}
	}
	f.failOpen = cfg.FailureModeAllow
	f.recvNS, f.fwdNS = cfg.ReceivingNamespaces, cfg.ForwardingNamespaces
	mode := f.base
	if route != nil && route.ExtProc != nil {
		pr := route.ExtProc
		if pr.Disabled {
			f.complete = true
		}
		if pr.ProcessingMode != nil {
			mode = pr.ProcessingMode
		}
		if pr.FailureModeAllow != nil {
			f.failOpen = *pr.FailureModeAllow
		}
		if pr.OverrideMetadataOptions {
			f.recvNS, f.fwdNS = pr.ReceivingNamespaces, pr.ForwardingNamespaces
		}
	}
	f.dec = &direction{f: f, req: true}
	f.enc = &direction{f: f}
	f.setMode(mode, mode)
	return f
}

// setMode applies the six fields of m (with DEFAULT header/trailer modes
// resolved against base, as Envoy 1.37 does) to both directions.
func (f *filter) setMode(m, base *extprocv3.ProcessingMode) {
	hdr := func(v, b extprocv3.ProcessingMode_HeaderSendMode) bool {
		if v == extprocv3.ProcessingMode_DEFAULT {
			v = b
		}
		return v != extprocv3.ProcessingMode_SKIP
	}
	trl := func(v, b extprocv3.ProcessingMode_HeaderSendMode) bool {
		if v == extprocv3.ProcessingMode_DEFAULT {
			v = b
		}
		return v == extprocv3.ProcessingMode_SEND
	}
	f.dec.sendHeaders = hdr(m.GetRequestHeaderMode(), base.GetRequestHeaderMode())
	f.dec.body = m.GetRequestBodyMode()
	f.dec.sendTrailers = trl(m.GetRequestTrailerMode(), base.GetRequestTrailerMode())
	f.enc.sendHeaders = hdr(m.GetResponseHeaderMode(), base.GetResponseHeaderMode())
	f.enc.body = m.GetResponseBodyMode()
	f.enc.sendTrailers = trl(m.GetResponseTrailerMode(), base.GetResponseTrailerMode())
}

// ---------------------------------------------------------------------------
// Stream handling

// open starts the Process stream lazily. It reports false when the stream
// could not be created; the failure is then queued as a stream error.
func (f *filter) open() {
	x := f.x
	ctx, cancel := context.WithCancel(context.Background())
	ps := &procStream{cancel: cancel, recvDone: make(chan struct{})}
	f.stream = ps
	// Envoy's gRPC client caps neither what it sends nor, unless
	// max_receive_message_length is set, what it receives (grpc-go's client
	// default would cap replies at 4 MiB).
	recvMax := f.cfg.MaxReceiveMessageLength
	if recvMax <= 0 {
		recvMax = math.MaxInt32
	}
	s, err := f.client.Process(ctx, grpc.MaxCallSendMsgSize(math.MaxInt32), grpc.MaxCallRecvMsgSize(recvMax))
	if err != nil {
		close(ps.recvDone)
		x.queue(evStreamEnd{fl: f, ps: ps, err: err})
		return
	}
	ps.s = s
	f.streams++
	go func() {
		defer close(ps.recvDone)
		for {
			resp, err := s.Recv()
			if err != nil {
				x.post(evStreamEnd{fl: f, ps: ps, err: err})
				return
			}
			x.post(evReply{fl: f, ps: ps, resp: resp})
		}
	}()
}

// send transmits a request on the stream, opening it first if needed.
func (f *filter) send(req *extprocsvc.ProcessingRequest) {
	if f.stream == nil {
		f.open()
	}
	req.MetadataContext = f.x.metadataContext(f.fwdNS)
	if !f.firstSent {
		f.firstSent = true
		req.ProtocolConfig = &extprocsvc.ProtocolConfiguration{
			RequestBodyMode:                         f.dec.body,
			ResponseBodyMode:                        f.enc.body,
			SendBodyWithoutWaitingForHeaderResponse: f.cfg.SendBodyWithoutWaitingForHeaderResponse,
		}
	}
	f.sent = append(f.sent, req)
	if f.stream.s == nil || f.stream.closed {
		return
	}
	if err := f.stream.s.Send(req); err != nil {
		// The real status arrives through Recv.
		f.x.log.Debug("ext_proc send failed", "err", err)
	}
}

// closeStream ends the stream the way Envoy does: reset (the server sees a
// cancelled context) or, with GracefulClose, half-close and wait.
func (f *filter) closeStream() {
	ps := f.stream
	if ps == nil || ps.closed {
		return
	}
	ps.closed = true
	f.dec.stopTimer()
	f.enc.stopTimer()
	if ps.s == nil {
		ps.cancel()
		return
	}
	if !f.cfg.GracefulClose {
		ps.cancel()
		return
	}
	_ = ps.s.CloseSend()
	timeout := f.cfg.RemoteCloseTimeout
	go func() {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-ps.recvDone:
		case <-t.C:
		}
		ps.cancel()
	}()
}

// destroy tears the filter down with its filter chain (Envoy onDestroy):
// the stream is closed, nothing more is forwarded and late replies are
// dropped unseen.
func (f *filter) destroy() {
	if f.destroyed {
		return
	}
	f.destroyed = true
	f.complete = true
	f.dec.dead, f.enc.dead = true, true
	f.closeStream()
	f.dec.stopTimer()
	f.enc.stopTimer()
}

// violation records a protocol deviation seen by this filter instance.
func (f *filter) violation(kind ViolationKind, detail, outcome string) {
	n := 0
	if f.up != nil {
		n = f.up.n
	}
	f.x.violationAt(n, kind, detail, outcome)
}

// localReply sends a local reply on behalf of this filter. An upstream
// filter's local reply goes through the downstream filter manager (Envoy's
// UpstreamFilterManager::sendLocalReply): it is final, never retried.
func (f *filter) localReply(lr localReply) {
	if f.up != nil {
		f.up.outcome = AttemptLocalReply
	}
	f.x.localReply(lr)
}

// finishOpen marks processing complete and lets everything held continue
// unmodified (clean close or fail-open).
func (f *filter) finishOpen() {
	if f.complete {
		return
	}
	f.complete = true
	f.closeStream()
	f.dec.release()
	if f.x.finished {
		return
	}
	f.enc.release()
}

// fail marks processing complete and sends a local reply (fail-closed).
func (f *filter) fail(code int, details string) {
	if f.complete {
		return
	}
	f.complete = true
	f.closeStream()
	f.localReply(localReply{status: code, details: details})
}

// maybeClose implements the 1.37 stream close optimisation: once neither
// direction can send another message, the stream is closed.
func (f *filter) maybeClose() {
	if f.complete || f.stream == nil || f.stream.closed || f.cfg.KeepStreamUntilEnd {
		return
	}
	if f.dec.mayNeedMore() || f.enc.mayNeedMore() {
		return
	}
	f.closeStream()
}

// mayNeedMore reports whether the direction may still send or await a message.
func (d *direction) mayNeedMore() bool {
	if d.dead {
		return false
	}
	if len(d.pending) > 0 {
		return true
	}
	if !d.started {
		return d.sendHeaders || d.body != extprocv3.ProcessingMode_NONE || d.sendTrailers
	}
	if d.headersEOS || d.replaced {
		return false
	}
	if d.trailersFwd || (d.eosFwd && !d.hasTrailers) {
		return false
	}
	if d.hasTrailers {
		return d.sendTrailers
	}
	switch d.body {
	case extprocv3.ProcessingMode_NONE:
		return d.sendTrailers
	case extprocv3.ProcessingMode_BUFFERED:
		return !d.bodySent || d.sendTrailers
	case extprocv3.ProcessingMode_BUFFERED_PARTIAL:
		return !d.partialSent || d.sendTrailers
	}
	return true
}

// onStreamEnd handles the end of the stream's receive side.
func (f *filter) onStreamEnd(ps *procStream, err error) {
	if ps != f.stream || ps.closed || f.complete || f.destroyed {
		return
	}
	ps.closed = true
	f.dec.stopTimer()
	f.enc.stopTimer()
	if errors.Is(err, io.EOF) {
		// The server returned OK: continue without ext_proc.
		f.finishOpen()
		return
	}
	st := status.Convert(err)
	f.violation(KindGRPCError, fmt.Sprintf("stream ended with %s: %s", st.Code(), st.Message()),
		f.failOpenOutcome())
	if f.failOpen {
		f.finishOpen()
		return
	}
	f.fail(f.cfg.StatusOnError, strings.ReplaceAll(fmt.Sprintf("ext_proc_error_gRPC_error_%d{%s}", int(st.Code()), st.Message()), " ", "_"))
}

func (f *filter) failOpenOutcome() string {
	if f.failOpen {
		return "continued without ext_proc (failure_mode_allow)"
	}
	return "local reply " + strconv.Itoa(f.cfg.StatusOnError)
}

// onTimeout handles an expired per-message timer.
func (f *filter) onTimeout(d *direction, gen int) {
	if f.complete || gen != d.timerGen || len(d.pending) == 0 {
		return
	}
	outcome := "local reply 504"
	if f.failOpen {
		outcome = "continued without ext_proc (failure_mode_allow)"
	}
	f.violation(KindMessageTimeout, fmt.Sprintf("no reply to %s_%s within the message timeout", d.name(), d.pending[0].kind), outcome)
	if f.failOpen {
		f.finishOpen()
		return
	}
	f.fail(504, "ext_proc_error_per-message_timeout_exceeded")
}

func (d *direction) startTimer(timeout time.Duration) {
	d.stopTimer()
	gen := d.timerGen
	x := d.f.x
	d.timer = time.AfterFunc(timeout, func() { x.post(evTimer{d: d, gen: gen}) })
}

func (d *direction) stopTimer() {
	d.timerGen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// ---------------------------------------------------------------------------
// Sending

func (d *direction) headerMessage(eos bool) *extprocsvc.ProcessingRequest {
	hh := &extprocsvc.HttpHeaders{Headers: d.f.x.forwardable(d.f.cfg, d.headers).proto(), EndOfStream: eos}
	req := &extprocsvc.ProcessingRequest{}
	if d.req {
		req.Request = &extprocsvc.ProcessingRequest_RequestHeaders{RequestHeaders: hh}
	} else {
		req.Request = &extprocsvc.ProcessingRequest_ResponseHeaders{ResponseHeaders: hh}
	}
	return req
}

func (d *direction) push(req *extprocsvc.ProcessingRequest, o *outstanding) {
	f := d.f
	if !d.attrsSent {
		d.attrsSent = true
		names := f.cfg.RequestAttributes
		if !d.req {
			names = f.cfg.ResponseAttributes
		}
		if len(names) > 0 {
			req.Attributes = f.x.attributes(f, names)
		}
	}
	d.pending = append(d.pending, o)
	f.send(req)
	d.startTimer(f.cfg.MessageTimeout)
}

func (d *direction) sendHeadersMsg() {
	d.headersHeld = true
	d.push(d.headerMessage(d.headersEOS), &outstanding{kind: kindHeaders, eos: d.headersEOS})
}

func (d *direction) sendBody(b []byte, eos bool) { d.sendBodyAs(b, eos, d.body) }

// sendBodyAs sends a body message handled on reply as Envoy's callback
// state for mode (BUFFERED: BufferedBodyCallback).
func (d *direction) sendBodyAs(b []byte, eos bool, mode extprocv3.ProcessingMode_BodySendMode) {
	body := &extprocsvc.HttpBody{Body: b, EndOfStream: eos}
	req := &extprocsvc.ProcessingRequest{}
	if d.req {
		req.Request = &extprocsvc.ProcessingRequest_RequestBody{RequestBody: body}
	} else {
		req.Request = &extprocsvc.ProcessingRequest_ResponseBody{ResponseBody: body}
	}
	if eos {
		d.bodyEOSSent = true
	}
	d.push(req, &outstanding{kind: kindBody, data: b, eos: eos, bodyMode: mode})
}

// rearm restarts the message timer while replies are outstanding.
func (d *direction) rearm() {
	if len(d.pending) > 0 {
		d.startTimer(d.f.cfg.MessageTimeout)
		return
	}
	d.stopTimer()
}

func (d *direction) sendTrailersMsg() {
	t := &extprocsvc.HttpTrailers{Trailers: d.trailers.proto()}
	req := &extprocsvc.ProcessingRequest{}
	if d.req {
		req.Request = &extprocsvc.ProcessingRequest_RequestTrailers{RequestTrailers: t}
	} else {
		req.Request = &extprocsvc.ProcessingRequest_ResponseTrailers{ResponseTrailers: t}
	}
	d.push(req, &outstanding{kind: kindTrailers})
}

// ---------------------------------------------------------------------------
// Forwarding

func (d *direction) fwdHeaders() {
	if d.headersFwd || d.dead {
		return
	}
	d.headersFwd = true
	d.headersHeld = false
	if d.headersEOS {
		d.eosFwd = true
	}
	d.next.headers(d.headers, d.headersEOS)
}

func (d *direction) fwdData(b []byte, eos bool) {
	if d.eosFwd || d.dead || d.f.x.finished {
		return
	}
	if eos {
		d.eosFwd = true
	}
	d.next.data(b, eos)
}

func (d *direction) fwdTrailers() {
	if d.trailersFwd || d.dead || d.f.x.finished {
		return
	}
	d.trailersFwd = true
	d.eosFwd = true
	d.next.trailers(d.trailers)
}

// dataEOS reports whether the data forwarded now ends the stream (body ended
// and no trailers follow).
func (d *direction) dataEOS() bool { return d.bodyEOS && !d.hasTrailers }

// release lets everything the direction holds continue unmodified.
func (d *direction) release() {
	d.stopTimer()
	if !d.started || d.dead {
		return
	}
	d.fwdHeaders()
	var buf []byte
	for _, p := range d.pending {
		if p.kind == kindBody {
			buf = append(buf, p.data...)
		}
	}
	d.pending = nil
	buf = append(buf, d.held...)
	buf = append(buf, d.after...)
	d.held, d.after = nil, nil
	if len(buf) > 0 || d.dataEOS() {
		d.fwdData(buf, d.dataEOS())
	}
	if d.hasTrailers && d.bodyEOS {
		d.fwdTrailers()
	}
}

// ---------------------------------------------------------------------------
// Source events

func (d *direction) onHeaders(h headerMap, eos bool) {
	if d.dead {
		return
	}
	d.started = true
	d.headers = h
	d.headersEOS = eos
	if eos {
		d.bodyEOS = true
	}
	f := d.f
	if f.complete {
		d.fwdHeaders()
		return
	}
	if d.sendHeaders {
		d.sendHeadersMsg()
	}
	if !f.complete && d.shouldRemoveCL() {
		d.removeCL = true
		d.headers.del("content-length")
	}
	if !d.sendHeaders {
		d.fwdHeaders()
		if eos {
			f.maybeClose()
		}
	}
}

// shouldRemoveContentLength mirrors ProcessorState::shouldRemoveContentLength.
func (d *direction) shouldRemoveCL() bool {
	switch d.body {
	case extprocv3.ProcessingMode_STREAMED, extprocv3.ProcessingMode_BUFFERED_PARTIAL,
		extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED:
		return true
	case extprocv3.ProcessingMode_BUFFERED:
		return !d.sendHeaders
	}
	return false
}

func (d *direction) awaitingHeaders() bool {
	return len(d.pending) > 0 && d.pending[0].kind == kindHeaders
}

func (d *direction) onData(b []byte, eos bool) {
	if d.dead || d.eosFwd && !d.drain {
		return
	}
	if eos {
		d.bodyEOS = true
	}
	d.dataSeen = true
	f := d.f
	if f.complete {
		d.fwdData(b, eos)
		return
	}
	if d.drain {
		return
	}
	if d.replaced {
		d.fwdData(b, eos)
		return
	}
	if d.awaitingHeaders() {
		if d.body == extprocv3.ProcessingMode_STREAMED && f.cfg.SendBodyWithoutWaitingForHeaderResponse {
			d.sendBody(b, eos)
			return
		}
		d.held = append(d.held, b...)
		if d.body == extprocv3.ProcessingMode_BUFFERED && len(d.held) > f.x.cfg.BufferLimit {
			d.overflow()
		}
		return
	}
	switch d.body {
	case extprocv3.ProcessingMode_NONE:
		d.fwdData(b, eos)
	case extprocv3.ProcessingMode_STREAMED:
		d.sendBody(b, eos)
	case extprocv3.ProcessingMode_BUFFERED:
		if d.bodySent {
			return
		}
		d.held = append(d.held, b...)
		if len(d.held) > f.x.cfg.BufferLimit {
			d.overflow()
			return
		}
		if eos {
			d.sendBuffered()
		}
	case extprocv3.ProcessingMode_BUFFERED_PARTIAL:
		if d.partialSent {
			if len(d.pending) > 0 {
				d.after = append(d.after, b...)
				return
			}
			d.fwdData(b, eos)
			return
		}
		d.held = append(d.held, b...)
		if eos || len(d.held) > f.x.cfg.BufferLimit {
			d.sendPartial()
		}
	}
}

func (d *direction) onTrailers(t headerMap) {
	if d.dead || d.eosFwd {
		return
	}
	d.bodyEOS = true
	d.hasTrailers = true
	d.trailers = t
	f := d.f
	if f.complete {
		d.fwdData(d.held, false)
		d.held = nil
		d.fwdTrailers()
		return
	}
	if d.drain {
		return
	}
	if d.replaced {
		d.fwdTrailers()
		return
	}
	if d.awaitingHeaders() {
		return // handled after the header reply
	}
	switch d.body {
	case extprocv3.ProcessingMode_BUFFERED:
		if !d.bodySent {
			d.sendBuffered()
			return
		}
	case extprocv3.ProcessingMode_BUFFERED_PARTIAL:
		if !d.partialSent {
			d.sendPartial()
			return
		}
	}
	if len(d.pending) == 0 {
		d.handleTrailers()
	}
}

// handleTrailers sends or forwards trailers once no body message is outstanding.
func (d *direction) handleTrailers() {
	if d.trailersFwd {
		return
	}
	if len(d.after) > 0 {
		d.fwdData(d.after, false)
		d.after = nil
	}
	if d.sendTrailers && !d.f.complete {
		d.sendTrailersMsg()
		return
	}
	d.fwdTrailers()
	d.f.maybeClose()
}

func (d *direction) sendBuffered() {
	d.bodySent = true
	b := d.held
	d.held = nil
	d.sendBody(b, d.dataEOS())
}

func (d *direction) sendPartial() {
	d.partialSent = true
	b := d.held
	d.held = nil
	d.sendBody(b, d.dataEOS())
}

// overflow handles a BUFFERED body above the buffer limit: 413 for requests,
// 500 for responses; the server never sees the body.
func (d *direction) overflow() {
	f := d.f
	d.held = nil
	if d.req {
		f.localReply(localReply{status: 413, body: "Payload Too Large", details: "request_payload_too_large"})
		return
	}
	f.localReply(localReply{status: 500, body: "Internal Server Error", details: "response_payload_too_large"})
}

// ---------------------------------------------------------------------------
// Replies

// onReply validates and applies one ProcessingResponse.
func (f *filter) onReply(ps *procStream, resp *extprocsvc.ProcessingResponse) {
	if f.destroyed {
		return
	}
	f.received = append(f.received, resp)
	if ps != f.stream {
		return
	}
	x := f.x
	if f.complete {
		f.violation(KindLateReply, "reply received after processing completed: "+replyName(resp), "ignored")
		return
	}
	if resp.GetOverrideMessageTimeout() != nil {
		f.overrideTimeout(resp)
		return
	}
	if resp.Response == nil {
		f.spuriousAs("ProcessingResponse without a response", unhandledMessage)
		return
	}
	var d *direction
	var kind msgKind
	switch resp.Response.(type) {
	case *extprocsvc.ProcessingResponse_RequestHeaders:
		d, kind = f.dec, kindHeaders
	case *extprocsvc.ProcessingResponse_RequestBody:
		d, kind = f.dec, kindBody
	case *extprocsvc.ProcessingResponse_RequestTrailers:
		d, kind = f.dec, kindTrailers
	case *extprocsvc.ProcessingResponse_ResponseHeaders:
		d, kind = f.enc, kindHeaders
	case *extprocsvc.ProcessingResponse_ResponseBody:
		d, kind = f.enc, kindBody
	case *extprocsvc.ProcessingResponse_ResponseTrailers:
		d, kind = f.enc, kindTrailers
	case *extprocsvc.ProcessingResponse_ImmediateResponse:
		if f.cfg.DisableImmediateResponse {
			f.spuriousAs("immediate_response with disable_immediate_response", immediateRefused)
			return
		}
		f.applyMetadata(resp)
		f.immediate(resp.GetImmediateResponse())
		return
	default:
		f.spuriousAs(fmt.Sprintf("unsupported response type %T", resp.Response), unhandledMessage)
		return
	}
	if len(d.pending) == 0 || d.pending[0].kind != kind {
		want := "nothing"
		if len(d.pending) > 0 {
			want = d.name() + "_" + d.pending[0].kind.String()
		}
		f.spurious(fmt.Sprintf("%s reply while %s is outstanding", replyName(resp), want))
		return
	}
	if d.dead {
		// The direction was ended by a local reply. Envoy still sets the
		// reply's dynamic metadata (onReceiveMessage, before handling it);
		// what it would continue is already aborted.
		d.pending = d.pending[1:]
		f.applyMetadata(resp)
		return
	}
	if resp.GetModeOverride() != nil {
		f.modeOverride(resp.GetModeOverride(), kind)
	}
	f.applyMetadata(resp)
	switch kind {
	case kindHeaders:
		var hr *extprocsvc.HeadersResponse
		if d.req {
			hr = resp.GetRequestHeaders()
		} else {
			hr = resp.GetResponseHeaders()
		}
		d.onHeadersReply(hr.GetResponse())
	case kindBody:
		var br *extprocsvc.BodyResponse
		if d.req {
			br = resp.GetRequestBody()
		} else {
			br = resp.GetResponseBody()
		}
		d.onBodyReply(br.GetResponse())
	case kindTrailers:
		var tr *extprocsvc.TrailersResponse
		if d.req {
			tr = resp.GetRequestTrailers()
		} else {
			tr = resp.GetResponseTrailers()
		}
		d.onTrailersReply(tr.GetHeaderMutation())
	}
	if !f.complete && !x.finished {
		f.maybeClose()
	}
}

func replyName(resp *extprocsvc.ProcessingResponse) string {
	switch resp.Response.(type) {
	case *extprocsvc.ProcessingResponse_RequestHeaders:
		return "request_headers"
	case *extprocsvc.ProcessingResponse_RequestBody:
		return "request_body"
	case *extprocsvc.ProcessingResponse_RequestTrailers:
		return "request_trailers"
	case *extprocsvc.ProcessingResponse_ResponseHeaders:
		return "response_headers"
	case *extprocsvc.ProcessingResponse_ResponseBody:
		return "response_body"
	case *extprocsvc.ProcessingResponse_ResponseTrailers:
		return "response_trailers"
	case *extprocsvc.ProcessingResponse_ImmediateResponse:
		return "immediate_response"
	case nil:
		return "empty"
	}
	return fmt.Sprintf("%T", resp.Response)
}

// Envoy's FailedPrecondition messages for unexpected replies; fail-closed,
// handleErrorResponse makes them the local reply's details.
const (
	spuriousMessage  = "spurious_message"  // a reply the state machine does not expect
	unhandledMessage = "unhandled_message" // no or an unknown response case
	immediateRefused = "unhandled_immediate_response_due_to_config_disabled_it"
)

// spurious handles an unexpected reply (FailedPrecondition in Envoy).
func (f *filter) spurious(why string) { f.spuriousAs(why, spuriousMessage) }

func (f *filter) spuriousAs(why, details string) {
	f.violation(KindSpuriousReply, why, f.failOpenOutcome())
	if f.failOpen {
		f.finishOpen()
		return
	}
	f.fail(f.cfg.StatusOnError, details)
}

// overrideTimeout handles override_message_timeout: only the timer changes.
func (f *filter) overrideTimeout(resp *extprocsvc.ProcessingResponse) {
	if resp.Response != nil || resp.GetModeOverride() != nil || resp.GetDynamicMetadata() != nil {
		f.violation(KindIgnoredField, "override_message_timeout message carries other fields; Envoy ignores them", "ignored")
	}
	if f.cfg.MaxMessageTimeout <= 0 {
		f.violation(KindIgnoredField, "override_message_timeout without max_message_timeout", "ignored")
		return
	}
	var d *direction
	switch {
	case len(f.dec.pending) > 0:
		d = f.dec
	case len(f.enc.pending) > 0:
		d = f.enc
	default:
		f.violation(KindIgnoredField, "override_message_timeout with no outstanding message", "ignored")
		return
	}
	p := d.pending[0]
	to := resp.GetOverrideMessageTimeout().AsDuration()
	if p.overrides > 0 {
		f.violation(KindIgnoredField, "second override_message_timeout for the same message", "ignored")
		return
	}
	if to < time.Millisecond || to > f.cfg.MaxMessageTimeout {
		f.violation(KindIgnoredField, fmt.Sprintf("override_message_timeout %s outside [1ms, %s]", to, f.cfg.MaxMessageTimeout), "ignored")
		return
	}
	p.overrides++
	d.startTimer(to)
}

// modeOverride applies mode_override under Envoy's gates (ext_proc.cc,
// onReceiveMessage).
func (f *filter) modeOverride(m *extprocv3.ProcessingMode, kind msgKind) {
	switch {
	case kind != kindHeaders:
		f.violation(KindIgnoredField, "mode_override on a body/trailers reply", "ignored")
		return
	case !f.cfg.AllowModeOverride:
		f.violation(KindIgnoredField, "mode_override without allow_mode_override", "ignored")
		return
	case f.cfg.SendBodyWithoutWaitingForHeaderResponse:
		f.violation(KindIgnoredField, "mode_override with send_body_without_waiting_for_header_response", "ignored")
		return
	}
	if len(f.cfg.AllowedOverrideModes) > 0 {
		// Envoy (ext_proc.cc, onReceiveMessage) compares the effective mode,
		// the override applied over the filter-level processing_mode
		// (effectiveModeOverride), not the raw message; request_header_mode
		// is not compared.
		eff := effectiveOverride(m, f.base)
		ok := false
		for _, a := range f.cfg.AllowedOverrideModes {
			if a.GetRequestBodyMode() == eff.GetRequestBodyMode() && a.GetRequestTrailerMode() == eff.GetRequestTrailerMode() &&
				a.GetResponseHeaderMode() == eff.GetResponseHeaderMode() && a.GetResponseBodyMode() == eff.GetResponseBodyMode() &&
				a.GetResponseTrailerMode() == eff.GetResponseTrailerMode() {
				ok = true
				break
			}
		}
		if !ok {
			f.violation(KindIgnoredField, "mode_override not in allowed_override_modes", "ignored")
			return
		}
	}
	if err := checkMode(m); err != nil {
		f.violation(KindUnsupported, "mode_override: "+err.Error(), "ignored by the harness")
		return
	}
	f.setMode(m, f.base)
}

// effectiveOverride is Envoy's effectiveModeOverride: DEFAULT header and
// trailer modes of the override keep the filter-level value, body modes are
// taken literally.
func effectiveOverride(m, base *extprocv3.ProcessingMode) *extprocv3.ProcessingMode {
	pick := func(v, b extprocv3.ProcessingMode_HeaderSendMode) extprocv3.ProcessingMode_HeaderSendMode {
		if v == extprocv3.ProcessingMode_DEFAULT {
			return b
		}
		return v
	}
	return &extprocv3.ProcessingMode{
		RequestHeaderMode:   pick(m.GetRequestHeaderMode(), base.GetRequestHeaderMode()),
		RequestBodyMode:     m.GetRequestBodyMode(),
		RequestTrailerMode:  pick(m.GetRequestTrailerMode(), base.GetRequestTrailerMode()),
		ResponseHeaderMode:  pick(m.GetResponseHeaderMode(), base.GetResponseHeaderMode()),
		ResponseBodyMode:    m.GetResponseBodyMode(),
		ResponseTrailerMode: pick(m.GetResponseTrailerMode(), base.GetResponseTrailerMode()),
	}
}

// applyMetadata writes dynamic_metadata of receiving namespaces.
func (f *filter) applyMetadata(resp *extprocsvc.ProcessingResponse) {
	x := f.x
	if len(resp.GetTypedDynamicMetadata()) > 0 {
		f.violation(KindIgnoredField, "typed_dynamic_metadata is not emulated", "ignored")
	}
	md := resp.GetDynamicMetadata()
	if md == nil {
		return
	}
	for ns, v := range md.GetFields() {
		allowed := false
		for _, r := range f.recvNS {
			if r == ns {
				allowed = true
				break
			}
		}
		if !allowed {
			f.violation(KindIgnoredField, fmt.Sprintf("dynamic_metadata namespace %q is not a receiving namespace", ns), "ignored")
			continue
		}
		st := v.GetStructValue()
		if st == nil {
			f.violation(KindIgnoredField, fmt.Sprintf("dynamic_metadata namespace %q is not a Struct", ns), "ignored")
			continue
		}
		// Upstream filters share the downstream StreamInfo in Envoy
		// (UpstreamFilterManager::streamInfo), so their metadata lands in
		// the same place; the attempt keeps its own copy for the log.
		x.setMetadata(ns, st)
		if f.up != nil {
			f.up.meta.merge(ns, st)
		}
	}
}

func (f *filter) mutate(h *headerMap, m *extprocsvc.HeaderMutation, replacing, removeCL bool) error {
	out, err := applyHeaderMutation(h, m, mutationContext{rules: f.cfg.MutationRules, replacing: replacing, removeCL: removeCL})
	for _, r := range out.rejected {
		f.violation(KindMutationRejected, "header mutation rejected by the checker: "+r, "skipped (rejected_header_mutations)")
	}
	for _, n := range out.notes {
		f.violation(KindIgnoredField, n, "ignored")
	}
	if err != nil {
		f.violation(KindInvalidMutation, err.Error(), "local reply "+strconv.Itoa(f.cfg.StatusOnError))
	}
	return err
}

func (d *direction) clearRouteCache(c *extprocsvc.CommonResponse) {
	if !c.GetClearRouteCache() && d.f.cfg.RouteCacheAction != "CLEAR" {
		return
	}
	f := d.f
	switch {
	case f.up != nil:
		// Upstream filters have no downstream route cache to clear.
		if c.GetClearRouteCache() {
			f.violation(KindIgnoredField, "clear_route_cache in an upstream ext_proc filter", "ignored")
		}
	case !d.req:
		if c.GetClearRouteCache() {
			f.violation(KindIgnoredField, "clear_route_cache on a response reply", "ignored")
		}
	case c.GetHeaderMutation() == nil:
		if c.GetClearRouteCache() {
			f.violation(KindIgnoredField, "clear_route_cache without header_mutation", "ignored")
		}
	case f.cfg.DisableClearRouteCache || f.cfg.RouteCacheAction == "RETAIN":
	default:
		f.x.routeCleared = true
	}
}

func (d *direction) onHeadersReply(c *extprocsvc.CommonResponse) {
	f := d.f
	d.pending = d.pending[1:]
	d.rearm()
	d.clearRouteCache(c)
	if c.GetStatus() == extprocsvc.CommonResponse_CONTINUE_AND_REPLACE {
		d.replace(c)
		return
	}
	if c.GetBodyMutation() != nil {
		f.violation(KindIgnoredField, "body_mutation in a headers reply without CONTINUE_AND_REPLACE", "ignored")
	}
	if len(c.GetTrailers().GetHeaders()) > 0 {
		f.violation(KindIgnoredField, "CommonResponse.trailers is not implemented by Envoy", "ignored")
	}
	if err := f.mutate(&d.headers, c.GetHeaderMutation(), false, d.shouldRemoveCL()); err != nil {
		f.fail(f.cfg.StatusOnError, envoyDetails(err))
		return
	}
	if d.headersEOS {
		d.fwdHeaders()
		return
	}
	if d.body != extprocv3.ProcessingMode_NONE && d.bodyEOS && d.dataSeen && !d.bodyEOSSent && len(d.pending) == 0 {
		// The whole body came in while the header reply was pending
		// (handleHeadersResponse, complete_body_available_): whatever the
		// body mode, it goes out as one BufferedBodyCallback message and the
		// headers stay held until its reply, which may still mutate them.
		if d.body == extprocv3.ProcessingMode_BUFFERED && len(d.held) > f.x.cfg.BufferLimit {
			d.overflow()
			return
		}
		b := d.held
		d.held = nil
		d.bodySent, d.partialSent = true, true
		d.sendBodyAs(b, d.dataEOS(), extprocv3.ProcessingMode_BUFFERED)
		return
	}
	switch d.body {
	case extprocv3.ProcessingMode_NONE:
		d.fwdHeaders()
		if len(d.held) > 0 || d.dataEOS() {
			b := d.held
			d.held = nil
			d.fwdData(b, d.dataEOS())
		}
		if d.hasTrailers {
			d.handleTrailers()
		}
	case extprocv3.ProcessingMode_STREAMED:
		d.fwdHeaders()
		if !d.bodyEOSSent && (len(d.held) > 0 || d.dataEOS()) {
			b := d.held
			d.held = nil
			d.sendBody(b, d.dataEOS())
		} else if d.hasTrailers && len(d.pending) == 0 {
			d.handleTrailers()
		}
	case extprocv3.ProcessingMode_BUFFERED:
		if len(d.held) > f.x.cfg.BufferLimit {
			d.overflow()
			return
		}
		if d.bodyEOS {
			d.sendBuffered()
		}
	case extprocv3.ProcessingMode_BUFFERED_PARTIAL:
		// queueOverHighLimit: strictly more than the buffer limit.
		if d.bodyEOS || len(d.held) > f.x.cfg.BufferLimit {
			d.sendPartial()
		}
	}
}

// replace handles CONTINUE_AND_REPLACE in a headers reply.
func (d *direction) replace(c *extprocsvc.CommonResponse) {
	f := d.f
	if err := f.mutate(&d.headers, c.GetHeaderMutation(), true, d.shouldRemoveCL()); err != nil {
		f.fail(f.cfg.StatusOnError, envoyDetails(err))
		return
	}
	d.replaced = true
	bm := c.GetBodyMutation()
	if bm == nil {
		// No further messages in this direction; the body passes unprocessed.
		d.fwdHeaders()
		if len(d.held) > 0 || d.dataEOS() {
			b := d.held
			d.held = nil
			d.fwdData(b, d.dataEOS())
		}
		if d.hasTrailers {
			d.fwdTrailers()
		}
		return
	}
	var body []byte
	switch m := bm.GetMutation().(type) {
	case *extprocsvc.BodyMutation_Body:
		body = m.Body
	case *extprocsvc.BodyMutation_ClearBody:
	default:
		f.spurious("streamed_response outside FULL_DUPLEX_STREAMED")
		return
	}
	d.headers.del("content-length")
	d.drain = !d.bodyEOS
	d.held = nil
	wasEOS := d.headersEOS
	d.headersEOS = false
	d.hasTrailers = false
	d.fwdHeaders()
	d.fwdData(body, true)
	if wasEOS || d.bodyEOS {
		d.drain = false
	}
}

func (d *direction) onBodyReply(c *extprocsvc.CommonResponse) {
	f := d.f
	p := d.pending[0]
	d.pending = d.pending[1:]
	d.rearm()
	d.clearRouteCache(c)
	if c.GetStatus() == extprocsvc.CommonResponse_CONTINUE_AND_REPLACE {
		f.violation(KindIgnoredField, "CONTINUE_AND_REPLACE in a body reply", "ignored (treated as CONTINUE)")
	}
	body := p.data
	mutated := false
	switch m := c.GetBodyMutation().GetMutation().(type) {
	case *extprocsvc.BodyMutation_Body:
		body, mutated = m.Body, true
	case *extprocsvc.BodyMutation_ClearBody:
		if m.ClearBody {
			body, mutated = nil, true
		}
	case *extprocsvc.BodyMutation_StreamedResponse:
		f.spurious("streamed_response outside FULL_DUPLEX_STREAMED")
		return
	}
	if c.GetHeaderMutation() != nil {
		if d.headersHeld {
			if err := f.mutate(&d.headers, c.GetHeaderMutation(), false, d.shouldRemoveCL()); err != nil {
				f.fail(f.cfg.StatusOnError, envoyDetails(err))
				return
			}
		} else {
			f.violation(KindIgnoredField, "header_mutation in a "+d.name()+"_body reply after the headers were sent", "ignored")
		}
	}
	if mutated && d.headersHeld && p.bodyMode == extprocv3.ProcessingMode_BUFFERED {
		// Only BufferedBodyCallback checks content-length
		// (handleBodyResponse); a BUFFERED_PARTIAL or STREAMED mutation of
		// another length leaves a stale content-length in place.
		if cl, ok := d.headers.get("content-length"); ok {
			if n, err := strconv.Atoi(cl); err != nil || n != len(body) {
				f.violation(KindContentLength, fmt.Sprintf("body replaced with %d bytes but content-length is %s", len(body), cl),
					"local reply "+strconv.Itoa(f.cfg.StatusOnError))
				f.fail(f.cfg.StatusOnError, "mismatch_between_content_length_and_the_length_of_the_mutated_body")
				return
			}
		}
	}
	d.fwdHeaders()
	switch p.bodyMode {
	case extprocv3.ProcessingMode_BUFFERED:
		d.fwdData(body, p.eos)
	case extprocv3.ProcessingMode_BUFFERED_PARTIAL:
		rest := d.after
		d.after = nil
		if len(rest) > 0 {
			d.fwdData(body, false)
			d.fwdData(rest, d.dataEOS())
		} else {
			d.fwdData(body, p.eos || d.dataEOS())
		}
	default:
		d.fwdData(body, p.eos)
	}
	if f.x.finished || d.dead {
		return
	}
	if len(d.pending) == 0 && d.hasTrailers {
		d.handleTrailers()
	}
}

func (d *direction) onTrailersReply(m *extprocsvc.HeaderMutation) {
	f := d.f
	d.pending = d.pending[1:]
	d.rearm()
	if err := f.mutate(&d.trailers, m, false, false); err != nil {
		f.fail(f.cfg.StatusOnError, envoyDetails(err))
		return
	}
	d.fwdTrailers()
}

// immediate handles ImmediateResponse.
func (f *filter) immediate(ir *extprocsvc.ImmediateResponse) {
	x := f.x
	f.complete = true
	f.closeStream()
	code := int(ir.GetStatus().GetCode())
	if code < 200 {
		code = 200
	}
	lr := localReply{
		status:  code,
		body:    string(ir.GetBody()),
		details: strings.Join(strings.Fields(ir.GetDetails()), "_"),
	}
	if ir.GetHeaders() != nil {
		m := ir.GetHeaders()
		lr.mutate = func(h *headerMap) {
			if _, err := applyHeaderMutation(h, m, mutationContext{rules: f.cfg.MutationRules}); err != nil {
				f.violation(KindInvalidMutation, "immediate_response headers: "+err.Error(), "logged, headers partly applied")
			}
		}
	}
	if ir.GetGrpcStatus() != nil {
		f.violation(KindIgnoredField, "immediate_response grpc_status on a non-gRPC request", "ignored")
	}
	x.immediateResponses++
	f.localReply(lr)
}

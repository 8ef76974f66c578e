package processor

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// errorBodyCap bounds the bytes of a non-2xx response body kept for
// classification.
const errorBodyCap = 16 << 10

// stream is the state of one Process stream (one HTTP request). It is not
// safe for concurrent use; Process drives it from one goroutine.
type stream struct {
	s *Server

	closed bool // the server ends the stream after the current reply

	// Set at request headers for provider requests.
	provider  providers.Provider
	call      Call
	req       providers.Request
	reqLength int64 // content-length, -1 when unknown
	encoding  string
	bodyMode  filterv3.ProcessingMode_BodySendMode // configured request body mode, when Envoy told us

	body        []byte
	bodySeen    int64
	bodyOver    bool // body exceeded the sample limit
	admitted    bool
	tickets     []Ticket
	ticketGuard []int // the index in s.guards of each ticket's guard
	decisions   []GuardDecision
	refusedBy   string
	setHeaders  [][2]string                 // request headers asked for by tickets
	credHeaders [][2]string                 // the vendor key header (gateway_keys mode)
	metaUser    string                      // the user of a /meta/{user}/ path
	fo          *failoverState              // the call's chain, once it failed over (failover.go)
	reqBody     []byte                      // the request body as it came, with failover on
	extraMD     map[string]any              // admission metadata asked for by tickets
	oneMessage  bool                        // the whole body came in the message being answered
	newBody     []byte                      // request body with include_usage added
	stripUsage  bool                        // remove the usage chunk we asked for
	injected    bool                        // newBody carries include_usage the client did not ask for
	md          *corev3.Metadata            // metadata_context of the current message
	attrs       map[string]*structpb.Struct // attributes of the current message
	reMD        bool                        // the call moved after admission: write who it is again
	mdReply     pendingMD                   // metadata of the reply to the message being handled
	mdUsage     [6]int64                    // the stream's usage counts last sent in metadata (usageCounts)
	attempt     *attemptState               // set on an upstream filter's stream
	fullPath    string                      // :path as the client sent it, query included
	keysMode    bool                        // the provider runs in gateway_keys mode
	credential  string                      // name of the vendor key used (gateway_keys mode)

	// Response side.
	status     int
	parser     providers.UsageParser
	gunzip     *gunzipParser
	filter     *usageChunkFilter
	buffered   bool // the response body arrives in one message (BUFFERED, BUFFERED_PARTIAL)
	cutShort   bool // that message lacked end_of_stream: trailers follow, or the rest passed unseen
	errBody    []byte
	respBytes  int64
	firstByte  time.Time
	wantBody   []ResponseTicket // tickets waiting for the error body
	response   *Response
	replacedBy string

	// End of the request.
	respDone   bool
	finished   bool
	finalUsage *providers.Usage
	rec        *Record // set once settled
	pending    bool    // rec awaits flush
	mdSent     bool    // the admission metadata reached Envoy
}

func newStream(s *Server) *stream { return &stream{s: s, reqLength: -1} }

// handle answers one message. It returns nil when no answer is due.
func (st *stream) process(ctx context.Context, req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	if req.GetObservabilityMode() {
		st.observe(ctx, req)
		return nil
	}
	if pc := req.GetProtocolConfig(); pc != nil {
		st.bodyMode = pc.GetRequestBodyMode()
	}
	st.md = req.GetMetadataContext()
	st.attrs = req.GetAttributes()
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return st.requestHeaders(ctx, r.RequestHeaders)
	case *extprocv3.ProcessingRequest_RequestBody:
		return st.requestBody(ctx, r.RequestBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		if st.provider != nil && !st.admitted {
			if reply := st.admit(ctx); reply != nil {
				return reply
			}
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
			RequestTrailers: &extprocv3.TrailersResponse{}}}
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return st.responseHeaders(ctx, r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		return st.responseBody(ctx, r.ResponseBody)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		// Asked for on streamed bodies: the response is complete.
		resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocv3.TrailersResponse{}}}
		if st.attempt == nil && st.provider != nil && !st.finished {
			st.endResponse(ctx)
			st.withMetadata(resp)
			st.closed = true
		}
		return resp
	default:
		return nil
	}
}

// observe feeds observability-mode messages (no replies are read by Envoy).
func (st *stream) observe(ctx context.Context, req *extprocv3.ProcessingRequest) {
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		st.requestHeaders(ctx, r.RequestHeaders)
	case *extprocv3.ProcessingRequest_RequestBody:
		st.requestBody(ctx, r.RequestBody)
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		st.responseHeaders(ctx, r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		st.responseBody(ctx, r.ResponseBody)
	}
}

// passThrough releases a request that is none of our business: later phases
// are skipped and the stream ends.
func (st *stream) passThrough() *extprocv3.ProcessingResponse {
	st.closed = true
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
		ModeOverride: &filterv3.ProcessingMode{
			RequestBodyMode:    filterv3.ProcessingMode_NONE,
			ResponseHeaderMode: filterv3.ProcessingMode_SKIP,
			ResponseBodyMode:   filterv3.ProcessingMode_NONE,
		},
	}
}

func (st *stream) requestHeaders(ctx context.Context, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	if st.provider != nil {
		// A second request_headers on one stream is not something Envoy
		// sends; answer it without state changes.
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocv3.HeadersResponse{}}}
	}
	hs := headersOf(h)
	if a, ok := st.chainAttempt(hs); ok {
		return a
	}
	fullPath, ok := header(hs, ":path")
	if !ok || fullPath == "" {
		return st.passThrough()
	}
	path, rawQuery, _ := strings.Cut(fullPath, "?")
	res, ok := st.s.providers.Resolve(path)
	if !ok {
		if a := st.upstreamAttempt(hs); a != nil {
			return a
		}
		return st.passThrough()
	}
	st.provider = res.Provider
	st.fullPath = fullPath
	st.metaUser = res.User
	st.keysMode = st.s.keysMode[res.Provider.Name()]
	st.req = providers.Request{Path: res.Path, RawQuery: rawQuery}
	st.call = Call{
		Provider: res.Provider.Name(),
		Path:     res.Path,
		Identity: Identity{User: res.User},
		Start:    st.s.now(),
		Header: func(name string) string {
			v, _ := header(hs, name)
			return v
		},
	}
	// One pass over the headers; the first value of a repeated header wins.
	mut := &extprocv3.HeaderMutation{}
	var auth, xAPIKey, googKey string
	var seen uint8
	clientChain := false
	first := func(bit uint8) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	for _, hv := range hs {
		switch k := hv.GetKey(); k {
		case ":method":
			if first(1) {
				st.req.Method = headerValue(hv)
			}
		case "accept":
			if first(2) {
				st.req.Accept = headerValue(hv)
			}
		case "content-type":
			if first(4) {
				st.req.ContentType = headerValue(hv)
			}
		case "content-encoding":
			if first(8) {
				st.encoding = strings.ToLower(strings.TrimSpace(headerValue(hv)))
			}
		case "content-length":
			if first(16) {
				st.reqLength = parseLength(headerValue(hv), true)
			}
		case "x-request-id":
			if first(32) {
				st.call.RequestID = headerValue(hv)
			}
		case "x-user-id":
			if first(64) && st.call.Identity.User == "" {
				st.call.Identity.User = headerValue(hv)
			}
		case "authorization":
			if auth == "" {
				auth = bearer(headerValue(hv))
			}
		case "x-api-key":
			if xAPIKey == "" {
				xAPIKey = headerValue(hv)
			}
		case "x-goog-api-key":
			if googKey == "" {
				googKey = headerValue(hv)
			}
		case "x-forwarded-for":
			if first(128) {
				st.call.Identity.ClientIP = clientIP(headerValue(hv))
			}
		case "accept-encoding":
			mut.RemoveHeaders = appendUnique(mut.RemoveHeaders, k)
		default:
			if strings.HasPrefix(k, proxyHeaderPrefix) {
				mut.RemoveHeaders = appendUnique(mut.RemoveHeaders, k)
				clientChain = clientChain || k == HeaderChain
			}
		}
	}
	st.call.Method = st.req.Method
	st.call.RawQuery = rawQuery
	stripped, changed := stripProxyParams(rawQuery)
	if st.keysMode {
		// The client's gateway key never reaches the vendor.
		if q := gatewayKeysHeaders(mut, stripped); q != stripped {
			stripped, changed = q, true
		}
	}
	if changed {
		// llm_proxy_* query parameters are for the gateway only.
		np := path
		if stripped != "" {
			np += "?" + stripped
		}
		mut.SetHeaders = append(mut.SetHeaders, setHeader(":path", np))
		st.req.RawQuery = stripped
	}
	if !st.keysMode {
		// In gateway_keys mode the key's id is set once it is checked.
		key := firstNonEmpty(auth, xAPIKey, googKey)
		if key == "" {
			key = queryValue(rawQuery, "key")
		}
		st.call.Identity.KeyID = KeyID(key)
	}
	// A client's own x-llm-proxy-chain chose the route Envoy holds: clear
	// it, so that only the server's (chainRoute) selects a chain route.
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut,
			ClearRouteCache: clientChain}}}}
	if h.GetEndOfStream() {
		if reply := st.admit(ctx); reply != nil {
			return reply
		}
		st.addRequestHeaders(mut)
		// Written now so the access log names the call even if the stream
		// later breaks before a response reply could carry it.
		st.withMetadata(resp)
		st.mdSent = true
	}
	return resp
}

func appendUnique(list []string, v string) []string {
	for _, e := range list {
		if e == v {
			return list
		}
	}
	return append(list, v)
}

func (st *stream) requestBody(ctx context.Context, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if st.attempt != nil && st.attempt.chain != nil {
		return st.chainRewrite(b)
	}
	cont := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{}}}
	if st.provider == nil || st.admitted {
		return cont
	}
	chunk := b.GetBody()
	st.bodySeen += int64(len(chunk))
	// Checked on the bytes, not at request headers on content-length: a
	// reply there would reach an HTTP/1.1 client still uploading as a
	// connection reset, and Envoy, buffering, holds the body by now.
	if max := st.s.cfg.Processing.MaxRequestBodyBytes; max > 0 && st.bodySeen > max {
		st.body = nil
		return st.refuseTooLarge(st.bodySeen)
	}
	limit := st.sampleLimit()
	switch {
	case st.bodyOver:
	case limit >= 0 && int64(len(st.body)+len(chunk)) > limit:
		st.bodyOver = true
		st.body = nil
	case st.body == nil:
		// The common case: one message holds the whole body. The message
		// outlives this call, so the bytes need no copy.
		st.body = chunk
	default:
		st.body = append(st.body[:len(st.body):len(st.body)], chunk...)
	}
	// In BUFFERED and BUFFERED_PARTIAL modes the one body message is all
	// Envoy will send, even when end_of_stream is false (trailers follow,
	// or the partial buffer filled).
	whole := b.GetEndOfStream() ||
		st.bodyMode == filterv3.ProcessingMode_BUFFERED ||
		st.bodyMode == filterv3.ProcessingMode_BUFFERED_PARTIAL
	if !whole {
		return cont
	}
	// Only a body that arrived in this one message can be replaced by
	// this reply.
	st.oneMessage = b.GetEndOfStream() && st.bodySeen == int64(len(chunk))
	if reply := st.admit(ctx); reply != nil {
		return reply
	}
	if len(st.setHeaders) > 0 || len(st.credHeaders) > 0 || st.newBody != nil || st.failedOver() {
		// The headers are still held in BUFFERED mode, so a header mutation
		// in the body reply reaches the upstream request.
		mut := &extprocv3.HeaderMutation{}
		st.addRequestHeaders(mut)
		// A failover's new :path re-routes the request to the target's
		// cluster: Envoy honours clear_route_cache on a request body reply
		// that carries a header mutation (docs/failover.md).
		common := &extprocv3.CommonResponse{HeaderMutation: mut, ClearRouteCache: st.failedOver() || st.chained()}
		if st.newBody != nil {
			// Replace the body, and keep content-length true to the new
			// body (Envoy rejects a mismatch).
			common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: st.newBody}}
			if st.reqLength >= 0 {
				mut.SetHeaders = append(mut.SetHeaders, setHeader("content-length", strconv.Itoa(len(st.newBody))))
			}
			st.stripUsage = st.injected
		}
		st.newBody = nil
		cont.GetRequestBody().Response = common
	}
	// Written now so the access log names the call even if the stream later
	// breaks before a response reply could carry it.
	st.withMetadata(cont)
	st.mdSent = true
	return cont
}

// RequestTooLargeDetails is the %RESPONSE_CODE_DETAILS% of the 413 for a
// request body over processing.max_request_body_bytes.
const RequestTooLargeDetails = "llm_proxy_request_too_large"

// refuseTooLarge answers a request whose body (at least size bytes) is
// over processing.max_request_body_bytes with 413 in the
// vendor's error shape. No guard runs: the vendor is never called.
func (st *stream) refuseTooLarge(size int64) *extprocv3.ProcessingResponse {
	st.admitted = true
	st.bodyOver = true
	st.body = nil
	if st.reqLength < size {
		st.reqLength = size
	}
	st.call.Info, st.call.EstimatedInputTokens, st.call.EstimateSource = st.estimate()
	max := st.s.cfg.Processing.MaxRequestBodyBytes
	msg := "[PROXY] Request body is larger than the gateway's limit of " + strconv.FormatInt(max, 10) + " bytes."
	reply := &Reply{
		Status: 413,
		Headers: [][2]string{
			{"Content-Type", "application/json"},
			{headerErrorSource, "proxy"},
		},
		Body:    st.provider.ErrorBody(st.call.Info, providers.ErrorRequestTooLarge, msg),
		Details: RequestTooLargeDetails,
	}
	st.refusedBy = reply.Details
	st.status = reply.Status
	st.closed = true
	st.settle(OutcomeRefused)
	return st.withMetadata(immediate(reply))
}

// sampleLimit is the largest body, in bytes, read for estimation; -1 is
// unlimited.
func (st *stream) sampleLimit() int64 {
	return st.s.cfg.Features.RateLimiting.Estimation.MaxSampleBytes
}

// admit reads the request, estimates its tokens and runs the guards. It
// returns an ImmediateResponse when a guard refuses.
func (st *stream) admit(ctx context.Context) *extprocv3.ProcessingResponse {
	st.admitted = true
	if st.finished {
		// The response already ended (messages out of the usual order):
		// nothing can be reserved for a request that is over.
		return nil
	}
	st.call.Info, st.call.EstimatedInputTokens, st.call.EstimateSource = st.estimate()
	if st.call.Identity.User == "" {
		st.call.Identity.User = st.call.Info.User
	}
	if st.call.Identity.User == "" {
		st.call.Identity.User = queryValue(st.req.RawQuery, "llm_user_id")
	}
	if st.oneMessage && st.s.injectUsage && !st.bodyOver && (st.encoding == "" || st.encoding == "identity") &&
		wantsUsageInjection(st.call.Provider, st.call.Info, st.body) {
		st.newBody = injectIncludeUsage(st.body)
		st.injected = st.newBody != nil
	}
	if st.s.failover.Enabled() {
		st.reqBody = st.body // kept for a failover's rewrite (failover.go)
	}
	st.body = nil // the bytes are no longer needed
	if n := len(st.s.guards); n > 0 || st.keysMode {
		st.decisions = make([]GuardDecision, 0, n+1)
	}
	if st.keysMode {
		if reply := st.authenticate(ctx); reply != nil {
			return reply
		}
	}
	for {
		reply := st.runGuards(ctx)
		if reply == nil {
			st.chainRoute()
			return nil
		}
		reply, again := st.failOver(ctx, reply)
		if !again {
			return st.refuse(reply)
		}
	}
}

// runGuards runs every guard on the call in order (consecutive remote
// guards at once: admission.go), keeping the tickets of those that admit.
// It returns the first refusal, if any; the tickets taken before it, and
// those of guards admitted together with it, are still held (refuse or
// failOver settles them).
func (st *stream) runGuards(ctx context.Context) *Reply {
	gs := st.s.guards
	var flags [maxBatch]bool
	remote := remoteFlags(flags[:0], gs, &st.call)
	for i := 0; i < len(gs); {
		j := batchEnd(remote, i)
		var one [1]answer
		out := one[:]
		if j-i == 1 {
			t, reply, err := gs[i].Admit(ctx, &st.call)
			one[0] = answer{ticket: t, reply: reply, err: err}
		} else {
			out = admitBatch(ctx, gs[i:j], &st.call)
		}
		for k, a := range out {
			if reply := st.take(i+k, a); reply != nil {
				for m, later := range out[k+1:] {
					if later.ticket != nil && later.reply == nil {
						// Settled as refused.
						st.tickets, st.ticketGuard = append(st.tickets, later.ticket), append(st.ticketGuard, i+k+1+m)
					}
				}
				return reply
			}
		}
		i = j
	}
	return nil
}

// take records the answer a of guard number i and keeps its ticket. It
// returns the refusal, if a is one.
func (st *stream) take(i int, a answer) *Reply {
	g := st.s.guards[i]
	d := GuardDecision{Verdict: VerdictAdmitted, At: st.s.now()}
	if ng, ok := g.(NamedGuard); ok {
		d.Guard = ng.Name()
	}
	switch {
	case a.err != nil:
		d.Verdict = VerdictError
	case a.reply != nil:
		d.Verdict, d.Details = VerdictRefused, a.reply.Details
	default:
		if stt, ok := a.ticket.(StateTicket); ok {
			d.State = stt.State()
		}
	}
	st.decisions = append(st.decisions, d)
	if a.err != nil {
		st.s.log.Warn("guard failed; request let through", "provider", st.call.Provider, "request_id", st.call.RequestID, "error", a.err)
	} else if a.reply != nil {
		return a.reply
	}
	if t := a.ticket; t != nil {
		st.tickets, st.ticketGuard = append(st.tickets, t), append(st.ticketGuard, i)
		if hs, ok := t.(RequestHeaderSetter); ok {
			st.setHeaders = append(st.setHeaders, hs.RequestHeaders()...)
		}
		if mt, ok := t.(MetadataTicket); ok {
			for k, v := range mt.Metadata() {
				if st.extraMD == nil {
					st.extraMD = map[string]any{}
				}
				st.extraMD[k] = v
			}
		}
	}
	return nil
}

// refuse answers a request with reply instead of sending it upstream.
func (st *stream) refuse(reply *Reply) *extprocv3.ProcessingResponse {
	reply.Headers = st.fallbackHeaders(reply.Headers)
	st.refusedBy = reply.Details
	st.status = reply.Status
	st.closed = true
	st.settle(OutcomeRefused)
	return st.withMetadata(immediate(reply))
}

// estimate reads the body and returns what the provider saw in it, with an
// input-token estimate and its source.
func (st *stream) estimate() (providers.RequestInfo, int64, string) {
	est := st.s.cfg.Features.RateLimiting.Estimation
	length := st.bodySeen
	if st.reqLength > length {
		length = st.reqLength
	}
	body := st.body
	if len(body) > 0 && !st.bodyOver && st.encoding != "" && st.encoding != "identity" {
		body = decodeBody(body, st.encoding, st.sampleLimit())
	}
	readable := len(body) > 0 && !st.bodyOver && looksJSON(st.req.ContentType, body)
	if readable {
		st.req.Body = body
	} else {
		st.req.Body = nil
	}
	info := st.provider.ParseRequest(st.req)
	st.req.Body = nil
	if readable && !info.Malformed {
		tokens := est.InputTokens(st.call.Provider, info)
		return info, tokens, "text"
	}
	if length > 0 {
		return info, int64(math.Ceil(float64(length) / est.BytesPerToken)), "length"
	}
	return info, 0, "none"
}

// looksJSON reports whether a body should be read as JSON: a JSON content
// type, or none at all with a body that starts like an object.
func looksJSON(contentType string, body []byte) bool {
	mt := mediaType(contentType)
	if isJSON(mt) {
		return true
	}
	if mt != "" {
		return false
	}
	t := bytes.TrimLeft(body, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// isJSON reports whether the media type mt is JSON.
func isJSON(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// decodeBody undoes a gzip content-encoding, reading at most limit decoded
// bytes (-1 no limit). It returns nil when the body cannot be decoded.
func decodeBody(body []byte, encoding string, limit int64) []byte {
	if encoding != "gzip" && encoding != "x-gzip" {
		return nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil
	}
	defer zr.Close()
	var r io.Reader = zr
	if limit >= 0 {
		r = io.LimitReader(zr, limit+1)
	}
	out, err := io.ReadAll(r)
	if err != nil || (limit >= 0 && int64(len(out)) > limit) {
		return nil
	}
	return out
}

func (st *stream) responseHeaders(ctx context.Context, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	if st.attempt != nil {
		return st.attemptResponse(h)
	}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{}}}
	if st.provider == nil || st.finished {
		// Nothing to account: a local reply of a filter before ext_proc
		// (a CORS preflight's answer enters the whole encoder chain, so it
		// opens a stream of its own) or a call already settled.
		st.closed = true
		return resp
	}
	hs := headersOf(h)
	code, _ := header(hs, ":status")
	st.status, _ = strconv.Atoi(code)
	if !st.admitted {
		if _, upstream := header(hs, "x-envoy-upstream-service-time"); !upstream {
			// Envoy answered before the body reached this server: a 413 for
			// a body over its buffer limit, or another local reply. The
			// vendor was not called, so nothing is admitted (an admission
			// here, on an estimate from the declared length, could reserve
			// and even replace Envoy's answer).
			st.admitted = true
			st.call.Info, st.call.EstimatedInputTokens, st.call.EstimateSource = st.estimate()
			st.respDone = true
			st.settle(OutcomeCompleted)
			st.withMetadata(resp)
			st.closed = true
			return resp
		}
		// The vendor answered a request whose body never came as a message
		// we could act on (for example a request body mode without an end
		// marker): account for it now.
		st.admit(ctx)
		if st.finished {
			return resp
		}
	}
	if st.chained() {
		st.chainServed(ctx, hs)
	}
	st.reportCredential(st.status)
	if reply := st.inspectResponse(ctx, hs); reply != nil {
		return reply
	}
	if h.GetEndOfStream() {
		st.endResponse(ctx)
		st.withMetadata(resp)
		if st.call.Failover != nil {
			resp.GetResponseHeaders().Response = &extprocv3.CommonResponse{HeaderMutation: st.fallbackMutation(nil)}
		}
		st.closed = true
		return resp
	}
	ctRaw, _ := header(hs, "content-type")
	ct := mediaType(ctRaw)
	length := parseLength(header(hs, "content-length"))
	enc, _ := header(hs, "content-encoding")
	enc = strings.ToLower(strings.TrimSpace(enc))

	st.parser = st.provider.NewUsageParser(st.req, st.call.Info, ct)
	if enc == "gzip" || enc == "x-gzip" {
		st.gunzip = newGunzipParser(st.parser)
	}

	mode := filterv3.ProcessingMode_STREAMED
	var mut *extprocv3.HeaderMutation
	limit := st.s.cfg.Processing.ResponseBufferLimitBytes
	switch {
	case ct == "text/event-stream":
		// Streams pass chunk by chunk. Envoy decided about content-length
		// before this override (body mode NONE keeps it), so drop it here:
		// an event stream has no fixed length.
		if length >= 0 {
			mut = &extprocv3.HeaderMutation{RemoveHeaders: []string{"content-length"}}
		}
	case length >= 0 && length <= limit:
		mode = filterv3.ProcessingMode_BUFFERED
	case length < 0 && (isJSON(ct) || len(st.wantBody) > 0):
		// JSON of unknown length (chunked, HTTP/2, compressed), or an error
		// body a ticket must read: BUFFERED_PARTIAL holds the headers while
		// Envoy collects the body up to its own buffer limit, so the whole
		// body arrives in one message and the usage headers can still be
		// set. A body over Envoy's limit is not a 500 (as BUFFERED's would
		// be): Envoy sends what it holds (end_of_stream false), then lets
		// the rest through untouched.
		mode = filterv3.ProcessingMode_BUFFERED_PARTIAL
	}
	if mode == filterv3.ProcessingMode_STREAMED && len(st.wantBody) > 0 {
		// Too large to hold: decide now, without the body.
		if reply := st.decideWithBody(ctx, nil); reply != nil {
			return reply
		}
	}
	resp.ModeOverride = &filterv3.ProcessingMode{ResponseBodyMode: mode}
	if mode == filterv3.ProcessingMode_STREAMED {
		// A streamed body that ends with trailers has no end_of_stream
		// body message, and with trailers SKIP nothing more is sent: the
		// trailers message is then the only sign the response completed.
		// Envoy sends it only when trailers are present.
		resp.ModeOverride.ResponseTrailerMode = filterv3.ProcessingMode_SEND
	}
	st.buffered = mode != filterv3.ProcessingMode_STREAMED
	if st.stripUsage && ct == "text/event-stream" && st.status < 300 {
		st.filter = &usageChunkFilter{}
	}
	if st.call.Failover != nil {
		mut = st.fallbackMutation(mut)
	}
	if mut != nil {
		resp.GetResponseHeaders().Response = &extprocv3.CommonResponse{HeaderMutation: mut}
	}
	if st.reMD {
		// The target that served is known now: the access log names it even
		// when the client hangs up before the last reply (as the OpenAI SDK
		// does at a stream's [DONE]).
		st.withMetadata(resp)
	}
	return resp
}

func (st *stream) responseBody(ctx context.Context, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
		ResponseBody: &extprocv3.BodyResponse{}}}
	if st.provider == nil || st.parser == nil || st.finished {
		return resp
	}
	chunk := b.GetBody()
	if len(chunk) > 0 {
		if st.firstByte.IsZero() {
			st.firstByte = st.s.now()
		}
		st.respBytes += int64(len(chunk))
		if st.status >= 300 && len(st.errBody) < errorBodyCap {
			n := min(len(chunk), errorBodyCap-len(st.errBody))
			st.errBody = append(st.errBody, chunk[:n]...)
		}
		if st.gunzip != nil {
			st.gunzip.Write(chunk)
		} else {
			st.parser.Write(chunk)
		}
	}
	// In BUFFERED and BUFFERED_PARTIAL modes the one body message is all
	// Envoy sends: end_of_stream is false when trailers follow (trailers
	// SKIP) or, in BUFFERED_PARTIAL, when the body is over Envoy's buffer
	// limit and the rest passes through unseen.
	last := b.GetEndOfStream() || st.buffered
	if st.filter != nil {
		out := st.filter.Write(chunk)
		if last {
			out = append(out, st.filter.Flush()...)
		}
		resp.GetResponseBody().Response = &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
			Mutation: &extprocv3.BodyMutation_Body{Body: out}}}
	}
	if last {
		if reply := st.decideWithBody(ctx, st.errBody); reply != nil {
			return reply
		}
		st.cutShort = !b.GetEndOfStream()
		st.endResponse(ctx)
		st.withMetadata(resp)
		if st.buffered {
			// The response headers are still held: the client sees usage.
			resp.GetResponseBody().Response = &extprocv3.CommonResponse{HeaderMutation: st.usageHeaders()}
		}
		st.closed = true
	} else if len(chunk) > 0 {
		st.streamUsageMetadata(resp)
	}
	return resp
}

// decideWithBody hands the tickets that asked for the error body what
// there is of it (nil when it was too large to hold), once. It returns the
// reply that replaces the response, if one asks for it.
func (st *stream) decideWithBody(ctx context.Context, body []byte) *extprocv3.ProcessingResponse {
	tickets := st.wantBody
	st.wantBody = nil
	for _, t := range tickets {
		if reply := t.ResponseBody(ctx, st.response, body); reply != nil {
			return st.replace(reply)
		}
	}
	return nil
}

// addRequestHeaders adds the request headers tickets asked for, the
// vendor key and a failover's :path to mut.
func (st *stream) addRequestHeaders(mut *extprocv3.HeaderMutation) {
	if st.failedOver() {
		mut.SetHeaders = append(mut.SetHeaders, setHeader(":path", st.fo.path))
	}
	for _, kv := range st.credHeaders {
		mut.SetHeaders = append(mut.SetHeaders, setHeader(kv[0], kv[1]))
	}
	for _, kv := range st.setHeaders {
		mut.SetHeaders = append(mut.SetHeaders, setHeader(strings.ToLower(kv[0]), kv[1]))
	}
}

// usageHeaders returns the X-LLM-* headers for a response whose headers
// are still held by Envoy (BUFFERED).
func (st *stream) usageHeaders() *extprocv3.HeaderMutation {
	r := st.rec
	hs := newHeaderSlab(6)
	add := hs.set
	add("x-llm-provider", st.call.Provider)
	model := r.Usage.Model
	if model == "" {
		model = st.call.Info.Model
	}
	if model != "" {
		add("x-llm-model", model)
	}
	if r.Usage.Found {
		add("x-llm-input-tokens", strconv.FormatInt(r.Usage.InputTokens, 10))
		add("x-llm-output-tokens", strconv.FormatInt(r.Usage.OutputTokens, 10))
		add("x-llm-total-tokens", strconv.FormatInt(r.Usage.TotalTokens, 10))
	}
	if r.Cost.Known {
		// Rounded to 1e-10 USD: exact for every price in micro-dollars per
		// token, without binary-float noise (0.0000075, not 0.00000749999...).
		add("x-llm-cost-usd", strconv.FormatFloat(math.Round(r.Cost.TotalUSD*1e10)/1e10, 'f', -1, 64))
	}
	return &extprocv3.HeaderMutation{SetHeaders: hs.out}
}

// inspectResponse shows the final response headers to the tickets that
// want to see them. It returns the ImmediateResponse that replaces the
// response, if one asks for it.
func (st *stream) inspectResponse(ctx context.Context, hs []*corev3.HeaderValue) *extprocv3.ProcessingResponse {
	var rts []ResponseTicket
	for _, t := range st.tickets {
		if rt, ok := t.(ResponseTicket); ok {
			rts = append(rts, rt)
		}
	}
	if len(rts) == 0 {
		return nil
	}
	_, hasServiceTime := header(hs, "x-envoy-upstream-service-time")
	local := !hasServiceTime && (st.status == 502 || st.status == 503 || st.status == 504)
	count, _ := header(hs, "x-envoy-attempt-count")
	st.response = &Response{
		Status: st.status,
		Header: func(name string) string {
			v, _ := header(hs, name)
			return v
		},
		EnvoyLocal: local,
		Attempts:   st.servedAttempts(attemptClasses(st.md, st.s.cfg.Processing.MetadataNamespace, attemptCount(count), local)),
	}
	for _, rt := range rts {
		reply, wantBody := rt.ResponseHeaders(ctx, st.response)
		if reply != nil {
			return st.replace(reply)
		}
		if wantBody {
			st.wantBody = append(st.wantBody, rt)
		}
	}
	return nil
}

// replace answers the client with reply instead of the vendor's response.
// At response headers, and at a BUFFERED response body, Envoy writes it
// straight to the client (the response was still held).
func (st *stream) replace(reply *Reply) *extprocv3.ProcessingResponse {
	if fo := st.call.Failover; fo != nil {
		noteChain(reply, fo.Chain, "last tried "+st.call.Provider+":"+st.call.Info.Model)
	}
	reply.Headers = st.fallbackHeaders(reply.Headers)
	st.status = reply.Status
	st.replacedBy = reply.Details
	st.closed = true
	st.settle(OutcomeCompleted)
	return st.withMetadata(immediate(reply))
}

// endResponse records that the response ended normally.
func (st *stream) endResponse(context.Context) {
	if st.respDone || st.provider == nil {
		return
	}
	st.respDone = true
	st.settle(OutcomeCompleted)
}

// usage returns the final usage, closing the decompressor if any.
func (st *stream) usage() providers.Usage {
	if st.finalUsage != nil {
		return *st.finalUsage
	}
	var u providers.Usage
	if st.gunzip != nil {
		st.gunzip.Close()
	}
	if st.parser != nil {
		u = st.parser.Usage()
	}
	st.finalUsage = &u
	return u
}

// end runs when the stream ends: finish, then the usage parser is
// recycled (every use of it, the settlement included, is over).
func (st *stream) end(ctx context.Context) {
	st.finish(ctx)
	if st.parser != nil {
		providers.ReleaseUsageParser(st.parser)
		st.parser = nil
	}
}

// finish runs when the stream ends; a provider request that did not end
// normally is settled as aborted.
func (st *stream) finish(context.Context) {
	defer st.flush()
	if st.provider == nil || st.finished {
		if st.gunzip != nil {
			st.gunzip.Close()
		}
		return
	}
	if !st.admitted {
		// The client went away before the request was complete: nothing
		// was reserved and the vendor was not called.
		st.call.Info, st.call.EstimatedInputTokens, st.call.EstimateSource = st.estimate()
	}
	st.settle(OutcomeAborted)
}

// settle builds the Record once per stream. The tickets and the observer
// run later, in flush, after the reply that carries the Record's metadata
// was sent: Envoy holds the response until that reply arrives.
func (st *stream) settle(outcome Outcome) {
	if st.finished {
		return
	}
	st.finished = true
	now := st.s.now()
	rec := &Record{
		Call:          st.call,
		Status:        st.status,
		Outcome:       outcome,
		Usage:         st.usage(),
		Guards:        st.decisions,
		RefusedBy:     st.refusedBy,
		ReplacedBy:    st.replacedBy,
		Duration:      now.Sub(st.call.Start),
		RequestBytes:  st.bodySeen,
		ResponseBytes: st.respBytes,
	}
	if !st.firstByte.IsZero() {
		rec.TTFB = st.firstByte.Sub(st.call.Start)
	}
	if !rec.Usage.Found && (outcome == OutcomeAborted || st.cutShort) && st.status > 0 && st.status < 400 {
		// The stream broke before the usage event, or the part of the body
		// the server saw had none: account the input the gateway
		// estimated, flagged as such.
		rec.Usage.InputTokens = st.call.EstimatedInputTokens
		rec.Usage.TotalTokens = st.call.EstimatedInputTokens
		rec.UsageEstimated = true
	}
	if st.s.pricer != nil && (rec.Usage.Found || rec.UsageEstimated) {
		rec.Cost = st.s.pricer.Price(st.call.Provider, st.call.Info, rec.Usage, st.call.Start)
	}
	st.rec = rec
	st.pending = true
}

// flush settles every ticket once and notifies the observer, if a Record
// is waiting. Process calls it after each reply and when the stream ends.
func (st *stream) flush() {
	if !st.pending {
		return
	}
	st.pending = false
	if len(st.tickets) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), st.s.settleTO)
		for _, t := range st.tickets {
			t.Settle(ctx, st.rec)
		}
		cancel()
		st.tickets = nil
	}
	if st.s.observer != nil {
		st.s.observer.Observe(st.rec)
	}
}

// immediate builds an ImmediateResponse for reply.
func immediate(reply *Reply) *extprocv3.ProcessingResponse {
	mut := &extprocv3.HeaderMutation{}
	for _, h := range reply.Headers {
		mut.SetHeaders = append(mut.SetHeaders, setHeader(strings.ToLower(h[0]), h[1]))
	}
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(reply.Status)},
			Headers: mut,
			Body:    reply.Body,
			Details: reply.Details,
		}},
	}
}

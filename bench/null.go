package bench

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

// Null is an ext_proc server that does no processing. It answers every
// message with CONTINUE of the matching reply type, and at response headers
// it sends the response-body mode_override pkg/processor would send for a
// provider request: STREAMED for event streams (removing content-length) and
// for large bodies or non-JSON bodies of unknown length, with trailers SEND,
// BUFFERED for bodies whose content-length is at most BufferLimit, and
// BUFFERED_PARTIAL for JSON of unknown length. Like pkg/processor it ends the
// stream after the reply to the last response message, and it ignores
// observability-mode messages. It reads no bodies and writes no metadata.
//
// The zero value is ready to use. Null is safe for concurrent use.
type Null struct {
	extprocv3.UnimplementedExternalProcessorServer

	// BufferLimit is the largest response body, in bytes, answered with
	// BUFFERED. Default (zero or less) config.DefaultResponseBufferLimitBytes.
	BufferLimit int64
}

var _ extprocv3.ExternalProcessorServer = (*Null)(nil)

// Process implements [extprocv3.ExternalProcessorServer.Process]. Every end
// of the stream (end of input, cancellation, transport error) is a normal
// end and returns nil.
func (n *Null) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		req, err := srv.Recv()
		if err != nil {
			return nil
		}
		resp, last := n.reply(req)
		if resp == nil {
			continue
		}
		if err := srv.Send(resp); err != nil {
			return nil
		}
		if last {
			return nil
		}
	}
}

// reply returns the answer to req (nil when none is due) and whether it is
// the stream's last.
func (n *Null) reply(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, bool) {
	if req.GetObservabilityMode() {
		return nil, false
	}
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocv3.HeadersResponse{}}}, false
	case *extprocv3.ProcessingRequest_RequestBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
			RequestBody: &extprocv3.BodyResponse{}}}, false
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
			RequestTrailers: &extprocv3.TrailersResponse{}}}, false
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return n.responseHeaders(r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
			ResponseBody: &extprocv3.BodyResponse{}}}, r.ResponseBody.GetEndOfStream()
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocv3.TrailersResponse{}}}, false
	default:
		return nil, false
	}
}

func (n *Null) responseHeaders(h *extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, bool) {
	hr := &extprocv3.HeadersResponse{}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: hr}}
	if h.GetEndOfStream() {
		return resp, true
	}
	hs := h.GetHeaders().GetHeaders()
	ct := mediaType(headerValue(hs, "content-type"))
	length := contentLength(hs)
	limit := n.BufferLimit
	if limit <= 0 {
		limit = config.DefaultResponseBufferLimitBytes
	}
	mode := filterv3.ProcessingMode_STREAMED
	switch {
	case ct == "text/event-stream":
		if length >= 0 {
			hr.Response = &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{
				RemoveHeaders: []string{"content-length"}}}
		}
	case length >= 0 && length <= limit:
		mode = filterv3.ProcessingMode_BUFFERED
	case length < 0 && (ct == "application/json" || strings.HasSuffix(ct, "+json")):
		mode = filterv3.ProcessingMode_BUFFERED_PARTIAL
	}
	resp.ModeOverride = &filterv3.ProcessingMode{ResponseBodyMode: mode}
	if mode == filterv3.ProcessingMode_STREAMED {
		resp.ModeOverride.ResponseTrailerMode = filterv3.ProcessingMode_SEND
	}
	return resp, false
}

// headerValue returns the first value of name (lower-case) in hs, read from
// raw_value as Envoy sends it, or from value.
func headerValue(hs []*corev3.HeaderValue, name string) string {
	for _, h := range hs {
		if h.GetKey() != name {
			continue
		}
		if raw := h.GetRawValue(); len(raw) > 0 {
			return string(raw)
		}
		return h.GetValue()
	}
	return ""
}

// contentLength returns the content-length in hs, -1 when absent or invalid.
func contentLength(hs []*corev3.HeaderValue) int64 {
	v := strings.TrimSpace(headerValue(hs, "content-length"))
	if v == "" {
		return -1
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// mediaType returns the lower-case media type of a Content-Type value,
// without parameters.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

package processor

import (
	"unicode/utf8"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Field numbers of the messages decodeRequest reads by hand, from
// envoy/service/ext_proc/v3/external_processor.proto and
// envoy/config/core/v3/base.proto.
const (
	fieldReqRequestHeaders   = 2  // ProcessingRequest.request_headers
	fieldReqResponseHeaders  = 3  // ProcessingRequest.response_headers
	fieldReqRequestBody      = 4  // ProcessingRequest.request_body
	fieldReqResponseBody     = 5  // ProcessingRequest.response_body
	fieldReqRequestTrailers  = 6  // ProcessingRequest.request_trailers
	fieldReqResponseTrailers = 7  // ProcessingRequest.response_trailers
	fieldReqMetadataContext  = 8  // ProcessingRequest.metadata_context
	fieldReqAttributes       = 9  // ProcessingRequest.attributes (map<string, Struct>)
	fieldReqObservability    = 10 // ProcessingRequest.observability_mode
	fieldReqProtocolConfig   = 11 // ProcessingRequest.protocol_config

	fieldHeadersHeaders     = 1 // HttpHeaders.headers; HttpTrailers.trailers
	fieldHeadersEndOfStream = 3 // HttpHeaders.end_of_stream

	fieldBodyBody        = 1 // HttpBody.body
	fieldBodyEndOfStream = 2 // HttpBody.end_of_stream

	fieldHeaderMapHeaders = 1 // HeaderMap.headers

	fieldHeaderKey      = 1 // HeaderValue.key
	fieldHeaderValue    = 2 // HeaderValue.value
	fieldHeaderRawValue = 3 // HeaderValue.raw_value

	fieldProtocolRequestBodyMode  = 1 // ProtocolConfiguration.request_body_mode
	fieldProtocolResponseBodyMode = 2 // ProtocolConfiguration.response_body_mode
	fieldProtocolSendBodyEarly    = 3 // ProtocolConfiguration.send_body_without_waiting_for_header_response
)

// decodeRequest decodes the ProcessingRequest in b into m (which must be
// zero) and reports whether it could. It reads the fields Envoy sends (the
// six message kinds, observability mode and the protocol configuration)
// itself, and metadata_context and attributes with protobuf-go. It gives up
// (false; m is then to be reset and decoded by proto.Unmarshal, whose
// answer, error included, is the authoritative one) on anything else: an
// unknown or deprecated field, a wire type other than the field's, a
// message field sent twice (which protobuf merges), a string that is not
// UTF-8, a malformed length.
//
// Every string and byte slice in m points into b, so b must not be changed
// or reused afterwards: the codec passes a fresh copy of the gRPC message.
// Byte slices are capped at their length, so appending to one copies it.
// This is what makes a message cost a handful of allocations instead of
// three per header (the header, its key, its value).
func decodeRequest(b []byte, m *extprocv3.ProcessingRequest) bool {
	var seen uint32 // message fields met, by field number
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > 31 {
			return false
		}
		b = b[n:]
		if typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 || num != fieldReqObservability {
				return false
			}
			b = b[n:]
			m.ObservabilityMode = v != 0
			continue
		}
		if typ != protowire.BytesType {
			return false
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num != fieldReqAttributes {
			if seen&(1<<num) != 0 {
				return false
			}
			seen |= 1 << num
		}
		switch num {
		case fieldReqRequestHeaders, fieldReqResponseHeaders:
			h := &extprocv3.HttpHeaders{}
			if !decodeHTTPHeaders(v, h) {
				return false
			}
			if num == fieldReqRequestHeaders {
				m.Request = &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: h}
			} else {
				m.Request = &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: h}
			}
		case fieldReqRequestBody, fieldReqResponseBody:
			body := &extprocv3.HttpBody{}
			if !decodeHTTPBody(v, body) {
				return false
			}
			if num == fieldReqRequestBody {
				m.Request = &extprocv3.ProcessingRequest_RequestBody{RequestBody: body}
			} else {
				m.Request = &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: body}
			}
		case fieldReqRequestTrailers, fieldReqResponseTrailers:
			t := &extprocv3.HttpTrailers{}
			if !decodeHTTPTrailers(v, t) {
				return false
			}
			if num == fieldReqRequestTrailers {
				m.Request = &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: t}
			} else {
				m.Request = &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: t}
			}
		case fieldReqMetadataContext:
			md := &corev3.Metadata{}
			if proto.Unmarshal(v, md) != nil {
				return false
			}
			m.MetadataContext = md
		case fieldReqAttributes:
			if !decodeAttribute(v, m) {
				return false
			}
		case fieldReqProtocolConfig:
			pc := &extprocv3.ProtocolConfiguration{}
			if !decodeProtocolConfig(v, pc) {
				return false
			}
			m.ProtocolConfig = pc
		default:
			return false
		}
	}
	return true
}

// decodeHTTPHeaders decodes an HttpHeaders (headers, end_of_stream).
func decodeHTTPHeaders(b []byte, h *extprocv3.HttpHeaders) bool {
	seenMap := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == fieldHeadersHeaders && typ == protowire.BytesType && !seenMap:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			b, seenMap = b[n:], true
			h.Headers = &corev3.HeaderMap{}
			if !decodeHeaderMap(v, h.Headers) {
				return false
			}
		case num == fieldHeadersEndOfStream && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			h.EndOfStream = v != 0
		default:
			return false
		}
	}
	return true
}

// decodeHTTPTrailers decodes an HttpTrailers (trailers).
func decodeHTTPTrailers(b []byte, t *extprocv3.HttpTrailers) bool {
	if len(b) == 0 {
		return true
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != fieldHeadersHeaders || typ != protowire.BytesType {
		return false
	}
	v, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		return false
	}
	t.Trailers = &corev3.HeaderMap{}
	return decodeHeaderMap(v, t.Trailers)
}

// decodeHeaderMap decodes a HeaderMap's headers into one backing array.
func decodeHeaderMap(b []byte, hm *corev3.HeaderMap) bool {
	count := 0
	for rest := b; len(rest) > 0; count++ {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 || num != fieldHeaderMapHeaders || typ != protowire.BytesType {
			return false
		}
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if m < 0 {
			return false
		}
		rest = rest[n+m:]
	}
	if count == 0 {
		return true
	}
	vals := make([]corev3.HeaderValue, count)
	hm.Headers = make([]*corev3.HeaderValue, count)
	for i := range vals {
		_, _, n := protowire.ConsumeTag(b)
		v, m := protowire.ConsumeBytes(b[n:])
		b = b[n+m:]
		if !decodeHeaderValue(v, &vals[i]) {
			return false
		}
		hm.Headers[i] = &vals[i]
	}
	return true
}

// decodeHeaderValue decodes a HeaderValue (key, value, raw_value).
func decodeHeaderValue(b []byte, hv *corev3.HeaderValue) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return false
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return false
		}
		b = b[n+m:]
		switch num {
		case fieldHeaderKey, fieldHeaderValue:
			if !utf8.Valid(v) {
				return false
			}
			s := aliasString(v)
			if num == fieldHeaderKey {
				hv.Key = s
			} else {
				hv.Value = s
			}
		case fieldHeaderRawValue:
			hv.RawValue = v[:len(v):len(v)]
		default:
			return false
		}
	}
	return true
}

// decodeHTTPBody decodes an HttpBody (body, end_of_stream).
func decodeHTTPBody(b []byte, body *extprocv3.HttpBody) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == fieldBodyBody && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			body.Body = v[:len(v):len(v)]
		case num == fieldBodyEndOfStream && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			body.EndOfStream = v != 0
		default:
			return false
		}
	}
	return true
}

// decodeProtocolConfig decodes a ProtocolConfiguration.
func decodeProtocolConfig(b []byte, pc *extprocv3.ProtocolConfiguration) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.VarintType {
			return false
		}
		v, m := protowire.ConsumeVarint(b[n:])
		if m < 0 {
			return false
		}
		b = b[n+m:]
		switch num {
		case fieldProtocolRequestBodyMode:
			pc.RequestBodyMode = filterv3.ProcessingMode_BodySendMode(int32(v))
		case fieldProtocolResponseBodyMode:
			pc.ResponseBodyMode = filterv3.ProcessingMode_BodySendMode(int32(v))
		case fieldProtocolSendBodyEarly:
			pc.SendBodyWithoutWaitingForHeaderResponse = v != 0
		default:
			return false
		}
	}
	return true
}

// decodeAttribute decodes one attributes entry (key, Struct) into m's map;
// a later entry with the same key replaces an earlier one, as in protobuf.
func decodeAttribute(b []byte, m *extprocv3.ProcessingRequest) bool {
	var (
		key string
		val *structpb.Struct
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return false
		}
		v, l := protowire.ConsumeBytes(b[n:])
		if l < 0 {
			return false
		}
		b = b[n+l:]
		switch num {
		case fieldMapKey:
			if !utf8.Valid(v) {
				return false
			}
			key = aliasString(v)
		case fieldMapValue:
			val = &structpb.Struct{}
			if proto.Unmarshal(v, val) != nil {
				return false
			}
		default:
			return false
		}
	}
	if val == nil { // an entry without a value holds an empty one
		val = &structpb.Struct{}
	}
	if m.Attributes == nil {
		m.Attributes = map[string]*structpb.Struct{}
	}
	m.Attributes[key] = val
	return true
}

// aliasString returns b as a string without copying it; b must never change
// afterwards (see decodeRequest).
func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

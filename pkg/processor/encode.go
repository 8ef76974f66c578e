package processor

import (
	"math"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"
)

// The replies the server sends are encoded by hand (appendResponse), in
// protobuf-go's order (fields by number, then the oneof), so the bytes are the ones
// proto.Marshal writes (map entries aside, whose order protobuf leaves
// open). Field numbers are from envoy/service/ext_proc/v3/
// external_processor.proto, envoy/config/core/v3/base.proto,
// envoy/extensions/filters/http/ext_proc/v3/processing_mode.proto and
// envoy/type/v3/http_status.proto.
const (
	fieldRespRequestHeaders   = 1
	fieldRespResponseHeaders  = 2
	fieldRespRequestBody      = 3
	fieldRespResponseBody     = 4
	fieldRespRequestTrailers  = 5
	fieldRespResponseTrailers = 6
	fieldRespImmediate        = 7
	fieldRespModeOverride     = 9

	fieldCommonResponse = 1 // HeadersResponse.response, BodyResponse.response
	fieldTrailersHM     = 1 // TrailersResponse.header_mutation

	fieldCommonStatus          = 1
	fieldCommonHeaderMutation  = 2
	fieldCommonBodyMutation    = 3
	fieldCommonClearRouteCache = 5

	fieldMutationSet    = 1 // HeaderMutation.set_headers
	fieldMutationRemove = 2 // HeaderMutation.remove_headers

	fieldBodyMutationBody  = 1
	fieldBodyMutationClear = 2

	fieldOptionHeader    = 1 // HeaderValueOption.header
	fieldOptionAction    = 3 // HeaderValueOption.append_action
	fieldOptionKeepEmpty = 4 // HeaderValueOption.keep_empty_value

	fieldImmediateStatus  = 1
	fieldImmediateHeaders = 2
	fieldImmediateBody    = 3
	fieldImmediateGRPC    = 4
	fieldImmediateDetails = 5

	fieldHTTPStatusCode = 1
	fieldGRPCStatus     = 1
)

// handEncodable reports whether appendResponse writes everything r holds:
// the fields the server sets, with every string UTF-8 (proto.Marshal
// refuses other strings, and the codec leaves that answer to it). For
// anything else the codec uses proto.Marshal.
func handEncodable(r *extprocv3.ProcessingResponse) bool {
	if r.TypedDynamicMetadata != nil || r.OverrideMessageTimeout != nil || r.ServerWindowUpdate != nil ||
		r.RequestDrainRequests || r.RequestDrainResponses || len(r.ProtoReflect().GetUnknown()) > 0 {
		return false
	}
	//lint:ignore SA1019 a reply that sets the deprecated request_drain is left to protobuf-go
	if r.RequestDrain {
		return false
	}
	switch v := r.Response.(type) {
	case nil:
		return true
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return v.RequestHeaders != nil && commonEncodable(v.RequestHeaders.Response)
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return v.ResponseHeaders != nil && commonEncodable(v.ResponseHeaders.Response)
	case *extprocv3.ProcessingResponse_RequestBody:
		return v.RequestBody != nil && commonEncodable(v.RequestBody.Response)
	case *extprocv3.ProcessingResponse_ResponseBody:
		return v.ResponseBody != nil && commonEncodable(v.ResponseBody.Response)
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return v.RequestTrailers != nil && mutationEncodable(v.RequestTrailers.HeaderMutation)
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return v.ResponseTrailers != nil && mutationEncodable(v.ResponseTrailers.HeaderMutation)
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		ir := v.ImmediateResponse
		return ir != nil && mutationEncodable(ir.Headers) && utf8.ValidString(ir.Details)
	}
	return false
}

func commonEncodable(c *extprocv3.CommonResponse) bool {
	if c == nil {
		return true
	}
	if c.Trailers != nil {
		return false
	}
	if bm := c.BodyMutation; bm != nil {
		switch bm.Mutation.(type) {
		case nil, *extprocv3.BodyMutation_Body, *extprocv3.BodyMutation_ClearBody:
		default:
			return false
		}
	}
	return mutationEncodable(c.HeaderMutation)
}

func mutationEncodable(m *extprocv3.HeaderMutation) bool {
	if m == nil {
		return true
	}
	for _, o := range m.SetHeaders {
		//lint:ignore SA1019 an option that sets the deprecated append is left to protobuf-go
		if o == nil || o.Append != nil {
			return false
		}
		if h := o.Header; h != nil && (!utf8.ValidString(h.Key) || !utf8.ValidString(h.Value)) {
			return false
		}
	}
	for _, name := range m.RemoveHeaders {
		if !utf8.ValidString(name) {
			return false
		}
	}
	return true
}

// sizeResponse is the encoded size of r with the dynamic metadata md (nil
// for none; prepared); r must be handEncodable.
func sizeResponse(r *extprocv3.ProcessingResponse, md *replyMD) int {
	n := 0
	switch v := r.Response.(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		n += sizeField(fieldRespRequestHeaders, sizeWrapped(v.RequestHeaders.Response))
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		n += sizeField(fieldRespResponseHeaders, sizeWrapped(v.ResponseHeaders.Response))
	case *extprocv3.ProcessingResponse_RequestBody:
		n += sizeField(fieldRespRequestBody, sizeWrapped(v.RequestBody.Response))
	case *extprocv3.ProcessingResponse_ResponseBody:
		n += sizeField(fieldRespResponseBody, sizeWrapped(v.ResponseBody.Response))
	case *extprocv3.ProcessingResponse_RequestTrailers:
		n += sizeField(fieldRespRequestTrailers, sizeTrailers(v.RequestTrailers))
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		n += sizeField(fieldRespResponseTrailers, sizeTrailers(v.ResponseTrailers))
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		n += sizeField(fieldRespImmediate, sizeImmediate(v.ImmediateResponse))
	}
	if md != nil {
		n += sizeField(fieldResponseDynamicMetadata, md.size)
	}
	if m := r.ModeOverride; m != nil {
		n += sizeField(fieldRespModeOverride, sizeMode(m))
	}
	return n
}

// appendResponse appends r with the dynamic metadata md (nil for none;
// prepared); r must be handEncodable.
func appendResponse(b []byte, r *extprocv3.ProcessingResponse, md *replyMD) []byte {
	if md != nil {
		b = appendMessageHeader(b, fieldResponseDynamicMetadata, md.size)
		b = md.append(b)
	}
	if m := r.ModeOverride; m != nil {
		b = appendMessageHeader(b, fieldRespModeOverride, sizeMode(m))
		b = appendMode(b, m)
	}
	switch v := r.Response.(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		b = appendWrapped(b, fieldRespRequestHeaders, v.RequestHeaders.Response)
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		b = appendWrapped(b, fieldRespResponseHeaders, v.ResponseHeaders.Response)
	case *extprocv3.ProcessingResponse_RequestBody:
		b = appendWrapped(b, fieldRespRequestBody, v.RequestBody.Response)
	case *extprocv3.ProcessingResponse_ResponseBody:
		b = appendWrapped(b, fieldRespResponseBody, v.ResponseBody.Response)
	case *extprocv3.ProcessingResponse_RequestTrailers:
		b = appendTrailers(b, fieldRespRequestTrailers, v.RequestTrailers)
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		b = appendTrailers(b, fieldRespResponseTrailers, v.ResponseTrailers)
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		b = appendMessageHeader(b, fieldRespImmediate, sizeImmediate(v.ImmediateResponse))
		b = appendImmediate(b, v.ImmediateResponse)
	}
	return b
}

// sizeField is the size of a length-delimited field of n bytes.
func sizeField(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func appendMessageHeader(b []byte, num protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

func sizeVarintField(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func sizeBytesField(num protowire.Number, n int) int {
	if n == 0 {
		return 0
	}
	return sizeField(num, n)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendStringField(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// sizeWrapped is the size of a HeadersResponse or BodyResponse around c.
func sizeWrapped(c *extprocv3.CommonResponse) int {
	if c == nil {
		return 0
	}
	return sizeField(fieldCommonResponse, sizeCommon(c))
}

func appendWrapped(b []byte, num protowire.Number, c *extprocv3.CommonResponse) []byte {
	b = appendMessageHeader(b, num, sizeWrapped(c))
	if c == nil {
		return b
	}
	b = appendMessageHeader(b, fieldCommonResponse, sizeCommon(c))
	return appendCommon(b, c)
}

func sizeTrailers(t *extprocv3.TrailersResponse) int {
	if t.HeaderMutation == nil {
		return 0
	}
	return sizeField(fieldTrailersHM, sizeMutation(t.HeaderMutation))
}

func appendTrailers(b []byte, num protowire.Number, t *extprocv3.TrailersResponse) []byte {
	b = appendMessageHeader(b, num, sizeTrailers(t))
	if t.HeaderMutation == nil {
		return b
	}
	b = appendMessageHeader(b, fieldTrailersHM, sizeMutation(t.HeaderMutation))
	return appendMutation(b, t.HeaderMutation)
}

func sizeCommon(c *extprocv3.CommonResponse) int {
	n := sizeVarintField(fieldCommonStatus, uint64(c.Status))
	if c.HeaderMutation != nil {
		n += sizeField(fieldCommonHeaderMutation, sizeMutation(c.HeaderMutation))
	}
	if c.BodyMutation != nil {
		n += sizeField(fieldCommonBodyMutation, sizeBodyMutation(c.BodyMutation))
	}
	return n + sizeVarintField(fieldCommonClearRouteCache, protowire.EncodeBool(c.ClearRouteCache))
}

func appendCommon(b []byte, c *extprocv3.CommonResponse) []byte {
	b = appendVarintField(b, fieldCommonStatus, uint64(c.Status))
	if c.HeaderMutation != nil {
		b = appendMessageHeader(b, fieldCommonHeaderMutation, sizeMutation(c.HeaderMutation))
		b = appendMutation(b, c.HeaderMutation)
	}
	if c.BodyMutation != nil {
		b = appendMessageHeader(b, fieldCommonBodyMutation, sizeBodyMutation(c.BodyMutation))
		b = appendBodyMutation(b, c.BodyMutation)
	}
	return appendVarintField(b, fieldCommonClearRouteCache, protowire.EncodeBool(c.ClearRouteCache))
}

// sizeBodyMutation: a oneof member is written even when it is empty.
func sizeBodyMutation(m *extprocv3.BodyMutation) int {
	switch v := m.Mutation.(type) {
	case *extprocv3.BodyMutation_Body:
		return sizeField(fieldBodyMutationBody, len(v.Body))
	case *extprocv3.BodyMutation_ClearBody:
		return protowire.SizeTag(fieldBodyMutationClear) + 1
	}
	return 0
}

func appendBodyMutation(b []byte, m *extprocv3.BodyMutation) []byte {
	switch v := m.Mutation.(type) {
	case *extprocv3.BodyMutation_Body:
		b = protowire.AppendTag(b, fieldBodyMutationBody, protowire.BytesType)
		return protowire.AppendBytes(b, v.Body)
	case *extprocv3.BodyMutation_ClearBody:
		b = protowire.AppendTag(b, fieldBodyMutationClear, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.ClearBody))
	}
	return b
}

func sizeMutation(m *extprocv3.HeaderMutation) int {
	n := 0
	for _, o := range m.SetHeaders {
		n += sizeField(fieldMutationSet, sizeOption(o))
	}
	for _, name := range m.RemoveHeaders {
		n += sizeField(fieldMutationRemove, len(name))
	}
	return n
}

func appendMutation(b []byte, m *extprocv3.HeaderMutation) []byte {
	for _, o := range m.SetHeaders {
		b = appendMessageHeader(b, fieldMutationSet, sizeOption(o))
		b = appendOption(b, o)
	}
	for _, name := range m.RemoveHeaders {
		b = protowire.AppendTag(b, fieldMutationRemove, protowire.BytesType)
		b = protowire.AppendString(b, name)
	}
	return b
}

func sizeOption(o *corev3.HeaderValueOption) int {
	n := 0
	if h := o.Header; h != nil {
		n += sizeField(fieldOptionHeader, sizeHeaderValue(h))
	}
	return n + sizeVarintField(fieldOptionAction, uint64(o.AppendAction)) +
		sizeVarintField(fieldOptionKeepEmpty, protowire.EncodeBool(o.KeepEmptyValue))
}

func appendOption(b []byte, o *corev3.HeaderValueOption) []byte {
	if h := o.Header; h != nil {
		b = appendMessageHeader(b, fieldOptionHeader, sizeHeaderValue(h))
		b = appendStringField(b, fieldHeaderKey, h.Key)
		b = appendStringField(b, fieldHeaderValue, h.Value)
		b = appendBytesField(b, fieldHeaderRawValue, h.RawValue)
	}
	b = appendVarintField(b, fieldOptionAction, uint64(o.AppendAction))
	return appendVarintField(b, fieldOptionKeepEmpty, protowire.EncodeBool(o.KeepEmptyValue))
}

func sizeHeaderValue(h *corev3.HeaderValue) int {
	return sizeBytesField(fieldHeaderKey, len(h.Key)) + sizeBytesField(fieldHeaderValue, len(h.Value)) +
		sizeBytesField(fieldHeaderRawValue, len(h.RawValue))
}

func sizeImmediate(r *extprocv3.ImmediateResponse) int {
	n := 0
	if r.Status != nil {
		n += sizeField(fieldImmediateStatus, sizeVarintField(fieldHTTPStatusCode, uint64(r.Status.Code)))
	}
	if r.Headers != nil {
		n += sizeField(fieldImmediateHeaders, sizeMutation(r.Headers))
	}
	n += sizeBytesField(fieldImmediateBody, len(r.Body))
	if r.GrpcStatus != nil {
		n += sizeField(fieldImmediateGRPC, sizeVarintField(fieldGRPCStatus, uint64(r.GrpcStatus.Status)))
	}
	return n + sizeBytesField(fieldImmediateDetails, len(r.Details))
}

func appendImmediate(b []byte, r *extprocv3.ImmediateResponse) []byte {
	if r.Status != nil {
		b = appendMessageHeader(b, fieldImmediateStatus, sizeVarintField(fieldHTTPStatusCode, uint64(r.Status.Code)))
		b = appendVarintField(b, fieldHTTPStatusCode, uint64(r.Status.Code))
	}
	if r.Headers != nil {
		b = appendMessageHeader(b, fieldImmediateHeaders, sizeMutation(r.Headers))
		b = appendMutation(b, r.Headers)
	}
	b = appendBytesField(b, fieldImmediateBody, r.Body)
	if r.GrpcStatus != nil {
		b = appendMessageHeader(b, fieldImmediateGRPC, sizeVarintField(fieldGRPCStatus, uint64(r.GrpcStatus.Status)))
		b = appendVarintField(b, fieldGRPCStatus, uint64(r.GrpcStatus.Status))
	}
	return appendStringField(b, fieldImmediateDetails, r.Details)
}

// modeFields are a ProcessingMode's six enum fields in field order.
func modeFields(m *filterv3.ProcessingMode) [6]uint64 {
	return [6]uint64{uint64(m.RequestHeaderMode), uint64(m.ResponseHeaderMode), uint64(m.RequestBodyMode),
		uint64(m.ResponseBodyMode), uint64(m.RequestTrailerMode), uint64(m.ResponseTrailerMode)}
}

func sizeMode(m *filterv3.ProcessingMode) int {
	n := 0
	for i, v := range modeFields(m) {
		n += sizeVarintField(protowire.Number(i+1), v)
	}
	return n
}

func appendMode(b []byte, m *filterv3.ProcessingMode) []byte {
	for i, v := range modeFields(m) {
		b = appendVarintField(b, protowire.Number(i+1), v)
	}
	return b
}

// replyMD is a reply's dynamic metadata for the encoder: a Struct, or
// fields of namespace ns (mdFields), which are written as the Struct
// mdFields.Struct returns.
type replyMD struct {
	s      *structpb.Struct
	ns     string
	fields mdFields
	// size is the encoded size of the metadata Struct's content, inner
	// that of the namespace's Struct (fields only); set by prepare.
	size, inner int
}

// prepare computes the sizes.
func (m *replyMD) prepare() {
	if m.s != nil {
		m.size = sizeStruct(m.s)
		return
	}
	m.inner = 0
	for i := range m.fields {
		m.inner += sizeField(fieldStructFields, mapEntrySize(m.fields[i].key, sizeMDValue(&m.fields[i])))
	}
	m.size = sizeField(fieldStructFields, mapEntrySize(m.ns, sizeField(fieldValueStruct, m.inner)))
}

func (m *replyMD) append(b []byte) []byte {
	if m.s != nil {
		return appendStruct(b, m.s)
	}
	vs := sizeField(fieldValueStruct, m.inner)
	b = appendMessageHeader(b, fieldStructFields, mapEntrySize(m.ns, vs))
	b = appendStringField(b, fieldMapKey, m.ns)
	b = appendMessageHeader(b, fieldMapValue, vs)
	b = appendMessageHeader(b, fieldValueStruct, m.inner)
	for i := range m.fields {
		f := &m.fields[i]
		n := sizeMDValue(f)
		b = appendMessageHeader(b, fieldStructFields, mapEntrySize(f.key, n))
		b = protowire.AppendTag(b, fieldMapKey, protowire.BytesType)
		b = protowire.AppendString(b, f.key)
		b = appendMessageHeader(b, fieldMapValue, n)
		b = appendMDValue(b, f)
	}
	return b
}

// sizeMDValue is the encoded size of f's value (a structpb.Value).
func sizeMDValue(f *mdEntry) int {
	switch f.kind {
	case mdString:
		return sizeField(fieldValueString, len(f.str))
	case mdNumber:
		return protowire.SizeTag(fieldValueNumber) + protowire.SizeFixed64()
	case mdBool:
		return protowire.SizeTag(fieldValueBool) + 1
	}
	return sizeValue(f.val)
}

func appendMDValue(b []byte, f *mdEntry) []byte {
	switch f.kind {
	case mdString:
		b = protowire.AppendTag(b, fieldValueString, protowire.BytesType)
		return protowire.AppendString(b, f.str)
	case mdNumber:
		b = protowire.AppendTag(b, fieldValueNumber, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(f.num))
	case mdBool:
		b = protowire.AppendTag(b, fieldValueBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(f.num != 0))
	}
	return appendValue(b, f.val)
}

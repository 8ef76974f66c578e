package processor

import (
	"fmt"
	"math"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Field numbers of the messages replyCodec encodes by hand, from
// envoy/service/ext_proc/v3/external_processor.proto and
// google/protobuf/struct.proto.
const (
	fieldResponseDynamicMetadata = 8 // ProcessingResponse.dynamic_metadata

	fieldStructFields = 1 // Struct.fields (map<string, Value>)
	fieldMapKey       = 1
	fieldMapValue     = 2

	fieldValueNull   = 1 // Value.null_value
	fieldValueNumber = 2 // Value.number_value
	fieldValueString = 3 // Value.string_value
	fieldValueBool   = 4 // Value.bool_value
	fieldValueStruct = 5 // Value.struct_value
	fieldValueList   = 6 // Value.list_value

	fieldListValues = 1 // ListValue.values
)

// replyCodec is the gRPC codec [GRPCServerOptions] installs. It is the
// standard protobuf codec except for Envoy's requests, decoded by hand
// (see Unmarshal), and one field of the replies: a ProcessingResponse's
// dynamic_metadata (a google.protobuf.Struct) is encoded by hand, because
// protobuf-go sizes and writes map fields through reflection, which made up
// most of the cost of sending a reply that carries metadata. The bytes are
// the same wire format (map entries in map order, as protobuf-go writes them
// by default), so any protobuf decoder reads them unchanged; the codec test
// checks that they decode to the message sent. It is safe for concurrent
// use; Marshal reads the response, which gRPC's SendMsg does not share.
type replyCodec struct {
	std encoding.CodecV2
}

var _ encoding.CodecV2 = replyCodec{}

// newReplyCodec returns the codec over grpc's registered protobuf codec.
func newReplyCodec() replyCodec {
	return replyCodec{std: encoding.GetCodecV2(protocodec.Name)}
}

// Name implements [encoding.CodecV2]: the codec replaces "proto".
func (replyCodec) Name() string { return protocodec.Name }

// Unmarshal implements [encoding.CodecV2]. A ProcessingRequest is decoded
// by decodeRequest from one copy of the message, which its strings and
// bytes then share; anything decodeRequest does not read, and every other
// message, goes to the standard codec.
func (c replyCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*extprocv3.ProcessingRequest)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	b := data.Materialize()
	if decodeRequest(b, m) {
		return nil
	}
	proto.Reset(m)
	return proto.Unmarshal(b, m)
}

// outgoing is a reply with its dynamic metadata as fields of namespace ns
// (Process sends it; see stream.metadata): the codec writes the fields as
// the Struct, and only builds it for a reply it leaves to protobuf-go.
type outgoing struct {
	resp   *extprocv3.ProcessingResponse
	ns     string
	fields mdFields
}

// ProcessingResponse returns the reply as Envoy receives it, metadata
// included (built as a Struct). A gRPC interceptor or stats handler that
// looks at the messages Process sends gets either a
// *extprocv3.ProcessingResponse or a value with this method.
func (o *outgoing) ProcessingResponse() *extprocv3.ProcessingResponse {
	r := proto.Clone(o.resp).(*extprocv3.ProcessingResponse)
	if len(o.fields) > 0 {
		r.DynamicMetadata = o.fields.Struct(o.ns)
	}
	return r
}

// Marshal implements [encoding.CodecV2]. A ProcessingResponse (or an
// outgoing one) is encoded by hand (encode.go) when it holds only what the
// server sends; otherwise everything but its dynamic metadata goes through
// protobuf-go.
func (c replyCodec) Marshal(v any) (mem.BufferSlice, error) {
	var md replyMD
	resp, ok := v.(*extprocv3.ProcessingResponse)
	if out, isOut := v.(*outgoing); isOut {
		resp, ok = out.resp, true
		md.ns, md.fields = out.ns, out.fields
	}
	if !ok {
		return c.std.Marshal(v)
	}
	if len(md.fields) > 0 && resp.DynamicMetadata != nil {
		return nil, fmt.Errorf("marshal ext_proc reply: metadata set twice")
	}
	md.s = resp.DynamicMetadata
	mdp := &md
	if md.s == nil && len(md.fields) == 0 {
		mdp = nil
	} else {
		md.prepare()
	}
	pool := mem.DefaultBufferPool()
	if handEncodable(resp) {
		buf := pool.Get(sizeResponse(resp, mdp))
		*buf = appendResponse((*buf)[:0], resp, mdp)
		return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
	}
	if mdp == nil {
		return c.std.Marshal(resp)
	}
	saved := resp.DynamicMetadata
	resp.DynamicMetadata = nil
	defer func() { resp.DynamicMetadata = saved }()
	opts := proto.MarshalOptions{UseCachedSize: true}
	rest := proto.Size(resp) // UseCachedSize is sound right after Size
	buf := pool.Get(rest + sizeField(fieldResponseDynamicMetadata, md.size))
	b, err := opts.MarshalAppend((*buf)[:0], resp)
	if err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("marshal ext_proc reply: %w", err)
	}
	b = appendMessageHeader(b, fieldResponseDynamicMetadata, md.size)
	*buf = md.append(b)
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// sizeStruct is the encoded size of s's fields (without s's own tag and
// length).
func sizeStruct(s *structpb.Struct) int {
	n := 0
	for k, v := range s.GetFields() {
		e := mapEntrySize(k, sizeValue(v))
		n += protowire.SizeTag(fieldStructFields) + protowire.SizeBytes(e)
	}
	return n
}

// mapEntrySize is the size of a fields entry whose value encodes in vs
// bytes.
func mapEntrySize(k string, vs int) int {
	return protowire.SizeTag(fieldMapKey) + protowire.SizeBytes(len(k)) +
		protowire.SizeTag(fieldMapValue) + protowire.SizeBytes(vs)
}

func appendStruct(b []byte, s *structpb.Struct) []byte {
	for k, v := range s.GetFields() {
		vs := sizeValue(v)
		b = protowire.AppendTag(b, fieldStructFields, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(mapEntrySize(k, vs)))
		b = protowire.AppendTag(b, fieldMapKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, fieldMapValue, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(vs))
		b = appendValue(b, v)
	}
	return b
}

// sizeValue is the encoded size of v's one set field; a nil value or one
// with no kind set encodes as empty, as protobuf-go writes it.
func sizeValue(v *structpb.Value) int {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue:
		return protowire.SizeTag(fieldValueNull) + protowire.SizeVarint(uint64(k.NullValue))
	case *structpb.Value_NumberValue:
		return protowire.SizeTag(fieldValueNumber) + protowire.SizeFixed64()
	case *structpb.Value_StringValue:
		return protowire.SizeTag(fieldValueString) + protowire.SizeBytes(len(k.StringValue))
	case *structpb.Value_BoolValue:
		return protowire.SizeTag(fieldValueBool) + protowire.SizeVarint(protowire.EncodeBool(k.BoolValue))
	case *structpb.Value_StructValue:
		return protowire.SizeTag(fieldValueStruct) + protowire.SizeBytes(sizeStruct(k.StructValue))
	case *structpb.Value_ListValue:
		return protowire.SizeTag(fieldValueList) + protowire.SizeBytes(sizeList(k.ListValue))
	}
	return 0
}

func appendValue(b []byte, v *structpb.Value) []byte {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue:
		b = protowire.AppendTag(b, fieldValueNull, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(k.NullValue))
	case *structpb.Value_NumberValue:
		b = protowire.AppendTag(b, fieldValueNumber, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(k.NumberValue))
	case *structpb.Value_StringValue:
		b = protowire.AppendTag(b, fieldValueString, protowire.BytesType)
		return protowire.AppendString(b, k.StringValue)
	case *structpb.Value_BoolValue:
		b = protowire.AppendTag(b, fieldValueBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(k.BoolValue))
	case *structpb.Value_StructValue:
		b = protowire.AppendTag(b, fieldValueStruct, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeStruct(k.StructValue)))
		return appendStruct(b, k.StructValue)
	case *structpb.Value_ListValue:
		b = protowire.AppendTag(b, fieldValueList, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeList(k.ListValue)))
		return appendList(b, k.ListValue)
	}
	return b
}

func sizeList(l *structpb.ListValue) int {
	n := 0
	for _, v := range l.GetValues() {
		n += protowire.SizeTag(fieldListValues) + protowire.SizeBytes(sizeValue(v))
	}
	return n
}

func appendList(b []byte, l *structpb.ListValue) []byte {
	for _, v := range l.GetValues() {
		b = protowire.AppendTag(b, fieldListValues, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeValue(v)))
		b = appendValue(b, v)
	}
	return b
}

package processor

import (
	"math"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}

// TestReplyCodecWritesWhatProtobufReads encodes replies through the codec
// and decodes them with protobuf-go: every reply must come back equal to
// the one sent, metadata or not, and the codec must leave the reply as it
// was.
func TestReplyCodecWritesWhatProtobufReads(t *testing.T) {
	c := newReplyCodec()
	headers := &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
		Response: &extprocv3.CommonResponse{ClearRouteCache: true, HeaderMutation: &extprocv3.HeaderMutation{
			SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-llm-model", RawValue: []byte("gpt-4o")}}},
		}}}}
	nested := mustStruct(t, map[string]any{
		"llm_proxy": map[string]any{
			"provider": "openai", "model": "gpt-4o", "stream": true, "estimated_input_tokens": 512.0,
			"cost_usd": 0.000123, "empty": "", "zero": 0.0, "neg": -1.5, "nothing": nil, "big": math.MaxFloat64,
			"list": []any{"a", 1.0, false, nil, map[string]any{"k": "v"}, []any{}}, "deep": map[string]any{"x": map[string]any{}},
			"unicode": "модель ✓", "tiny": math.SmallestNonzeroFloat64, "inf": math.Inf(1), "nan": math.NaN(),
		},
		"other.namespace": map[string]any{},
	})
	nested.Fields["nil-value"] = nil
	nested.Fields["no-kind"] = &structpb.Value{}
	cases := map[string]*extprocv3.ProcessingResponse{
		"no metadata":    {Response: headers},
		"empty metadata": {Response: headers, DynamicMetadata: &structpb.Struct{}},
		"metadata":       {Response: headers, DynamicMetadata: nested, OverrideMessageTimeout: durationpb.New(5e9)},
		"metadata only":  {DynamicMetadata: mustStruct(t, map[string]any{"ns": map[string]any{"a": "b"}})},
	}
	for name, resp := range cases {
		t.Run(name, func(t *testing.T) {
			before := proto.Clone(resp)
			data, err := c.Marshal(resp)
			require.NoError(t, err)
			wire := data.Materialize()
			data.Free()
			sameMessage(t, before, resp) // the codec restores the reply

			var got extprocv3.ProcessingResponse
			require.NoError(t, proto.Unmarshal(wire, &got))
			require.Empty(t, got.ProtoReflect().GetUnknown())
			sameMessage(t, resp, &got)
			require.Equal(t, proto.Size(resp), len(wire), "the same size protobuf-go computes")
		})
	}
	// Anything else goes through the standard codec.
	req := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte("{}")}}}
	data, err := c.Marshal(req)
	require.NoError(t, err)
	var back extprocv3.ProcessingRequest
	require.NoError(t, c.Unmarshal(data, &back))
	require.True(t, proto.Equal(req, &back))
	_, err = c.Marshal("not a message")
	require.Error(t, err)
}

// sameMessage compares two messages by their deterministic protobuf-go
// encoding: proto.Equal holds NaN unequal to itself.
func sameMessage(t *testing.T, want, got proto.Message) {
	t.Helper()
	a, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	require.NoError(t, err)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(got)
	require.NoError(t, err)
	require.Equal(t, a, b, "decoded reply differs from the one sent")
}

// BenchmarkReplyCodec compares the codec with grpc's protobuf codec on the
// final reply of a JSON call (usage headers and the end-of-call metadata).
func BenchmarkReplyCodec(b *testing.B) {
	md, err := structpb.NewStruct(map[string]any{"llm_proxy": map[string]any{
		"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "user": "alice", "stream": false,
		"estimated_input_tokens": 512.0, "input_tokens": 498.0, "output_tokens": 120.0, "total_tokens": 618.0,
		"cost_usd": 0.0001467, "request_id": "chatcmpl-9x8y7z", "finish_reason": "stop", "ttfb_ms": 412.0,
	}})
	if err != nil {
		b.Fatal(err)
	}
	var set []*corev3.HeaderValueOption
	for _, h := range []string{"x-llm-input-tokens", "x-llm-output-tokens", "x-llm-total-tokens", "x-llm-model", "x-llm-cost-usd", "x-llm-provider"} {
		set = append(set, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: h, RawValue: []byte("123")}})
	}
	resp := &extprocv3.ProcessingResponse{DynamicMetadata: md, Response: &extprocv3.ProcessingResponse_ResponseBody{
		ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: set}}}}}
	for name, c := range map[string]interface {
		Marshal(any) (mem.BufferSlice, error)
	}{"grpc-proto": newReplyCodec().std, "reply-codec": newReplyCodec()} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, err := c.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
	}
}

// TestReplyCodecEncodesByHandWhatProtobufWrites covers every reply shape
// the server builds: the hand encoder takes it, writes protobuf-go's bytes
// (without metadata, whose map order protobuf leaves open) and, with
// metadata, a message protobuf-go reads back equal.
func TestReplyCodecEncodesByHandWhatProtobufWrites(t *testing.T) {
	set := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
	}
	mutation := &extprocv3.HeaderMutation{
		SetHeaders: []*corev3.HeaderValueOption{set("x-llm-input-tokens", "412"), set("x-empty", ""),
			{Header: &corev3.HeaderValue{Key: "k", Value: "v"}, KeepEmptyValue: true}, {}},
		RemoveHeaders: []string{"content-length", "x-api-key"},
	}
	common := &extprocv3.CommonResponse{Status: extprocv3.CommonResponse_CONTINUE_AND_REPLACE, HeaderMutation: mutation,
		BodyMutation:    &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte(`{"model":"gpt-4o"}`)}},
		ClearRouteCache: true}
	mode := &filterv3.ProcessingMode{ResponseBodyMode: filterv3.ProcessingMode_BUFFERED, ResponseTrailerMode: filterv3.ProcessingMode_SEND}
	md := mustStruct(t, map[string]any{"llm_proxy": map[string]any{"provider": "openai", "input_tokens": 412.0, "stream": false}})
	cases := map[string]*extprocv3.ProcessingResponse{
		"empty":                     {},
		"continue":                  {Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}},
		"empty common response":     {Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}},
		"request headers":           {Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: common}}},
		"response headers, mode":    {Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: common}}, ModeOverride: mode},
		"empty mode override":       {Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}, ModeOverride: &filterv3.ProcessingMode{}},
		"request body, metadata":    {Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: common}}, DynamicMetadata: md},
		"response body, metadata":   {Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mutation}}}, DynamicMetadata: md},
		"clear body false":          {Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{}}}}}},
		"clear body":                {Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}}}}},
		"empty body replacement":    {Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{}}}}}},
		"no body mutation kind":     {Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{}}}}},
		"request trailers":          {Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}},
		"response trailers":         {Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{HeaderMutation: mutation}}},
		"immediate":                 {Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests}, Headers: mutation, Body: []byte(`{"error":{}}`), GrpcStatus: &extprocv3.GrpcStatus{Status: 8}, Details: "llm_proxy_rate_limited"}}, DynamicMetadata: md},
		"immediate, empty status":   {Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{}}}},
		"immediate, nothing set":    {Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{}}},
		"metadata, nothing else":    {DynamicMetadata: md},
		"a negative enum, as sent":  {Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{Status: -1}}}},
		"a unicode header and name": {Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-ü", Value: "✓"}}}, RemoveHeaders: []string{"ß"}}}}}},
	}
	c := newReplyCodec()
	for name, resp := range cases {
		t.Run(name, func(t *testing.T) {
			require.True(t, handEncodable(resp), "encoded by hand")
			data, err := c.Marshal(resp)
			require.NoError(t, err)
			wire := data.Materialize()
			data.Free()
			if resp.DynamicMetadata == nil {
				want, err := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
				require.NoError(t, err)
				require.Equal(t, string(want), string(wire), "protobuf-go's bytes")
			}
			var got extprocv3.ProcessingResponse
			require.NoError(t, proto.Unmarshal(wire, &got))
			sameMessage(t, resp, &got)
		})
	}
}

// TestReplyCodecLeavesTheRestToProtobuf: replies with fields the hand
// encoder does not write, or strings protobuf refuses, get protobuf-go's
// answer.
func TestReplyCodecLeavesTheRestToProtobuf(t *testing.T) {
	badKey := &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-\xff"}}}}
	for _, tc := range []struct {
		name    string
		resp    *extprocv3.ProcessingResponse
		wantErr bool
	}{
		{"message timeout", &extprocv3.ProcessingResponse{OverrideMessageTimeout: durationpb.New(5e9)}, false},
		{"deprecated append", &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "a"}, Append: wrapperspb.Bool(true)}}}}}}}, false},
		{"trailers in a common response", &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{Trailers: &corev3.HeaderMap{}}}}}, false},
		{"streamed body response", &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: []byte("x")}}}}}}}, false},
		{"a oneof wrapper around nothing", &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{}}, false},
		{"a key that is not UTF-8", &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: badKey}}}}, true},
		{"details that are not UTF-8", &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{Details: "\xc3"}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.False(t, handEncodable(tc.resp))
			data, err := newReplyCodec().Marshal(tc.resp)
			_, wantErr := proto.Marshal(tc.resp)
			require.Equal(t, tc.wantErr, wantErr != nil, "protobuf: %v", wantErr)
			require.Equal(t, wantErr != nil, err != nil, "the codec answers as protobuf does: %v", err)
			if err != nil {
				return
			}
			wire := data.Materialize()
			data.Free()
			var got extprocv3.ProcessingResponse
			require.NoError(t, proto.Unmarshal(wire, &got))
			sameMessage(t, tc.resp, &got)
		})
	}
}

func TestMetadataStringsAreUTF8(t *testing.T) {
	var f mdFields
	f.str("user", "caf\xe9")
	f.str("model", "gpt-4o")
	md := f.Struct("llm_proxy")
	require.Equal(t, "caf\uFFFD", md.Fields["llm_proxy"].GetStructValue().Fields["user"].GetStringValue())
	_, err := proto.Marshal(md)
	require.NoError(t, err, "a reply protobuf (and Envoy) accepts")
}

// TestReplyCodecWritesMetadataFields: fields sent as an outgoing reply
// reach the wire as the Struct mdFields.Struct builds, with a key set twice
// holding its last value, by hand and through protobuf-go alike.
func TestReplyCodecWritesMetadataFields(t *testing.T) {
	var f mdFields
	f.str("provider", "openai")
	f.str("empty", "")
	f.num("estimated_input_tokens", 412)
	f.num("zero", 0)
	f.boolean("stream", true)
	f.boolean("cached", false)
	f.value("nested", structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("a"), structpb.NewNullValue()}}))
	f.str("model", "gpt-4o")
	f.str("model", "gpt-4o-2024-08-06")
	require.Len(t, f, 8)
	body := &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}
	for name, resp := range map[string]*extprocv3.ProcessingResponse{
		"by hand":          {Response: body},
		"through protobuf": {Response: body, OverrideMessageTimeout: durationpb.New(5e9)},
	} {
		t.Run(name, func(t *testing.T) {
			data, err := newReplyCodec().Marshal(&outgoing{resp: resp, ns: "llm_proxy", fields: f})
			require.NoError(t, err)
			wire := data.Materialize()
			data.Free()
			var got extprocv3.ProcessingResponse
			require.NoError(t, proto.Unmarshal(wire, &got))
			want := proto.Clone(resp).(*extprocv3.ProcessingResponse)
			want.DynamicMetadata = f.Struct("llm_proxy")
			sameMessage(t, want, &got)
			require.Nil(t, resp.DynamicMetadata, "the reply is left as it was")
			require.Equal(t, "gpt-4o-2024-08-06", got.DynamicMetadata.Fields["llm_proxy"].GetStructValue().Fields["model"].GetStringValue())
		})
	}
}

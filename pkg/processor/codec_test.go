package processor

import (
	"math"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
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

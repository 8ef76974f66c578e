package processor

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func rawHeaders(kv ...string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return hm
}

// envoyMessages are requests of the shapes Envoy sends, each read by
// decodeRequest itself.
func envoyMessages(t testing.TB) map[string]*extprocv3.ProcessingRequest {
	attrs, err := structpb.NewStruct(map[string]any{"xds.upstream_host_metadata": map[string]any{"target": "openai:gpt-4o"}})
	require.NoError(t, err)
	md, err := structpb.NewStruct(map[string]any{"provider": "openai", "estimated_input_tokens": 412.0, "stream": true})
	require.NoError(t, err)
	return map[string]*extprocv3.ProcessingRequest{
		"request headers": {
			Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: rawHeaders(
				":authority", "gw.example.com", ":path", "/openai/v1/chat/completions", ":method", "POST",
				"authorization", "Bearer sk-test", "x-empty", "", "x-utf8", "naïve café")}},
			ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_BUFFERED,
				ResponseBodyMode: filterv3.ProcessingMode_STREAMED, SendBodyWithoutWaitingForHeaderResponse: true},
		},
		"headers in value, end of stream": {Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":method", Value: "GET"}, {Key: "k"}}}, EndOfStream: true}}},
		"no headers": {Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{}}},
		"request body": {Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
			Body: []byte(`{"model":"gpt-4o","messages":[]}`), EndOfStream: true}}},
		"empty body chunk": {Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{}}},
		"response headers with metadata": {
			Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: rawHeaders(
				":status", "200", "content-type", "application/json")}},
			MetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"llm_proxy": md}},
		},
		"response body, observability": {
			Request:           &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte("data: {}\n\n")}},
			ObservabilityMode: true,
		},
		"upstream attributes": {
			Request:    &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: rawHeaders(":path", "/v1")}},
			Attributes: map[string]*structpb.Struct{"envoy.filters.http.ext_proc": attrs, "empty": {}},
		},
		"request trailers": {Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{
			Trailers: rawHeaders("grpc-status", "0")}}},
		"response trailers, none": {Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}},
	}
}

// decodeBoth decodes b with the codec and with proto.Unmarshal.
func decodeBoth(b []byte) (got, want *extprocv3.ProcessingRequest, gotErr, wantErr error) {
	got, want = &extprocv3.ProcessingRequest{}, &extprocv3.ProcessingRequest{}
	buf := append([]byte(nil), b...)
	gotErr = newReplyCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(buf)}, got)
	wantErr = proto.Unmarshal(b, want)
	return got, want, gotErr, wantErr
}

func TestDecodeRequestReadsEnvoysMessages(t *testing.T) {
	for name, m := range envoyMessages(t) {
		t.Run(name, func(t *testing.T) {
			b, err := proto.Marshal(m)
			require.NoError(t, err)
			var fast extprocv3.ProcessingRequest
			require.True(t, decodeRequest(append([]byte(nil), b...), &fast), "read by hand")
			require.True(t, proto.Equal(m, &fast), "got %v", &fast)
			got, want, gotErr, wantErr := decodeBoth(b)
			require.NoError(t, gotErr)
			require.NoError(t, wantErr)
			require.True(t, proto.Equal(want, got))
		})
	}
}

func TestDecodeRequestLeavesTheRestToProtobuf(t *testing.T) {
	hdr := func(b []byte) []byte { // a request_headers field around b
		return protowire.AppendBytes(protowire.AppendTag(nil, fieldReqRequestHeaders, protowire.BytesType), b)
	}
	headerValue := func(key, value []byte) []byte { // HttpHeaders{headers: {headers: [{key, value}]}}
		hv := protowire.AppendBytes(protowire.AppendTag(nil, fieldHeaderKey, protowire.BytesType), key)
		hv = protowire.AppendBytes(protowire.AppendTag(hv, fieldHeaderValue, protowire.BytesType), value)
		hm := protowire.AppendBytes(protowire.AppendTag(nil, fieldHeaderMapHeaders, protowire.BytesType), hv)
		return protowire.AppendBytes(protowire.AppendTag(nil, fieldHeadersHeaders, protowire.BytesType), hm)
	}
	body, err := proto.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte("ab")}}})
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		b       []byte
		wantErr bool
	}{
		{"unknown field", protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1), false},
		{"deprecated HttpHeaders.attributes", hdr(protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), nil)), false},
		{"the same message field twice (merged)", append(append([]byte(nil), body...), body...), false},
		{"headers twice in one HttpHeaders (merged)", hdr(append(headerValue([]byte("a"), []byte("1")), headerValue([]byte("b"), []byte("2"))...)), false},
		{"a body field with the wrong wire type", protowire.AppendVarint(protowire.AppendTag(nil, fieldReqRequestBody, protowire.VarintType), 1), false},
		{"a key that is not UTF-8", hdr(headerValue([]byte{0xff, 'a'}, []byte("v"))), true},
		{"a value that is not UTF-8", hdr(headerValue([]byte("k"), []byte{0xc3})), true},
		{"a truncated length", body[:len(body)-1], true},
		{"a bad tag", []byte{0x80}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fast extprocv3.ProcessingRequest
			require.False(t, decodeRequest(append([]byte(nil), tc.b...), &fast))
			got, want, gotErr, wantErr := decodeBoth(tc.b)
			require.Equal(t, tc.wantErr, wantErr != nil, "protobuf: %v", wantErr)
			require.Equal(t, wantErr != nil, gotErr != nil, "the codec answers as protobuf does: %v", gotErr)
			if wantErr == nil {
				require.True(t, proto.Equal(want, got), "got %v, want %v", got, want)
			}
		})
	}
}

func TestDecodeRequestAliasesOneCopy(t *testing.T) {
	m := envoyMessages(t)["request headers"]
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	before := append([]byte(nil), b...)
	var got extprocv3.ProcessingRequest
	require.True(t, decodeRequest(b, &got))
	require.Equal(t, before, b, "decoding does not write its input")
	raw := got.GetRequestHeaders().GetHeaders().GetHeaders()[0].RawValue
	require.Equal(t, len(raw), cap(raw), "appending to a value copies it")
	allocs := testing.AllocsPerRun(100, func() {
		var m extprocv3.ProcessingRequest
		decodeRequest(b, &m)
	})
	require.LessOrEqual(t, allocs, 6.0, "six headers: wrapper, HttpHeaders, HeaderMap, two arrays, protocol config")
}

// FuzzDecodeRequest checks the codec against protobuf-go on any input:
// the same error or none, and the same message.
func FuzzDecodeRequest(f *testing.F) {
	for _, m := range envoyMessages(f) {
		b, err := proto.Marshal(m)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want, gotErr, wantErr := decodeBoth(b)
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("codec error %v, protobuf error %v", gotErr, wantErr)
		}
		if wantErr == nil && !proto.Equal(want, got) {
			t.Fatalf("codec %v, protobuf %v", got, want)
		}
	})
}

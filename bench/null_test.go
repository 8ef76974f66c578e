package bench

import (
	"context"
	"errors"
	"google.golang.org/protobuf/types/known/structpb"
	"io"
	"strconv"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

// exchange plays msgs on a fresh stream and returns the replies, and
// whether the server ended the stream after the last one.
func exchange(t *testing.T, d *driver, msgs []*extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := d.client.Process(ctx)
	require.NoError(t, err)
	var out []*extprocv3.ProcessingResponse
	for _, m := range msgs {
		require.NoError(t, stream.Send(m))
		resp, err := stream.Recv()
		require.NoError(t, err)
		out = append(out, resp)
	}
	require.NoError(t, stream.CloseSend())
	_, err = stream.Recv()
	return out, errors.Is(err, io.EOF)
}

// withResponseHeaders returns the benchmark lifecycle with its response
// headers replaced by kv (and no response body when eos).
func withResponseHeaders(eos bool, kv ...string) []*extprocv3.ProcessingRequest {
	msgs := lifecycle()
	msgs[2] = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: HeaderMap(kv...), EndOfStream: eos}}}
	if eos {
		return msgs[:3]
	}
	return msgs
}

// TestNullMirrorsProcessor checks that Envoy exchanges the same messages
// with Null as with our server: same reply types, same response-body
// mode_override and content-length removal, same end of stream.
func TestNullMirrorsProcessor(t *testing.T) {
	big := strconv.Itoa(2 << 20)
	tests := []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
	}{
		{name: "benchmark lifecycle", msgs: lifecycle()},
		{name: "json at the buffer limit", msgs: withResponseHeaders(false,
			":status", "200", "content-type", "application/json", "content-length", strconv.Itoa(1<<20))},
		{name: "json over the buffer limit", msgs: withResponseHeaders(false,
			":status", "200", "content-type", "application/json", "content-length", big)},
		{name: "json of unknown length", msgs: withResponseHeaders(false,
			":status", "200", "content-type", "application/json")},
		{name: "error json", msgs: withResponseHeaders(false,
			":status", "429", "content-type", "application/json; charset=utf-8", "content-length", "180")},
		{name: "event stream with length", msgs: withResponseHeaders(false,
			":status", "200", "content-type", "text/event-stream; charset=utf-8", "content-length", "2048")},
		{name: "event stream", msgs: withResponseHeaders(false,
			":status", "200", "content-type", "text/event-stream")},
		{name: "headers only response", msgs: withResponseHeaders(true,
			":status", "204")},
	}
	null, ours := startInProcess(t, "null"), startInProcess(t, "extproc")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, wantEnd := exchange(t, ours, tc.msgs)
			got, gotEnd := exchange(t, null, tc.msgs)
			require.Equal(t, wantEnd, gotEnd, "end of stream")
			require.True(t, gotEnd, "the server ends the stream after the last reply")
			require.Len(t, got, len(want))
			for i := range want {
				require.True(t, matches(tc.msgs[i], got[i]), "reply %d type %T", i, got[i].GetResponse())
				require.True(t, matches(tc.msgs[i], want[i]), "reply %d type %T", i, want[i].GetResponse())
				require.True(t, proto.Equal(want[i].GetModeOverride(), got[i].GetModeOverride()),
					"reply %d mode_override: ours %v, null %v", i, want[i].GetModeOverride(), got[i].GetModeOverride())
			}
			rh := 2
			require.True(t, proto.Equal(want[rh].GetResponseHeaders(), got[rh].GetResponseHeaders()),
				"response headers reply: ours %v, null %v", want[rh].GetResponseHeaders(), got[rh].GetResponseHeaders())
		})
	}
}

func TestNullReply(t *testing.T) {
	tests := []struct {
		name     string
		req      *extprocv3.ProcessingRequest
		wantNone bool
		wantLast bool
		check    func(*extprocv3.ProcessingResponse) bool
	}{
		{
			name: "request trailers",
			req: &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{
				RequestTrailers: &extprocv3.HttpTrailers{}}},
			check: func(r *extprocv3.ProcessingResponse) bool { return r.GetRequestTrailers() != nil },
		},
		{
			name: "response trailers",
			req: &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{
				ResponseTrailers: &extprocv3.HttpTrailers{}}},
			check: func(r *extprocv3.ProcessingResponse) bool { return r.GetResponseTrailers() != nil },
		},
		{
			name: "response body chunk",
			req: &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
				ResponseBody: &extprocv3.HttpBody{Body: []byte("data: {}\n\n")}}},
			check: func(r *extprocv3.ProcessingResponse) bool { return r.GetResponseBody() != nil },
		},
		{
			name: "last response body chunk",
			req: &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
				ResponseBody: &extprocv3.HttpBody{EndOfStream: true}}},
			wantLast: true,
			check:    func(r *extprocv3.ProcessingResponse) bool { return r.GetResponseBody() != nil },
		},
		{
			name: "observability mode",
			req: &extprocv3.ProcessingRequest{ObservabilityMode: true, Request: &extprocv3.ProcessingRequest_RequestHeaders{
				RequestHeaders: &extprocv3.HttpHeaders{}}},
			wantNone: true,
		},
		{name: "empty message", req: &extprocv3.ProcessingRequest{}, wantNone: true},
		{name: "nil message", req: nil, wantNone: true},
		{
			name: "invalid content-length",
			req: &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
				ResponseHeaders: &extprocv3.HttpHeaders{Headers: HeaderMap(
					":status", "200", "content-type", "application/json", "content-length", "-5")}}},
			// An invalid length is an unknown one: JSON of unknown length
			// is held with BUFFERED_PARTIAL, as pkg/processor does.
			check: func(r *extprocv3.ProcessingResponse) bool {
				return r.GetModeOverride().GetResponseBodyMode().String() == "BUFFERED_PARTIAL"
			},
		},
		{
			name: "custom buffer limit",
			req: &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
				ResponseHeaders: &extprocv3.HttpHeaders{Headers: HeaderMap(
					":status", "200", "content-type", "application/json", "content-length", "101")}}},
			check: func(r *extprocv3.ProcessingResponse) bool {
				return r.GetModeOverride().GetResponseBodyMode().String() == "STREAMED"
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &Null{BufferLimit: 100}
			resp, last := n.reply(tc.req)
			require.Equal(t, tc.wantLast, last)
			if tc.wantNone {
				require.Nil(t, resp)
				return
			}
			require.NotNil(t, resp)
			require.True(t, tc.check(resp), "reply %v", resp)
		})
	}
}

func TestDriver(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			d := startInProcess(t, kind)
			for range 3 {
				_, err := d.run(t.Context())
				require.NoError(t, err)
			}
		})
	}
}

func TestChild(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			c := startChild(t, kind)
			before, err := c.cpu()
			require.NoError(t, err)
			for range 20 {
				_, err := c.run(t.Context())
				require.NoError(t, err)
			}
			after, err := c.cpu()
			require.NoError(t, err)
			require.Greater(t, after, before, "the child's CPU time grows while it serves")
		})
	}
}

func TestQuantile(t *testing.T) {
	tests := []struct {
		name string
		in   []int
		q    float64
		want int
	}{
		{name: "empty", in: nil, q: 0.5, want: 0},
		{name: "one", in: []int{7}, q: 0.99, want: 7},
		{name: "median odd", in: []int{5, 1, 3}, q: 0.5, want: 3},
		{name: "median even", in: []int{4, 1, 3, 2}, q: 0.5, want: 2},
		{name: "p99 of 100", in: seq(100), q: 0.99, want: 99},
		{name: "p99 of 1000", in: seq(1000), q: 0.99, want: 990},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lat := make([]time.Duration, len(tc.in))
			for i, v := range tc.in {
				lat[i] = time.Duration(v)
			}
			require.Equal(t, time.Duration(tc.want), quantile(lat, tc.q))
		})
	}
}

// seq returns n, n-1, ..., 1.
func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = n - i
	}
	return out
}

func TestPlayConcurrent(t *testing.T) {
	d := startInProcess(t, "null")
	lat := make([]time.Duration, 40)
	require.NoError(t, play(t.Context(), d, len(lat), conc, lat))
	for i, l := range lat {
		require.Positive(t, l, "lifecycle %d has a latency", i)
	}
}

// TestExtprocReadsLifecycle checks that the benchmark exercises our server's
// full path: the provider is resolved, the request body read and the usage
// found in the response body.
func TestExtprocReadsLifecycle(t *testing.T) {
	d := startInProcess(t, "extproc")
	got, ended := exchange(t, d, lifecycle())
	require.True(t, ended)
	require.Len(t, got, 4)
	require.Equal(t, []string{"accept-encoding"},
		got[0].GetRequestHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders())
	// Envoy merges the namespace across replies: admission, then usage.
	md := map[string]*structpb.Value{}
	for _, r := range got {
		for k, v := range r.GetDynamicMetadata().GetFields()["llm_proxy"].GetStructValue().GetFields() {
			md[k] = v
		}
	}
	require.NotEmpty(t, md, "metadata in the llm_proxy namespace")
	require.Equal(t, "openai", md["provider"].GetStringValue())
	require.Equal(t, "gpt-4o-mini-2024-07-18", md["model"].GetStringValue())
	require.Equal(t, "customer-7f3a9c", md["user"].GetStringValue())
	require.Positive(t, md["estimated_input_tokens"].GetNumberValue())
	require.Equal(t, 412.0, md["input_tokens"].GetNumberValue())
	require.Equal(t, 151.0, md["output_tokens"].GetNumberValue())
	require.Equal(t, 563.0, md["total_tokens"].GetNumberValue())
	require.Equal(t, "stop", md["finish_reason"].GetStringValue())
}

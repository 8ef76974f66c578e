package envoytest

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
)

func TestMessageSequencePerMode(t *testing.T) {
	chunked := func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 3; i++ {
			_, _ = fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
		}
	}
	tests := []struct {
		name     string
		mode     *extprocv3.ProcessingMode
		method   string
		body     string
		upstream func(int, http.ResponseWriter, *http.Request)
		want     []string
	}{
		{
			name: "GET headers only", mode: mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_NONE),
			method: "GET", upstream: okUpstream(`{"ok":true}`),
			want: []string{"request_headers(eos)", "response_headers"},
		},
		{
			name: "GET with body modes sends no body message", mode: mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE),
			method: "GET", upstream: okUpstream(`{}`),
			want: []string{"request_headers(eos)", "response_headers"},
		},
		{
			name: "POST buffered request, buffered response", mode: mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_BUFFERED),
			method: "POST", body: `{"model":"x"}`, upstream: okUpstream(`{"id":1}`),
			want: []string{"request_headers", "request_body(eos)", "response_headers", "response_body(eos)"},
		},
		{
			name: "header SKIP body BUFFERED", mode: &extprocv3.ProcessingMode{
				RequestHeaderMode: extprocv3.ProcessingMode_SKIP, RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
				ResponseHeaderMode: extprocv3.ProcessingMode_SKIP},
			method: "POST", body: `abc`, upstream: okUpstream(`{}`),
			want: []string{"request_body(eos)"},
		},
		{
			name: "streamed response chunks, final eos", mode: mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_STREAMED),
			method: "POST", body: `{}`, upstream: chunked,
			want: []string{"request_headers", "response_headers", "response_body", "response_body", "response_body", "response_body(eos)"},
		},
		{
			name: "small streamed request arrives whole: one body message", mode: mode(extprocv3.ProcessingMode_STREAMED, extprocv3.ProcessingMode_NONE),
			method: "POST", body: `{"a":1}`, upstream: okUpstream(`{}`),
			want: []string{"request_headers", "request_body(eos)", "response_headers"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, nil))
			up := startUpstream(t, tc.upstream)
			f, s := startFront(t, basicConfig(addr, up, tc.mode))
			resp, _, err := do(t, tc.method, s.URL+"/v1/x", tc.body, nil)
			require.NoError(t, err)
			require.Equal(t, 200, resp.StatusCode)
			waitLog(t, f, 1)
			got := rec.kinds()
			if tc.name == "streamed response chunks, final eos" {
				// Chunk boundaries depend on the transport; the stream must end with eos.
				require.GreaterOrEqual(t, len(got), 3)
				require.Equal(t, []string{"request_headers", "response_headers"}, got[:2])
				require.Equal(t, "response_body(eos)", got[len(got)-1])
				var all string
				for _, q := range rec.all()[2:] {
					all += string(q.GetResponseBody().GetBody())
				}
				require.Equal(t, "data: 0\n\ndata: 1\n\ndata: 2\n\n", all)
			} else {
				require.Equal(t, tc.want, got)
			}
			require.Empty(t, f.Violations())
		})
	}
}

func TestRequestHeadersAsEnvoyBuildsThem(t *testing.T) {
	rec := &recorder{}
	_, addr := startProc(t, respond(rec, nil))
	up := startUpstream(t, okUpstream(`{}`))
	cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE))
	cfg.UseRemoteAddress = true
	cfg.ExtProc.RequestAttributes = []string{"request.path", "request.method", "xds.route_name", "request.bogus"}
	cfg.ExtProc.ResponseAttributes = []string{"response.code"}
	cfg.ExtProc.ForwardingNamespaces = []string{"llm_proxy"}
	f, s := startFront(t, cfg)

	req, err := http.NewRequest("POST", s.URL+"/openai/v1/chat?x=1", strings.NewReader(`{"m":1}`))
	require.NoError(t, err)
	req.Header.Add("X-Multi", "a")
	req.Header.Add("X-Multi", "b")
	req.Header.Set("X-Forwarded-For", "10.0.0.9")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	waitLog(t, f, 1)

	msgs := rec.all()
	require.Len(t, msgs, 3)
	hm := msgs[0].GetRequestHeaders().GetHeaders()
	var multi []string
	for _, h := range hm.GetHeaders() {
		require.Equal(t, strings.ToLower(h.GetKey()), h.GetKey(), "lower-case keys")
		require.Empty(t, h.GetValue(), "values only in raw_value")
		if h.GetKey() == "x-multi" {
			multi = append(multi, string(h.GetRawValue()))
		}
	}
	require.Equal(t, []string{"a", "b"}, multi)
	for k, want := range map[string]string{":method": "POST", ":path": "/openai/v1/chat?x=1", ":scheme": "http",
		":authority": strings.TrimPrefix(s.URL, "http://"), "x-forwarded-proto": "http", "x-forwarded-for": "10.0.0.9,127.0.0.1",
		"content-length": "7"} {
		got, ok := headerOf(hm, k)
		require.True(t, ok, k)
		require.Equal(t, want, got, k)
	}
	rid, ok := headerOf(hm, "x-request-id")
	require.True(t, ok)
	require.Len(t, rid, 36)

	// protocol_config only on the first message; metadata_context on all.
	require.NotNil(t, msgs[0].GetProtocolConfig())
	require.Equal(t, extprocv3.ProcessingMode_BUFFERED, msgs[0].GetProtocolConfig().GetRequestBodyMode())
	for i, m := range msgs {
		require.NotNil(t, m.GetMetadataContext(), "message %d", i)
		if i > 0 {
			require.Nil(t, m.GetProtocolConfig())
		}
	}
	// attributes once per direction.
	attrs := msgs[0].GetAttributes()["envoy.filters.http.ext_proc"].AsMap()
	require.Equal(t, map[string]any{"request.path": "/openai/v1/chat?x=1", "request.method": "POST", "xds.route_name": "all"}, attrs)
	require.Nil(t, msgs[1].GetAttributes())
	require.Equal(t, map[string]any{"response.code": float64(200)}, msgs[2].GetAttributes()["envoy.filters.http.ext_proc"].AsMap())
	st, ok := headerOf(msgs[2].GetResponseHeaders().GetHeaders(), ":status")
	require.True(t, ok)
	require.Equal(t, "200", st)
	_, ok = headerOf(msgs[2].GetResponseHeaders().GetHeaders(), "x-envoy-upstream-service-time")
	require.True(t, ok)
	// The upstream saw the request id.
	require.Equal(t, rid, up.requests()[0].Header.Get("X-Request-Id"))
}

func TestStreamedResponsePipelinedAndReinjectedInOrder(t *testing.T) {
	const chunks = 4
	release := make(chan struct{})
	up := startUpstream(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < chunks; i++ {
			_, _ = fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			if i == chunks-1 {
				<-release // keep the last chunk apart
			}
		}
	})
	// The server reads every body chunk before answering any: only possible
	// when Envoy pipelines chunks without waiting for replies.
	gotAll := make(chan int, 1)
	fn := func(st extprocsvc.ExternalProcessor_ProcessServer) error {
		var pendingBodies []*extprocsvc.ProcessingRequest
		for {
			req, err := st.Recv()
			if err != nil {
				return nil
			}
			if b := req.GetResponseBody(); b != nil {
				pendingBodies = append(pendingBodies, req)
				if strings.Contains(string(b.GetBody()), fmt.Sprintf("data: %d", chunks-1)) || b.GetEndOfStream() {
					if len(pendingBodies) >= 2 {
						gotAll <- len(pendingBodies)
					}
					for _, p := range pendingBodies {
						up := strings.ToUpper(string(p.GetResponseBody().GetBody()))
						if err := st.Send(withCommon(p, &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(up)}}})); err != nil {
							return nil
						}
					}
					pendingBodies = nil
				}
				continue
			}
			if err := st.Send(cont(req)); err != nil {
				return nil
			}
		}
	}
	_, addr := startProc(t, fn)
	f, s := startFront(t, basicConfig(addr, up, mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_STREAMED)))

	resp, err := http.Get(s.URL + "/sse")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Empty(t, resp.Header.Get("Content-Length"))
	br := bufio.NewReader(resp.Body)
	close(release)
	body, err := io.ReadAll(br)
	require.NoError(t, err)
	require.Equal(t, "DATA: 0\n\nDATA: 1\n\nDATA: 2\n\nDATA: 3\n\n", string(body))
	select {
	case n := <-gotAll:
		require.GreaterOrEqual(t, n, 2)
	default:
	}
	waitLog(t, f, 1)
	require.Empty(t, f.Violations())
}

package envoytest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"github.com/stretchr/testify/require"
)

// trailerUpstream answers a JSON body in two flushed writes followed by the
// trailer x-usage: 7, over HTTP/1.1 (chunked) or h2c. It records the
// protocol of each request.
func trailerUpstream(t *testing.T, h2 bool) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var protos []string
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, r.Proto)
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Trailer", "x-usage")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, `{"a":`)
		http.NewResponseController(w).Flush()
		_, _ = io.WriteString(w, `1}`)
		w.Header().Set("x-usage", "7")
	}))
	if h2 {
		p := new(http.Protocols)
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		hs.Config.Protocols = p
	}
	hs.Start()
	t.Cleanup(hs.Close)
	return hs, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), protos...)
	}
}

// Response trailers as Envoy delivers them to ext_proc: the HTTP/1 codec
// drops them unless enable_trailers; with trailers reaching the filter and
// response_trailer_mode SKIP, the last body message has end_of_stream=false
// and no trailers message follows (ext_proc.cc onTrailers: BUFFERED and
// BUFFERED_PARTIAL send what they hold with end_stream false; STREAMED has
// already sent every chunk with end_stream false); with SEND a
// response_trailers message follows.
func TestResponseTrailersReachExtProcAsEnvoySendsThem(t *testing.T) {
	tests := []struct {
		name        string
		proto       *ClusterProtocol
		body        extprocv3.ProcessingMode_BodySendMode
		sendTrailer bool
		wantMsgs    []string
		wantTrailer string
		wantProto   string
	}{
		{name: "HTTP/1 without enable_trailers: dropped, body ends the stream", body: extprocv3.ProcessingMode_STREAMED,
			wantMsgs: []string{"request_headers(eos)", "response_headers", "response_body", "response_body(eos)"}, wantProto: "HTTP/1.1"},
		{name: "HTTP/1 enable_trailers, STREAMED, trailers SKIP", proto: &ClusterProtocol{EnableTrailers: true}, body: extprocv3.ProcessingMode_STREAMED,
			wantMsgs: []string{"request_headers(eos)", "response_headers", "response_body", "response_body"}, wantTrailer: "7", wantProto: "HTTP/1.1"},
		{name: "HTTP/2, BUFFERED, trailers SKIP", proto: &ClusterProtocol{HTTP2: true}, body: extprocv3.ProcessingMode_BUFFERED,
			wantMsgs: []string{"request_headers(eos)", "response_headers", "response_body"}, wantTrailer: "7", wantProto: "HTTP/2.0"},
		{name: "HTTP/2, BUFFERED_PARTIAL, trailers SKIP", proto: &ClusterProtocol{HTTP2: true}, body: extprocv3.ProcessingMode_BUFFERED_PARTIAL,
			wantMsgs: []string{"request_headers(eos)", "response_headers", "response_body"}, wantTrailer: "7", wantProto: "HTTP/2.0"},
		{name: "HTTP/2, BUFFERED, trailers SEND", proto: &ClusterProtocol{HTTP2: true}, body: extprocv3.ProcessingMode_BUFFERED, sendTrailer: true,
			wantMsgs: []string{"request_headers(eos)", "response_headers", "response_body", "response_trailers"}, wantTrailer: "7", wantProto: "HTTP/2.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, nil))
			hs, protos := trailerUpstream(t, tc.proto != nil && tc.proto.HTTP2)
			m := mode(extprocv3.ProcessingMode_NONE, tc.body)
			if tc.sendTrailer {
				m.ResponseTrailerMode = extprocv3.ProcessingMode_SEND
			}
			cfg := Config{
				ExtProc:  &ExtProcConfig{Addr: addr, ProcessingMode: m},
				Routes:   []Route{{Name: "all", Prefix: "/", Cluster: "up"}},
				Clusters: map[string]string{"up": hs.URL},
			}
			if tc.proto != nil {
				cfg.ClusterProtocols = map[string]ClusterProtocol{"up": *tc.proto}
			}
			cfg.EnableTrailers = true // the HCM passes them on to the HTTP/1.1 client
			cfg.OnViolation = Strict(t)
			f, s := startFront(t, cfg)
			resp, err := http.Get(s.URL + "/x")
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			_ = resp.Body.Close()
			require.Equal(t, `{"a":1}`, string(b))
			require.Equal(t, tc.wantTrailer, resp.Trailer.Get("x-usage"))
			waitLog(t, f, 1)
			require.Equal(t, []string{tc.wantProto}, protos())
			got := rec.kinds()
			if tc.body == extprocv3.ProcessingMode_STREAMED {
				// Chunk boundaries are the transport's: compare the shape.
				require.GreaterOrEqual(t, len(got), 3)
				require.Equal(t, tc.wantMsgs[:2], got[:2])
				last := tc.wantMsgs[len(tc.wantMsgs)-1]
				for _, k := range got[2 : len(got)-1] {
					require.Equal(t, "response_body", k)
				}
				require.Equal(t, last, got[len(got)-1])
				return
			}
			require.Equal(t, tc.wantMsgs, got)
		})
	}
}

// The HCM's HTTP/1 codec drops trailers in both directions unless its
// http_protocol_options.enable_trailers: ext_proc never sees request
// trailers (the body ends the stream) and the client gets no response
// trailers.
func TestDownstreamHTTP1TrailersNeedEnableTrailers(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		rec := &recorder{}
		_, addr := startProc(t, respond(rec, nil))
		hs, _ := trailerUpstream(t, true)
		m := mode(extprocv3.ProcessingMode_STREAMED, extprocv3.ProcessingMode_NONE)
		m.RequestTrailerMode = extprocv3.ProcessingMode_SEND
		cfg := Config{
			ExtProc:          &ExtProcConfig{Addr: addr, ProcessingMode: m},
			Routes:           []Route{{Name: "all", Prefix: "/", Cluster: "up"}},
			Clusters:         map[string]string{"up": hs.URL},
			ClusterProtocols: map[string]ClusterProtocol{"up": {HTTP2: true}},
			EnableTrailers:   enabled,
		}
		f, s := startFront(t, cfg)
		req, err := http.NewRequest(http.MethodPost, s.URL+"/x", io.NopCloser(strings.NewReader("abc")))
		require.NoError(t, err)
		req.ContentLength = -1
		req.Trailer = http.Header{"X-Req-Sum": {"1"}}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, err = io.ReadAll(resp.Body)
		require.NoError(t, err)
		_ = resp.Body.Close()
		waitLog(t, f, 1)
		kinds := rec.kinds()
		if enabled {
			require.Equal(t, "7", resp.Trailer.Get("x-usage"))
			require.Contains(t, kinds, "request_trailers")
			continue
		}
		require.Empty(t, resp.Trailer.Get("x-usage"))
		require.NotContains(t, kinds, "request_trailers")
		require.Contains(t, kinds, "request_body(eos)")
	}
}

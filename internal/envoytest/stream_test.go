package envoytest

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStreamClose(t *testing.T) {
	tests := []struct {
		name     string
		graceful bool
		keep     bool
		wantEnd  func(error) bool
	}{
		{name: "reset after the last reply (1.37 close optimisation)", wantEnd: func(err error) bool { return status.Code(err) == codes.Canceled }},
		{name: "graceful close: server sees EOF", graceful: true, wantEnd: func(err error) bool { return errors.Is(err, io.EOF) }},
		{name: "kept until the HTTP stream ends", keep: true, wantEnd: func(err error) bool { return status.Code(err) == codes.Canceled }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, nil))
			up := startUpstream(t, okUpstream(`{}`))
			cfg := basicConfig(addr, up, nil)
			cfg.ExtProc.GracefulClose = tc.graceful
			cfg.ExtProc.KeepStreamUntilEnd = tc.keep
			f, s := startFront(t, cfg)
			_, _, err := do(t, "GET", s.URL+"/x", "", nil)
			require.NoError(t, err)
			waitLog(t, f, 1)
			require.Eventually(t, func() bool { return len(rec.endErrs()) == 1 }, 30*time.Second, 5*time.Millisecond)
			require.True(t, tc.wantEnd(rec.endErrs()[0]), "%v", rec.endErrs()[0])
			require.Equal(t, []string{"request_headers(eos)", "response_headers"}, rec.kinds())
		})
	}
}

func TestHeaderMutationInStreamedBodyIgnored(t *testing.T) {
	_, addr := startProc(t, respond(&recorder{}, func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if r.GetResponseBody() != nil {
			return withCommon(r, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{setHeader("x-late", "1")}}})
		}
		return nil
	}))
	cfg := basicConfig(addr, &upstream{}, mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_STREAMED))
	// The body arrives after the headers were released (had it come in
	// whole while response_headers was pending, Envoy would hold the headers
	// for a BufferedBodyCallback message and honour the mutation).
	up := startUpstream(t, gatedOK(afterEvent(&cfg, isResponseHeadersReply), `{"a":1}`))
	cfg.Clusters["up"] = up.URL
	f, s := startFront(t, cfg)
	resp, body, err := do(t, "GET", s.URL+"/x", "", nil)
	require.NoError(t, err)
	require.Equal(t, `{"a":1}`, body)
	require.Empty(t, resp.Header.Get("X-Late"))
	require.Equal(t, int64(-1), resp.ContentLength, "STREAMED removes content-length")
	waitLog(t, f, 1)
	require.Contains(t, violationKinds(f), KindIgnoredField)
}

func TestHeaderMutationInBufferedBodyApplies(t *testing.T) {
	_, addr := startProc(t, respond(&recorder{}, func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if r.GetResponseBody() != nil {
			return withCommon(r, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{setHeader("x-usage", "12")}}})
		}
		return nil
	}))
	up := startUpstream(t, okUpstream(`{"a":1}`))
	f, s := startFront(t, basicConfig(addr, up, mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_BUFFERED)))
	resp, body, err := do(t, "GET", s.URL+"/x", "", nil)
	require.NoError(t, err)
	require.Equal(t, `{"a":1}`, body)
	require.Equal(t, "12", resp.Header.Get("X-Usage"))
	require.Equal(t, int64(7), resp.ContentLength)
	waitLog(t, f, 1)
	require.Empty(t, f.Violations())
}

func TestTrailers(t *testing.T) {
	rec := &recorder{}
	_, addr := startProc(t, respond(rec, func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if r.GetResponseTrailers() != nil {
			return withCommon(r, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{setHeader("x-checksum", "ok")}}})
		}
		return nil
	}))
	up := startUpstream(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Trailer", "X-Upstream-Trailer")
		_, _ = io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		w.Header().Set("X-Upstream-Trailer", "v")
	})
	m := mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_STREAMED)
	m.ResponseTrailerMode = extprocv3.ProcessingMode_SEND
	cfg := basicConfig(addr, up, m)
	// Envoy's HTTP/1 codec drops response trailers unless enable_trailers.
	cfg.ClusterProtocols = map[string]ClusterProtocol{"up": {EnableTrailers: true}}
	cfg.EnableTrailers = true // and to the HTTP/1.1 client
	f, s := startFront(t, cfg)
	resp, err := http.Get(s.URL + "/x")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "body", string(b))
	require.Equal(t, "ok", resp.Trailer.Get("X-Checksum"))
	require.Equal(t, "v", resp.Trailer.Get("X-Upstream-Trailer"))
	waitLog(t, f, 1)
	kinds := rec.kinds()
	require.Equal(t, "response_trailers", kinds[len(kinds)-1])
	for _, k := range kinds {
		require.False(t, strings.HasPrefix(k, "response_body(eos)"), "trailers end the stream, no eos body")
	}
}

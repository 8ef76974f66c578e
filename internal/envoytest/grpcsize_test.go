package envoytest

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
)

// A BUFFERED body goes to the server as one message of its full size, as
// Envoy's gRPC client sends it: a server left at grpc-go's default 4 MiB
// receive limit fails the stream (RESOURCE_EXHAUSTED), which fail-closed
// turns into a 500.
func TestBufferedBodyIsOneMessageOverGRPCDefaultLimit(t *testing.T) {
	rec := &recorder{}
	_, addr := startProc(t, respond(rec, nil)) // grpc.NewServer(): 4 MiB receive limit
	up := startUpstream(t, okUpstream(`{}`))
	cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE))
	cfg.BufferLimit = 32 << 20
	f, s := startFront(t, cfg)
	body := strings.Repeat("x", 10<<20)
	resp, err := http.Post(s.URL+"/x", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	e := waitLog(t, f, 1)[0]
	require.Contains(t, e.Details, "ext_proc_error_gRPC_error_8{")
	require.Contains(t, e.Details, "larger_than_max")
	require.Equal(t, []string{"request_headers"}, rec.kinds(), "the 10 MiB body never reached the server")
	require.Empty(t, up.requests())
}

// Envoy's envoy_grpc client receives replies of any size unless
// max_receive_message_length is set; a 5 MiB body mutation is applied.
func TestLargeReplyAcceptedUnlessMaxReceiveMessageLength(t *testing.T) {
	big := bytes.Repeat([]byte("y"), 5<<20)
	for _, limit := range []int{0, 1 << 20} {
		rec := &recorder{}
		_, addr := startProc(t, respond(rec, func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
			if req.GetRequestBody() != nil {
				return withCommon(req, &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{
					Mutation: &extprocsvc.BodyMutation_Body{Body: big}}})
			}
			return nil
		}))
		up := startUpstream(t, okUpstream(`{}`))
		cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_STREAMED, extprocv3.ProcessingMode_NONE))
		cfg.BufferLimit = 32 << 20
		cfg.ExtProc.MaxReceiveMessageLength = limit
		f, s := startFront(t, cfg)
		resp, err := http.Post(s.URL+"/x", "application/json", strings.NewReader("small"))
		require.NoError(t, err)
		_ = resp.Body.Close()
		e := waitLog(t, f, 1)[0]
		if limit == 0 {
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Len(t, up.requests(), 1)
			require.Equal(t, len(big), len(up.requests()[0].Body))
			continue
		}
		require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
		require.Contains(t, e.Details, "ext_proc_error_gRPC_error_8{")
	}
}

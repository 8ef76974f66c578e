package envoytest

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
)

// usageServer answers like a usage-adding server: CONTINUE on headers
// (after waiting for hold, when set), and on the response body a header
// mutation x-usage: <body length> (plus extra mutations from onBody).
type usageServer struct {
	rec    *recorder
	hold   func() <-chan struct{}
	onHdr  func(*extprocsvc.ProcessingResponse)
	onBody func(*extprocsvc.CommonResponse)
}

func (u *usageServer) handler(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
	switch {
	case req.GetResponseHeaders() != nil:
		if u.hold != nil {
			select {
			case <-u.hold():
			case <-time.After(10 * time.Second): // hang guard
			}
		}
		r := cont(req)
		if u.onHdr != nil {
			u.onHdr(r)
		}
		return r
	case req.GetResponseBody() != nil:
		c := &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
			setHeader("x-usage", strconv.Itoa(len(req.GetResponseBody().GetBody())))}}}
		if u.onBody != nil {
			u.onBody(c)
		}
		return withCommon(req, c)
	}
	return nil
}

// A body that came in whole while response_headers was unanswered goes out
// as one message with end_of_stream (handleHeadersResponse,
// complete_body_available_) in every body mode, and the headers stay held
// until its reply: a header mutation there is honoured.
func TestWholeBodyDuringHeaderReplyIsOneMessageHoldingHeaders(t *testing.T) {
	for _, bm := range []extprocv3.ProcessingMode_BodySendMode{extprocv3.ProcessingMode_STREAMED,
		extprocv3.ProcessingMode_BUFFERED_PARTIAL, extprocv3.ProcessingMode_BUFFERED} {
		t.Run(bm.String(), func(t *testing.T) {
			var gate <-chan struct{}
			var mu sync.Mutex
			us := &usageServer{rec: &recorder{}, hold: func() <-chan struct{} { mu.Lock(); defer mu.Unlock(); return gate }}
			_, addr := startProc(t, respond(us.rec, us.handler))
			up := startUpstream(t, okUpstream(`{"id":"x"}`))
			cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_NONE, bm))
			cfg.OnViolation = Strict(t)
			mu.Lock()
			gate = afterEvent(&cfg, isUpstreamEnd) // the reply waits for the whole body
			mu.Unlock()
			f, s := startFront(t, cfg)
			resp, body, err := do(t, "GET", s.URL+"/x", "", nil)
			require.NoError(t, err)
			require.Equal(t, `{"id":"x"}`, body)
			require.Equal(t, "10", resp.Header.Get("X-Usage"), "headers held until the body reply")
			waitLog(t, f, 1)
			require.Equal(t, []string{"request_headers(eos)", "response_headers", "response_body(eos)"}, us.rec.kinds())
		})
	}
}

// BUFFERED_PARTIAL above the buffer limit: once more than the limit is
// queued (queueOverHighLimit: strictly more), everything queued goes out as
// one message with end_of_stream=false while the headers are held; the
// reply may still mutate the headers; the rest of the body then passes
// through without further messages. A body of exactly the limit waits for
// its end and goes out with end_of_stream.
func TestBufferedPartialAtTheLimit(t *testing.T) {
	const limit = 100
	tests := []struct {
		name     string
		body     string
		wantMsgs []string
		wantSent func(t *testing.T, n int)
	}{
		{name: "over the limit", body: strings.Repeat("a", 60) + strings.Repeat("b", 60) + strings.Repeat("c", 60),
			wantMsgs: []string{"request_headers(eos)", "response_headers", "response_body"},
			wantSent: func(t *testing.T, n int) { require.Equal(t, 120, n) }},
		{name: "exactly the limit", body: strings.Repeat("a", limit),
			wantMsgs: []string{"request_headers(eos)", "response_headers", "response_body(eos)"},
			wantSent: func(t *testing.T, n int) { require.Equal(t, limit, n) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			us := &usageServer{rec: &recorder{}}
			_, addr := startProc(t, respond(us.rec, us.handler))
			cfg := basicConfig(addr, &upstream{}, mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_BUFFERED_PARTIAL))
			cfg.BufferLimit = limit
			cfg.OnViolation = Strict(t)
			gate := afterEvent(&cfg, isResponseHeadersReply)
			// Each 60-byte write waits until the router handled the previous
			// one, so the filter sees the chunks one by one.
			handled := make(chan struct{}, 16)
			prev := cfg.onEvent
			cfg.onEvent = func(ev any) {
				prev(ev)
				if e, ok := ev.(evUpData); ok && len(e.data) > 0 {
					handled <- struct{}{}
				}
			}
			up := startUpstream(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(200)
				http.NewResponseController(w).Flush()
				<-gate // the body follows the headers reply
				for i := 0; i < len(tc.body); i += 60 {
					_, _ = io.WriteString(w, tc.body[i:min(i+60, len(tc.body))])
					http.NewResponseController(w).Flush()
					select {
					case <-handled:
					case <-time.After(10 * time.Second): // hang guard
					}
				}
			})
			cfg.Clusters["up"] = up.URL
			f, s := startFront(t, cfg)
			resp, body, err := do(t, "GET", s.URL+"/x", "", nil)
			require.NoError(t, err)
			require.Equal(t, tc.body, body, "the body passes whole")
			require.Equal(t, int64(-1), resp.ContentLength, "BUFFERED_PARTIAL removes content-length")
			waitLog(t, f, 1)
			require.Equal(t, tc.wantMsgs, us.rec.kinds())
			sent := len(us.rec.all()[2].GetResponseBody().GetBody())
			tc.wantSent(t, sent)
			require.Equal(t, strconv.Itoa(sent), resp.Header.Get("X-Usage"), "the reply's header mutation is honoured")
		})
	}
}

// mode_override to BUFFERED_PARTIAL in the response_headers reply: the
// content-length was kept at header time (the mode then was NONE), a
// content-length set by the reply is skipped (the mutation uses the new
// mode), and a partial body reply is not checked against it: the server
// must remove it, else a body of another length breaks the framing.
func TestModeOverrideToBufferedPartialAtResponseHeaders(t *testing.T) {
	for _, removeCL := range []bool{true, false} {
		t.Run("remove content-length="+strconv.FormatBool(removeCL), func(t *testing.T) {
			us := &usageServer{rec: &recorder{},
				onHdr: func(r *extprocsvc.ProcessingResponse) {
					r.ModeOverride = &extprocv3.ProcessingMode{ResponseBodyMode: extprocv3.ProcessingMode_BUFFERED_PARTIAL}
					hm := &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-length", "999")}}
					if removeCL {
						hm.RemoveHeaders = []string{"content-length"}
					}
					r.GetResponseHeaders().Response.HeaderMutation = hm
				},
				onBody: func(c *extprocsvc.CommonResponse) {
					c.BodyMutation = &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(`{"id":"x","usage":1}`)}}
				}}
			_, addr := startProc(t, respond(us.rec, us.handler))
			cfg := basicConfig(addr, &upstream{}, mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_NONE))
			cfg.ExtProc.AllowModeOverride = true
			up := startUpstream(t, gatedOK(afterEvent(&cfg, isResponseHeadersReply), `{"id":"x"}`))
			cfg.Clusters["up"] = up.URL
			f, s := startFront(t, cfg)
			resp, body, err := do(t, "GET", s.URL+"/x", "", nil)
			waitLog(t, f, 1)
			require.Equal(t, []string{"request_headers(eos)", "response_headers", "response_body(eos)"}, us.rec.kinds())
			if removeCL {
				require.NoError(t, err)
				require.Equal(t, `{"id":"x","usage":1}`, body)
				require.Equal(t, "10", resp.Header.Get("X-Usage"))
				require.Equal(t, int64(-1), resp.ContentLength, "the content-length set by the reply was skipped")
				require.Equal(t, []ViolationKind{KindIgnoredField}, violationKinds(f), "the skipped content-length set is reported")
				return
			}
			require.Equal(t, []ViolationKind{KindIgnoredField, KindFraming}, violationKinds(f))
		})
	}
}

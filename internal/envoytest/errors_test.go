package envoytest

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestSpuriousReplies(t *testing.T) {
	wrongType := func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if req.GetRequestHeaders() != nil {
			return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocsvc.HeadersResponse{}}}
		}
		return nil
	}
	empty := func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if req.GetRequestHeaders() != nil {
			return &extprocsvc.ProcessingResponse{}
		}
		return nil
	}
	bodyInsteadOfHeaders := func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if req.GetRequestHeaders() != nil {
			return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestBody{RequestBody: &extprocsvc.BodyResponse{}}}
		}
		return nil
	}
	tests := []struct {
		name       string
		h          handler
		failOpen   bool
		wantStatus int
		wantUp     int
		// wantDetails is the FailedPrecondition message handleErrorResponse
		// makes the details: "spurious message" from the state machine,
		// "unhandled message" for no response case.
		wantDetails string
	}{
		{name: "wrong direction fail-closed", h: wrongType, wantStatus: 500, wantDetails: "spurious_message"},
		{name: "wrong direction fail-open", h: wrongType, failOpen: true, wantStatus: 200, wantUp: 1},
		{name: "no response oneof", h: empty, wantStatus: 500, wantDetails: "unhandled_message"},
		{name: "body reply while headers outstanding", h: bodyInsteadOfHeaders, wantStatus: 500, wantDetails: "spurious_message"},
		{name: "no response oneof fail-open", h: empty, failOpen: true, wantStatus: 200, wantUp: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, tc.h))
			up := startUpstream(t, okUpstream(`{}`))
			cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE))
			cfg.ExtProc.FailureModeAllow = tc.failOpen
			f, s := startFront(t, cfg)
			resp, _, err := do(t, "POST", s.URL+"/x", "hello", nil)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			require.Len(t, up.requests(), tc.wantUp)
			if tc.wantUp == 1 {
				require.Equal(t, "hello", up.requests()[0].Body, "released unmodified")
			}
			e := waitLog(t, f, 1)
			require.Equal(t, []ViolationKind{KindSpuriousReply}, violationKinds(f))
			if !tc.failOpen {
				require.Equal(t, tc.wantDetails, e[0].Details)
			}
			// Only the request headers were sent: the stream was closed.
			require.Equal(t, []string{"request_headers"}, rec.kinds())
		})
	}
}

func TestMessageTimeout(t *testing.T) {
	tests := []struct {
		name       string
		failOpen   bool
		wantStatus int
		wantUp     int
	}{
		{name: "fail-closed 504", wantStatus: 504},
		{name: "fail-open continues", failOpen: true, wantStatus: 200, wantUp: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			never := func(st extprocsvc.ExternalProcessor_ProcessServer) error {
				for {
					if _, err := st.Recv(); err != nil {
						return nil
					}
				}
			}
			_, addr := startProc(t, never)
			up := startUpstream(t, okUpstream(`{}`))
			cfg := basicConfig(addr, up, nil)
			cfg.ExtProc.MessageTimeout = 50 * time.Millisecond
			cfg.ExtProc.FailureModeAllow = tc.failOpen
			f, s := startFront(t, cfg)
			resp, _, err := do(t, "GET", s.URL+"/x", "", nil)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			require.Len(t, up.requests(), tc.wantUp)
			e := waitLog(t, f, 1)
			require.Equal(t, []ViolationKind{KindMessageTimeout}, violationKinds(f))
			if !tc.failOpen {
				require.Equal(t, "ext_proc_error_per-message_timeout_exceeded", e[0].Details)
			}
		})
	}
}

// The override must reach the emulator within overrideTestTimeout of the
// request headers, which a loaded machine still does; the slow reply then
// comes after the plain timeout and long before the override's.
const (
	overrideTestTimeout = time.Second
	overrideTestSleep   = 1500 * time.Millisecond
)

func TestOverrideMessageTimeout(t *testing.T) {
	tests := []struct {
		name       string
		max        time.Duration
		override   time.Duration
		wantStatus int
		wantKinds  []ViolationKind
	}{
		{name: "extends the timer", max: time.Minute, override: 30 * time.Second, wantStatus: 200},
		{name: "ignored without max_message_timeout", max: 0, override: 30 * time.Second, wantStatus: 504,
			wantKinds: []ViolationKind{KindIgnoredField, KindMessageTimeout}},
		{name: "ignored above max", max: 100 * time.Millisecond, override: 30 * time.Second, wantStatus: 504,
			wantKinds: []ViolationKind{KindIgnoredField, KindMessageTimeout}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			slow := func(st extprocsvc.ExternalProcessor_ProcessServer) error {
				for {
					req, err := st.Recv()
					if err != nil {
						return nil
					}
					if req.GetRequestHeaders() != nil {
						if err := st.Send(&extprocsvc.ProcessingResponse{OverrideMessageTimeout: durationpb.New(tc.override)}); err != nil {
							return nil
						}
						// Longer than message_timeout, far shorter than
						// the override: only the override decides.
						time.Sleep(overrideTestSleep)
					}
					if err := st.Send(cont(req)); err != nil {
						return nil
					}
				}
			}
			_, addr := startProc(t, slow)
			up := startUpstream(t, okUpstream(`{}`))
			cfg := basicConfig(addr, up, nil)
			cfg.ExtProc.MessageTimeout = overrideTestTimeout
			cfg.ExtProc.MaxMessageTimeout = tc.max
			f, s := startFront(t, cfg)
			resp, _, err := do(t, "GET", s.URL+"/x", "", nil)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			waitLog(t, f, 1)
			require.Equal(t, tc.wantKinds, violationKinds(f))
		})
	}
}

func TestStreamEnds(t *testing.T) {
	tests := []struct {
		name        string
		fn          procFunc
		failOpen    bool
		wantStatus  int
		wantDetails string
		wantKinds   []ViolationKind
	}{
		{
			name: "server returns OK after request headers: continue without ext_proc",
			fn: func(st extprocsvc.ExternalProcessor_ProcessServer) error {
				req, err := st.Recv()
				if err != nil {
					return nil
				}
				return st.Send(cont(req))
			},
			wantStatus: 200, wantDetails: "via_upstream",
		},
		{
			name: "server returns OK without replying: held request released",
			fn: func(st extprocsvc.ExternalProcessor_ProcessServer) error {
				_, _ = st.Recv()
				return nil
			},
			wantStatus: 200, wantDetails: "via_upstream",
		},
		{
			name: "server error fail-closed",
			fn: func(st extprocsvc.ExternalProcessor_ProcessServer) error {
				_, _ = st.Recv()
				return status.Error(codes.Internal, "boom here")
			},
			wantStatus: 500, wantDetails: "ext_proc_error_gRPC_error_13{boom_here}", wantKinds: []ViolationKind{KindGRPCError},
		},
		{
			name: "server error fail-open",
			fn: func(st extprocsvc.ExternalProcessor_ProcessServer) error {
				_, _ = st.Recv()
				return status.Error(codes.Unavailable, "later")
			},
			failOpen: true, wantStatus: 200, wantDetails: "via_upstream", wantKinds: []ViolationKind{KindGRPCError},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startProc(t, tc.fn)
			up := startUpstream(t, okUpstream(`{"x":1}`))
			cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_BUFFERED))
			cfg.ExtProc.FailureModeAllow = tc.failOpen
			f, s := startFront(t, cfg)
			resp, body, err := do(t, "POST", s.URL+"/x", "payload", nil)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			e := waitLog(t, f, 1)
			require.Equal(t, tc.wantDetails, e[0].Details)
			require.Equal(t, tc.wantKinds, violationKinds(f))
			if tc.wantStatus == 200 {
				require.Equal(t, `{"x":1}`, body)
				require.Equal(t, "payload", up.requests()[0].Body)
			}
		})
	}
}

func TestExtProcUnreachable(t *testing.T) {
	up := startUpstream(t, okUpstream(`{}`))
	for _, failOpen := range []bool{false, true} {
		cfg := basicConfig("127.0.0.1:1", up, nil)
		cfg.ExtProc.FailureModeAllow = failOpen
		f, s := startFront(t, cfg)
		resp, _, err := do(t, "GET", s.URL+"/x", "", nil)
		require.NoError(t, err)
		if failOpen {
			require.Equal(t, 200, resp.StatusCode)
		} else {
			require.Equal(t, 500, resp.StatusCode)
			e := waitLog(t, f, 1)
			require.True(t, strings.HasPrefix(e[0].Details, "ext_proc_error_gRPC_error_14"), e[0].Details)
		}
	}
}

func TestStrictReportsThroughCallback(t *testing.T) {
	ft := &fakeTB{}
	_, addr := startProc(t, respond(&recorder{}, func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if req.GetRequestHeaders() != nil {
			return withCommon(req, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{RemoveHeaders: []string{":path"}}})
		}
		return nil
	}))
	up := startUpstream(t, okUpstream(`{}`))
	cfg := basicConfig(addr, up, nil)
	cfg.OnViolation = Strict(ft)
	f, s := startFront(t, cfg)
	resp, _, err := do(t, "GET", s.URL+"/x", "", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "Envoy only ignores the removal")
	waitLog(t, f, 1)
	require.Len(t, ft.errors(), 1)
	require.Contains(t, ft.errors()[0], "mutation_rejected")
}

// A refused mutation is a status_on_error local reply whose details are
// MutationUtils' status message with spaces as "_" (handleErrorResponse).
func TestMutationErrorDetails(t *testing.T) {
	tests := []struct {
		name        string
		c           *extprocsvc.CommonResponse
		wantDetails string
	}{
		{name: "invalid name", c: &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
			SetHeaders: []*corev3.HeaderValueOption{setHeader("bad name", "1")}}},
			wantDetails: "Invalid_character_in_set_headers_mutation."},
		{name: "value and raw_value", c: &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
			SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-a", Value: "1", RawValue: []byte("1")}}}}},
			wantDetails: "Only_one_of_value_or_raw_value_in_the_HeaderValue_message_should_be_set."},
		{name: "invalid removal", c: &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{RemoveHeaders: []string{"bad name"}}},
			wantDetails: "Invalid_character_in_remove_headers_mutation."},
		{name: "content-length mismatch", c: &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{
			Mutation: &extprocsvc.BodyMutation_Body{Body: []byte("longer body")}}},
			wantDetails: "mismatch_between_content_length_and_the_length_of_the_mutated_body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startProc(t, respond(&recorder{}, func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
				if r.GetResponseBody() != nil {
					return withCommon(r, tc.c)
				}
				return nil
			}))
			up := startUpstream(t, okUpstream(`{"a":1}`))
			f, s := startFront(t, basicConfig(addr, up, mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_BUFFERED)))
			resp, _, err := do(t, "GET", s.URL+"/x", "", nil)
			require.NoError(t, err)
			require.Equal(t, 500, resp.StatusCode)
			require.Equal(t, tc.wantDetails, waitLog(t, f, 1)[0].Details)
		})
	}
}

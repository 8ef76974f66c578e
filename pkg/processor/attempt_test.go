package processor

import (
	"context"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

func attemptMD(t *testing.T, kv map[string]any) *corev3.Metadata {
	t.Helper()
	ns, err := structpb.NewStruct(kv)
	require.NoError(t, err)
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"llm_proxy": ns}}
}

func TestAttemptClasses(t *testing.T) {
	const none, deg, nr = "none", "provider_degraded", AttemptNoResponse
	tests := []struct {
		name    string
		entries map[string]any
		count   int
		local   bool
		want    []string
	}{
		{"every attempt recorded", map[string]any{"attempt_1": deg, "attempt_2": none}, 2, false, []string{deg, none}},
		{"no count header", map[string]any{"attempt_1": deg, "attempt_2": none}, 0, false, []string{deg, none}},
		// The upstream filter runs (attempt 3 is recorded) but attempts 1
		// and 2 failed to connect before it could.
		{"connect failures before the filter", map[string]any{"attempt_3": none}, 3, false, []string{nr, nr, none}},
		{"a gap in the middle", map[string]any{"attempt_1": deg, "attempt_3": none}, 3, false, []string{deg, nr, none}},
		// Every attempt failed to connect: no entry at all, and Envoy's own
		// 503 as the final response.
		{"all attempts died, local reply", nil, 3, true, []string{nr, nr, nr}},
		// No entry and a vendor's answer: the upstream filter may not be
		// deployed at all, so nothing is known about the earlier attempts.
		{"no upstream filter", nil, 3, false, nil},
		{"count beyond reason ignored", map[string]any{"attempt_1": none}, 1000, false, []string{none}},
		{"junk keys ignored", map[string]any{"attempt_x": "y", "attempt_0": deg, "attempt_1": none, "provider": "openai"}, 1, false, []string{none}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, attemptClasses(attemptMD(t, tt.entries), "llm_proxy", tt.count, tt.local))
		})
	}
}

// responseSpy is a guard whose ticket records the final Response.
type responseSpy struct{ got *Response }

func (g *responseSpy) Admit(context.Context, *Call) (Ticket, *Reply, error) { return g, nil, nil }
func (g *responseSpy) Settle(context.Context, *Record)                      {}
func (g *responseSpy) ResponseHeaders(_ context.Context, r *Response) (*Reply, bool) {
	g.got = r
	return nil, false
}
func (g *responseSpy) ResponseBody(context.Context, *Response, []byte) *Reply { return nil }

// The downstream stream counts attempts Envoy made (x-envoy-attempt-count
// on the final response) that left no attempt_<n> entry: they died before
// the upstream filter ran, as connect failures do, and the breaker must
// count them.
func TestFinalResponseCountsAttemptsTheUpstreamFilterNeverSaw(t *testing.T) {
	spy := &responseSpy{}
	h := newHarness(t, config.Defaults(), spy)
	c := h.open()
	c.do(reqHeaders(hdrs(true, ":method", "GET", ":path", "/fake/v1/x")))
	// Envoy's local 503 after three attempts that all failed to connect.
	rh := respHeaders(hdrs(false, ":status", "503", "content-type", "text/plain", "x-envoy-attempt-count", "3"))
	rh.MetadataContext = attemptMD(t, map[string]any{"provider": "fake"})
	c.do(rh)
	require.NotNil(t, spy.got)
	require.True(t, spy.got.EnvoyLocal)
	require.Equal(t, []string{AttemptNoResponse, AttemptNoResponse, AttemptNoResponse}, spy.got.Attempts)
}

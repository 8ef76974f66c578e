package processor

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

// A 10 MiB body arrives in one gRPC message (Envoy's BUFFERED mode) and is
// admitted or refused by the guards like any other: grpc-go's default 4 MiB
// receive limit would have failed the stream and Envoy would have forwarded
// the request with every guard skipped.
func TestTenMiBRequestBodyReachesTheGuards(t *testing.T) {
	g := &countingGuard{}
	h := newHarness(t, config.Defaults(), g)
	c := h.open()
	body := append([]byte(`{"model":"m","text":"`), bytes.Repeat([]byte("a"), 10<<20)...)
	body = append(body, `"}`...)
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json",
		"content-length", strconv.Itoa(len(body)))))
	resp := c.do(reqBody(body, true))
	require.NotNil(t, resp.GetRequestBody())
	require.Len(t, g.calls, 1, "the guards saw the request")
	require.Equal(t, "length", g.calls[0].EstimateSource, "over max_sample_bytes: estimated from its length")
	require.EqualValues(t, (len(body)+3)/4, g.calls[0].EstimatedInputTokens)

	refuse := &countingGuard{reply: &Reply{Status: 429, Body: []byte(`{}`), Details: "limited"}}
	h = newHarness(t, config.Defaults(), refuse)
	c = h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
	resp = c.do(reqBody(body, true))
	require.EqualValues(t, 429, resp.GetImmediateResponse().GetStatus().GetCode(), "a guard can refuse it")
}

// A body over processing.max_request_body_bytes is refused with 413 in the
// vendor's shape, whether its content-length says so at request headers or
// the bytes Envoy sends do, and no guard runs.
func TestRequestBodyOverTheMaximumIsRefused413(t *testing.T) {
	cfg := config.Defaults()
	cfg.Processing.MaxRequestBodyBytes = 1 << 20
	big := bytes.Repeat([]byte("x"), 1<<20+1)
	tests := []struct {
		name string
		run  func(c *conv) *Reply
	}{
		{"declared by content-length", func(c *conv) *Reply {
			resp := c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json",
				"content-length", strconv.Itoa(len(big)))))
			return replyOf(t, resp)
		}},
		{"seen in the body", func(c *conv) *Reply {
			c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
			return replyOf(t, c.do(reqBody(big, true)))
		}},
		{"seen across chunks", func(c *conv) *Reply {
			c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
			require.NotNil(t, c.do(reqBody(big[:1<<19], false)).GetRequestBody())
			return replyOf(t, c.do(reqBody(big[1<<19:], true)))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &countingGuard{}
			h := newHarness(t, cfg, g)
			c := h.open()
			r := tt.run(c)
			require.NotNil(t, r, "an ImmediateResponse")
			require.Equal(t, 413, r.Status)
			require.Equal(t, RequestTooLargeDetails, r.Details)
			var e struct{ Kind int }
			require.NoError(t, json.Unmarshal(r.Body, &e), "the vendor's JSON shape")
			require.Contains(t, string(r.Body), "1048576 bytes")
			require.True(t, c.ended())
			require.Empty(t, g.calls, "the vendor is never called, nothing is reserved")
			rec := h.waitRecords(1)[0]
			require.Equal(t, OutcomeRefused, rec.Outcome)
			require.Equal(t, 413, rec.Status)
			require.Equal(t, RequestTooLargeDetails, rec.RefusedBy)
		})
	}
}

// replyOf returns the ImmediateResponse in resp as a Reply, or nil.
func replyOf(t *testing.T, resp *extprocv3.ProcessingResponse) *Reply {
	t.Helper()
	ir := resp.GetImmediateResponse()
	if ir == nil {
		return nil
	}
	r := &Reply{Status: int(ir.GetStatus().GetCode()), Body: ir.GetBody(), Details: ir.GetDetails()}
	for _, hv := range ir.GetHeaders().GetSetHeaders() {
		r.Headers = append(r.Headers, [2]string{hv.GetHeader().GetKey(), string(hv.GetHeader().GetRawValue())})
	}
	return r
}

package processor

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
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
// vendor's shape when the bytes Envoy sends are, and no guard runs.
func TestRequestBodyOverTheMaximumIsRefused413(t *testing.T) {
	cfg := config.Defaults()
	cfg.Processing.MaxRequestBodyBytes = 1 << 20
	big := bytes.Repeat([]byte("x"), 1<<20+1)
	tests := []struct {
		name string
		run  func(c *conv) *Reply
	}{
		{"seen in the body", func(c *conv) *Reply {
			// content-length alone does not refuse: see refuseTooLarge.
			resp := c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json",
				"content-length", strconv.Itoa(len(big)))))
			require.Nil(t, resp.GetImmediateResponse())
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

// JSON without content-length (chunked, HTTP/2, compressed) is held with
// BUFFERED_PARTIAL, so the reply to its one body message still sets the
// usage headers.
func TestUnknownLengthJSONGetsUsageHeaders(t *testing.T) {
	h := newHarness(t, config.Defaults())
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
	c.do(reqBody([]byte(`{"model":"m1","text":"abcd"}`), true))
	resp := c.do(respHeaders(hdrs(false, ":status", "200", "content-type", "application/json",
		"x-envoy-upstream-service-time", "3")))
	require.Equal(t, filterv3.ProcessingMode_BUFFERED_PARTIAL, resp.GetModeOverride().GetResponseBodyMode())
	resp = c.do(respBody([]byte(`{"in":7,"out":3}`), true))
	require.Nil(t, resp.GetResponseBody().GetResponse().GetBodyMutation(), "the body is never changed")
	require.Equal(t, "fake", usageHeader(resp, "x-llm-provider"))
	require.Equal(t, "m1", usageHeader(resp, "x-llm-model"))
	require.Equal(t, "7", usageHeader(resp, "x-llm-input-tokens"))
	require.Equal(t, "3", usageHeader(resp, "x-llm-output-tokens"))
	require.Equal(t, "10", usageHeader(resp, "x-llm-total-tokens"))
	require.True(t, c.ended())
	rec := h.waitRecords(1)[0]
	require.Equal(t, OutcomeCompleted, rec.Outcome)
	require.False(t, rec.UsageEstimated)
}

// A JSON body over Envoy's buffer limit: in BUFFERED_PARTIAL Envoy sends
// what it holds with end_of_stream false and lets the rest through
// unseen. The reply leaves the bytes alone, the call is settled there
// (nothing more will come), and, the usage not being in the part seen, on
// the estimate.
func TestJSONOverEnvoysBufferPassesThroughUntouched(t *testing.T) {
	g := &countingGuard{}
	h := newHarness(t, config.Defaults(), g)
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
	c.do(reqBody([]byte(`{"model":"m1","text":"abcdefgh"}`), true))
	c.do(respHeaders(hdrs(false, ":status", "200", "content-type", "application/json",
		"x-envoy-upstream-service-time", "3")))
	resp := c.do(respBody([]byte(`{"data":[1,2,3,`), false))
	require.NotNil(t, resp.GetResponseBody())
	require.Nil(t, resp.GetResponseBody().GetResponse().GetBodyMutation())
	require.Empty(t, usageHeader(resp, "x-llm-input-tokens"), "no usage in the part seen")
	require.True(t, c.ended(), "Envoy sends nothing more for this body")
	rec := h.waitRecords(1)[0]
	require.Equal(t, OutcomeCompleted, rec.Outcome)
	require.True(t, rec.UsageEstimated)
	require.EqualValues(t, 2, rec.Usage.InputTokens)
	require.Len(t, g.settl, 1)
}

// Responses with trailers: in BUFFERED mode the one body message has
// end_of_stream false (trailers SKIP) and is the whole body; the call is
// settled there with usage and the headers set.
func TestBufferedBodyBeforeTrailersIsTheWholeBody(t *testing.T) {
	h := newHarness(t, config.Defaults())
	c := h.open()
	c.do(reqHeaders(hdrs(true, ":method", "GET", ":path", "/fake/v1/x")))
	resp := c.do(respHeaders(hdrs(false, ":status", "200", "content-type", "application/json", "content-length", "16",
		"x-envoy-upstream-service-time", "3")))
	require.Equal(t, filterv3.ProcessingMode_BUFFERED, resp.GetModeOverride().GetResponseBodyMode())
	resp = c.do(respBody([]byte(`{"in":5,"out":6}`), false))
	require.Equal(t, "11", usageHeader(resp, "x-llm-total-tokens"))
	require.EqualValues(t, 11, mdField(t, resp, "total_tokens"))
	require.True(t, c.ended())
	rec := h.waitRecords(1)[0]
	require.Equal(t, OutcomeCompleted, rec.Outcome)
	require.False(t, rec.UsageEstimated)
}

// A streamed body that ends with trailers: the last body message has
// end_of_stream false; the server asked for trailers (SEND, sent only when
// present) and settles the call at the trailers message, with its usage,
// not as aborted.
func TestStreamedBodyEndingInTrailersIsCompleted(t *testing.T) {
	h := newHarness(t, config.Defaults())
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
	c.do(reqBody([]byte(`{"model":"m","stream":true,"text":"abcd"}`), true))
	resp := c.do(respHeaders(hdrs(false, ":status", "200", "content-type", "text/event-stream",
		"x-envoy-upstream-service-time", "3")))
	require.Equal(t, filterv3.ProcessingMode_SEND, resp.GetModeOverride().GetResponseTrailerMode())
	c.do(respBody([]byte("data: {\"x\":1}\n\n"), false))
	c.do(respBody([]byte("data: {\"in\":4,\"out\":2}\n\n"), false))
	resp = c.do(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{
		ResponseTrailers: &extprocv3.HttpTrailers{}}})
	require.NotNil(t, resp.GetResponseTrailers())
	require.EqualValues(t, 6, mdField(t, resp, "total_tokens"))
	require.True(t, c.ended())
	rec := h.waitRecords(1)[0]
	require.Equal(t, OutcomeCompleted, rec.Outcome)
	require.EqualValues(t, 2, rec.Usage.OutputTokens)
}

// Envoy answers 413 itself when a request body is over its buffer limit,
// through the encoder chain: the server sees request headers, then the
// local reply's headers. Nothing is admitted (the vendor was not called)
// and Envoy's answer is left alone.
func TestEnvoyLocal413IsNotAdmitted(t *testing.T) {
	g := &countingGuard{}
	h := newHarness(t, config.Defaults(), g)
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json",
		"transfer-encoding", "chunked")))
	resp := c.do(respHeaders(hdrs(false, ":status", "413", "content-type", "text/plain", "content-length", "17")))
	require.NotNil(t, resp.GetResponseHeaders())
	require.Nil(t, resp.GetResponseHeaders().GetResponse(), "Envoy's reply is not changed")
	require.Nil(t, resp.GetModeOverride())
	require.True(t, c.ended())
	require.Empty(t, g.calls, "no admission on a local reply")
	rec := h.waitRecords(1)[0]
	require.Equal(t, 413, rec.Status)
	require.Empty(t, rec.RefusedBy)
}

// A CORS preflight answered by the cors filter before ext_proc still passes
// ext_proc's encoder path: a stream whose first message is the reply's
// response headers. It is answered and ended at once, and not counted.
func TestPreflightReplyIsAnsweredAndNotCounted(t *testing.T) {
	g := &countingGuard{}
	h := newHarness(t, config.Defaults(), g)
	c := h.open()
	resp := c.do(respHeaders(hdrs(true, ":status", "200", "access-control-allow-origin", "https://app.example")))
	require.NotNil(t, resp.GetResponseHeaders())
	require.Nil(t, resp.GetResponseHeaders().GetResponse())
	require.True(t, c.ended())
	require.Empty(t, g.calls)
	require.Empty(t, h.obs.all())
}

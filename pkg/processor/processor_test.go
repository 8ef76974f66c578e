package processor

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// fakeProvider reads {"model":..,"text":..,"stream":..} bodies and usage
// bodies of the form {"in":N,"out":M}. It stands in for a vendor so these
// tests exercise the processor's state machine alone.
type fakeProvider struct{}

func (fakeProvider) Name() string        { return "fake" }
func (fakeProvider) UpstreamURL() string { return "https://fake.example" }
func (fakeProvider) ParseRequest(r providers.Request) providers.RequestInfo {
	info := providers.RequestInfo{Endpoint: providers.EndpointOther}
	if r.Body == nil {
		return info
	}
	var b struct {
		Model  string `json:"model"`
		Text   string `json:"text"`
		Stream bool   `json:"stream"`
		User   string `json:"user"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil {
		info.Malformed = true
		return info
	}
	info.Model, info.Stream, info.User = b.Model, b.Stream, b.User
	info.TextRunes = int64(utf8.RuneCountInString(b.Text))
	// The fake's tokenizer: four code points a token, rounded up.
	info.TextTokens = (info.TextRunes + 3) / 4
	return info
}

func (fakeProvider) NewUsageParser(providers.Request, providers.RequestInfo, string) providers.UsageParser {
	return &fakeParser{}
}

type fakeParser struct{ buf []byte }

func (p *fakeParser) Write(b []byte) { p.buf = append(p.buf, b...) }
func (p *fakeParser) Held() int      { return len(p.buf) }
func (p *fakeParser) Usage() providers.Usage {
	var u struct{ In, Out int64 }
	// Take the last line that decodes, as a stream's final usage event.
	var got providers.Usage
	for _, line := range bytes.Split(p.buf, []byte("\n")) {
		line = bytes.TrimPrefix(bytes.TrimSpace(line), []byte("data: "))
		if json.Unmarshal(line, &u) == nil && (u.In > 0 || u.Out > 0) {
			got = providers.Usage{InputTokens: u.In, OutputTokens: u.Out, TotalTokens: u.In + u.Out, Found: true}
		}
	}
	return got
}

type recorder struct {
	mu   sync.Mutex
	recs []*Record
}

func (r *recorder) Observe(rec *Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *recorder) all() []*Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Record(nil), r.recs...)
}

// countingGuard admits everything (or refuses with reply) and counts
// settlements per request.
type countingGuard struct {
	reply *Reply
	mu    sync.Mutex
	calls []*Call
	settl []*Record
}

func (g *countingGuard) Admit(_ context.Context, c *Call) (Ticket, *Reply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, c)
	if g.reply != nil {
		return nil, g.reply, nil
	}
	return ticketFunc(func(_ context.Context, r *Record) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.settl = append(g.settl, r)
	}), nil, nil
}

type ticketFunc func(context.Context, *Record)

func (f ticketFunc) Settle(ctx context.Context, r *Record) { f(ctx, r) }

type harness struct {
	t      *testing.T
	client extprocv3.ExternalProcessorClient
	obs    *recorder
	now    time.Time
	mu     sync.Mutex
}

func newHarness(t *testing.T, cfg config.Config, guards ...Guard) *harness {
	t.Helper()
	h := &harness{t: t, obs: &recorder{}, now: time.Unix(1_700_000_000, 0)}
	srv := New(Options{
		Config:    cfg,
		Providers: providers.Registry{"fake": fakeProvider{}},
		Guards:    guards,
		Observer:  h.obs,
		Now: func() time.Time {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.now = h.now.Add(10 * time.Millisecond)
			return h.now
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer(GRPCServerOptions()...)
	extprocv3.RegisterExternalProcessorServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	h.client = extprocv3.NewExternalProcessorClient(conn)
	return h
}

func hdrs(eos bool, kv ...string) *extprocv3.HttpHeaders {
	m := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return &extprocv3.HttpHeaders{Headers: m, EndOfStream: eos}
}

func reqHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: h}}
}

func reqBody(b []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}}
}

func respHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: h}}
}

func respBody(b []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}}
}

// exchange opens a stream and sends each message, returning each reply.
type conv struct {
	t  *testing.T
	s  extprocv3.ExternalProcessor_ProcessClient
	cf context.CancelFunc
}

func (h *harness) open() *conv {
	ctx, cancel := context.WithCancel(h.t.Context())
	s, err := h.client.Process(ctx)
	require.NoError(h.t, err)
	h.t.Cleanup(cancel)
	return &conv{t: h.t, s: s, cf: cancel}
}

func (c *conv) do(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	c.t.Helper()
	require.NoError(c.t, c.s.Send(req))
	resp, err := c.s.Recv()
	require.NoError(c.t, err)
	return resp
}

// ended reports whether the server closed the stream.
func (c *conv) ended() bool {
	_, err := c.s.Recv()
	return err == io.EOF
}

func (h *harness) waitRecords(n int) []*Record {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return len(h.obs.all()) >= n }, 30*time.Second, time.Millisecond)
	return h.obs.all()
}

func mdField(t *testing.T, resp *extprocv3.ProcessingResponse, key string) any {
	t.Helper()
	ns := resp.GetDynamicMetadata().GetFields()["llm_proxy"]
	require.NotNil(t, ns, "dynamic metadata namespace llm_proxy missing")
	v := ns.GetStructValue().GetFields()[key]
	if v == nil {
		return nil
	}
	return v.AsInterface()
}

func TestPassThroughForOtherPaths(t *testing.T) {
	tests := []struct {
		name    string
		headers *extprocv3.HttpHeaders
	}{
		{"unknown path", hdrs(true, ":method", "GET", ":path", "/v1/other")},
		{"disabled provider name", hdrs(false, ":method", "POST", ":path", "/openai/v1/chat/completions")},
		{"missing path", hdrs(true, ":method", "GET")},
		{"bare prefix", hdrs(true, ":method", "GET", ":path", "/fake")},
		{"meta without provider", hdrs(true, ":method", "GET", ":path", "/meta/u1/")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, config.Defaults())
			c := h.open()
			resp := c.do(reqHeaders(tt.headers))
			require.NotNil(t, resp.GetRequestHeaders())
			mo := resp.GetModeOverride()
			require.NotNil(t, mo)
			require.Equal(t, filterv3.ProcessingMode_NONE, mo.GetRequestBodyMode())
			require.Equal(t, filterv3.ProcessingMode_SKIP, mo.GetResponseHeaderMode())
			require.Equal(t, filterv3.ProcessingMode_NONE, mo.GetResponseBodyMode())
			require.True(t, c.ended(), "server should end the stream")
			require.Empty(t, h.obs.all())
		})
	}
}

func TestJSONRequestLifecycle(t *testing.T) {
	g := &countingGuard{}
	h := newHarness(t, config.Defaults(), g)
	c := h.open()
	resp := c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/meta/alice/fake/v1/x?y=1",
		"content-type", "application/json", "x-llm-proxy-test-mode", "force", "x-llm-proxy-timeout-ms", "5",
		"accept-encoding", "gzip", "x-request-id", "rid-1")))
	mut := resp.GetRequestHeaders().GetResponse().GetHeaderMutation()
	require.ElementsMatch(t, []string{"x-llm-proxy-test-mode", "x-llm-proxy-timeout-ms", "accept-encoding"}, mut.GetRemoveHeaders())
	require.Nil(t, resp.GetModeOverride())

	resp = c.do(reqBody([]byte(`{"model":"m1","text":"héllo wörld 12345"}`), true))
	require.NotNil(t, resp.GetRequestBody())
	// Written at admission, so the access log names the call however it ends.
	require.Equal(t, "fake", mdField(t, resp, "provider"))
	require.Equal(t, "m1", mdField(t, resp, "model"))
	require.Equal(t, "alice", mdField(t, resp, "user"))
	require.EqualValues(t, 5, mdField(t, resp, "estimated_input_tokens"))
	require.Len(t, g.calls, 1)
	call := g.calls[0]
	require.Equal(t, "m1", call.Info.Model)
	require.Equal(t, "alice", call.Identity.User)
	require.Equal(t, "text", call.EstimateSource)
	require.EqualValues(t, 5, call.EstimatedInputTokens) // 17 runes / 4, rounded up
	require.Equal(t, "/v1/x", call.Path)

	resp = c.do(respHeaders(hdrs(false, ":status", "200", "content-type", "application/json", "content-length", "20")))
	require.Equal(t, filterv3.ProcessingMode_BUFFERED, resp.GetModeOverride().GetResponseBodyMode())
	require.Nil(t, resp.GetResponseHeaders().GetResponse().GetHeaderMutation())

	resp = c.do(respBody([]byte(`{"in":7,"out":3}`), true))
	require.NotNil(t, resp.GetResponseBody())
	require.EqualValues(t, 7, mdField(t, resp, "input_tokens"))
	require.EqualValues(t, 10, mdField(t, resp, "total_tokens"))
	require.Nil(t, mdField(t, resp, "provider"), "Envoy merges metadata; the final reply carries only what is new")
	require.Nil(t, mdField(t, resp, "cache_read_tokens"), "zero counts are left out")
	require.True(t, c.ended())

	recs := h.waitRecords(1)
	require.Len(t, recs, 1)
	r := recs[0]
	require.Equal(t, OutcomeCompleted, r.Outcome)
	require.Equal(t, 200, r.Status)
	require.EqualValues(t, 7, r.Usage.InputTokens)
	require.Equal(t, "rid-1", r.RequestID)
	require.Positive(t, r.TTFB)
	require.Greater(t, r.Duration, r.TTFB)
	require.Len(t, g.settl, 1)
}

func TestEventStreamIsStreamedAndLengthDropped(t *testing.T) {
	h := newHarness(t, config.Defaults())
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
	resp := c.do(reqBody([]byte(`{"model":"m","stream":true,"text":"abcd"}`), true))
	require.Equal(t, true, mdField(t, resp, "stream"))
	resp = c.do(respHeaders(hdrs(false, ":status", "200", "content-type", "text/event-stream; charset=utf-8", "content-length", "99")))
	require.Equal(t, filterv3.ProcessingMode_STREAMED, resp.GetModeOverride().GetResponseBodyMode())
	require.Equal(t, []string{"content-length"}, resp.GetResponseHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders())
	stream := "data: {\"x\":1}\n\ndata: {\"in\":4,\"out\":9}\n\ndata: [DONE]\n\n"
	// Pipelined chunks: send all, then read all replies in order.
	parts := []string{stream[:5], stream[5:23], stream[23:40], stream[40:]}
	for _, p := range parts {
		require.NoError(t, c.s.Send(respBody([]byte(p), false)))
	}
	require.NoError(t, c.s.Send(respBody(nil, true)))
	var last *extprocv3.ProcessingResponse
	for range len(parts) + 1 {
		r, err := c.s.Recv()
		require.NoError(t, err)
		require.NotNil(t, r.GetResponseBody())
		last = r
	}
	require.EqualValues(t, 9, mdField(t, last, "output_tokens"))
	recs := h.waitRecords(1)
	require.EqualValues(t, len(stream), recs[0].ResponseBytes)
}

func TestResponseBodyModeByLengthAndType(t *testing.T) {
	cfg := config.Defaults()
	cfg.Processing.ResponseBufferLimitBytes = 10
	tests := []struct {
		name string
		kv   []string
		want filterv3.ProcessingMode_BodySendMode
	}{
		{"within the cap", []string{":status", "200", "content-type", "application/json", "content-length", "10"},
			filterv3.ProcessingMode_BUFFERED},
		{"over the cap", []string{":status", "200", "content-type", "application/json", "content-length", "11"},
			filterv3.ProcessingMode_STREAMED},
		// Held by Envoy up to its own buffer limit, so the usage headers
		// can still be set (see TestUnknownLengthJSONGetsUsageHeaders).
		{"json without length", []string{":status", "200", "content-type", "application/json"},
			filterv3.ProcessingMode_BUFFERED_PARTIAL},
		{"problem json without length", []string{":status", "200", "content-type", "application/problem+json"},
			filterv3.ProcessingMode_BUFFERED_PARTIAL},
		// Audio of unknown length (text to speech) must not wait for a
		// buffer to fill.
		{"audio without length", []string{":status", "200", "content-type", "audio/mpeg"},
			filterv3.ProcessingMode_STREAMED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, cfg)
			c := h.open()
			c.do(reqHeaders(hdrs(true, ":method", "GET", ":path", "/fake/v1/models")))
			resp := c.do(respHeaders(hdrs(false, tt.kv...)))
			mo := resp.GetModeOverride()
			require.Equal(t, tt.want, mo.GetResponseBodyMode())
			if tt.want == filterv3.ProcessingMode_STREAMED {
				require.Equal(t, filterv3.ProcessingMode_SEND, mo.GetResponseTrailerMode(),
					"a streamed body ending in trailers has no end_of_stream body message")
			} else {
				require.Equal(t, filterv3.ProcessingMode_DEFAULT, mo.GetResponseTrailerMode())
			}
			// Envoy keeps content-length for NONE->STREAMED; the body is not
			// changed, so it stays right and must not be removed.
			require.Nil(t, resp.GetResponseHeaders().GetResponse().GetHeaderMutation())
		})
	}
}

func TestEstimationSources(t *testing.T) {
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write([]byte(s))
		_ = zw.Close()
		return b.Bytes()
	}
	cfg := config.Defaults()
	cfg.Features.RateLimiting.Estimation.MaxSampleBytes = 64
	tests := []struct {
		name       string
		kv         []string
		body       []byte
		wantSource string
		wantTokens int64
		wantModel  string
	}{
		{"json text", []string{"content-type", "application/json"}, []byte(`{"model":"a","text":"12345678"}`), "text", 2, "a"},
		{"no content type but object", nil, []byte(`{"model":"a","text":"1234"}`), "text", 1, "a"},
		{"malformed json", []string{"content-type", "application/json"}, []byte(`{"model":"a","text":`), "length", 5, ""},
		{"non utf8", []string{"content-type", "application/json"}, []byte("{\"model\":\"a\",\"text\":\"\xff\xfe\"}"), "text", 1, "a"},
		{"odd content type", []string{"content-type", "text/plain"}, []byte(`hello there friend`), "length", 5, ""},
		{"gzip body", []string{"content-type", "application/json", "content-encoding", "gzip"}, gz(`{"model":"z","text":"12345678"}`), "text", 2, "z"},
		{"corrupt gzip", []string{"content-type", "application/json", "content-encoding", "gzip"}, []byte(`not gzip at all`), "length", 4, ""},
		{"over the sample cap", []string{"content-type", "application/json"}, []byte(`{"model":"a","text":"` + strings.Repeat("x", 100) + `"}`), "length", 31, ""},
		{"empty body", []string{"content-type", "application/json"}, []byte{}, "none", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &countingGuard{}
			h := newHarness(t, cfg, g)
			c := h.open()
			kv := append([]string{":method", "POST", ":path", "/fake/v1/x"}, tt.kv...)
			c.do(reqHeaders(hdrs(false, kv...)))
			resp := c.do(reqBody(tt.body, true))
			require.NotNil(t, resp.GetRequestBody(), "bad input must pass through")
			require.Len(t, g.calls, 1)
			require.Equal(t, tt.wantSource, g.calls[0].EstimateSource)
			require.Equal(t, tt.wantTokens, g.calls[0].EstimatedInputTokens)
			require.Equal(t, tt.wantModel, g.calls[0].Info.Model)
		})
	}
}

func TestChunkedRequestBodyAdmitsAtEndOfStream(t *testing.T) {
	g := &countingGuard{}
	h := newHarness(t, config.Defaults(), g)
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
	c.do(reqBody([]byte(`{"model":"m","te`), false))
	require.Empty(t, g.calls)
	c.do(reqBody([]byte(`xt":"abcdefgh"}`), true))
	require.Len(t, g.calls, 1)
	require.EqualValues(t, 2, g.calls[0].EstimatedInputTokens)
}

func TestBufferedModeFromProtocolConfigAdmitsWithoutEndOfStream(t *testing.T) {
	g := &countingGuard{}
	h := newHarness(t, config.Defaults(), g)
	c := h.open()
	first := reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json"))
	first.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_BUFFERED}
	c.do(first)
	// Trailers follow the body, so end_of_stream is false; in BUFFERED mode
	// this is still the whole body.
	c.do(reqBody([]byte(`{"model":"m","text":"abcd"}`), false))
	require.Len(t, g.calls, 1)
	require.Equal(t, "m", g.calls[0].Info.Model)
}

func TestRefusalAnswersLocallyAndSettlesEarlierTickets(t *testing.T) {
	first := &countingGuard{}
	refuse := &countingGuard{reply: &Reply{Status: 429, Headers: [][2]string{{"Retry-After", "3"}, {"Content-Type", "application/json"}},
		Body: []byte(`{"error":"slow down"}`), Details: "llm_proxy_rate_limited"}}
	h := newHarness(t, config.Defaults(), first, refuse)
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
	resp := c.do(reqBody([]byte(`{"model":"m","text":"abcd"}`), true))
	ir := resp.GetImmediateResponse()
	require.NotNil(t, ir)
	require.EqualValues(t, 429, ir.GetStatus().GetCode())
	require.Equal(t, "llm_proxy_rate_limited", ir.GetDetails())
	got := map[string]string{}
	for _, hv := range ir.GetHeaders().GetSetHeaders() {
		require.Empty(t, hv.GetHeader().GetValue(), "only raw_value may be set")
		got[hv.GetHeader().GetKey()] = string(hv.GetHeader().GetRawValue())
	}
	require.Equal(t, map[string]string{"retry-after": "3", "content-type": "application/json"}, got)
	require.Equal(t, "llm_proxy_rate_limited", mdField(t, resp, "refused_by"))
	require.True(t, c.ended())
	recs := h.waitRecords(1)
	require.Equal(t, OutcomeRefused, recs[0].Outcome)
	require.Len(t, first.settl, 1, "the earlier guard's reservation must be released")
	require.Equal(t, OutcomeRefused, first.settl[0].Outcome)
}

func TestClientCancelMidStreamSettlesOnceAsAborted(t *testing.T) {
	g := &countingGuard{}
	h := newHarness(t, config.Defaults(), g)
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
	c.do(reqBody([]byte(`{"model":"m","stream":true,"text":"abcd"}`), true))
	c.do(respHeaders(hdrs(false, ":status", "200", "content-type", "text/event-stream")))
	c.do(respBody([]byte("data: {\"in\":4,\"out\":2}\n\n"), false))
	c.cf() // Envoy resets the stream: client gone or upstream reset.
	recs := h.waitRecords(1)
	require.Equal(t, OutcomeAborted, recs[0].Outcome)
	require.EqualValues(t, 2, recs[0].Usage.OutputTokens, "usage streamed before the reset is kept")
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.settl) == 1
	}, 5*time.Second, time.Millisecond)
}

// TestStreamedUsageReachesTheMetadataAtOnce: the chunk that completes the
// usage carries it in its reply's metadata, so the access log has it even
// when the client hangs up before the body's end (the OpenAI SDK does at
// [DONE]); a chunk that changes nothing carries none.
func TestStreamedUsageReachesTheMetadataAtOnce(t *testing.T) {
	h := newHarness(t, config.Defaults())
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
	c.do(reqBody([]byte(`{"model":"m","stream":true,"text":"abcd"}`), true))
	c.do(respHeaders(hdrs(false, ":status", "200", "content-type", "text/event-stream")))
	require.Nil(t, c.do(respBody([]byte("data: {\"x\":1}\n\n"), false)).GetDynamicMetadata(), "no usage yet")
	resp := c.do(respBody([]byte("data: {\"in\":4,\"out\":9}\n\n"), false))
	require.EqualValues(t, 4, mdField(t, resp, "input_tokens"))
	require.EqualValues(t, 9, mdField(t, resp, "output_tokens"))
	require.EqualValues(t, 13, mdField(t, resp, "total_tokens"))
	require.Nil(t, c.do(respBody([]byte("data: [DONE]\n\n"), false)).GetDynamicMetadata(), "nothing changed")
	c.cf() // the client hangs up before the end-of-stream chunk
	recs := h.waitRecords(1)
	require.Equal(t, OutcomeAborted, recs[0].Outcome)
}

func TestHalfCloseBeforeBodySettlesAborted(t *testing.T) {
	g := &countingGuard{}
	h := newHarness(t, config.Defaults(), g)
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-length", "40")))
	require.NoError(t, c.s.CloseSend())
	require.True(t, c.ended())
	recs := h.waitRecords(1)
	require.Equal(t, OutcomeAborted, recs[0].Outcome)
	require.Empty(t, g.calls, "nothing was admitted, nothing to settle")
	require.Equal(t, "length", recs[0].EstimateSource)
}

func TestGzipResponseUsage(t *testing.T) {
	h := newHarness(t, config.Defaults())
	c := h.open()
	c.do(reqHeaders(hdrs(true, ":method", "GET", ":path", "/fake/v1/x")))
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(`{"in":11,"out":12}`))
	_ = zw.Close()
	resp := c.do(respHeaders(hdrs(false, ":status", "200", "content-type", "application/json", "content-encoding", "gzip")))
	require.Equal(t, filterv3.ProcessingMode_BUFFERED_PARTIAL, resp.GetModeOverride().GetResponseBodyMode())
	resp = c.do(respBody(b.Bytes(), true))
	require.EqualValues(t, 23, mdField(t, resp, "total_tokens"))
	require.Equal(t, "23", usageHeader(resp, "x-llm-total-tokens"))
}

func TestHeadersOnlyResponseEndsAtHeaders(t *testing.T) {
	h := newHarness(t, config.Defaults())
	c := h.open()
	c.do(reqHeaders(hdrs(true, ":method", "GET", ":path", "/fake/v1/x")))
	resp := c.do(respHeaders(hdrs(true, ":status", "204")))
	require.Nil(t, resp.GetModeOverride())
	require.Nil(t, resp.GetDynamicMetadata(), "nothing new to tell Envoy")
	require.True(t, c.ended())
	require.Equal(t, OutcomeCompleted, h.waitRecords(1)[0].Outcome)
}

func TestObservabilityModeNeverReplies(t *testing.T) {
	h := newHarness(t, config.Defaults())
	c := h.open()
	msgs := []*extprocv3.ProcessingRequest{
		reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")),
		reqBody([]byte(`{"model":"m","text":"abcd"}`), true),
		respHeaders(hdrs(false, ":status", "200", "content-type", "application/json")),
		respBody([]byte(`{"in":1,"out":1}`), true),
	}
	for _, m := range msgs {
		m.ObservabilityMode = true
		require.NoError(t, c.s.Send(m))
	}
	require.NoError(t, c.s.CloseSend())
	require.True(t, c.ended(), "no reply is sent in observability mode")
	recs := h.waitRecords(1)
	require.EqualValues(t, 2, recs[0].Usage.TotalTokens)
}

// usageHeader returns the value a body reply sets for header name.
func usageHeader(resp *extprocv3.ProcessingResponse, name string) string {
	for _, hv := range resp.GetResponseBody().GetResponse().GetHeaderMutation().GetSetHeaders() {
		if hv.GetHeader().GetKey() == name {
			return string(hv.GetHeader().GetRawValue())
		}
	}
	return ""
}

func (fakeProvider) ErrorBody(_ providers.RequestInfo, kind providers.ErrorKind, message string) []byte {
	b, _ := json.Marshal(map[string]any{"kind": int(kind), "message": message})
	return b
}

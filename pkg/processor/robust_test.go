package processor

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// randomMessage builds a message of any type with hostile content: paths
// of every provider and none, odd headers, truncated and random bodies,
// attempt counts and metadata, observability flags.
func randomMessage(rng *rand.Rand) *extprocv3.ProcessingRequest {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	hdrs := func(kv ...string) *extprocv3.HttpHeaders {
		m := &corev3.HeaderMap{}
		for i := 0; i+1 < len(kv); i += 2 {
			m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
		}
		return &extprocv3.HttpHeaders{Headers: m, EndOfStream: rng.IntN(3) == 0}
	}
	body := func() []byte {
		bodies := []string{`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			`{"model":`, "", "\xff\xfe", `data: {"usage":{"prompt_tokens":3}}` + "\n\n", `[{"usageMetadata":{"promptTokenCount":1}}]`,
			`{"type":"message_start","message":{"usage":{"input_tokens":5}}}`, `{"error":{"message":"x"}}`}
		b := []byte(bodies[rng.IntN(len(bodies))])
		if len(b) > 0 && rng.IntN(2) == 0 {
			b = b[:rng.IntN(len(b))]
		}
		return b
	}
	req := &extprocv3.ProcessingRequest{ObservabilityMode: rng.IntN(10) == 0}
	if rng.IntN(4) == 0 {
		req.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_BodySendMode(rng.IntN(5))}
	}
	if rng.IntN(3) == 0 {
		ns, _ := structpb.NewStruct(map[string]any{"provider": pick("openai", "nope", ""), "attempt_1": pick("provider_degraded", "x"),
			"attempt_x": "y", "force_first_attempt_failure": rng.IntN(2) == 0})
		req.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"llm_proxy": ns}}
	}
	switch rng.IntN(6) {
	case 0:
		req.Request = &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: hdrs(
			":method", pick("GET", "POST", ""), ":path", pick("/openai/v1/chat/completions", "/anthropic/v1/messages?llm_proxy_test_mode=force_degraded",
				"/gemini/v1beta/models/g:streamGenerateContent?alt=sse&key=k", "/meta//openai/x", "/v1/chat/completions", "", "?"),
			"content-type", pick("application/json", "text/plain", ""), "content-encoding", pick("gzip", "", "br"),
			"content-length", pick("12", "-1", "x", ""), "x-envoy-attempt-count", pick("1", "2", "0", "x"),
			"authorization", pick("Bearer k", ""), "x-llm-proxy-test-mode", pick("force_transient_recover", "x"))}
	case 1:
		req.Request = &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: body(), EndOfStream: rng.IntN(2) == 0}}
	case 2:
		req.Request = &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}
	case 3:
		req.Request = &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: hdrs(":status", pick("200", "429", "503", "529", "x", ""),
			"content-type", pick("text/event-stream", "application/json", "text/plain"), "content-length", pick("10", "99999999", ""),
			"content-encoding", pick("gzip", ""), "x-envoy-upstream-service-time", pick("3", ""))}
	case 4:
		req.Request = &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: body(), EndOfStream: rng.IntN(3) == 0}}
	default:
		req.Request = &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}
	}
	return req
}

// TestRandomMessageSequencesNeverPanic drives the state machine with
// thousands of random message sequences, in and out of order, with every
// guard kind plugged in: no sequence may panic, and every stream that
// admitted a provider request settles its tickets exactly once.
func TestRandomMessageSequencesNeverPanic(t *testing.T) {
	g := &countingGuard{}
	s := New(Options{Config: config.Defaults(), Providers: providers.Default(), Guards: []Guard{g},
		Attempts: AttemptClass, Pricer: nil})
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 5000 {
		st := newStream(s)
		n := 1 + rng.IntN(8)
		for range n {
			resp := st.handle(context.Background(), randomMessage(rng))
			st.flush()
			_ = resp
			if st.closed && rng.IntN(2) == 0 {
				break
			}
		}
		st.finish(context.Background())
		if st.admitted && len(st.tickets) != 0 {
			t.Fatalf("sequence %d: tickets left unsettled", i)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.settl) > len(g.calls) {
		t.Fatalf("%d settlements for %d admissions", len(g.settl), len(g.calls))
	}
}

func FuzzProcessorSequence(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3, 42} {
		f.Add(seed)
	}
	s := New(Options{Config: config.Defaults(), Providers: providers.Default(), Guards: []Guard{&countingGuard{}},
		Attempts: AttemptClass})
	f.Fuzz(func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed>>7))
		st := newStream(s)
		for range 1 + rng.IntN(10) {
			st.handle(context.Background(), randomMessage(rng))
			st.flush()
		}
		st.finish(context.Background())
	})
}

// bodyTicket asks for the error body and records what it was given.
type bodyTicket struct {
	mu     sync.Mutex
	bodies [][]byte
	calls  int
}

func (b *bodyTicket) Settle(context.Context, *Record) {}
func (b *bodyTicket) ResponseHeaders(context.Context, *Response) (*Reply, bool) {
	return nil, true
}

func (b *bodyTicket) ResponseBody(_ context.Context, _ *Response, body []byte) *Reply {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	b.bodies = append(b.bodies, body)
	return nil
}

type ticketGuard struct{ t Ticket }

func (g ticketGuard) Admit(context.Context, *Call) (Ticket, *Reply, error) { return g.t, nil, nil }

func TestTicketsThatWantTheBodyAlwaysDecide(t *testing.T) {
	tests := []struct {
		name     string
		length   string
		wantBody string
	}{
		{"small error body is delivered", "12", `{"error":{}}`},
		{"too large to hold: decided without it", "99999999", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bt := &bodyTicket{}
			h := newHarness(t, config.Defaults(), ticketGuard{bt})
			c := h.open()
			c.do(reqHeaders(hdrs(true, ":method", "GET", ":path", "/fake/v1/x")))
			c.do(respHeaders(hdrs(false, ":status", "429", "content-type", "application/json", "content-length", tt.length)))
			c.do(respBody([]byte(`{"error":{}}`), true))
			bt.mu.Lock()
			defer bt.mu.Unlock()
			require.Equal(t, 1, bt.calls, "exactly one decision")
			require.Equal(t, tt.wantBody, string(bt.bodies[0]))
		})
	}
}

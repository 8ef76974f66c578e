package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoytest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/gateway"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// stack is a running gateway as scenarios see it.
type stack interface {
	// URL is the gateway's base URL (Envoy's listener).
	URL() string
	// VendorCalls returns what the fake vendor served so far.
	VendorCalls(t *testing.T) []fakevendor.Call
	// AccessLog waits for n access-log lines and returns them, rendered with
	// the bootstrap's json_format as Envoy prints them.
	AccessLog(t *testing.T, n int) []map[string]any
}

// emulated runs the real ext_proc server in-process behind the Envoy
// emulator loaded from envoy/envoy-mock.yaml, in front of the fake vendor.
type emulated struct {
	url      string
	adminURL string
	front    *envoytest.Front
	format   map[string]any
	fake     *fakevendor.Server
	records  *recorder
}

type recorder struct {
	mu   sync.Mutex
	recs []*processor.Record
}

func (r *recorder) Observe(rec *processor.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

// emuOption adjusts the emulated stack.
type emuOption func(*emuConfig)

type emuConfig struct {
	cfg       config.Config
	now       func() time.Time
	envoy     []func(*envoytest.Config)
	vendor    http.Handler
	sent      func(*extprocv3.ProcessingResponse)
	onGateway func(*gateway.Gateway)
	getenv    func(string) string
	logs      io.Writer
}

// withConfig edits the server's rules before it starts.
func withConfig(f func(*config.Config)) emuOption { return func(c *emuConfig) { f(&c.cfg) } }

// withEnvoy edits the emulator's configuration after it is loaded from
// envoy-mock.yaml (for example a smaller buffer limit).
func withEnvoy(f func(*envoytest.Config)) emuOption {
	return func(c *emuConfig) { c.envoy = append(c.envoy, f) }
}

// withVendor serves every vendor cluster with h instead of the fake vendor
// (VendorCalls is then empty).
func withVendor(h http.Handler) emuOption { return func(c *emuConfig) { c.vendor = h } }

// withSent calls f with every reply the ext_proc server has sent, after
// it went out: a test can make an upstream wait for the server's answer.
func withSent(f func(*extprocv3.ProcessingResponse)) emuOption {
	return func(c *emuConfig) { c.sent = f }
}

// withGateway hands the test the assembled gateway (to close it early).
func withGateway(f func(*gateway.Gateway)) emuOption { return func(c *emuConfig) { c.onGateway = f } }

// withEnv is the server's environment (LLM_PROXY_ADMIN_TOKEN, ...) instead
// of the process's; unset names read as "".
func withEnv(env map[string]string) emuOption {
	return func(c *emuConfig) { c.getenv = func(k string) string { return env[k] } }
}

// withLogs sends the server's JSON logs to w instead of discarding them.
func withLogs(w io.Writer) emuOption { return func(c *emuConfig) { c.logs = w } }

// withClock gives the server a clock (windows, cooldowns) the test moves.
func withClock(now func() time.Time) emuOption { return func(c *emuConfig) { c.now = now } }

// startEmulated starts the whole stack on loopback: the server built by
// pkg/gateway exactly as cmd/extproc builds it. Any reply of our server that
// real Envoy would reject fails the test.
func startEmulated(t *testing.T, opts ...emuOption) *emulated {
	t.Helper()
	ctx := t.Context()
	ec := emuConfig{cfg: config.Defaults()}
	for _, o := range opts {
		o(&ec)
	}
	fake := fakevendor.New(fakevendor.Options{Seed: 7})
	var handler http.Handler = fake
	if ec.vendor != nil {
		handler = ec.vendor
	}
	vendor := httptest.NewServer(handler)
	t.Cleanup(vendor.Close)
	grpcAddr, adminAddr, rec := startServer(t, opts...)

	vendorAddr := vendor.Listener.Addr().String()
	cfg, err := envoytest.FromBootstrap("../envoy/envoy-mock.yaml", map[string]string{
		"ext_proc":      grpcAddr,
		"extproc_admin": adminAddr,
		"openai":        vendorAddr,
		"anthropic":     vendorAddr,
		"gemini":        vendorAddr,
		// The failover chain of envoy-mock.yaml: every target on the fake.
		"failover_openai_gpt_4o": vendorAddr,
	})
	require.NoError(t, err)
	relaxMessageTimeouts(&cfg, testMessageTimeout)
	for _, f := range ec.envoy {
		f(&cfg)
	}
	cfg.OnViolation = envoytest.Strict(t)
	// Retries back off without waiting in tests.
	cfg.Sleep = func(context.Context, time.Duration) error { return nil }
	front, err := envoytest.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { front.Close() })
	srv, err := front.Start(ctx, "")
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	return &emulated{url: srv.URL, front: front, format: cfg.AccessLogFormat, fake: fake, records: rec,
		adminURL: "http://" + adminAddr}
}

// testMessageTimeout replaces envoy-mock.yaml's 2 s ext_proc
// message_timeout in the e2e stack. Under -race on a loaded machine one
// reply can take longer than 2 s; with failure_mode_allow the emulator then
// continues without the server, exactly as Envoy would, and a test of a
// guard would see a request pass that the guard refused. No e2e test is
// about the timeout itself (internal/envoytest covers it); one that is
// sets it back with withEnvoy.
const testMessageTimeout = time.Minute

// relaxMessageTimeouts raises the message_timeout of every ext_proc filter
// in cfg (downstream and upstream) to at least d.
func relaxMessageTimeouts(cfg *envoytest.Config, d time.Duration) {
	relax := func(e *envoytest.ExtProcConfig) {
		if e != nil && e.MessageTimeout < d {
			e.MessageTimeout = d
		}
	}
	relax(cfg.ExtProc)
	relax(cfg.RouterUpstreamExtProc)
	for _, e := range cfg.UpstreamExtProc {
		relax(e)
	}
}

// startServer runs one ext_proc server (gRPC and admin listeners) built by
// pkg/gateway, and returns its addresses and what it records.
func startServer(t *testing.T, opts ...emuOption) (grpcAddr, adminAddr string, rec *recorder) {
	t.Helper()
	ec := emuConfig{cfg: config.Defaults()}
	for _, o := range opts {
		o(&ec)
	}
	rec = &recorder{}
	logs := ec.logs
	if logs == nil {
		logs = io.Discard
	}
	getenv := ec.getenv // nil: the process environment (t.Setenv)
	gw, err := gateway.New(t.Context(), ec.cfg, gateway.Options{
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Now: ec.now, Version: "e2e",
		Observers: []processor.Observer{rec}, Getenv: getenv,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = gw.Close() })
	if ec.onGateway != nil {
		ec.onGateway(gw)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gopts := processor.GRPCServerOptions()
	if ec.sent != nil {
		gopts = append(gopts, grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, sentStream{ServerStream: ss, sent: ec.sent})
		}))
	}
	gs := grpc.NewServer(gopts...)
	extprocv3.RegisterExternalProcessorServer(gs, gw.Processor)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	adminSrv := httptest.NewServer(gw.Admin)
	t.Cleanup(adminSrv.Close)
	return ln.Addr().String(), adminSrv.Listener.Addr().String(), rec
}

// sentStream reports each reply after it was sent.
type sentStream struct {
	grpc.ServerStream
	sent func(*extprocv3.ProcessingResponse)
}

func (s sentStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err != nil {
		return err
	}
	switch r := m.(type) {
	case *extprocv3.ProcessingResponse:
		s.sent(r)
	case interface {
		ProcessingResponse() *extprocv3.ProcessingResponse
	}: // a reply with metadata (processor's outgoing)
		s.sent(r.ProcessingResponse())
	}
	return err
}

func (e *emulated) URL() string { return e.url }

func (e *emulated) VendorCalls(*testing.T) []fakevendor.Call { return e.fake.Calls() }

func (e *emulated) AccessLog(t *testing.T, n int) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	entries, err := e.front.WaitAccessLog(ctx, n)
	require.NoError(t, err, "waiting for %d access-log lines", n)
	out := make([]map[string]any, len(entries))
	for i, en := range entries {
		// Round-trip through JSON so both runners compare the same types.
		out[i] = roundTrip(t, en.Format(e.format))
	}
	return out
}

// Records returns what the ext_proc server recorded (emulated runner only).
func (e *emulated) Records(t *testing.T, n int) []*processor.Record {
	t.Helper()
	require.Eventually(t, func() bool {
		e.records.mu.Lock()
		defer e.records.mu.Unlock()
		return len(e.records.recs) >= n
	}, 10*time.Second, time.Millisecond)
	e.records.mu.Lock()
	defer e.records.mu.Unlock()
	return append([]*processor.Record(nil), e.records.recs...)
}

func roundTrip(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

// num reads an access-log value as an integer: Envoy prints metadata numbers
// as JSON numbers and most other fields as strings; "-" and absent are -1.
func num(v any) int64 {
	switch tv := v.(type) {
	case float64:
		return int64(tv)
	case string:
		n, err := strconv.ParseInt(tv, 10, 64)
		if err != nil {
			return -1
		}
		return n
	case bool:
		if tv {
			return 1
		}
		return 0
	}
	return -1
}

func str(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// httpClient opens a connection per request: scenarios that reset a
// downstream connection must not break the next request that would have
// reused it (a POST on a connection the server just closed fails with EOF).
func httpClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/costlog"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/gateway"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// lifecycle returns the four messages Envoy sends for one buffered,
// non-streaming OpenAI chat completion with the contract's processing mode
// (request body BUFFERED, response body switched to BUFFERED by the
// server's mode_override).
func lifecycle() []*extprocv3.ProcessingRequest {
	reqHeaders := HeaderMap(
		":authority", "llm-gateway.internal.example.com",
		":path", "/openai/v1/chat/completions",
		":method", "POST",
		":scheme", "https",
		"content-type", "application/json",
		"content-length", strconv.Itoa(len(ChatRequest)),
		"authorization", "Bearer sk-proj-4f9Qm2XcT7vLr8JpYz3N5bKd1HsWg6EaUo0CiFtRyP",
		"accept", "application/json",
		"accept-encoding", "gzip, deflate, br",
		"user-agent", "OpenAI/Python 1.54.4",
		"x-request-id", "7b1f4c2e-9a3d-4e8b-b6f1-2c5d8e0a9f47",
		"x-forwarded-for", "10.42.7.19",
		"x-forwarded-proto", "https",
		"x-envoy-external-address", "10.42.7.19",
		"x-stainless-lang", "python",
		"x-stainless-package-version", "1.54.4",
		"x-stainless-runtime", "CPython",
		"x-stainless-retry-count", "0",
	)
	respHeaders := HeaderMap(
		":status", "200",
		"content-type", "application/json",
		"content-length", strconv.Itoa(len(ChatResponse)),
		"date", "Mon, 10 Mar 2025 01:25:52 GMT",
		"openai-organization", "bookshop-prod",
		"openai-processing-ms", "1874",
		"openai-version", "2020-10-01",
		"x-request-id", "req_5c2b1d0e7f8a49d3b6e1c0a9f8e7d6c5",
		"x-ratelimit-limit-requests", "30000",
		"x-ratelimit-limit-tokens", "150000000",
		"x-ratelimit-remaining-requests", "29999",
		"x-ratelimit-remaining-tokens", "149999588",
		"x-ratelimit-reset-requests", "2ms",
		"x-ratelimit-reset-tokens", "0s",
		"strict-transport-security", "max-age=31536000; includeSubDomains; preload",
		"cf-cache-status", "DYNAMIC",
		"server", "cloudflare",
		"cf-ray", "91e0c5b1a8f3e2d4-AMS",
		"alt-svc", `h3=":443"; ma=86400`,
		"x-envoy-upstream-service-time", "1881",
	)
	return []*extprocv3.ProcessingRequest{
		{
			Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: reqHeaders}},
			// Envoy sends the configured body modes on the first message.
			ProtocolConfig: &extprocv3.ProtocolConfiguration{
				RequestBodyMode:  filterv3.ProcessingMode_BUFFERED,
				ResponseBodyMode: filterv3.ProcessingMode_NONE,
			},
		},
		{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
			Body: []byte(ChatRequest), EndOfStream: true}}},
		{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: respHeaders}}},
		{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{
			Body: []byte(ChatResponse), EndOfStream: true}}},
	}
}

// driver plays request lifecycles the way Envoy does: a fresh Process
// stream per request on a shared connection, one message at a time, each
// sent only after the previous reply arrived. It is safe for concurrent use
// (the messages are read-only).
type driver struct {
	client extprocv3.ExternalProcessorClient
	msgs   []*extprocv3.ProcessingRequest
}

// run plays one lifecycle and checks that each reply has the matching type
// and that the server ends the stream after the last one. It returns the
// latency the lifecycle adds to an HTTP request: from opening the stream to
// the last reply. Envoy forwards the response as soon as that reply arrives
// and tears the stream down on its own, so the wait for the server's end of
// stream (checked here too) is not part of it.
func (d *driver) run(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t0 := time.Now()
	stream, err := d.client.Process(ctx)
	if err != nil {
		return 0, fmt.Errorf("open stream: %w", err)
	}
	for i, m := range d.msgs {
		if err := stream.Send(m); err != nil {
			return 0, fmt.Errorf("send message %d: %w", i, err)
		}
		resp, err := stream.Recv()
		if err != nil {
			return 0, fmt.Errorf("receive reply %d: %w", i, err)
		}
		if !matches(m, resp) {
			return 0, fmt.Errorf("reply %d is %T, not the reply to %T", i, resp.GetResponse(), m.GetRequest())
		}
	}
	lat := time.Since(t0)
	if err := stream.CloseSend(); err != nil {
		return 0, fmt.Errorf("close send: %w", err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("stream not ended by the server: %v", err)
	}
	return lat, nil
}

// matches reports whether resp is the reply type for req.
func matches(req *extprocv3.ProcessingRequest, resp *extprocv3.ProcessingResponse) bool {
	switch req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return resp.GetRequestHeaders() != nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return resp.GetRequestBody() != nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return resp.GetResponseHeaders() != nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return resp.GetResponseBody() != nil
	default:
		return false
	}
}

// newExtproc returns our server wired as cmd/extproc wires it, through
// pkg/gateway with the default rules: every request priced, Prometheus
// metrics on a fresh registry and one JSON log line per request (written to
// io.Discard); no guards (they are off by default).
func newExtproc() *processor.Server {
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	g, err := gateway.New(context.Background(), config.Defaults(), gateway.Options{Logger: log, Registry: prometheus.NewRegistry()})
	if err != nil {
		panic(err) // the default rules always build
	}
	return g.Processor
}

// newExtprocWithCost is newExtproc with cost tracking on, as
// features.cost_tracking.enabled sets it up: requests priced, cost records
// queued for a JSONL file (in the temporary directory), ledger entries for
// /usage (memory).
func newExtprocWithCost() (*processor.Server, error) {
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := config.Defaults()
	ct := &cfg.Features.CostTracking
	ct.Enabled = true
	ct.Sinks = []costlog.SinkConfig{{Type: costlog.SinkFile,
		File: &costlog.FileConfig{Path: filepath.Join(os.TempDir(), fmt.Sprintf("bench-costs-%d.jsonl", os.Getpid()))}}}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: log, Registry: prometheus.NewRegistry()})
	if err != nil {
		return nil, err
	}
	return g.Processor, nil
}

// newServer returns the ext_proc server of the given kind ("null" or
// "extproc").
func newServer(kind string) (extprocv3.ExternalProcessorServer, error) {
	switch kind {
	case "null":
		return &Null{}, nil
	case "extproc":
		return newExtproc(), nil
	case "extproc+cost":
		return newExtprocWithCost()

	default:
		return nil, fmt.Errorf("unknown server kind %q", kind)
	}
}

// serve starts srv on a fresh 127.0.0.1 port with cmd/extproc's gRPC
// options and returns its address and a stop function. The null server gets
// the transport options only (processor.GRPCTransportOptions): it decodes
// with grpc-go's standard codec, as a server that does nothing would, while
// decoding Envoy's messages is part of the work ours is measured on.
func serve(srv extprocv3.ExternalProcessorServer) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	opts := processor.GRPCServerOptions()
	if _, null := srv.(*Null); null {
		opts = processor.GRPCTransportOptions()
	}
	gs := grpc.NewServer(append(opts,
		grpc.MaxConcurrentStreams(1<<16),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)...)
	extprocv3.RegisterExternalProcessorServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	return ln.Addr().String(), gs.Stop, nil
}

// dial returns a driver for the server at addr over one HTTP/2 connection,
// as an Envoy worker uses one connection to its ext_proc cluster.
func dial(addr string) (*driver, func(), error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &driver{client: extprocv3.NewExternalProcessorClient(conn), msgs: lifecycle()}, func() { _ = conn.Close() }, nil
}

// startInProcess serves kind in this process and returns a driver for it.
func startInProcess(tb testing.TB, kind string) *driver {
	tb.Helper()
	srv, err := newServer(kind)
	if err != nil {
		tb.Fatal(err)
	}
	addr, stop, err := serve(srv)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	d, closeConn, err := dial(addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(closeConn)
	return d
}

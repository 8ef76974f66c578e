// Package otlptest is an OpenTelemetry collector stub for tests: an OTLP
// trace receiver over gRPC or HTTP (protobuf) on a loopback port that keeps
// every span it is sent. It follows the OTLP specification
// (opentelemetry-proto's collector/trace/v1 service and the /v1/traces
// HTTP path) and imports no product package.
package otlptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is one received span with the resource it came with.
type Span struct {
	Resource map[string]*commonpb.AnyValue
	Scope    string
	*tracepb.Span
}

// Attr returns the span attribute key, nil when absent.
func (s Span) Attr(key string) *commonpb.AnyValue { return attr(s.GetAttributes(), key) }

// Collector receives spans. It is safe for concurrent use.
type Collector struct {
	// Endpoint is the receiver's URL, for OTEL_EXPORTER_OTLP_ENDPOINT.
	Endpoint string

	mu    sync.Mutex
	spans []Span
}

func (c *Collector) add(req *collectorpb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		res := map[string]*commonpb.AnyValue{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = kv.GetValue()
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				c.spans = append(c.spans, Span{Resource: res, Scope: ss.GetScope().GetName(), Span: sp})
			}
		}
	}
}

// Spans returns the spans received so far, in arrival order.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

type traceService struct {
	collectorpb.UnimplementedTraceServiceServer
	c *Collector
}

func (s traceService) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	s.c.add(req)
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// StartGRPC starts an OTLP/gRPC receiver, stopped when the test ends.
func StartGRPC(t testing.TB) *Collector {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlptest: listen: %v", err)
	}
	c := &Collector{Endpoint: "http://" + ln.Addr().String()}
	gs := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(gs, traceService{c: c})
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return c
}

// StartHTTP starts an OTLP/HTTP receiver (binary protobuf on /v1/traces,
// gzip accepted), closed when the test ends.
func StartHTTP(t testing.TB) *Collector {
	t.Helper()
	c := &Collector{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want application/x-protobuf", http.StatusUnsupportedMediaType)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			defer zr.Close()
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req collectorpb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(&req)
		out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = io.Copy(w, bytes.NewReader(out))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c.Endpoint = srv.URL
	return c
}

func attr(kvs []*commonpb.KeyValue, key string) *commonpb.AnyValue {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue()
		}
	}
	return nil
}

// EventAttr returns attribute key of event e, nil when absent.
func EventAttr(e *tracepb.Span_Event, key string) *commonpb.AnyValue {
	return attr(e.GetAttributes(), key)
}

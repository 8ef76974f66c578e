package otlptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

func request(name string) *collectorpb.ExportTraceServiceRequest {
	return &collectorpb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "svc"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "scope"},
			Spans: []*tracepb.Span{{Name: name, Attributes: []*commonpb.KeyValue{{Key: "k",
				Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 7}}}}}}}},
	}}}
}

func TestHTTPReceiver(t *testing.T) {
	c := StartHTTP(t)
	body, err := proto.Marshal(request("plain"))
	if err != nil {
		t.Fatal(err)
	}
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	raw, _ := proto.Marshal(request("zipped"))
	_, _ = zw.Write(raw)
	_ = zw.Close()
	tests := []struct {
		name, path, ctype, encoding string
		body                        []byte
		want                        int
	}{
		{"protobuf", "/v1/traces", "application/x-protobuf", "", body, http.StatusOK},
		{"gzip", "/v1/traces", "application/x-protobuf", "gzip", zipped.Bytes(), http.StatusOK},
		{"json is not served", "/v1/traces", "application/json", "", []byte("{}"), http.StatusUnsupportedMediaType},
		{"wrong path", "/v1/metrics", "application/x-protobuf", "", body, http.StatusNotFound},
		{"not protobuf", "/v1/traces", "application/x-protobuf", "", []byte{0xff, 0xff}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, c.Endpoint+tt.path, bytes.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.ctype)
			if tt.encoding != "" {
				req.Header.Set("Content-Encoding", tt.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	spans := c.Spans()
	if len(spans) != 2 || spans[0].GetName() != "plain" || spans[1].GetName() != "zipped" {
		t.Fatalf("spans %v", spans)
	}
	if s := spans[0]; s.Resource["service.name"].GetStringValue() != "svc" || s.Scope != "scope" || s.Attr("k").GetIntValue() != 7 {
		t.Fatalf("span %v", s)
	}
}

func TestGRPCReceiver(t *testing.T) {
	c := StartGRPC(t)
	conn, err := grpc.NewClient(c.Endpoint[len("http://"):], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := collectorpb.NewTraceServiceClient(conn).Export(context.Background(), request("g")); err != nil {
		t.Fatal(err)
	}
	if spans := c.Spans(); len(spans) != 1 || spans[0].GetName() != "g" || spans[0].Attr("missing") != nil {
		t.Fatalf("spans %v", spans)
	}
}

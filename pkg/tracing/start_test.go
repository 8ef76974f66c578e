package tracing

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/otlptest"
)

// otelVars are every variable Start or the SDK reads that a test sets.
var otelVars = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
}

// setEnv clears the OpenTelemetry environment, then sets kv.
func setEnv(t *testing.T, kv map[string]string) {
	t.Helper()
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
	for k, v := range kv {
		t.Setenv(k, v)
	}
}

func TestStartIsOffWithoutAnEndpoint(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"nothing set", nil},
		{"only a service name", map[string]string{"OTEL_SERVICE_NAME": "gw"}},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			obs, shutdown, err := Start(t.Context(), Options{})
			require.NoError(t, err)
			require.Nil(t, obs, "tracing off adds no observer")
			require.NoError(t, shutdown(t.Context()))
		})
	}
}

func TestStartRejectsWhatItCannotHonour(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"other exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{"json protocol", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			_, _, err := Start(t.Context(), Options{})
			require.Error(t, err)
		})
	}
}

// TestStartExportsOverOTLP sends a Record's span through the real OTLP
// exporter to a collector stub, over each protocol; Shutdown flushes it.
func TestStartExportsOverOTLP(t *testing.T) {
	for _, tt := range []struct {
		protocol string
		start    func(testing.TB) *otlptest.Collector
		signal   bool // set the traces-specific variables instead
	}{
		{"grpc", otlptest.StartGRPC, false},
		{"http/protobuf", otlptest.StartHTTP, false},
		{"grpc", otlptest.StartGRPC, true},
		{"", otlptest.StartHTTP, false}, // the default protocol
	} {
		t.Run(tt.protocol, func(t *testing.T) {
			col := tt.start(t)
			env := map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": col.Endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": tt.protocol,
				"OTEL_SERVICE_NAME": "gw-test", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
			}
			if tt.signal {
				env = map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": col.Endpoint,
					"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": tt.protocol, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
					"OTEL_SERVICE_NAME": "gw-test", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test"}
			}
			setEnv(t, env)
			obs, shutdown, err := Start(t.Context(), Options{ServiceVersion: "v1.2.3"})
			require.NoError(t, err)
			require.NotNil(t, obs)
			obs.Observe(streamedChat())
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a hang guard only
			defer cancel()
			require.NoError(t, shutdown(ctx))

			spans := col.Spans()
			require.Len(t, spans, 1)
			s := spans[0]
			require.Equal(t, "gw-test", s.Resource["service.name"].GetStringValue())
			require.Equal(t, "v1.2.3", s.Resource["service.version"].GetStringValue())
			require.Equal(t, "test", s.Resource["deployment.environment.name"].GetStringValue())
			require.Equal(t, ScopeName, s.Scope)
			require.Equal(t, "chat gpt-4o", s.GetName())
			require.Equal(t, tracepb.Span_SPAN_KIND_CLIENT, s.GetKind())
			require.Equal(t, parentTraceID, hex.EncodeToString(s.GetTraceId()))
			require.Equal(t, parentSpanID, hex.EncodeToString(s.GetParentSpanId()))
			require.Equal(t, uint64(t0.UnixNano()), s.GetStartTimeUnixNano())
			require.Equal(t, uint64(t0.Add(1500*time.Millisecond).UnixNano()), s.GetEndTimeUnixNano())
			require.Equal(t, "openai", s.Attr("gen_ai.provider.name").GetStringValue())
			require.EqualValues(t, 12, s.Attr("gen_ai.usage.input_tokens").GetIntValue())
			require.EqualValues(t, 5, s.Attr("gen_ai.usage.output_tokens").GetIntValue())
			require.Len(t, s.GetEvents(), 3)
			require.Equal(t, "circuit_breaker", otlptest.EventAttr(s.GetEvents()[0], attrGuard).GetStringValue())
		})
	}
}

func TestStartHonoursTheSampler(t *testing.T) {
	col := otlptest.StartHTTP(t)
	setEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.Endpoint, "OTEL_TRACES_SAMPLER": "always_off"})
	obs, shutdown, err := Start(t.Context(), Options{})
	require.NoError(t, err)
	obs.Observe(streamedChat())
	require.NoError(t, shutdown(t.Context()))
	require.Empty(t, col.Spans())
}

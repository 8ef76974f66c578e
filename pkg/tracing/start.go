package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// DefaultServiceName is service.name when OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES name none.
const DefaultServiceName = "llm-proxy-extproc"

// Options configures Start.
type Options struct {
	// ServiceVersion is the resource's service.version (the build's
	// version); OTEL_RESOURCE_ATTRIBUTES may override it.
	ServiceVersion string
	// Logger receives export failures. Default slog.Default().
	Logger *slog.Logger
}

// Shutdown flushes the spans still queued and stops the exporter; it
// returns when ctx ends at the latest.
type Shutdown func(ctx context.Context) error

// Start reads the standard OpenTelemetry environment and, when an OTLP
// endpoint is configured, returns the Observer that exports one span per
// LLM call and the Shutdown that flushes it. When tracing is off it returns
// a nil Observer (add nothing to the observers) and a Shutdown that does
// nothing.
//
// Tracing is on when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_ENDPOINT is set, unless OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none. OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (or
// OTEL_EXPORTER_OTLP_PROTOCOL) picks "grpc" or "http/protobuf" (the
// default). The exporter reads the other OTEL_EXPORTER_OTLP_* variables
// (headers, TLS, compression, timeout), the SDK OTEL_TRACES_SAMPLER(_ARG)
// (default parentbased_always_on) and OTEL_BSP_*, and the resource
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES. Start fails only on a
// value it cannot honour (another exporter or protocol).
func Start(ctx context.Context, o Options) (processor.Observer, Shutdown, error) {
	off := func(context.Context) error { return nil }
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, off, nil
	}
	switch exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp {
	case "", "otlp":
	case "none":
		return nil, off, nil
	default:
		return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", exp)
	}
	if firstEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		return nil, off, nil
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var client otlptrace.Client
	switch proto := firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); proto {
	case "grpc":
		client = otlptracegrpc.NewClient()
	case "", "http/protobuf":
		client = otlptracehttp.NewClient()
	default:
		return nil, nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want grpc or http/protobuf", proto)
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(DefaultServiceName), semconv.ServiceVersion(o.ServiceVersion)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // last: the environment wins
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, nil, fmt.Errorf("trace resource: %w", err)
	}
	log := o.Logger
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry export failed", "error", err)
	}))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return New(tp), tp.Shutdown, nil
}

// firstEnv returns the first non-empty value of the variables.
func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

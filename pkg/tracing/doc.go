// Package tracing exports one OpenTelemetry span per LLM call, following
// the GenAI semantic conventions, through the standard OTLP exporter.
//
// Configuration is the standard OTEL_* environment only (see Start);
// without an OTLP endpoint tracing is off and costs nothing. The span is
// built from the processor's Record when the call has ended, with the
// Record's own start and end times, so the request path does no tracing
// work: the Observer runs after the last reply was sent, and the batch span
// processor exports from its own goroutine. The parent is the client's
// trace, read from the traceparent and tracestate request headers Envoy
// forwards (W3C Trace Context). Guard decisions are span events.
//
// A span never carries prompt or completion text (the Record holds none)
// nor an API key (only the key's id).
package tracing

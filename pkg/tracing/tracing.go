package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/genai"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/tracing"

// Attribute keys outside the semantic conventions, in the gateway's own
// namespace.
const (
	attrRequestID      = "llm_proxy.request_id"
	attrOutcome        = "llm_proxy.outcome"
	attrStream         = "llm_proxy.stream"
	attrUser           = "llm_proxy.user"
	attrKeyID          = "llm_proxy.key_id"
	attrEstimate       = "llm_proxy.estimated_input_tokens"
	attrEstimateSource = "llm_proxy.estimate_source"
	attrUsageEstimated = "llm_proxy.usage_estimated"
	attrCostUSD        = "llm_proxy.cost_usd"
	attrGuard          = "llm_proxy.guard.name"
	attrVerdict        = "llm_proxy.guard.verdict"
	attrDetails        = "llm_proxy.guard.details"
	attrState          = "llm_proxy.guard.state"
	attrReplacedBy     = "llm_proxy.replaced_by"
)

// Span event names.
const (
	// EventGuard is one guard's admission decision.
	EventGuard = "llm_proxy.guard"
	// EventFirstChunk is the first response body chunk.
	EventFirstChunk = "llm_proxy.first_chunk"
	// EventReplaced is the gateway replacing the vendor's response (the
	// circuit breaker's degraded signal).
	EventReplaced = "llm_proxy.response_replaced"
)

// Tracer is the processor.Observer that turns each Record into a span. It
// is safe for concurrent use.
type Tracer struct {
	tracer trace.Tracer
	prop   propagation.TraceContext
}

var _ processor.Observer = (*Tracer)(nil)

// New returns a Tracer creating its spans with tp.
func New(tp trace.TracerProvider) *Tracer {
	return &Tracer{tracer: tp.Tracer(ScopeName)}
}

// headerCarrier reads the request headers of a Record for the propagator.
type headerCarrier func(name string) string

func (h headerCarrier) Get(key string) string { return h(key) }
func (headerCarrier) Set(string, string)      {}
func (headerCarrier) Keys() []string          { return nil }

// Observe implements [processor.Observer]: one CLIENT span named
// "{gen_ai.operation.name} {gen_ai.request.model}", from the request
// headers to the end of the call.
func (t *Tracer) Observe(r *processor.Record) {
	ctx := context.Background()
	if r.Header != nil && r.Header("traceparent") != "" {
		ctx = t.prop.Extract(ctx, headerCarrier(r.Header))
	}
	op := genai.Operation(r.Info.Endpoint)
	name := op
	if r.Info.Model != "" {
		name = op + " " + r.Info.Model
	}
	// The attributes a sampler may look at are given at creation, as the
	// conventions ask; the rest only when the span is recorded.
	start := [3]attribute.KeyValue{
		attribute.String(genai.OperationName, op),
		attribute.String(genai.ProviderName, genai.Provider(r.Provider)),
	}
	n := 2
	if r.Info.Model != "" {
		start[n] = attribute.String(genai.RequestModel, r.Info.Model)
		n++
	}
	_, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(r.Start), trace.WithAttributes(start[:n]...))
	end := endOf(r)
	if !span.IsRecording() {
		span.End(trace.WithTimestamp(end))
		return
	}
	span.SetAttributes(attributes(r)...)
	for _, d := range r.Guards {
		span.AddEvent(EventGuard, trace.WithTimestamp(d.At), trace.WithAttributes(guardAttributes(d)...))
	}
	if r.TTFB > 0 {
		span.AddEvent(EventFirstChunk, trace.WithTimestamp(r.Start.Add(r.TTFB)))
	}
	if r.ReplacedBy != "" {
		span.AddEvent(EventReplaced, trace.WithTimestamp(end),
			trace.WithAttributes(attribute.String(attrReplacedBy, r.ReplacedBy)))
	}
	if et := genai.ErrorTypeOf(r); et != "" {
		span.SetAttributes(attribute.String(genai.ErrorType, et))
		span.SetStatus(codes.Error, et)
	}
	span.End(trace.WithTimestamp(end))
}

// attributes are the span's attributes besides those given at creation.
func attributes(r *processor.Record) []attribute.KeyValue {
	a := make([]attribute.KeyValue, 0, 20)
	str := func(k, v string) {
		if v != "" {
			a = append(a, attribute.String(k, v))
		}
	}
	num := func(k string, v int64) {
		if v > 0 {
			a = append(a, attribute.Int64(k, v))
		}
	}
	num(genai.RequestMaxTokens, r.Info.MaxOutputTokens)
	u := r.Usage
	str(genai.ResponseModel, u.Model)
	str(genai.ResponseID, u.RequestID)
	if u.FinishReason != "" {
		a = append(a, attribute.StringSlice(genai.ResponseFinish, []string{u.FinishReason}))
	}
	if u.Found {
		// Input counts every prompt token, cached or not, as the
		// conventions ask (Anthropic reports the cache beside it).
		a = append(a, attribute.Int64(genai.UsageInputTokens, processor.PromptTokens(r.Provider, r.Info, u)),
			attribute.Int64(genai.UsageOutputTokens, u.OutputTokens))
		num(genai.UsageCacheRead, u.CacheReadTokens)
		num(genai.UsageCacheCreation, u.CacheWriteTokens)
	}
	num(genai.HTTPStatusCode, int64(r.Status))
	str(attrRequestID, r.RequestID)
	a = append(a, attribute.String(attrOutcome, string(r.Outcome)), attribute.Bool(attrStream, r.Info.Stream))
	str(attrUser, r.Identity.User)
	str(attrKeyID, r.Identity.KeyID)
	num(attrEstimate, r.EstimatedInputTokens)
	str(attrEstimateSource, r.EstimateSource)
	if r.UsageEstimated {
		a = append(a, attribute.Bool(attrUsageEstimated, true))
	}
	if r.Cost.Known {
		a = append(a, attribute.Float64(attrCostUSD, r.Cost.TotalUSD))
	}
	return a
}

func guardAttributes(d processor.GuardDecision) []attribute.KeyValue {
	a := make([]attribute.KeyValue, 0, 4)
	if d.Guard != "" {
		a = append(a, attribute.String(attrGuard, d.Guard))
	}
	a = append(a, attribute.String(attrVerdict, d.Verdict))
	if d.Details != "" {
		a = append(a, attribute.String(attrDetails, d.Details))
	}
	state := d.State
	if state == "" && d.Details == processor.CircuitOpenDetails {
		state = "open"
	}
	if state != "" {
		a = append(a, attribute.String(attrState, state))
	}
	return a
}

// endOf is when the call ended.
func endOf(r *processor.Record) time.Time { return r.Start.Add(r.Duration) }

package processor

import (
	"context"
	"sync"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
)

// Details of the circuit breaker's local replies (%RESPONSE_CODE_DETAILS%).
const (
	CircuitOpenDetails     = "llm_proxy_circuit_open"
	CircuitDegradedDetails = "llm_proxy_provider_degraded"
	TestModeDetails        = "llm_proxy_test_mode"
)

// Test-mode values of the X-LLM-Proxy-Test-Mode header and the
// llm_proxy_test_mode query parameter.
const (
	TestForceDegraded         = "force_degraded"
	TestForceTransientRecover = "force_transient_recover"
)

// Circuit is the Guard for the circuit breaker: it fast-fails requests to
// an open provider/model with the degraded signal, sends the half-open
// probe without retries, classifies the final response (with the attempt
// classes the upstream filter recorded) and replaces a terminal degraded
// response with the signal. It is safe for concurrent use.
type Circuit struct {
	b        *breaker.Breaker
	now      func() time.Time
	testMode bool
}

var _ Guard = (*Circuit)(nil)

// NewCircuit returns the breaker Guard. testMode enables the test-mode
// header and query (config test_mode_enabled and the environment's
// LLM_PROXY_ALLOW_TEST_MODE=1, checked by the caller).
func NewCircuit(b *breaker.Breaker, testMode bool, now func() time.Time) *Circuit {
	if now == nil {
		now = time.Now
	}
	return &Circuit{b: b, now: now, testMode: testMode}
}

// Name implements [NamedGuard].
func (*Circuit) Name() string { return "circuit_breaker" }

// Remote implements [RemoteGuard] (see [breaker.Breaker.Remote]); a test
// mode request never reaches the breaker's store.
func (g *Circuit) Remote(c *Call) bool {
	return g.testModeOf(c) == "" && g.b.Remote(c.Provider, c.Info.Model, g.now())
}

// testModeOf returns the request's test mode: the header wins over the
// query parameter; unknown values are ignored (and, like every proxy-only
// header and parameter, never reach the vendor).
func (g *Circuit) testModeOf(c *Call) string {
	if !g.testMode {
		return ""
	}
	v := c.Header("x-llm-proxy-test-mode")
	if v == "" {
		v = queryValue(c.RawQuery, "llm_proxy_test_mode")
	}
	switch v {
	case TestForceDegraded, TestForceTransientRecover:
		return v
	}
	return ""
}

func (g *Circuit) degraded(c *Call, source breaker.Source, details string) *Reply {
	status, headers, body := breaker.DegradedResponse(c.Provider, g.b.Signal(), source)
	h := append([][2]string(nil), headers...)
	return &Reply{Status: status, Headers: h, Body: body, Details: details}
}

// Admit implements [Guard.Admit].
func (g *Circuit) Admit(ctx context.Context, c *Call) (Ticket, *Reply, error) {
	switch g.testModeOf(c) {
	case TestForceDegraded:
		return nil, g.degraded(c, breaker.SourceProxy, TestModeDetails), nil
	case TestForceTransientRecover:
		// The upstream filter fails the first attempt; Envoy retries. Test
		// traffic is kept out of the breaker's accounting.
		return forcedTicket{}, nil, nil
	}
	adm, err := g.b.Allow(ctx, c.Provider, c.Info.Model, g.now())
	if !adm.Allowed {
		return nil, g.degraded(c, breaker.SourceProxy, CircuitOpenDetails), nil
	}
	// A store error admits (fail open): adm is still usable.
	return &circuitTicket{g: g, call: c, adm: adm}, nil, err
}

// forcedTicket marks a test-mode request for the upstream filter.
type forcedTicket struct{}

func (forcedTicket) Settle(context.Context, *Record) {}

// Metadata implements [MetadataTicket].
func (forcedTicket) Metadata() map[string]any { return map[string]any{attemptForcedKey: true} }

// circuitTicket follows one admitted request.
type circuitTicket struct {
	g    *Circuit
	call *Call
	adm  breaker.Admission

	mu       sync.Mutex
	reported bool
}

// State implements [StateTicket]: the circuit's state at admission
// ("open" only in log mode, which admits anyway).
func (t *circuitTicket) State() string { return t.adm.State.String() }

// RequestHeaders implements [RequestHeaderSetter]: the probe is one
// attempt, so its outcome is the provider's, not Envoy's retry policy's.
func (t *circuitTicket) RequestHeaders() [][2]string {
	if t.adm.Probe {
		return [][2]string{{"x-envoy-max-retries", "0"}}
	}
	return nil
}

// needsBody reports whether classifying status needs the error body:
// OpenAI's insufficient_quota and Gemini's RESOURCE_EXHAUSTED detail live
// there.
func needsBody(provider string, status int) bool {
	return status == 429 && (provider == "openai" || provider == "gemini")
}

// ResponseHeaders implements [ResponseTicket].
func (t *circuitTicket) ResponseHeaders(ctx context.Context, r *Response) (*Reply, bool) {
	if !r.EnvoyLocal && needsBody(t.call.Provider, r.Status) {
		return nil, true
	}
	return t.report(ctx, r, nil), false
}

// ResponseBody implements [ResponseTicket].
func (t *circuitTicket) ResponseBody(ctx context.Context, r *Response, body []byte) *Reply {
	return t.report(ctx, r, body)
}

func (t *circuitTicket) report(ctx context.Context, r *Response, body []byte) *Reply {
	g := t.g
	class := breaker.Classify(t.call.Provider, r.Status, r.Header, body, r.EnvoyLocal)
	out := breaker.Outcome{Class: class, Terminal: true}
	// Every attempt but the last is a retried failure; the last is this
	// response. An attempt that died before response headers is degraded
	// (connect failure, reset, timeout), as Envoy's local reply would be.
	if n := len(r.Attempts); n > 1 {
		for _, a := range r.Attempts[:n-1] {
			c, ok := breaker.ParseClass(a)
			if !ok {
				c = breaker.Degraded
			}
			out.Attempts = append(out.Attempts, c)
		}
	}
	t.mu.Lock()
	t.reported = true
	t.mu.Unlock()
	v, _ := g.b.Report(ctx, t.adm, out, g.now())
	if v.Degrade {
		return g.degraded(t.call, breaker.SourceUpstream, CircuitDegradedDetails)
	}
	return nil
}

// FailedOver implements failedOverTicket: the admitted target's attempts
// (classes, attempt order) failed before the first byte and Envoy's chain
// route served the call from another target. The last is the terminal
// outcome, the others retried failures, as report counts them; an attempt
// with no class (the upstream filter did not see it) is degraded.
func (t *circuitTicket) FailedOver(ctx context.Context, classes []string) {
	t.mu.Lock()
	done := t.reported
	t.reported = true
	t.mu.Unlock()
	if done {
		return
	}
	out := breaker.Outcome{Class: breaker.Degraded, Terminal: true}
	for i, a := range classes {
		c, ok := breaker.ParseClass(a)
		if !ok || c == breaker.Canceled {
			c = breaker.Degraded
		}
		if i == len(classes)-1 {
			out.Class = c
		} else {
			out.Attempts = append(out.Attempts, c)
		}
	}
	_, _ = t.g.b.Report(ctx, t.adm, out, t.g.now())
}

// Settle implements [Ticket.Settle]: a request that ended without a final
// response (client gone, refused by a later guard) releases its probe slot.
func (t *circuitTicket) Settle(ctx context.Context, _ *Record) {
	t.mu.Lock()
	done := t.reported
	t.reported = true
	t.mu.Unlock()
	if !done {
		_, _ = t.g.b.Report(ctx, t.adm, breaker.Outcome{Class: breaker.Canceled, Terminal: true}, t.g.now())
	}
}

// AttemptClass classifies one upstream attempt's response for the upstream
// filter (see attempt.go), from the status and headers alone.
func AttemptClass(provider string, status int, header func(string) string) string {
	return breaker.Classify(provider, status, header, nil, false).String()
}

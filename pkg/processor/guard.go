package processor

import (
	"context"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// Call describes a provider request at admission time, after its body (if
// any) was read. Guards must treat it as read-only.
type Call struct {
	// RequestID is Envoy's x-request-id.
	RequestID string
	Provider  string
	// Path is the vendor path with the routing prefix removed, no query.
	Path     string
	Method   string
	Info     providers.RequestInfo
	Identity Identity
	// EstimatedInputTokens is the input-token estimate for the body.
	EstimatedInputTokens int64
	// EstimateSource says how the estimate was made: "text" (billable text
	// read from the body), "length" (body length / bytes_per_token) or
	// "none" (no body).
	EstimateSource string
	// Start is when the request headers reached the server.
	Start time.Time
	// Header returns the first value of a request header (lower-case name),
	// as Envoy sent it, before proxy-only headers were stripped.
	Header func(name string) string
	// RawQuery is the request's query as the client sent it, before
	// proxy-only parameters (llm_proxy_*) were removed.
	RawQuery string
	// Failover is set when another target of the call's failover chain
	// serves it, chosen at admission (an open circuit) or by Envoy's chain
	// route before the first byte (set at the final response headers):
	// Provider, Path and Info are then the target's, and
	// Failover.Requested what the client asked for. Nil otherwise.
	Failover *Failover
}

// Identity names who is calling.
type Identity struct {
	// User is the end-user id, from the /meta/{user}/ path, the X-User-ID
	// header, the vendor body field or the llm_user_id query, in that order.
	User string
	// KeyID identifies the API key the client sent (Authorization bearer,
	// x-api-key, x-goog-api-key or the key query parameter, in that order)
	// by its hash; see KeyID. Empty when no key was sent.
	KeyID string
	// ClientIP is the client address Envoy vouches for (last
	// x-forwarded-for entry, without port).
	ClientIP string
	// Owner and Team are the gateway key's owner and team, for providers
	// in gateway_keys mode; empty otherwise. KeyID is then the key's
	// display id ("key_…"), not a hash of the secret.
	Owner, Team string
	// GatewayKey is the authenticated gateway key with its team (limits
	// and budget), nil in passthrough mode. Shared and read-only.
	GatewayKey *keys.Identity
}

// Reply is a local answer sent to the client instead of calling the vendor.
type Reply struct {
	// Status is the HTTP status code.
	Status int
	// Headers are set on the reply, in order.
	Headers [][2]string
	// Body is the reply body.
	Body []byte
	// Details is recorded by Envoy as %RESPONSE_CODE_DETAILS%.
	Details string
}

// Guard admits or refuses provider requests before they reach the vendor.
//
// Admit is called once per provider request. It returns a Ticket that the
// processor settles exactly once when the request ends (whatever the way),
// or a Reply that refuses the request (and then no Ticket). An error means
// the guard could not decide; the processor logs it and lets the request
// through (keeping the Ticket returned with it, if any), so a guard that
// wants to fail closed returns a Reply instead. Implementations must be safe
// for concurrent use, and Admit may run at the same time as other guards'
// (see [RemoteGuard]).
type Guard interface {
	Admit(ctx context.Context, c *Call) (Ticket, *Reply, error)
}

// RemoteGuard is a Guard whose Admit waits on a network store (Redis).
// Consecutive guards that are remote for a call are admitted at once, so
// the call waits one store round trip instead of one per guard; when one
// refuses, the tickets of the others are settled as refused, as those of
// guards before a refusal always are. Remote reports whether c would wait
// on the store; a guard that is about to refuse (a circuit this instance
// saw open) should say false, so that it runs alone, before later guards
// reserve anything.
type RemoteGuard interface {
	Guard
	Remote(c *Call) bool
}

// Ticket is an admitted request's claim on a Guard, settled exactly once.
type Ticket interface {
	// Settle ends the claim with the request's final Record. It runs on a
	// context that is not cancelled with the client.
	Settle(ctx context.Context, r *Record)
}

// ResponseTicket is a Ticket that sees the final response before the
// client does and may replace it (the circuit breaker's degraded signal).
// The processor finds it by type assertion.
type ResponseTicket interface {
	Ticket
	// ResponseHeaders sees the final response's status and headers. It
	// returns a Reply to send instead, or wantBody to decide once the body
	// (up to 16 KiB, delivered whole when it fits the buffer limit) is in.
	ResponseHeaders(ctx context.Context, r *Response) (reply *Reply, wantBody bool)
	// ResponseBody is called after wantBody, with the body's first bytes.
	ResponseBody(ctx context.Context, r *Response, body []byte) *Reply
}

// RequestHeaderSetter is a Ticket that needs headers set on the request
// before it goes upstream (for example x-envoy-max-retries: 0 on a circuit
// probe). Envoy only applies x-envoy-* headers when the filter's
// mutation_rules allow_envoy is true.
type RequestHeaderSetter interface {
	Ticket
	RequestHeaders() [][2]string
}

// MetadataTicket is a Ticket that adds fields to the admission metadata
// (the dynamic metadata namespace), for later filters such as the upstream
// filter. Values must be strings, numbers or bools.
type MetadataTicket interface {
	Ticket
	Metadata() map[string]any
}

// Response describes the final response as Envoy passes it on.
type Response struct {
	Status int
	// Header returns the first value of a response header (lower-case name).
	Header func(name string) string
	// EnvoyLocal is true when Envoy's router generated the response itself
	// (connect failure, reset, timeout, no healthy upstream): such replies
	// carry no x-envoy-upstream-service-time header.
	EnvoyLocal bool
	// Attempts are the classes of each upstream attempt, in order (the
	// last one is this response's): what the upstream filter recorded, and
	// AttemptNoResponse for an attempt that x-envoy-attempt-count shows but
	// that died before the filter could record it (connect failure). Empty
	// when no upstream filter runs and the vendor answered.
	Attempts []string
}

// NamedGuard is a Guard that names itself in GuardDecision.Guard
// ("circuit_breaker", "rate_limit", "budget"). The processor finds it by
// type assertion.
type NamedGuard interface {
	Guard
	Name() string
}

// StateTicket is a Ticket that reports the state it was admitted in (the
// circuit breaker: "closed", "half_open" for the probe, "open" in log
// mode) for GuardDecision.State.
type StateTicket interface {
	Ticket
	State() string
}

// Verdicts of a GuardDecision.
const (
	VerdictAdmitted = "admitted"
	VerdictRefused  = "refused"
	// VerdictError: the guard could not decide and the request was let
	// through.
	VerdictError = "error"
)

// GuardDecision is one guard's answer at admission.
type GuardDecision struct {
	// Guard is the guard's Name (see NamedGuard); empty when it has none.
	Guard string
	// Verdict is VerdictAdmitted, VerdictRefused or VerdictError.
	Verdict string
	// Details is the refusal's Reply.Details; empty otherwise.
	Details string
	// State is the admitted ticket's State (see StateTicket); empty
	// otherwise.
	State string
	// At is when the guard answered.
	At time.Time
}

// Observer receives one Record per provider request when it ends.
// Implementations must be safe for concurrent use and must not block.
type Observer interface {
	Observe(r *Record)
}

// Outcome says how a provider request ended.
type Outcome string

// Outcomes of a provider request.
const (
	// OutcomeCompleted: the response ended normally.
	OutcomeCompleted Outcome = "completed"
	// OutcomeRefused: a Guard answered locally; the vendor was not called.
	OutcomeRefused Outcome = "refused"
	// OutcomeAborted: the stream ended before the response did (client
	// disconnect, upstream reset, Envoy timeout).
	OutcomeAborted Outcome = "aborted"
)

// Record is the account of one provider request.
type Record struct {
	Call
	// Status is the HTTP status the client got (0 when none was seen).
	Status  int
	Outcome Outcome
	// Usage is what the vendor reported; Usage.Found is false when it
	// reported nothing (errors, aborted streams before the usage event).
	Usage providers.Usage
	// Guards are the admission decisions in guard order, up to and
	// including a refusal; nil when no guard ran.
	Guards []GuardDecision
	// RefusedBy names the refusal's Details when Outcome is OutcomeRefused.
	RefusedBy string
	// ReplacedBy names the Details of the reply that replaced the vendor's
	// response (Status is then the reply's), empty otherwise.
	ReplacedBy string
	// TTFB is the time from the request headers to the first response body
	// byte (the first chunk of a stream); zero when no body byte was seen.
	TTFB time.Duration
	// Duration is the time from the request headers to the end.
	Duration time.Duration
	// RequestBytes and ResponseBytes count body bytes seen by the server
	// (response bytes before any decompression).
	RequestBytes  int64
	ResponseBytes int64
	// Cost is the request's price; Cost.Known is false when the model has
	// no price or no Pricer is configured.
	Cost Cost
	// UsageEstimated is true when the vendor reported no usage and Usage
	// holds the gateway's input estimate instead (streams cut short before
	// the usage event).
	UsageEstimated bool
}

// Cost is the price of one request in USD.
type Cost struct {
	// Known is false when the model has no price.
	Known bool
	// Model is the canonical model the price belongs to.
	Model                                                      string
	InputUSD, CacheReadUSD, CacheWriteUSD, OutputUSD, TotalUSD float64
}

// Pricer prices a request's usage at the prices in force at at, the
// request's start time. Implementations are safe for concurrent use and
// must not block.
type Pricer interface {
	Price(provider string, info providers.RequestInfo, u providers.Usage, at time.Time) Cost
}

package breaker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
	"unicode/utf8"
)

// State is the circuit state of one key. Larger is worse.
type State int

// States.
const (
	// StateClosed admits every request and counts failures.
	StateClosed State = iota
	// StateHalfOpen admits one probe at a time; the cooldown has passed.
	StateHalfOpen
	// StateOpen fast-fails every request until the cooldown ends.
	StateOpen
)

// String returns "closed", "half_open" or "open".
func (s State) String() string {
	switch s {
	case StateHalfOpen:
		return "half_open"
	case StateOpen:
		return "open"
	}
	return "closed"
}

// Reason explains a refusal or a state change.
type Reason int

// Reasons.
const (
	ReasonNone Reason = iota
	// ReasonThreshold: failures in the window reached the threshold.
	ReasonThreshold
	// ReasonProbeFailed: the half-open probe failed; open for a full cooldown.
	ReasonProbeFailed
	// ReasonQuota: insufficient_quota force-opened the provider-wide key.
	ReasonQuota
	// ReasonProbeSuccess: the half-open probe succeeded; closed.
	ReasonProbeSuccess
	// ReasonCooldownElapsed: the first probe after the cooldown was admitted.
	ReasonCooldownElapsed
	// ReasonOpen: refused because the model key is open.
	ReasonOpen
	// ReasonProviderOpen: refused because the provider-wide key is open.
	ReasonProviderOpen
	// ReasonProbeInFlight: refused because another request holds the probe slot.
	ReasonProbeInFlight
)

var reasonNames = [...]string{"", "threshold", "probe_failed", "insufficient_quota", "probe_success", "cooldown_elapsed", "circuit_open", "provider_open", "probe_in_flight"}

// String returns the metric label of r ("threshold", "probe_failed", ...).
func (r Reason) String() string {
	if r < 0 || int(r) >= len(reasonNames) {
		return "unknown"
	}
	return reasonNames[r]
}

// Target names the key a probe is for.
type Target int

// Probe targets.
const (
	// TargetNone: the request is not a probe.
	TargetNone Target = iota
	// TargetModel: the probe is for the <provider>:<model> key.
	TargetModel
	// TargetProvider: the probe is for the provider-wide key.
	TargetProvider
)

// ProbeOutcome is what a probe's report did to its key.
type ProbeOutcome int

// Probe outcomes.
const (
	// NoProbe: the report was not a probe's, or its lease had been lost.
	NoProbe ProbeOutcome = iota
	// ProbeSucceeded: the key closed.
	ProbeSucceeded
	// ProbeFailed: the key re-opened for a full cooldown.
	ProbeFailed
	// ProbeReleased: the slot was freed with no state change (caller error,
	// rate limit, cancellation).
	ProbeReleased
)

// String returns "success", "failure", "released" or "".
func (o ProbeOutcome) String() string {
	switch o {
	case ProbeSucceeded:
		return "success"
	case ProbeFailed:
		return "failure"
	case ProbeReleased:
		return "released"
	}
	return ""
}

// UnknownModel is the model of requests whose body names none, including
// body-less requests such as GET /v1/models. Their failures stay on
// "<provider>:_unknown" and never reach the provider-wide key (seed §12.1).
const UnknownModel = "_unknown"

// maxModelLen bounds the model part of a key, in bytes; longer or
// malformed names are replaced by a digest so attacker-chosen strings
// cannot bloat keys.
const maxModelLen = 128

// Key identifies a breaker. Model "" is the provider-wide key, used only
// for quota exhaustion; request keys come from [ModelKey].
type Key struct {
	Provider string
	Model    string
}

// ModelKey returns the key of a request to provider for model: an empty
// model becomes [UnknownModel]; a model longer than 128 bytes or holding
// control characters or invalid UTF-8 becomes "_h" plus a SHA-256 prefix.
func ModelKey(provider, model string) Key {
	if model == "" {
		return Key{Provider: provider, Model: UnknownModel}
	}
	if len(model) > maxModelLen || !cleanModel(model) {
		sum := sha256.Sum256([]byte(model))
		return Key{Provider: provider, Model: "_h" + hex.EncodeToString(sum[:12])}
	}
	return Key{Provider: provider, Model: model}
}

func cleanModel(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// ProviderKey returns the provider-wide key of provider.
func ProviderKey(provider string) Key { return Key{Provider: provider} }

// String returns "<provider>:<model>", or "<provider>" for the
// provider-wide key.
func (k Key) String() string {
	if k.Model == "" {
		return k.Provider
	}
	return k.Provider + ":" + k.Model
}

// Policy holds the state-machine parameters a [Store] applies. Build it
// with [Config.Policy].
type Policy struct {
	// Threshold is the failure count in Window that opens a closed key.
	Threshold int
	// Window is the sliding failure window.
	Window time.Duration
	// Cooldown is how long an opened key stays open.
	Cooldown time.Duration
	// ProbeLease is how long a probe holds the half-open slot unreported.
	ProbeLease time.Duration
	// EscalationWindow is how long global rate limits must persist across
	// requests before they count as degraded.
	EscalationWindow time.Duration
	// Retention is how long a key is kept after its cooldown ends with no
	// traffic; then it is forgotten (closed). The same on every backend.
	Retention time.Duration
	// MaxWindowEntries caps the failures kept per key (at least Threshold);
	// reported failure counts saturate at it.
	MaxWindowEntries int
}

// Decision is a [Store]'s answer to an admission check.
type Decision struct {
	// Reject is true when enforce mode must refuse the request.
	Reject bool
	// Reason says why it is refused (ReasonOpen, ReasonProviderOpen,
	// ReasonProbeInFlight).
	Reason Reason
	// Probe is the key this request probes, TargetNone if none.
	Probe Target
	// ModelState and ProviderState are the two keys' states.
	ModelState, ProviderState State
	// CooldownUntil is the end of the cooldown of the key that decided
	// (the refusing or probed key); zero when both are closed.
	CooldownUntil time.Time
	// Tracked is true when the model key carries global rate-limit tracking
	// that a success must reset; when false and the request is not a probe,
	// a clean success needs no [Store.Record] call.
	Tracked bool
	// Announce is true for the first probe since the key opened: the
	// open → half_open transition.
	Announce bool
}

// Event is one report to a [Store].
type Event struct {
	// Terminal says Final is the request's final response.
	Terminal bool
	// Final is the class of the final response when Terminal.
	Final Class
	// AttemptFailures is the number of failed attempts to count (already
	// filtered by the retry contribution mode).
	AttemptFailures int
	// Probe and Token identify the probe slot the request holds.
	Probe Target
	Token string
}

// Change is a key's state before and after a report.
type Change struct {
	From, To State
	Reason   Reason
}

// Changed reports whether the state moved.
func (c Change) Changed() bool { return c.From != c.To }

// Result is what a [Store.Record] call did.
type Result struct {
	// Model and Provider are the two keys' transitions.
	Model, Provider Change
	// Escalated is true when a global rate limit counted as degraded.
	Escalated bool
	// Probe is what happened to the probe slot the event held.
	Probe ProbeOutcome
	// Failures is the model key's failure count in the window afterwards.
	Failures int
}

// ProviderStats summarises one provider's keys for /health.
type ProviderStats struct {
	// State is the worst state among the provider's keys.
	State State
	// Failures is the sum of failures in the window over its keys.
	Failures int
	// CooldownUntil is the earliest cooldown end among open keys; zero when
	// none is open.
	CooldownUntil time.Time
}

// Store keeps breaker state. Each method is one atomic step; implementations
// are safe for concurrent use and never sleep. Time is passed in, so tests
// drive it; all deadlines are stored in that clock and evaluated against
// the now of later calls, so expiry behaves the same on every backend.
type Store interface {
	// Admit checks key (a model key) and its provider-wide key at now and,
	// when one is half-open with a free slot, gives the probe slot to token
	// for Policy.ProbeLease.
	Admit(ctx context.Context, key Key, token string, now time.Time) (Decision, error)
	// Record applies one report for key at now.
	Record(ctx context.Context, key Key, ev Event, now time.Time) (Result, error)
	// Stats summarises provider's keys at now.
	Stats(ctx context.Context, provider string, now time.Time) (ProviderStats, error)
	// Peek returns what Admit would decide for key at now without taking
	// the probe slot or writing anything: Probe names the key a request
	// would probe (its slot is free), Announce is always false.
	Peek(ctx context.Context, key Key, now time.Time) (Decision, error)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

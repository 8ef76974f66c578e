package quota

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/backendhealth"
)

// ErrUnavailable is wrapped by every error a [Store] returns when it cannot
// answer (Redis down, memory table full). The caller applies its fail mode.
var ErrUnavailable = errors.New("quota store unavailable")

// Metric is one quantity counted in every window of a policy.
type Metric struct {
	// Field names the counter inside a window (a Redis hash field): short
	// and unique within the policy, like "r" or "t".
	Field string
	// Optimistic skips the check while the window holds 0 of this metric,
	// so the first request of a window passes whatever its estimate.
	Optimistic bool
}

// Check is one window of one scope that a request must pass.
type Check struct {
	// Scope names the counter ("user:alice"). It becomes part of Redis keys
	// and their hash tag: it must hold no secret.
	Scope string
	// Window and Index locate the window (see [Window.Index]).
	Window Window
	Index  int64
	// Limits are per metric, in the policy's order; 0 is unlimited.
	Limits []int64
}

// Charge is one window that a reservation charged.
type Charge struct {
	// Scope is the counter's scope, as in [Check.Scope].
	Scope string `json:"scope"`
	// Window is the window length.
	Window Window `json:"window"`
	// Index is the window's index (see [Window.Index]).
	Index int64 `json:"index"`
}

// Current reports whether the charged window has not rotated at now.
func (c Charge) Current(now time.Time) bool { return c.Window.Index(now) <= c.Index }

// Reservation records the windows [Store.Reserve] charged (the amounts are
// the caller's to keep, for the deltas of [Store.Adjust]). It is plain
// data: another instance sharing the store can adjust it.
type Reservation struct {
	// ID identifies the reservation; adjusting it twice is harmless because
	// the second call finds the ID gone.
	ID string `json:"id"`
	// Charges are the windows charged. Empty when no check applied.
	Charges []Charge `json:"charges,omitempty"`
}

// Expiry is when the last window of r ends; after it there is nothing left
// to adjust.
func (r Reservation) Expiry() time.Time {
	var end time.Time
	for _, c := range r.Charges {
		if e := c.Window.End(c.Index); e.After(end) {
			end = e
		}
	}
	return end
}

// Result is the answer of [Store.Reserve].
type Result struct {
	// Allowed reports whether every check admitted and was charged.
	Allowed bool
	// Reservation is what was charged; zero when refused.
	Reservation Reservation
	// Check is the index, in the checks given, of the first refusing check.
	Check int
	// Index is the refusing window's index: the check's, or a newer one the
	// store already holds (a caller whose clock lags joins the newer window).
	Index int64
	// Metric is the refusing metric's index.
	Metric int
	// Limit is the refusing limit, as applied (a [Local] fallback's share).
	Limit int64
	// Used is what the refusing window held of that metric.
	Used int64
	// Degraded is set when a [Local] fallback decided, the shared store
	// being unreachable.
	Degraded bool
}

// Status reports a store's health for /health.
type Status = backendhealth.Status

// Store keeps the counters. Implementations are safe for concurrent use.
type Store interface {
	// Reserve checks every check at now and, only if all admit, adds
	// amounts (one per metric) to all of them. A refusal charges nothing.
	Reserve(ctx context.Context, checks []Check, amounts []int64, now time.Time) (Result, error)
	// Adjust adds deltas (one per metric) to every window of res still
	// current at now, clamping at 0, once per reservation id: a second
	// call does nothing.
	Adjust(ctx context.Context, res Reservation, deltas []int64, now time.Time) error
	// Usage reads, without charging, what each check's window (Scope,
	// Window, Index) holds: out[i][j] is metric j of checks[i], 0 for a
	// window never charged or since rotated. Limits are ignored. See
	// usage.go.
	Usage(ctx context.Context, checks []Check, now time.Time) ([][]int64, error)
	// Status reports the store's health; the Redis store pings.
	Status(ctx context.Context) Status
	// Close releases the store's resources.
	Close() error
}

// exceeds reports whether a window holding used refuses amount under limit.
func (m Metric) exceeds(limit, used, amount int64) bool {
	if limit <= 0 || (m.Optimistic && used == 0) {
		return false
	}
	return used >= limit || used+amount > limit
}

// maxIdentityLen bounds identities kept verbatim in scope names; longer ones
// (user ids and model names come from clients) are replaced by a hash.
const maxIdentityLen = 128

// ScopeName returns kind+id, or kind+"sha256:"+hash when id is too long to
// keep verbatim.
func ScopeName(kind, id string) string {
	if len(id) <= maxIdentityLen {
		return kind + id
	}
	sum := sha256.Sum256([]byte(id))
	return kind + "sha256:" + hex.EncodeToString(sum[:16])
}

// AddCheck appends to dst the check of scope in window w at index idx with
// limits (one per metric), unless every limit is 0 (unlimited).
func AddCheck(dst []Check, scope string, w Window, idx int64, limits ...int64) []Check {
	if slices.ContainsFunc(limits, func(l int64) bool { return l > 0 }) {
		dst = append(dst, Check{Scope: scope, Window: w, Index: idx, Limits: limits})
	}
	return dst
}

func (c Check) charge() Charge { return Charge{Scope: c.Scope, Window: c.Window, Index: c.Index} }

func newID() string { return rand.Text() }

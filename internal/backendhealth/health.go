// Package backendhealth tracks whether a shared store (Redis) answers, for
// the packages that keep state there (rate limits, budgets). It turns call
// outcomes into a Status, reports each transition once, and while the store
// is down lets one call through per retry interval, so an outage costs
// callers one fast error instead of a network timeout each.
package backendhealth

import (
	"sync"
	"sync/atomic"
	"time"
)

// Status reports a backend's health for /health.
type Status struct {
	// Backend is "memory", "redis" or "disabled".
	Backend string `json:"backend"`
	// Healthy is false while the backend fails.
	Healthy bool `json:"healthy"`
	// LastError is the most recent backend error, empty if none.
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Fallback is "local" while a quota store serves from in-process
	// counters (fail mode local), else empty.
	Fallback string `json:"fallback,omitempty"`
	// PendingAdjustments is how many failed settlements wait for their
	// background retry; DroppedAdjustments how many the bounded queue
	// gave up.
	PendingAdjustments int   `json:"pending_adjustments,omitempty"`
	DroppedAdjustments int64 `json:"dropped_adjustments,omitempty"`
}

// Tracker follows one backend. Retry intervals use the wall clock, not the
// callers' injected time. It is safe for concurrent use.
type Tracker struct {
	onChange func(Status)
	retry    time.Duration
	ok       atomic.Bool  // fast path: success while healthy takes no lock
	nextTry  atomic.Int64 // Unix ns before which calls are skipped while unhealthy

	mu     sync.Mutex
	status Status
}

// New returns a Tracker for backend that starts healthy. onChange (may be
// nil) is called once per transition, synchronously; retry is the interval
// between trial calls while unhealthy (0: every call is tried).
func New(backend string, onChange func(Status), retry time.Duration) *Tracker {
	t := &Tracker{onChange: onChange, retry: retry}
	t.ok.Store(true)
	t.status = Status{Backend: backend, Healthy: true}
	return t
}

// Observe records the outcome of a backend call.
func (t *Tracker) Observe(err error) {
	if err == nil && t.ok.Load() {
		return
	}
	t.mu.Lock()
	var changed bool
	if err == nil {
		changed = !t.status.Healthy
		t.status.Healthy = true
	} else {
		changed = t.status.Healthy
		t.status.Healthy = false
		t.status.LastError = err.Error()
		t.status.LastErrorAt = time.Now()
		t.nextTry.Store(t.status.LastErrorAt.Add(t.retry).UnixNano())
	}
	t.ok.Store(t.status.Healthy)
	s := t.status
	t.mu.Unlock()
	if changed && t.onChange != nil {
		t.onChange(s)
	}
}

// Admit reports whether a call may use the backend: always while healthy,
// else one call per retry interval.
func (t *Tracker) Admit() bool {
	if t.ok.Load() {
		return true
	}
	next := t.nextTry.Load()
	now := time.Now()
	if now.UnixNano() < next {
		return false
	}
	return t.nextTry.CompareAndSwap(next, now.Add(t.retry).UnixNano())
}

// Status returns the current status.
func (t *Tracker) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

// RetryNow lets the next call through at once, as if the retry interval had
// passed (an operator's "try again", and tests).
func (t *Tracker) RetryNow() { t.nextTry.Store(0) }

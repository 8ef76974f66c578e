package budget

import (
	"sync"
	"sync/atomic"
	"time"
)

// health tracks a backend's state from the outcome of its calls and calls
// Hooks.OnStateChange once per transition. While unhealthy it lets one call
// through per retry interval (wall clock, not the callers' injected time)
// so an outage costs callers one fast error, not a network timeout each.
// Safe for concurrent use.
type health struct {
	hooks   Hooks
	retry   time.Duration
	ok      atomic.Bool  // fast path: success while healthy takes no lock
	nextTry atomic.Int64 // Unix ns before which calls are skipped while unhealthy

	mu     sync.Mutex
	status BackendStatus
}

func newHealth(backend string, hooks Hooks, retry time.Duration) *health {
	h := &health{hooks: hooks, retry: retry}
	h.ok.Store(true)
	h.status = BackendStatus{Backend: backend, Healthy: true}
	return h
}

// observe records the outcome of a backend call.
func (h *health) observe(err error) {
	if err == nil && h.ok.Load() {
		return
	}
	h.mu.Lock()
	var changed bool
	if err == nil {
		changed = !h.status.Healthy
		h.status.Healthy = true
	} else {
		changed = h.status.Healthy
		h.status.Healthy = false
		h.status.LastError = err.Error()
		h.status.LastErrorAt = time.Now()
		h.nextTry.Store(h.status.LastErrorAt.Add(h.retry).UnixNano())
	}
	h.ok.Store(h.status.Healthy)
	s := h.status
	h.mu.Unlock()
	if changed && h.hooks.OnStateChange != nil {
		h.hooks.OnStateChange(s)
	}
}

// admit reports whether a call may use the backend: always while healthy,
// else one call per retry interval.
func (h *health) admit() bool {
	if h.ok.Load() {
		return true
	}
	next := h.nextTry.Load()
	now := time.Now()
	if now.UnixNano() < next {
		return false
	}
	return h.nextTry.CompareAndSwap(next, now.Add(h.retry).UnixNano())
}

func (h *health) get() BackendStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

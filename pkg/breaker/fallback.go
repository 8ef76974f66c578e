package breaker

import (
	"context"
	"sync"
	"time"
)

// Status reports the backend in use, for /health.
type Status struct {
	// Backend is the configured backend, "memory" or "redis".
	Backend string
	// Fallback is true while Redis is unreachable and this instance runs on
	// its own memory store.
	Fallback bool
	// LastError is the last Redis error seen, "" if none.
	LastError string
	// Since is when the current fallback began; zero when not in fallback.
	Since time.Time
}

// fallback runs a Redis store and switches to a private memory store when
// Redis fails. While on memory it retries Redis on the calls' own clock:
// at most one PING per backoff interval (1 s doubling to 30 s), made
// synchronously by the first call past the deadline while the others keep
// using memory, so no goroutine is ever started. Memory state formed during
// the outage is dropped when Redis answers again (the shared state wins)
// and when a new outage begins (no stale state resurfaces).
type fallback struct {
	primary  *Redis
	mem      *Memory
	onChange func(Status)

	mu      sync.Mutex
	down    bool
	trying  bool
	lastErr string
	since   time.Time
	nextTry time.Time
	backoff time.Duration
}

var _ Store = (*fallback)(nil)

func (f *fallback) status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Status{Backend: BackendRedis, Fallback: f.down, LastError: f.lastErr}
	if f.down {
		s.Since = f.since
	}
	return s
}

func (f *fallback) notify() {
	if f.onChange != nil {
		f.onChange(f.status())
	}
}

// usePrimary reports whether this call should go to Redis, probing it when
// in fallback and the backoff has passed.
func (f *fallback) usePrimary(ctx context.Context, now time.Time) bool {
	f.mu.Lock()
	if !f.down {
		f.mu.Unlock()
		return true
	}
	if f.trying || now.Before(f.nextTry) {
		f.mu.Unlock()
		return false
	}
	f.trying = true
	f.mu.Unlock()

	err := f.primary.Ping(ctx)
	if err == nil {
		err = f.primary.Load(ctx)
	}
	f.mu.Lock()
	f.trying = false
	if err != nil {
		f.lastErr = err.Error()
		f.backoff = min(2*f.backoff, fallbackMaxBackoff)
		f.nextTry = now.Add(f.backoff)
		f.mu.Unlock()
		return false
	}
	f.down = false
	f.mu.Unlock()
	f.mem.reset()
	f.notify()
	return true
}

// failed records a Redis error and reports whether the call should be
// retried on memory. A caller's cancelled context is not an outage.
func (f *fallback) failed(ctx context.Context, err error, now time.Time) bool {
	if ctx.Err() != nil {
		return false
	}
	f.mu.Lock()
	f.lastErr = err.Error()
	if f.down {
		f.mu.Unlock()
		return true
	}
	f.down = true
	f.since = now
	f.backoff = fallbackMinBackoff
	f.nextTry = now.Add(f.backoff)
	f.mu.Unlock()
	f.mem.reset()
	f.notify()
	return true
}

func run[T any](ctx context.Context, f *fallback, now time.Time, call func(Store) (T, error)) (T, error) {
	if f.usePrimary(ctx, now) {
		v, err := call(f.primary)
		if err == nil || !f.failed(ctx, err, now) {
			return v, err
		}
	}
	return call(f.mem)
}

// Admit implements [Store.Admit].
func (f *fallback) Admit(ctx context.Context, key Key, token string, now time.Time) (Decision, error) {
	return run(ctx, f, now, func(s Store) (Decision, error) { return s.Admit(ctx, key, token, now) })
}

// Record implements [Store.Record].
func (f *fallback) Record(ctx context.Context, key Key, ev Event, now time.Time) (Result, error) {
	return run(ctx, f, now, func(s Store) (Result, error) { return s.Record(ctx, key, ev, now) })
}

// Peek implements [Store.Peek].
func (f *fallback) Peek(ctx context.Context, key Key, now time.Time) (Decision, error) {
	return run(ctx, f, now, func(s Store) (Decision, error) { return s.Peek(ctx, key, now) })
}

// Stats implements [Store.Stats].
func (f *fallback) Stats(ctx context.Context, provider string, now time.Time) (ProviderStats, error) {
	return run(ctx, f, now, func(s Store) (ProviderStats, error) { return s.Stats(ctx, provider, now) })
}

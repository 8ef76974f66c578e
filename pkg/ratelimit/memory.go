package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Memory is the in-process backend. Its counters live in this process only,
// so it is for a single instance: N replicas each admit the full limits,
// N times in total. Use [Redis] for several instances.
//
// Memory stays bounded: each scope keeps only its current minute and day
// counters, a scope is evicted once both of its windows have ended (swept
// when the minute turns), and outstanding reservations are forgotten when
// their last window ends. At most [Config.MaxScopes] scopes and as many
// outstanding reservations are tracked; when a request needs a new scope (or
// reservation) beyond that, Reserve returns an error wrapping
// [ErrBackendUnavailable] and the caller's fail mode decides, while
// identities already tracked keep being limited exactly.
//
// Memory is safe for concurrent use; one mutex guards all counters.
type Memory struct {
	cfg    Config
	health *health

	mu      sync.Mutex
	scopes  map[string]*scopeState
	pending map[string]int64 // reservation id -> expiry (Unix seconds)
	swept   int64            // minute index of the last sweep
	scratch []check
}

type counters struct {
	index int64
	reqs  int64
	toks  int64
}

type scopeState struct {
	minute counters
	day    counters
}

func (s *scopeState) window(w Window) *counters {
	if w == WindowDay {
		return &s.day
	}
	return &s.minute
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns a memory limiter for cfg (defaults applied; call
// cfg.Validate first).
func NewMemory(cfg Config) *Memory {
	cfg.ApplyDefaults()
	return &Memory{
		cfg:     cfg,
		health:  newHealth(BackendMemory, Hooks{}, 0),
		scopes:  make(map[string]*scopeState),
		pending: make(map[string]int64),
	}
}

// Reserve implements [Limiter.Reserve].
func (m *Memory) Reserve(_ context.Context, req Request, now time.Time) (Decision, error) {
	tokens := m.cfg.charge(req)
	id := newID()

	m.mu.Lock()
	defer m.mu.Unlock()
	checks := m.cfg.plan(m.scratch[:0], req, now)
	m.scratch = checks
	if len(checks) == 0 {
		return Decision{Allowed: true}, nil
	}
	m.sweep(now)

	added := 0
	for i := range checks {
		ch := &checks[i]
		st := m.scopes[ch.scope]
		var reqs, toks int64
		if st != nil {
			w := st.window(ch.window)
			if w.index > ch.index {
				// A caller whose clock lags the latest one joins the newer
				// window rather than resurrecting an ended one.
				ch.index = w.index
			}
			if w.index == ch.index {
				reqs, toks = w.reqs, w.toks
			}
		} else if i == 0 || checks[i-1].scope != ch.scope {
			added++
		}
		if metric, over := ch.exceeds(reqs, toks, tokens); over {
			m.health.Observe(nil)
			return ch.denial(metric, reqs, toks, now), nil
		}
	}
	if len(m.scopes)+added > m.cfg.MaxScopes || len(m.pending) >= m.cfg.MaxScopes {
		err := unavailable("memory limiter is full (%d scopes, %d outstanding reservations; max_scopes %d)",
			len(m.scopes), len(m.pending), m.cfg.MaxScopes)
		m.health.Observe(err)
		return Decision{}, err
	}

	res := Reservation{ID: id, Tokens: tokens, Charges: make([]Charge, len(checks))}
	for i, ch := range checks {
		st := m.scopes[ch.scope]
		if st == nil {
			st = &scopeState{}
			m.scopes[ch.scope] = st
		}
		w := st.window(ch.window)
		if w.index != ch.index {
			*w = counters{index: ch.index}
		}
		w.reqs++
		w.toks += tokens
		res.Charges[i] = Charge{Scope: ch.scope, Window: ch.window, Index: ch.index}
	}
	m.pending[id] = res.expiry().Unix()
	m.health.Observe(nil)
	return Decision{Allowed: true, Reservation: res}, nil
}

// Settle implements [Limiter.Settle].
func (m *Memory) Settle(_ context.Context, res Reservation, actualTokens int64, now time.Time) error {
	m.release(res, 0, max(actualTokens, 0)-res.Tokens, now)
	return nil
}

// Cancel implements [Limiter.Cancel].
func (m *Memory) Cancel(_ context.Context, res Reservation, now time.Time) error {
	m.release(res, -1, -res.Tokens, now)
	return nil
}

// release applies request and token deltas to the unrotated windows of res,
// once per reservation id.
func (m *Memory) release(res Reservation, dReqs, dToks int64, now time.Time) {
	if len(res.Charges) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.pending[res.ID]; !ok {
		return // already settled or cancelled, or expired
	}
	delete(m.pending, res.ID)
	for _, ch := range res.Charges {
		if !ch.current(now) {
			continue
		}
		st := m.scopes[ch.Scope]
		if st == nil {
			continue
		}
		w := st.window(ch.Window)
		if w.index != ch.Index {
			continue
		}
		w.reqs = max(w.reqs+dReqs, 0)
		w.toks = max(w.toks+dToks, 0)
	}
}

// sweep drops scopes whose windows have all ended and reservations past
// their last window, at most once per minute. Callers hold m.mu.
func (m *Memory) sweep(now time.Time) {
	minute := windowIndex(now, WindowMinute)
	if minute <= m.swept {
		return
	}
	m.swept = minute
	day := windowIndex(now, WindowDay)
	for name, st := range m.scopes {
		if st.minute.index < minute && st.day.index < day {
			delete(m.scopes, name)
		}
	}
	sec := now.Unix()
	for id, exp := range m.pending {
		if exp <= sec {
			delete(m.pending, id)
		}
	}
}

// Status implements [Limiter.Status].
func (m *Memory) Status(context.Context) BackendStatus { return m.health.Status() }

// Close implements [Limiter.Close]; it does nothing.
func (m *Memory) Close() error { return nil }

// size returns the tracked scopes and outstanding reservations.
func (m *Memory) size() (scopes, pending int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.scopes), len(m.pending)
}

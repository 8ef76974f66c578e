package quota

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/backendhealth"
)

// DefaultMaxScopes bounds a [Memory] store when its options name no bound.
const DefaultMaxScopes = 100_000

// MemoryOptions configure [NewMemory]. Zero fields take the defaults.
type MemoryOptions struct {
	// MaxScopes bounds the scopes with live counters and the outstanding
	// reservations. Default [DefaultMaxScopes].
	MaxScopes int
	// OnStateChange is called once per health transition (the table
	// filling up, then making room again). May be nil.
	OnStateChange func(Status)
}

// Memory is the in-process store. Its counters live in this process only,
// so N replicas each admit the full limits.
//
// It stays bounded: each scope keeps only its current window of each
// length, a scope is dropped once all its windows have ended (swept at most
// once per minute), and outstanding reservations are forgotten when their
// last window ends. When a request needs a new scope or reservation beyond
// MaxScopes, Reserve returns an error wrapping [ErrUnavailable], while
// scopes already tracked keep being limited exactly.
//
// Memory is safe for concurrent use; one mutex guards all counters.
type Memory struct {
	metrics   []Metric
	maxScopes int
	health    *backendhealth.Tracker

	mu      sync.Mutex
	scopes  map[string]*memScope
	pending map[string]int64 // reservation id -> expiry (Unix seconds)
	swept   int64            // minute index of the last sweep
}

type memScope struct{ windows []memWindow }

type memWindow struct {
	window Window
	index  int64
	used   []int64
}

func (s *memScope) find(w Window) *memWindow {
	for i := range s.windows {
		if s.windows[i].window == w {
			return &s.windows[i]
		}
	}
	return nil
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty memory store counting metrics.
func NewMemory(metrics []Metric, o MemoryOptions) *Memory {
	if o.MaxScopes <= 0 {
		o.MaxScopes = DefaultMaxScopes
	}
	return &Memory{
		metrics:   metrics,
		maxScopes: o.MaxScopes,
		health:    backendhealth.New("memory", o.OnStateChange, 0),
		scopes:    make(map[string]*memScope),
		pending:   make(map[string]int64),
	}
}

// Reserve implements [Store.Reserve].
func (m *Memory) Reserve(_ context.Context, checks []Check, amounts []int64, now time.Time) (Result, error) {
	if len(checks) == 0 {
		return Result{Allowed: true}, nil
	}
	id := newID()
	idx := make([]int64, len(checks))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	added := 0
	for i, ch := range checks {
		idx[i] = ch.Index
		var used []int64
		if st := m.scopes[ch.Scope]; st == nil {
			if !slices.ContainsFunc(checks[:i], func(c Check) bool { return c.Scope == ch.Scope }) {
				added++
			}
		} else if w := st.find(ch.Window); w != nil {
			// A caller whose clock lags joins the newer window rather than
			// resurrecting an ended one.
			idx[i] = max(idx[i], w.index)
			if w.index == idx[i] {
				used = w.used
			}
		}
		for j, mt := range m.metrics {
			var u int64
			if used != nil {
				u = used[j]
			}
			if mt.exceeds(ch.Limits[j], u, amounts[j]) {
				m.health.Observe(nil)
				return Result{Check: i, Index: idx[i], Metric: j, Limit: ch.Limits[j], Used: u}, nil
			}
		}
	}
	if len(m.scopes)+added > m.maxScopes || len(m.pending) >= m.maxScopes {
		err := fmt.Errorf("%w: memory store is full (%d scopes, %d outstanding reservations; max_scopes %d)", ErrUnavailable,
			len(m.scopes), len(m.pending), m.maxScopes)
		m.health.Observe(err)
		return Result{}, err
	}
	res := Reservation{ID: id, Charges: make([]Charge, len(checks))}
	for i, ch := range checks {
		st := m.scopes[ch.Scope]
		if st == nil {
			st = &memScope{}
			m.scopes[ch.Scope] = st
		}
		w := st.find(ch.Window)
		if w == nil {
			st.windows = append(st.windows, memWindow{window: ch.Window, index: idx[i], used: make([]int64, len(m.metrics))})
			w = &st.windows[len(st.windows)-1]
		} else if w.index != idx[i] {
			w.index = idx[i]
			clear(w.used)
		}
		for j, a := range amounts {
			w.used[j] += a
		}
		res.Charges[i] = Charge{Scope: ch.Scope, Window: ch.Window, Index: idx[i]}
	}
	m.pending[id] = res.Expiry().Unix()
	m.health.Observe(nil)
	return Result{Allowed: true, Reservation: res}, nil
}

// Adjust implements [Store.Adjust].
func (m *Memory) Adjust(_ context.Context, res Reservation, deltas []int64, now time.Time) error {
	if len(res.Charges) == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.pending[res.ID]; !ok {
		return nil // already adjusted, or expired
	}
	delete(m.pending, res.ID)
	for _, ch := range res.Charges {
		if u := m.used(ch); u != nil && ch.Current(now) {
			for j, d := range deltas {
				u[j] = max(u[j]+d, 0)
			}
		}
	}
	return nil
}

// used returns the counters of window c while m holds it, else nil.
// Callers hold m.mu.
func (m *Memory) used(c Charge) []int64 {
	if st := m.scopes[c.Scope]; st != nil {
		if w := st.find(c.Window); w != nil && w.index == c.Index {
			return w.used
		}
	}
	return nil
}

// Usage implements [Store.Usage]: the counters of this process.
func (m *Memory) Usage(_ context.Context, checks []Check, _ time.Time) ([][]int64, error) {
	out := make([][]int64, len(checks))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, ch := range checks {
		out[i] = make([]int64, len(m.metrics))
		copy(out[i], m.used(ch.charge()))
	}
	return out, nil
}

// sweep drops ended windows, scopes without windows and reservations past
// their last window, at most once per minute. Callers hold m.mu.
func (m *Memory) sweep(now time.Time) {
	minute := Minute.Index(now)
	if minute <= m.swept {
		return
	}
	m.swept = minute
	for name, st := range m.scopes {
		live := st.windows[:0]
		for _, w := range st.windows {
			if w.window.Index(now) <= w.index {
				live = append(live, w)
			}
		}
		st.windows = live
		if len(live) == 0 {
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

// Status implements [Store.Status].
func (m *Memory) Status(context.Context) Status { return m.health.Status() }

// Close implements [Store.Close]; it does nothing.
func (m *Memory) Close() error { return nil }

// Size returns the tracked scopes and outstanding reservations.
func (m *Memory) Size() (scopes, pending int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.scopes), len(m.pending)
}

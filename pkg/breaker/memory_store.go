package breaker

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// DefaultMaxKeys is the default cap on keys kept by [Memory].
const DefaultMaxKeys = defaultMaxKeys

// MemoryOptions tunes [NewMemory].
type MemoryOptions struct {
	// MaxKeys caps the keys kept. When a new key would exceed it, expired
	// keys go first, then the least recently written closed key among the
	// 64 oldest, then the least recently written key. Default 10000.
	MaxKeys int
}

// Memory is the in-process [Store]. It serves ONE instance only: replicas
// each keep their own state, so thresholds count per replica and each
// replica runs its own probe. Use [Redis] to share state.
//
// Memory stays bounded under attacker-chosen model names: a key only
// exists while it carries state (a failure in the window, an open or
// half-open circuit, global rate-limit tracking or a probe lease); keys whose
// state has lapsed are dropped on access and reclaimed from the
// least-recently-written end on every write; and MaxKeys caps the rest.
// It is safe for concurrent use.
type Memory struct {
	p       Policy
	maxKeys int

	mu         sync.Mutex
	recs       map[string]*record
	lru        *list.List // of *record, most recently written first
	byProvider map[string]map[string]*record
}

var _ Store = (*Memory)(nil)

// record is one key's state. Times are unix milliseconds; zero means unset.
type record struct {
	name, provider string
	openUntil      int64
	probeUntil     int64
	token          string
	announced      bool // the open → half_open transition was reported
	glrFirst       int64
	glrLast        int64
	failures       []int64 // ascending
	expireAt       int64
	elem           *list.Element
}

func (r *record) state(now int64) State {
	switch {
	case r == nil || r.openUntil == 0:
		return StateClosed
	case now < r.openUntil:
		return StateOpen
	}
	return StateHalfOpen
}

func (r *record) closeKey() {
	r.openUntil, r.probeUntil, r.token, r.announced = 0, 0, "", false
	r.glrFirst, r.glrLast = 0, 0
	r.failures = r.failures[:0]
}

func (r *record) open(until int64) {
	r.openUntil, r.probeUntil, r.token, r.announced = until, 0, "", false
}

func (r *record) release() { r.probeUntil, r.token = 0, "" }

// prune drops failures at or before now-window and keeps the newest limit.
func (r *record) prune(now int64, p Policy) {
	cutoff := now - p.Window.Milliseconds()
	i := 0
	for i < len(r.failures) && r.failures[i] <= cutoff {
		i++
	}
	if n := len(r.failures) - i; n > p.MaxWindowEntries {
		i += n - p.MaxWindowEntries
	}
	if i > 0 {
		r.failures = append(r.failures[:0], r.failures[i:]...)
	}
}

// expiry is the instant after which r encodes nothing; the Lua scripts
// compute the same value.
func (r *record) expiry(p Policy) int64 {
	var ex int64
	if n := len(r.failures); n > 0 {
		ex = r.failures[n-1] + p.Window.Milliseconds()
	}
	if r.openUntil > 0 {
		ex = max(ex, r.openUntil+p.Retention.Milliseconds())
	}
	if r.glrFirst > 0 {
		ex = max(ex, r.glrLast+p.EscalationWindow.Milliseconds())
	}
	return max(ex, r.probeUntil)
}

// NewMemory returns an empty in-memory store applying p.
func NewMemory(p Policy, o MemoryOptions) *Memory {
	if o.MaxKeys <= 0 {
		o.MaxKeys = defaultMaxKeys
	}
	return &Memory{
		p:          p,
		maxKeys:    o.MaxKeys,
		recs:       map[string]*record{},
		lru:        list.New(),
		byProvider: map[string]map[string]*record{},
	}
}

// Len returns the number of keys held, lapsed ones included until reclaimed.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs)
}

// reset forgets every key.
func (m *Memory) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = map[string]*record{}
	m.lru.Init()
	m.byProvider = map[string]map[string]*record{}
}

// lookup returns the live record of name, or nil; a lapsed one is removed.
func (m *Memory) lookup(name string, now int64) *record {
	r := m.recs[name]
	if r != nil && r.expireAt <= now {
		m.remove(r)
		return nil
	}
	return r
}

// load returns the live record of name or a fresh detached one.
func (m *Memory) load(k Key, now int64) *record {
	name := k.String()
	if r := m.lookup(name, now); r != nil {
		return r
	}
	return &record{name: name, provider: k.Provider}
}

func (m *Memory) remove(r *record) {
	if r.elem == nil {
		return
	}
	m.lru.Remove(r.elem)
	r.elem = nil
	delete(m.recs, r.name)
	if set := m.byProvider[r.provider]; set != nil {
		delete(set, r.name)
		if len(set) == 0 {
			delete(m.byProvider, r.provider)
		}
	}
}

// save recomputes r's expiry and stores it, or drops it when it encodes
// nothing any more. It also reclaims lapsed keys and enforces MaxKeys.
func (m *Memory) save(r *record, now int64) {
	r.expireAt = r.expiry(m.p)
	if r.expireAt <= now {
		m.remove(r)
		return
	}
	if r.elem != nil {
		m.lru.MoveToFront(r.elem)
	} else {
		m.evictFor(now)
		r.elem = m.lru.PushFront(r)
		m.recs[r.name] = r
		set := m.byProvider[r.provider]
		if set == nil {
			set = map[string]*record{}
			m.byProvider[r.provider] = set
		}
		set[r.name] = r
	}
	// Amortised reclaim: look at the two least recently written keys.
	for i := 0; i < 2; i++ {
		e := m.lru.Back()
		if e == nil || e.Value.(*record) == r || e.Value.(*record).expireAt > now {
			break
		}
		m.remove(e.Value.(*record))
	}
}

// evictFor makes room for one new key.
func (m *Memory) evictFor(now int64) {
	if len(m.recs) < m.maxKeys {
		return
	}
	const scan = 64
	var victim *record
	i := 0
	for e := m.lru.Back(); e != nil && i < scan; e, i = e.Prev(), i+1 {
		r := e.Value.(*record)
		if r.expireAt <= now {
			victim = r
			break
		}
		if victim == nil && r.openUntil == 0 {
			victim = r
		}
	}
	if victim == nil {
		victim = m.lru.Back().Value.(*record)
	}
	m.remove(victim)
}

// Admit implements [Store.Admit].
func (m *Memory) Admit(_ context.Context, key Key, token string, now time.Time) (Decision, error) {
	n := ms(now)
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.lookup(key.String(), n)
	p := m.lookup(ProviderKey(key.Provider).String(), n)
	d, r := decide(k, p, n)
	if r == nil {
		return d, nil
	}
	r.probeUntil, r.token = n+m.p.ProbeLease.Milliseconds(), token
	if !r.announced {
		r.announced, d.Announce = true, true
	}
	m.save(r, n)
	return d, nil
}

// Peek implements [Store.Peek]: it reads the two records, lapsed ones as
// absent, and changes nothing (a lapsed record is left for a later write).
func (m *Memory) Peek(_ context.Context, key Key, now time.Time) (Decision, error) {
	n := ms(now)
	m.mu.Lock()
	defer m.mu.Unlock()
	live := func(name string) *record {
		if r := m.recs[name]; r != nil && r.expireAt > n {
			return r
		}
		return nil
	}
	d, _ := decide(live(key.String()), live(ProviderKey(key.Provider).String()), n)
	return d, nil
}

// decide is the admission decision on a model key's and its provider-wide
// key's live records (nil: absent) at now, shared by every backend's Admit
// (the Lua admit script computes the same) and Peek. probe is the record
// whose free half-open slot an admitted probe takes; nil when the request
// is refused or no probe is due. decide changes nothing.
func decide(k, p *record, now int64) (d Decision, probe *record) {
	d = Decision{ModelState: k.state(now), ProviderState: p.state(now), Tracked: k != nil && k.glrFirst > 0}
	var r *record
	switch {
	case d.ProviderState == StateOpen:
		d.Reject, d.Reason, d.CooldownUntil = true, ReasonProviderOpen, fromMS(p.openUntil)
		return d, nil
	case d.ModelState == StateOpen:
		d.Reject, d.Reason, d.CooldownUntil = true, ReasonOpen, fromMS(k.openUntil)
		return d, nil
	case d.ProviderState == StateHalfOpen:
		r, d.Probe = p, TargetProvider
	case d.ModelState == StateHalfOpen:
		r, d.Probe = k, TargetModel
	default:
		return d, nil
	}
	d.CooldownUntil = fromMS(r.openUntil)
	if r.probeUntil > now {
		d.Reject, d.Reason, d.Probe = true, ReasonProbeInFlight, TargetNone
		return d, nil
	}
	return d, r
}

// Record implements [Store.Record].
func (m *Memory) Record(_ context.Context, key Key, ev Event, now time.Time) (Result, error) {
	n := ms(now)
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.load(key, n)
	p := m.load(ProviderKey(key.Provider), n)
	res := Result{Model: Change{From: k.state(n)}, Provider: Change{From: p.state(n)}}
	res.Model.To, res.Provider.To = res.Model.From, res.Provider.From

	add := ev.AttemptFailures
	if ev.Terminal {
		switch ev.Final {
		case None:
			k.glrFirst, k.glrLast = 0, 0
		case GlobalRateLimit:
			esc := m.p.EscalationWindow.Milliseconds()
			if k.glrFirst == 0 || n-k.glrLast >= esc {
				k.glrFirst = n
			}
			k.glrLast = n
			if n-k.glrFirst >= esc {
				res.Escalated = true
				add++
			}
		case Degraded:
			add++
		}
	}
	for i := 0; i < add; i++ {
		k.failures = append(k.failures, n)
	}
	k.prune(n, m.p)
	failed := ev.Terminal && (ev.Final == Degraded || res.Escalated)
	cd := m.p.Cooldown.Milliseconds()
	if ev.Probe == TargetModel && ev.Token != "" && k.token == ev.Token && ev.Terminal {
		switch {
		case ev.Final == None:
			k.closeKey()
			res.Model.To, res.Model.Reason, res.Probe = StateClosed, ReasonProbeSuccess, ProbeSucceeded
		case failed:
			k.open(n + cd)
			res.Model.To, res.Model.Reason, res.Probe = StateOpen, ReasonProbeFailed, ProbeFailed
		default:
			k.release()
			res.Probe = ProbeReleased
		}
	} else if res.Model.From == StateClosed && len(k.failures) >= m.p.Threshold {
		k.open(n + cd)
		res.Model.To, res.Model.Reason = StateOpen, ReasonThreshold
	}
	res.Failures = len(k.failures)

	m.save(k, n)

	pprobe := ev.Probe == TargetProvider && ev.Token != "" && p.token == ev.Token
	switch {
	case ev.Terminal && ev.Final == QuotaExhausted:
		p.failures = append(p.failures, n)
		p.open(n + cd)
		res.Provider.To, res.Provider.Reason = StateOpen, ReasonQuota
		if pprobe {
			res.Probe = ProbeFailed
		}
	case pprobe && ev.Terminal && ev.Final == None:
		p.closeKey()
		res.Provider.To, res.Provider.Reason, res.Probe = StateClosed, ReasonProbeSuccess, ProbeSucceeded
	case pprobe && ev.Terminal:
		p.release()
		res.Probe = ProbeReleased
	default:
		return res, nil
	}
	p.prune(n, m.p)
	m.save(p, n)
	return res, nil
}

// Stats implements [Store.Stats]. It walks only provider's keys.
func (m *Memory) Stats(_ context.Context, provider string, now time.Time) (ProviderStats, error) {
	n := ms(now)
	cutoff := n - m.p.Window.Milliseconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	var st ProviderStats
	var lapsed []*record
	for _, r := range m.byProvider[provider] {
		if r.expireAt <= n {
			lapsed = append(lapsed, r)
			continue
		}
		s := r.state(n)
		st.State = max(st.State, s)
		for _, f := range r.failures {
			if f > cutoff {
				st.Failures++
			}
		}
		if s == StateOpen && (st.CooldownUntil.IsZero() || r.openUntil < ms(st.CooldownUntil)) {
			st.CooldownUntil = fromMS(r.openUntil)
		}
	}
	for _, r := range lapsed {
		m.remove(r)
	}
	return st, nil
}

package breaker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
)

// ErrNoProvider is returned by [Breaker.Allow] for an empty provider name;
// the request is admitted untracked.
var ErrNoProvider = errors.New("breaker: empty provider")

// Hooks observe the breaker without the package importing metrics or
// logging. Every field may be nil. Hooks run synchronously on the request
// path, possibly concurrently, so they must be fast and safe for concurrent
// use.
type Hooks struct {
	// OnStateChange is called when a key moves: closed → open (threshold or
	// insufficient_quota), open → half_open (first probe admitted),
	// half_open → closed (probe success), half_open → open (probe failure
	// or insufficient_quota).
	OnStateChange func(key Key, from, to State, reason Reason)
	// OnFastFail is called for every request enforce mode refuses, and in
	// log mode for every request it would have refused (adm.WouldReject).
	OnFastFail func(adm Admission)
	// OnTerminalFailure is called for a final response of a failure class;
	// an escalated global rate limit is reported as [Degraded].
	OnTerminalFailure func(key Key, class Class)
	// OnProbe is called when a probe's report closes, re-opens or releases
	// its key.
	OnProbe func(key Key, outcome ProbeOutcome)
	// OnAttempt is called for each failed non-final attempt in retry
	// contribution modes "log" and "on"; counted says it was recorded.
	OnAttempt func(key Key, class Class, counted bool)
	// OnBackendChange is called when a Redis breaker enters or leaves its
	// memory fallback.
	OnBackendChange func(s Status)
}

// Options are the non-YAML inputs of [New]. The zero value is valid.
type Options struct {
	// Hooks observe state changes and failures.
	Hooks Hooks
	// RedisClient, when set, is used for backend "redis" instead of a
	// client built from Config.Redis (which is still validated). The
	// breaker does not close it.
	RedisClient redis.UniversalClient
	// MaxKeys caps the keys of the memory store (and of the Redis
	// fallback). Default 10000.
	MaxKeys int
}

// Admission is the answer of [Breaker.Allow], handed back to
// [Breaker.Report]. The zero value admits and reports nothing.
type Admission struct {
	// Key is the request's <provider>:<model> key.
	Key Key
	// Allowed is false when the request must be answered locally with the
	// degraded signal ([SourceProxy]). Always true in log mode.
	Allowed bool
	// WouldReject is true in log mode when enforce mode would have refused.
	WouldReject bool
	// Probe is true when this request is the single half-open probe; the
	// caller should send it without retries (x-envoy-max-retries: 0).
	Probe bool
	// ProbeKey is the key the probe is for: Key, or the provider-wide key.
	ProbeKey Key
	// State is the worse of the model key's and the provider-wide key's.
	State State
	// CooldownUntil is when the refusing (or probed) key's cooldown ends;
	// zero when closed.
	CooldownUntil time.Time
	// Reason says why the request is (or would be) refused.
	Reason Reason

	target  Target
	token   string
	tracked bool
	live    bool
}

// Outcome describes a request's result for [Breaker.Report].
type Outcome struct {
	// Class is the final response's class (or, when Terminal is false, one
	// failed attempt's).
	Class Class
	// Attempts are the classes of failed attempts before the final one,
	// for the retry contribution mode.
	Attempts []Class
	// Terminal says Class is the final response. A non-terminal report
	// (an upstream filter seeing one attempt) only feeds the retry
	// contribution mode and never ends a probe.
	Terminal bool
}

// Verdict is what [Breaker.Report] decided.
type Verdict struct {
	// Degrade is true when the caller must replace the response with the
	// degraded signal ([SourceUpstream]): enforce mode, and the final
	// response was degraded or an escalated global rate limit.
	Degrade bool
	// Escalated is true when a global rate limit counted as degraded.
	Escalated bool
	// State is the model key's state after the report.
	State State
	// Probe is what happened to the probe slot.
	Probe ProbeOutcome
}

// Breaker is the per-provider-and-model circuit breaker. Use it in two
// steps: [Breaker.Allow] when the request's model is known, then
// [Breaker.Report] with the final response. A nil or disabled Breaker
// admits everything. It is safe for concurrent use.
type Breaker struct {
	cfg     Config
	hooks   Hooks
	enabled bool
	enforce bool
	contrib string
	store   Store
	fb      *fallback
	client  redis.UniversalClient // owned, closed by Close

	tokenPrefix string
	seq         atomic.Uint64
	closeOnce   sync.Once

	hintMu    sync.Mutex
	openUntil map[Key]time.Time // keys this instance saw refused, until their cooldown ends (Remote)
}

// maxOpenHints bounds [Breaker.Remote]'s memory of refused keys; when full
// it starts over (the hints only choose how admission is scheduled).
const maxOpenHints = 1024

// New builds a breaker from cfg (defaults applied, then validated). With
// backend "redis" it pings the server (bounded by ctx and 2 s) and starts
// on the memory fallback if that fails; it never fails for an unreachable
// Redis. Call Close when done.
func New(ctx context.Context, cfg Config, o Options) (*Breaker, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Breaker{cfg: cfg, hooks: o.Hooks, enabled: cfg.Enabled, enforce: cfg.Mode == ModeEnforce, contrib: cfg.RetryContributionMode}
	if !cfg.Enabled {
		return b, nil
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	b.tokenPrefix = hex.EncodeToString(rnd[:]) + "-"
	mem := NewMemory(cfg.Policy(), MemoryOptions{MaxKeys: o.MaxKeys})
	if cfg.Backend == BackendMemory {
		b.store = mem
		return b, nil
	}
	client := o.RedisClient
	if client == nil {
		shared, err := redisconf.Default.Client(cfg.Redis, redisProfile)
		if err != nil {
			return nil, fmt.Errorf("breaker redis: %w", err)
		}
		client = shared
		b.client = shared
	}
	rs := NewRedis(client, cfg.KeyPrefix, cfg.Policy())
	b.fb = &fallback{primary: rs, mem: mem, onChange: o.Hooks.OnBackendChange}
	b.store = b.fb
	pctx, cancel := context.WithTimeout(ctx, defaultRedisStartupPingLimit)
	defer cancel()
	err := rs.Ping(pctx)
	if err == nil {
		err = rs.Load(pctx)
	}
	if err != nil {
		// Start on memory and retry Redis on the first call.
		b.fb.down, b.fb.lastErr, b.fb.since, b.fb.backoff = true, err.Error(), time.Now(), fallbackMinBackoff
	}
	return b, nil
}

// Close releases the Redis client the breaker created. It is idempotent;
// the breaker must not be used afterwards.
func (b *Breaker) Close() error {
	var err error
	if b == nil {
		return nil
	}
	b.closeOnce.Do(func() {
		if b.client != nil {
			err = b.client.Close()
		}
	})
	return err
}

// Enabled reports whether the breaker tracks anything.
func (b *Breaker) Enabled() bool { return b != nil && b.enabled }

// Enforcing reports whether refused requests and degraded responses are
// answered locally (mode "enforce").
func (b *Breaker) Enforcing() bool { return b.Enabled() && b.enforce }

// Config returns the effective configuration, defaults applied.
func (b *Breaker) Config() Config {
	if b == nil {
		return Defaults()
	}
	return b.cfg
}

// Signal returns the degraded-signal marker to pass to [DegradedResponse].
func (b *Breaker) Signal() string {
	if b == nil || b.cfg.DegradedSignal == "" {
		return DefaultSignal
	}
	return b.cfg.DegradedSignal
}

// Status reports the backend in use and whether Redis is in fallback.
func (b *Breaker) Status() Status {
	switch {
	case b == nil || !b.enabled:
		return Status{Backend: b.Config().Backend}
	case b.fb != nil:
		return b.fb.status()
	}
	return Status{Backend: BackendMemory}
}

// Allow checks the request's key (<provider>:<model>, model "" meaning
// [UnknownModel]) and the provider-wide key at now. A refused request
// (Allowed false) is answered locally with the degraded signal; reporting
// it is a no-op. Admitted requests are reported with [Breaker.Report].
// On a store error the request is admitted (fail open) and the error
// returned for logging.
func (b *Breaker) Allow(ctx context.Context, provider, model string, now time.Time) (Admission, error) {
	if !b.Enabled() {
		return Admission{Allowed: true}, nil
	}
	if provider == "" {
		return Admission{Allowed: true}, ErrNoProvider
	}
	key := ModelKey(provider, model)
	token := b.tokenPrefix + strconv.FormatUint(b.seq.Add(1), 36)
	d, err := b.store.Admit(ctx, key, token, now)
	if err != nil {
		return Admission{Key: key, Allowed: true}, err
	}
	adm := Admission{
		Key:           key,
		Allowed:       !d.Reject,
		State:         max(d.ModelState, d.ProviderState),
		CooldownUntil: d.CooldownUntil,
		Reason:        d.Reason,
		target:        d.Probe,
		tracked:       d.Tracked,
		live:          true,
	}
	switch d.Probe {
	case TargetModel:
		adm.Probe, adm.ProbeKey, adm.token = true, key, token
	case TargetProvider:
		adm.Probe, adm.ProbeKey, adm.token = true, ProviderKey(provider), token
	}
	if !b.enforce {
		adm.WouldReject, adm.Allowed = !adm.Allowed, true
	}
	if b.fb != nil {
		b.hint(key, adm, now)
	}
	if d.Announce && b.hooks.OnStateChange != nil {
		b.hooks.OnStateChange(adm.ProbeKey, StateOpen, StateHalfOpen, ReasonCooldownElapsed)
	}
	if (!adm.Allowed || adm.WouldReject) && b.hooks.OnFastFail != nil {
		b.hooks.OnFastFail(adm)
	}
	return adm, nil
}

// Remote reports whether [Breaker.Allow] for provider/model at now waits on
// the shared store (Redis), so that a caller may run it at the same time as
// other such checks. It is false for the memory backend, and while this
// instance last saw the key refused with its cooldown still running: that
// Allow most likely refuses, and is best run alone, before anything is
// reserved. The store's health is not consulted (on the memory fallback
// Allow is merely fast).
func (b *Breaker) Remote(provider, model string, now time.Time) bool {
	if !b.Enabled() || b.fb == nil || provider == "" {
		return false
	}
	b.hintMu.Lock()
	until, seen := b.openUntil[ModelKey(provider, model)]
	b.hintMu.Unlock()
	return !seen || !now.Before(until)
}

// hint remembers until when key is refused, or forgets it once admitted.
func (b *Breaker) hint(key Key, adm Admission, now time.Time) {
	b.hintMu.Lock()
	defer b.hintMu.Unlock()
	if adm.Allowed {
		delete(b.openUntil, key)
		return
	}
	if !adm.CooldownUntil.After(now) {
		return
	}
	if b.openUntil == nil || len(b.openUntil) >= maxOpenHints {
		b.openUntil = make(map[Key]time.Time)
	}
	b.openUntil[key] = adm.CooldownUntil
}

// View is what [Breaker.Peek] read for one key.
type View struct {
	// Key is the request key (<provider>:<model>).
	Key Key
	// Admits says [Breaker.Allow] would admit a request now: the circuit is
	// closed, or half-open with its probe slot free. Always true when the
	// breaker is disabled or in log mode.
	Admits bool
	// State is the worse of the model key's and the provider-wide key's.
	State State
	// Reason says why a request would be refused (or would have been, in
	// log mode); ReasonNone when it would be admitted.
	Reason Reason
	// CooldownUntil is when the deciding key's cooldown ends; zero when
	// closed.
	CooldownUntil time.Time
}

// Peek reports, read-only, what [Breaker.Allow] would answer for provider
// and model at now: it takes no probe slot, moves no state and fires no
// hook, so /health can show where calls would go without affecting them.
// On a store error the view admits (Allow fails open too) and the error is
// returned.
func (b *Breaker) Peek(ctx context.Context, provider, model string, now time.Time) (View, error) {
	key := ModelKey(provider, model)
	if !b.Enabled() || provider == "" {
		return View{Key: key, Admits: true}, nil
	}
	d, err := b.store.Peek(ctx, key, now)
	if err != nil {
		return View{Key: key, Admits: true}, err
	}
	return View{Key: key, Admits: !b.enforce || !d.Reject, State: max(d.ModelState, d.ProviderState),
		Reason: d.Reason, CooldownUntil: d.CooldownUntil}, nil
}

// Report records the outcome of an admitted request at now. A clean
// success on a closed key costs no store call. The returned [Verdict] says
// whether to replace the response with the degraded signal. On a store
// error the verdict is still computed from the outcome alone.
func (b *Breaker) Report(ctx context.Context, adm Admission, out Outcome, now time.Time) (Verdict, error) {
	if !b.Enabled() || !adm.live || !adm.Allowed {
		return Verdict{}, nil
	}
	var v Verdict
	if out.Terminal && out.Class == Degraded {
		v.Degrade = b.enforce
	}
	failures := b.attempts(adm.Key, out.Attempts)
	if !out.Terminal {
		failures += b.attempts(adm.Key, []Class{out.Class})
	}
	ev := Event{Terminal: out.Terminal, Final: out.Class, AttemptFailures: failures}
	if out.Terminal {
		ev.Probe, ev.Token = adm.target, adm.token
	}
	need := failures > 0 || ev.Probe != TargetNone ||
		(out.Terminal && (out.Class == Degraded || out.Class == GlobalRateLimit || out.Class == QuotaExhausted ||
			(out.Class == None && adm.tracked)))
	if !need {
		b.terminalHook(adm.Key, out, false)
		return v, nil
	}
	res, err := b.store.Record(ctx, adm.Key, ev, now)
	if err != nil {
		b.terminalHook(adm.Key, out, false)
		return v, err
	}
	v.Escalated, v.State, v.Probe = res.Escalated, res.Model.To, res.Probe
	if res.Escalated {
		v.Degrade = b.enforce
	}
	b.terminalHook(adm.Key, out, res.Escalated)
	if h := b.hooks.OnStateChange; h != nil {
		if res.Model.Changed() {
			h(adm.Key, res.Model.From, res.Model.To, res.Model.Reason)
		}
		if res.Provider.Changed() {
			h(ProviderKey(adm.Key.Provider), res.Provider.From, res.Provider.To, res.Provider.Reason)
		}
	}
	if res.Probe != NoProbe && b.hooks.OnProbe != nil {
		b.hooks.OnProbe(adm.ProbeKey, res.Probe)
	}
	return v, nil
}

// attempts applies the retry contribution mode to failed attempts and
// returns how many count.
func (b *Breaker) attempts(key Key, classes []Class) int {
	if b.contrib == ContributionOff {
		return 0
	}
	n := 0
	for _, c := range classes {
		if !c.Failure() {
			continue
		}
		counted := b.contrib == ContributionOn && c == Degraded
		if counted {
			n++
		}
		if b.hooks.OnAttempt != nil {
			b.hooks.OnAttempt(key, c, counted)
		}
	}
	return n
}

func (b *Breaker) terminalHook(key Key, out Outcome, escalated bool) {
	if !out.Terminal || !out.Class.Failure() || b.hooks.OnTerminalFailure == nil {
		return
	}
	c := out.Class
	if escalated {
		c = Degraded
	}
	b.hooks.OnTerminalFailure(key, c)
}

// Stats summarises provider's keys at now for /health: the worst state,
// the failures in the window summed over keys, and the earliest cooldown
// end among open keys. It reads only the provider's own index.
func (b *Breaker) Stats(ctx context.Context, provider string, now time.Time) (ProviderStats, error) {
	if !b.Enabled() {
		return ProviderStats{}, nil
	}
	return b.store.Stats(ctx, provider, now)
}

package breaker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// newBreakerFunc builds an enabled breaker on one backend from cfg.
type newBreakerFunc func(t *testing.T, cfg Config, h Hooks) *Breaker

// suiteConfig is small enough to walk through by hand: 3 failures in 60 s
// open a key for 30 s; probes hold their slot for 10 s; global rate limits
// escalate after 60 s.
func suiteConfig() Config {
	c := Config{
		Enabled:                         true,
		FailureThreshold:                3,
		WindowSeconds:                   60,
		CooldownSeconds:                 30,
		ProbeLeaseSeconds:               10,
		GlobalRateLimitEscalationWindow: 60,
		RetryContributionMode:           ContributionOff,
	}
	c.ApplyDefaults()
	return c
}

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// event is one hook call, flattened for comparison.
type event struct {
	kind string
	key  string
	a, b string
}

type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) add(e event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) take() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func (r *recorder) hooks() Hooks {
	return Hooks{
		OnStateChange: func(k Key, from, to State, why Reason) {
			r.add(event{"state", k.String(), from.String() + ">" + to.String(), why.String()})
		},
		OnFastFail: func(adm Admission) { r.add(event{"fastfail", adm.Key.String(), adm.Reason.String(), ""}) },
		OnTerminalFailure: func(k Key, c Class) {
			r.add(event{"terminal", k.String(), c.String(), ""})
		},
		OnProbe: func(k Key, o ProbeOutcome) { r.add(event{"probe", k.String(), o.String(), ""}) },
		OnAttempt: func(k Key, c Class, counted bool) {
			r.add(event{"attempt", k.String(), c.String(), map[bool]string{true: "counted", false: "logged"}[counted]})
		},
	}
}

func allow(t *testing.T, b *Breaker, provider, model string, now time.Time) Admission {
	t.Helper()
	adm, err := b.Allow(t.Context(), provider, model, now)
	require.NoError(t, err)
	return adm
}

func report(t *testing.T, b *Breaker, adm Admission, c Class, now time.Time) Verdict {
	t.Helper()
	v, err := b.Report(t.Context(), adm, Outcome{Class: c, Terminal: true}, now)
	require.NoError(t, err)
	return v
}

// request runs one admitted request to completion.
func request(t *testing.T, b *Breaker, provider, model string, c Class, now time.Time) Verdict {
	t.Helper()
	adm := allow(t, b, provider, model, now)
	require.True(t, adm.Allowed, "request at %s refused: %s", now.Sub(t0), adm.Reason)
	return report(t, b, adm, c, now)
}

func stats(t *testing.T, b *Breaker, provider string, now time.Time) ProviderStats {
	t.Helper()
	st, err := b.Stats(t.Context(), provider, now)
	require.NoError(t, err)
	return st
}

// trip opens openai:gpt-a with three failures ending at end.
func trip(t *testing.T, b *Breaker, end time.Time) {
	t.Helper()
	for i := 2; i >= 0; i-- {
		request(t, b, "openai", "gpt-a", Degraded, end.Add(-time.Duration(i)*time.Second))
	}
}

// testBreaker is the contract every backend must meet.
func testBreaker(t *testing.T, newBreaker newBreakerFunc) {
	t.Run("trips after threshold within window", func(t *testing.T) {
		var rec recorder
		b := newBreaker(t, suiteConfig(), rec.hooks())
		v := request(t, b, "openai", "gpt-a", Degraded, at(0))
		require.Equal(t, Verdict{Degrade: true, State: StateClosed}, v)
		request(t, b, "openai", "gpt-a", Degraded, at(10))
		v = request(t, b, "openai", "gpt-a", Degraded, at(20))
		require.Equal(t, StateOpen, v.State)
		adm := allow(t, b, "openai", "gpt-a", at(21))
		require.False(t, adm.Allowed)
		require.Equal(t, ReasonOpen, adm.Reason)
		require.Equal(t, StateOpen, adm.State)
		require.Equal(t, at(50), adm.CooldownUntil)
		require.Equal(t, []event{
			{"terminal", "openai:gpt-a", "provider_degraded", ""},
			{"terminal", "openai:gpt-a", "provider_degraded", ""},
			{"terminal", "openai:gpt-a", "provider_degraded", ""},
			{"state", "openai:gpt-a", "closed>open", "threshold"},
			{"fastfail", "openai:gpt-a", "circuit_open", ""},
		}, rec.take())
	})

	t.Run("peek reads without charging or transitioning", func(t *testing.T) {
		var rec recorder
		b := newBreaker(t, suiteConfig(), rec.hooks())
		peek := func(model string, now time.Time) View {
			t.Helper()
			v, err := b.Peek(t.Context(), "openai", model, now)
			require.NoError(t, err)
			return v
		}
		require.Equal(t, View{Key: ModelKey("openai", "gpt-a"), Admits: true}, peek("gpt-a", at(0)))
		trip(t, b, at(2))
		rec.take()
		require.Equal(t, View{Key: ModelKey("openai", "gpt-a"), State: StateOpen, Reason: ReasonOpen, CooldownUntil: at(32)},
			peek("gpt-a", at(3)))
		require.True(t, peek("gpt-b", at(3)).Admits, "other models are unaffected")
		// After the cooldown a peek sees the free probe slot but does not take
		// it: the next Allow is still the probe, announced once.
		for range 3 {
			v := peek("gpt-a", at(32))
			require.True(t, v.Admits)
			require.Equal(t, StateHalfOpen, v.State)
		}
		require.Empty(t, rec.take(), "no hook fires on a peek")
		adm := allow(t, b, "openai", "gpt-a", at(32))
		require.True(t, adm.Probe)
		require.Equal(t, []event{{"state", "openai:gpt-a", "open>half_open", "cooldown_elapsed"}}, rec.take())
		// With the probe in flight a peek sees the refusal.
		v := peek("gpt-a", at(33))
		require.False(t, v.Admits)
		require.Equal(t, ReasonProbeInFlight, v.Reason)
		report(t, b, adm, None, at(34))
		require.Equal(t, View{Key: ModelKey("openai", "gpt-a"), Admits: true}, peek("gpt-a", at(35)))
	})

	t.Run("failures outside the window do not count", func(t *testing.T) {
		b := newBreaker(t, suiteConfig(), Hooks{})
		request(t, b, "openai", "gpt-a", Degraded, at(0))
		request(t, b, "openai", "gpt-a", Degraded, at(30))
		// The failure at 0 leaves the window at exactly 60 s.
		v := request(t, b, "openai", "gpt-a", Degraded, at(60))
		require.Equal(t, StateClosed, v.State)
		require.Equal(t, 2, stats(t, b, "openai", at(60)).Failures)
		v = request(t, b, "openai", "gpt-a", Degraded, at(61))
		require.Equal(t, StateOpen, v.State)
	})

	t.Run("caller errors, local rate limits and successes never count", func(t *testing.T) {
		b := newBreaker(t, suiteConfig(), Hooks{})
		for i, c := range []Class{ClientError, LocalRateLimit, None, ClientError, LocalRateLimit, None, Canceled} {
			v := request(t, b, "openai", "gpt-a", c, at(float64(i)))
			require.Equal(t, Verdict{}, v)
		}
		require.Equal(t, ProviderStats{}, stats(t, b, "openai", at(10)))
	})

	t.Run("open fast-fails and isolates other models and providers", func(t *testing.T) {
		b := newBreaker(t, suiteConfig(), Hooks{})
		trip(t, b, at(2))
		require.False(t, allow(t, b, "openai", "gpt-a", at(3)).Allowed)
		require.True(t, allow(t, b, "openai", "gpt-b", at(3)).Allowed)
		require.True(t, allow(t, b, "openai", "", at(3)).Allowed)
		require.True(t, allow(t, b, "anthropic", "gpt-a", at(3)).Allowed)
		st := stats(t, b, "openai", at(3))
		require.Equal(t, ProviderStats{State: StateOpen, Failures: 3, CooldownUntil: at(32)}, st)
		require.Equal(t, ProviderStats{}, stats(t, b, "anthropic", at(3)))
	})

	t.Run("exactly one probe after the cooldown", func(t *testing.T) {
		var rec recorder
		b := newBreaker(t, suiteConfig(), rec.hooks())
		trip(t, b, at(0))
		require.False(t, allow(t, b, "openai", "gpt-a", at(29.999)).Allowed)
		rec.take()
		var wg sync.WaitGroup
		adms := make([]Admission, 16)
		for i := range adms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				adm, err := b.Allow(context.Background(), "openai", "gpt-a", at(30))
				if err == nil {
					adms[i] = adm
				}
			}()
		}
		wg.Wait()
		probes, refused := 0, 0
		for _, adm := range adms {
			require.Equal(t, StateHalfOpen, adm.State)
			if adm.Probe {
				probes++
				require.True(t, adm.Allowed)
				require.Equal(t, adm.Key, adm.ProbeKey)
				continue
			}
			require.False(t, adm.Allowed)
			require.Equal(t, ReasonProbeInFlight, adm.Reason)
			refused++
		}
		require.Equal(t, 1, probes)
		require.Equal(t, 15, refused)
		require.Equal(t, StateHalfOpen, stats(t, b, "openai", at(30)).State)
		evs := rec.take()
		require.Contains(t, evs, event{"state", "openai:gpt-a", "open>half_open", "cooldown_elapsed"})
		require.Len(t, evs, 16) // one transition and 15 fast fails
	})

	t.Run("probe success closes and clears the window", func(t *testing.T) {
		var rec recorder
		b := newBreaker(t, suiteConfig(), rec.hooks())
		trip(t, b, at(0))
		probe := allow(t, b, "openai", "gpt-a", at(30))
		require.True(t, probe.Probe)
		rec.take()
		v := report(t, b, probe, None, at(31))
		require.Equal(t, Verdict{State: StateClosed, Probe: ProbeSucceeded}, v)
		require.Equal(t, []event{
			{"state", "openai:gpt-a", "half_open>closed", "probe_success"},
			{"probe", "openai:gpt-a", "success", ""},
		}, rec.take())
		require.Equal(t, ProviderStats{}, stats(t, b, "openai", at(31)))
		adm := allow(t, b, "openai", "gpt-a", at(31))
		require.True(t, adm.Allowed)
		require.False(t, adm.Probe)
		// A fresh threshold is needed to open again.
		request(t, b, "openai", "gpt-a", Degraded, at(32))
		require.True(t, allow(t, b, "openai", "gpt-a", at(33)).Allowed)
	})

	t.Run("probe failure re-opens for a full cooldown", func(t *testing.T) {
		var rec recorder
		b := newBreaker(t, suiteConfig(), rec.hooks())
		trip(t, b, at(0))
		probe := allow(t, b, "openai", "gpt-a", at(30))
		rec.take()
		v := report(t, b, probe, Degraded, at(35))
		require.Equal(t, Verdict{Degrade: true, State: StateOpen, Probe: ProbeFailed}, v)
		require.Equal(t, []event{
			{"terminal", "openai:gpt-a", "provider_degraded", ""},
			{"state", "openai:gpt-a", "half_open>open", "probe_failed"},
			{"probe", "openai:gpt-a", "failure", ""},
		}, rec.take())
		adm := allow(t, b, "openai", "gpt-a", at(64.999))
		require.False(t, adm.Allowed)
		require.Equal(t, at(65), adm.CooldownUntil)
		require.True(t, allow(t, b, "openai", "gpt-a", at(65)).Probe)
	})

	t.Run("probe caller error or rate limit releases the slot", func(t *testing.T) {
		for _, c := range []Class{ClientError, LocalRateLimit, GlobalRateLimit, Canceled} {
			t.Run(c.String(), func(t *testing.T) {
				b := newBreaker(t, suiteConfig(), Hooks{})
				trip(t, b, at(0))
				probe := allow(t, b, "openai", "gpt-a", at(30))
				require.True(t, probe.Probe)
				v := report(t, b, probe, c, at(31))
				require.Equal(t, Verdict{State: StateHalfOpen, Probe: ProbeReleased}, v)
				next := allow(t, b, "openai", "gpt-a", at(31))
				require.True(t, next.Probe, "the slot is free again")
			})
		}
	})

	t.Run("probe lease expires", func(t *testing.T) {
		b := newBreaker(t, suiteConfig(), Hooks{})
		trip(t, b, at(0))
		lost := allow(t, b, "openai", "gpt-a", at(30))
		require.True(t, lost.Probe)
		require.False(t, allow(t, b, "openai", "gpt-a", at(39.999)).Allowed)
		second := allow(t, b, "openai", "gpt-a", at(40))
		require.True(t, second.Probe)
		// The first probe's late report no longer owns the slot.
		v := report(t, b, lost, None, at(41))
		require.Equal(t, Verdict{State: StateHalfOpen}, v)
		require.False(t, allow(t, b, "openai", "gpt-a", at(41)).Allowed)
		v = report(t, b, second, None, at(42))
		require.Equal(t, Verdict{State: StateClosed, Probe: ProbeSucceeded}, v)
	})

	t.Run("quota force-opens the provider only", func(t *testing.T) {
		var rec recorder
		b := newBreaker(t, suiteConfig(), rec.hooks())
		v := request(t, b, "openai", "gpt-a", QuotaExhausted, at(0))
		require.Equal(t, Verdict{}, v, "the real 429 passes through")
		require.Equal(t, []event{
			{"terminal", "openai:gpt-a", "insufficient_quota", ""},
			{"state", "openai", "closed>open", "insufficient_quota"},
		}, rec.take())
		for _, model := range []string{"gpt-a", "gpt-b", ""} {
			adm := allow(t, b, "openai", model, at(1))
			require.False(t, adm.Allowed, model)
			require.Equal(t, ReasonProviderOpen, adm.Reason)
			require.Equal(t, at(30), adm.CooldownUntil)
		}
		require.True(t, allow(t, b, "anthropic", "claude", at(1)).Allowed)
		require.True(t, allow(t, b, "gemini", "gpt-a", at(1)).Allowed)
		require.Equal(t, ProviderStats{State: StateOpen, Failures: 1, CooldownUntil: at(30)}, stats(t, b, "openai", at(1)))

		probe := allow(t, b, "openai", "gpt-b", at(30))
		require.True(t, probe.Probe)
		require.Equal(t, ProviderKey("openai"), probe.ProbeKey)
		require.False(t, allow(t, b, "openai", "gpt-a", at(30)).Allowed)
		// Quota again on the probe re-opens the provider.
		v = report(t, b, probe, QuotaExhausted, at(31))
		require.Equal(t, ProbeFailed, v.Probe)
		require.Equal(t, at(61), allow(t, b, "openai", "gpt-a", at(32)).CooldownUntil)
		probe = allow(t, b, "openai", "gpt-a", at(61))
		require.True(t, probe.Probe)
		v = report(t, b, probe, None, at(62))
		require.Equal(t, Verdict{State: StateClosed, Probe: ProbeSucceeded}, v)
		require.True(t, allow(t, b, "openai", "gpt-b", at(62)).Allowed)
		require.Equal(t, StateClosed, stats(t, b, "openai", at(62)).State)
	})

	t.Run("body-less requests stay off the provider key", func(t *testing.T) {
		b := newBreaker(t, suiteConfig(), Hooks{})
		for i := 0; i < 3; i++ {
			request(t, b, "openai", "", Degraded, at(float64(i)))
		}
		adm := allow(t, b, "openai", "", at(5))
		require.False(t, adm.Allowed)
		require.Equal(t, Key{"openai", UnknownModel}, adm.Key)
		require.Equal(t, ReasonOpen, adm.Reason)
		require.True(t, allow(t, b, "openai", "gpt-a", at(5)).Allowed)
	})

	t.Run("global rate limits escalate across requests", func(t *testing.T) {
		var rec recorder
		b := newBreaker(t, suiteConfig(), rec.hooks())
		require.Equal(t, Verdict{}, request(t, b, "openai", "gpt-a", GlobalRateLimit, at(0)))
		require.Equal(t, Verdict{}, request(t, b, "openai", "gpt-a", GlobalRateLimit, at(30)))
		require.Equal(t, Verdict{}, request(t, b, "openai", "gpt-a", GlobalRateLimit, at(59.999)))
		v := request(t, b, "openai", "gpt-a", GlobalRateLimit, at(60))
		require.Equal(t, Verdict{Degrade: true, Escalated: true, State: StateClosed}, v)
		require.Equal(t, 1, stats(t, b, "openai", at(60)).Failures)
		evs := rec.take()
		require.Equal(t, event{"terminal", "openai:gpt-a", "provider_degraded", ""}, evs[len(evs)-1])
		request(t, b, "openai", "gpt-a", GlobalRateLimit, at(61))
		v = request(t, b, "openai", "gpt-a", GlobalRateLimit, at(62))
		require.Equal(t, StateOpen, v.State, "escalated limits count toward the threshold")
	})

	t.Run("escalation restarts after a gap or a success", func(t *testing.T) {
		b := newBreaker(t, suiteConfig(), Hooks{})
		request(t, b, "openai", "gpt-a", GlobalRateLimit, at(0))
		// A gap as long as the window starts a new episode.
		require.False(t, request(t, b, "openai", "gpt-a", GlobalRateLimit, at(60)).Escalated)
		require.False(t, request(t, b, "openai", "gpt-a", GlobalRateLimit, at(100)).Escalated)
		require.True(t, request(t, b, "openai", "gpt-a", GlobalRateLimit, at(120)).Escalated)

		b = newBreaker(t, suiteConfig(), Hooks{})
		request(t, b, "openai", "gpt-a", GlobalRateLimit, at(0))
		request(t, b, "openai", "gpt-a", None, at(30))
		require.False(t, request(t, b, "openai", "gpt-a", GlobalRateLimit, at(60)).Escalated)
		// Another model's limits are its own.
		request(t, b, "openai", "gpt-b", GlobalRateLimit, at(90))
		require.False(t, request(t, b, "openai", "gpt-a", GlobalRateLimit, at(100)).Escalated)
		require.True(t, request(t, b, "openai", "gpt-a", GlobalRateLimit, at(120)).Escalated)
	})

	t.Run("retry contribution modes", func(t *testing.T) {
		tests := []struct {
			name     string
			mode     string
			final    Class
			state    State
			failures int
			events   []event
		}{
			{"on counts every failed attempt", ContributionOn, Degraded, StateOpen, 3, []event{
				{"attempt", "openai:gpt-a", "provider_degraded", "counted"},
				{"attempt", "openai:gpt-a", "provider_degraded", "counted"},
				{"attempt", "openai:gpt-a", "global_rate_limit", "logged"},
				{"terminal", "openai:gpt-a", "provider_degraded", ""},
				{"state", "openai:gpt-a", "closed>open", "threshold"},
			}},
			{"on counts attempts before a success", ContributionOn, None, StateClosed, 2, []event{
				{"attempt", "openai:gpt-a", "provider_degraded", "counted"},
				{"attempt", "openai:gpt-a", "provider_degraded", "counted"},
				{"attempt", "openai:gpt-a", "global_rate_limit", "logged"},
			}},
			{"log reports attempts only", ContributionLog, Degraded, StateClosed, 1, []event{
				{"attempt", "openai:gpt-a", "provider_degraded", "logged"},
				{"attempt", "openai:gpt-a", "provider_degraded", "logged"},
				{"attempt", "openai:gpt-a", "global_rate_limit", "logged"},
				{"terminal", "openai:gpt-a", "provider_degraded", ""},
			}},
			{"off ignores attempts", ContributionOff, Degraded, StateClosed, 1, []event{
				{"terminal", "openai:gpt-a", "provider_degraded", ""},
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cfg := suiteConfig()
				cfg.RetryContributionMode = tt.mode
				var rec recorder
				b := newBreaker(t, cfg, rec.hooks())
				adm := allow(t, b, "openai", "gpt-a", at(0))
				v, err := b.Report(t.Context(), adm, Outcome{
					Class: tt.final, Terminal: true,
					Attempts: []Class{Degraded, Degraded, GlobalRateLimit, None},
				}, at(1))
				require.NoError(t, err)
				require.Equal(t, tt.state, v.State)
				require.Equal(t, tt.failures, stats(t, b, "openai", at(1)).Failures)
				require.Equal(t, tt.events, rec.take())
			})
		}
	})

	t.Run("per-attempt reports", func(t *testing.T) {
		cfg := suiteConfig()
		cfg.RetryContributionMode = ContributionOn
		b := newBreaker(t, cfg, Hooks{})
		adm := allow(t, b, "openai", "gpt-a", at(0))
		for i := 0; i < 2; i++ {
			v, err := b.Report(t.Context(), adm, Outcome{Class: Degraded}, at(1))
			require.NoError(t, err)
			require.False(t, v.Degrade, "a non-final attempt is never replaced")
		}
		require.Equal(t, 2, stats(t, b, "openai", at(1)).Failures)
		report(t, b, adm, None, at(2))
		require.Equal(t, 2, stats(t, b, "openai", at(2)).Failures)
	})

	t.Run("log mode admits, reports and records", func(t *testing.T) {
		cfg := suiteConfig()
		cfg.Mode = ModeLog
		var rec recorder
		b := newBreaker(t, cfg, rec.hooks())
		require.False(t, b.Enforcing())
		for i := 0; i < 3; i++ {
			v := request(t, b, "openai", "gpt-a", Degraded, at(float64(i)))
			require.False(t, v.Degrade)
		}
		rec.take()
		adm := allow(t, b, "openai", "gpt-a", at(5))
		require.True(t, adm.Allowed)
		require.True(t, adm.WouldReject)
		require.Equal(t, ReasonOpen, adm.Reason)
		require.Equal(t, []event{{"fastfail", "openai:gpt-a", "circuit_open", ""}}, rec.take())
		// A would-be-refused request's outcome still counts.
		report(t, b, adm, Degraded, at(6))
		require.Equal(t, 4, stats(t, b, "openai", at(6)).Failures)
		// The state machine runs as in enforce mode: one probe closes it.
		probe := allow(t, b, "openai", "gpt-a", at(32))
		require.True(t, probe.Probe)
		other := allow(t, b, "openai", "gpt-a", at(32))
		require.True(t, other.Allowed)
		require.True(t, other.WouldReject)
		require.Equal(t, ReasonProbeInFlight, other.Reason)
		require.Equal(t, ProbeSucceeded, report(t, b, probe, None, at(33)).Probe)
		adm = allow(t, b, "openai", "gpt-a", at(34))
		require.False(t, adm.WouldReject)
	})

	t.Run("open and half-open keys lapse only after retention", func(t *testing.T) {
		b := newBreaker(t, suiteConfig(), Hooks{})
		trip(t, b, at(0))
		// Cooldown 30 s, retention 6 × 30 s after it.
		require.Equal(t, StateOpen, allow(t, b, "openai", "gpt-a", at(29.999)).State)
		require.Equal(t, StateHalfOpen, stats(t, b, "openai", at(30)).State)
		require.Equal(t, StateHalfOpen, stats(t, b, "openai", at(209.999)).State)
		adm := allow(t, b, "openai", "gpt-a", at(209.999))
		require.True(t, adm.Probe)
		// The unreported probe's lease extends the key to 219.999.
		require.Equal(t, StateHalfOpen, stats(t, b, "openai", at(219.998)).State)
		require.Equal(t, ProviderStats{}, stats(t, b, "openai", at(220)))
		adm = allow(t, b, "openai", "gpt-a", at(220))
		require.Equal(t, Admission{Key: adm.Key, Allowed: true, live: true}, stripToken(adm))
	})

	t.Run("stats summarise the provider", func(t *testing.T) {
		b := newBreaker(t, suiteConfig(), Hooks{})
		request(t, b, "openai", "gpt-c", Degraded, at(0))
		request(t, b, "openai", "gpt-c", Degraded, at(1))
		request(t, b, "openai", "gpt-c", Degraded, at(5)) // open until 35
		trip(t, b, at(10))                                // gpt-a open until 40
		request(t, b, "openai", "gpt-b", Degraded, at(11))
		require.Equal(t, ProviderStats{State: StateOpen, Failures: 7, CooldownUntil: at(35)}, stats(t, b, "openai", at(12)))
		require.Equal(t, ProviderStats{State: StateOpen, Failures: 7, CooldownUntil: at(40)}, stats(t, b, "openai", at(38)))
		require.Equal(t, ProviderStats{State: StateHalfOpen, Failures: 5}, stats(t, b, "openai", at(62)))
		require.Equal(t, ProviderStats{State: StateHalfOpen}, stats(t, b, "openai", at(75)))
	})

	t.Run("zero admission reports nothing", func(t *testing.T) {
		b := newBreaker(t, suiteConfig(), Hooks{})
		v, err := b.Report(t.Context(), Admission{}, Outcome{Class: Degraded, Terminal: true}, at(0))
		require.NoError(t, err)
		require.Equal(t, Verdict{}, v)
		_, err = b.Allow(t.Context(), "", "gpt-a", at(0))
		require.ErrorIs(t, err, ErrNoProvider)
	})
}

func stripToken(a Admission) Admission {
	a.token = ""
	return a
}

package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/admin"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/usage"
)

func TestOutcomeClass(t *testing.T) {
	tests := []struct {
		name string
		rec  processor.Record
		want string
	}{
		{"ok", processor.Record{Status: 200, Outcome: processor.OutcomeCompleted}, admin.ClassOK},
		{"rate limited", processor.Record{Status: 429, Outcome: processor.OutcomeRefused, RefusedBy: processor.RateLimitDetails}, admin.ClassRateLimited},
		{"budget", processor.Record{Status: 402, Outcome: processor.OutcomeRefused, RefusedBy: processor.BudgetDetails}, admin.ClassBudget},
		{"circuit open", processor.Record{Status: 503, Outcome: processor.OutcomeRefused, RefusedBy: processor.CircuitOpenDetails}, admin.ClassCircuitOpen},
		{"degraded reply", processor.Record{Status: 503, Outcome: processor.OutcomeCompleted, ReplacedBy: processor.CircuitDegradedDetails}, admin.ClassCircuitOpen},
		{"vendor 429", processor.Record{Status: 429, Outcome: processor.OutcomeCompleted}, admin.ClassVendorLimited},
		{"vendor 5xx", processor.Record{Status: 529, Outcome: processor.OutcomeCompleted}, admin.ClassUpstreamError},
		{"vendor 4xx", processor.Record{Status: 400, Outcome: processor.OutcomeCompleted}, admin.ClassClientError},
		{"aborted", processor.Record{Status: 200, Outcome: processor.OutcomeAborted}, admin.ClassAborted},
		{"no status", processor.Record{Outcome: processor.OutcomeCompleted}, admin.ClassOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, outcomeClass(&tt.rec))
		})
	}
}

func TestCircuitTracker(t *testing.T) {
	now := time.Date(2030, 5, 6, 12, 0, 0, 0, time.UTC)
	clock := now
	tr := newCircuitTracker(func() time.Time { return clock })
	tr.cooldown = 5 * time.Minute
	tr.changed(breaker.ModelKey("openai", "gpt-4o"), breaker.StateOpen, breaker.ReasonThreshold)
	clock = now.Add(time.Minute)
	tr.changed(breaker.ModelKey("anthropic", "claude"), breaker.StateOpen, breaker.ReasonThreshold)
	tr.changed(breaker.ModelKey("anthropic", "claude"), breaker.StateHalfOpen, breaker.ReasonThreshold)
	tr.b = &breaker.Breaker{} // disabled: Stats reports closed
	tr.providers = []string{"anthropic", "openai"}

	rep, err := tr.Circuits(context.Background(), now.Add(2*time.Minute))
	require.NoError(t, err)
	require.True(t, rep.Enabled)
	require.Equal(t, int64(300), rep.CooldownSeconds)
	require.Len(t, rep.Providers, 2)
	require.Equal(t, "closed", rep.Providers[0].State)
	require.Len(t, rep.Circuits, 2)
	require.Equal(t, "claude", rep.Circuits[0].Model, "most recent change first")
	require.Equal(t, "half_open", rep.Circuits[0].State)
	require.Nil(t, rep.Circuits[0].CooldownUntil)
	require.Equal(t, "open", rep.Circuits[1].State)
	require.Equal(t, now.Add(5*time.Minute), *rep.Circuits[1].CooldownUntil)
	require.Equal(t, int64(180), rep.Circuits[1].RemainingSeconds)
}

func TestCircuitTrackerBounded(t *testing.T) {
	clock := time.Date(2030, 5, 6, 12, 0, 0, 0, time.UTC)
	tr := newCircuitTracker(func() time.Time { clock = clock.Add(time.Second); return clock })
	tr.changed(breaker.ModelKey("openai", "stays-open"), breaker.StateOpen, breaker.ReasonThreshold)
	for i := range maxTrackedCircuits + 10 {
		tr.changed(breaker.ModelKey("openai", "m"+string(rune('a'+i%26))+time.Duration(i).String()), breaker.StateClosed, breaker.ReasonThreshold)
	}
	require.Len(t, tr.byKey, maxTrackedCircuits)
	require.Contains(t, tr.byKey, breaker.ModelKey("openai", "stays-open"), "closed circuits are forgotten first")
}

// headroomFixture is a gateway's guards as admission would charge them:
// a rate limiter, budgets, a usage ledger and gateway keys.
type headroomFixture struct {
	h       *headroom
	limiter *ratelimit.Quota
	budgets *budget.Quota
	ledger  usage.Ledger
	key     keys.Key // a gateway key of team "ml" with its own limits
}

func newHeadroomFixture(t *testing.T, now time.Time) *headroomFixture {
	ctx := t.Context()
	rl := ratelimit.Config{Enabled: true, Limits: ratelimit.Limits{RequestsPerMinute: 10, TokensPerDay: 10_000}}
	require.NoError(t, rl.Validate())
	bc := budget.Config{Enabled: true,
		PerUser: budget.Policy{Default: budget.Limits{DailyUSD: 10}, Overrides: map[string]budget.Limits{"vip": {}}},
		PerKey:  budget.Policy{Default: budget.Limits{DailyUSD: 50, MonthlyUSD: 100}}}
	require.NoError(t, bc.Validate())
	led, err := usage.New(ctx, bc.Ledger(), usage.Hooks{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = led.Close() })

	store, err := keys.OpenFileStore(filepath.Join(t.TempDir(), "keys.json"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	m := &keys.Manager{Store: store, Now: func() time.Time { return now }}
	_, err = m.CreateTeam(ctx, keys.TeamSpec{ID: "ml", Limits: keys.Limits{RequestsPerMinute: 100}, Budget: keys.Budget{MonthlyUSD: 500}})
	require.NoError(t, err)
	key, _, err := m.CreateKey(ctx, keys.KeySpec{Owner: "alice", Team: "ml", Limits: keys.Limits{RequestsPerMinute: 3},
		Budget: keys.Budget{DailyUSD: 2}})
	require.NoError(t, err)
	auth := keys.NewAuthenticator(store, keys.AuthenticatorOptions{Now: func() time.Time { return now }})
	require.NoError(t, auth.Sync(ctx))

	lim, err := ratelimit.Open(ctx, rl, quota.Hooks{})
	require.NoError(t, err)
	bud, err := budget.Open(ctx, bc, quota.Hooks{})
	require.NoError(t, err)
	f := &headroomFixture{limiter: lim, budgets: bud, ledger: led, key: key}
	f.h = &headroom{ledger: led, series: admin.NewSeries(admin.SeriesOptions{}), limiter: f.limiter, budgets: f.budgets, keys: auth}
	return f
}

// call charges the guards as the processor does for a call by user with
// key (a gateway key when it is f.key) and records its cost; settled
// false leaves the reservations in flight.
func (f *headroomFixture) call(t *testing.T, user, key string, tokens int64, usd float64, settled bool, now time.Time) {
	ctx := t.Context()
	rr := ratelimit.Request{Provider: "openai", User: user, KeyID: key, InputTokens: tokens}
	br := budget.Request{User: user, KeyID: key, EstimatedUSD: usd}
	if key == f.key.ID {
		id := &keys.Identity{Key: f.key, Team: &keys.Team{ID: "ml", Limits: keys.Limits{RequestsPerMinute: 100},
			Budget: keys.Budget{MonthlyUSD: 500}}}
		rr.KeyLimits, rr.Team, rr.TeamLimits = processor.GatewayKeyLimits(id)
		br.KeyBudget, br.Team, br.TeamBudget = processor.GatewayKeyBudgets(id)
	}
	rd, err := f.limiter.Reserve(ctx, rr, now)
	require.NoError(t, err)
	require.True(t, rd.Allowed)
	bd, err := f.budgets.Reserve(ctx, br, now)
	require.NoError(t, err)
	require.True(t, bd.Allowed)
	if !settled {
		return
	}
	require.NoError(t, f.limiter.Settle(ctx, rd.Reservation, tokens, now))
	require.NoError(t, f.budgets.Settle(ctx, bd.Reservation, usd, now))
	require.NoError(t, f.ledger.Record(ctx, usage.Usage{User: user, KeyID: key, Team: rr.Team, Provider: "openai",
		Model: "gpt-4o", CostNanos: budget.Nanos(usd), CostKnown: true}, now))
}

func TestHeadroom(t *testing.T) {
	now := time.Date(2030, 5, 6, 12, 0, 30, 0, time.UTC)
	minute, day, month := time.Date(2030, 5, 6, 12, 1, 0, 0, time.UTC), time.Date(2030, 5, 7, 0, 0, 0, 0, time.UTC),
		time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	f := newHeadroomFixture(t, now)
	gk := f.key.ID
	f.call(t, "alice", gk, 400, 0.5, true, now.AddDate(0, 0, -2)) // earlier this month
	f.call(t, "alice", gk, 1000, 1.25, true, now)
	f.call(t, "alice", gk, 200, 0.25, false, now) // in flight: reserved, not in the ledger
	f.call(t, "vip", "k2", 50, 3, true, now)
	f.call(t, "bob", "k2", 10, 0.01, true, now)

	rep, err := f.h.Headroom(t.Context(), 2, now)
	require.NoError(t, err)
	require.Equal(t, []string{"rate_limit", "budget"}, rep.Guards)
	require.Equal(t, "usage_ledger", rep.RankedBy)
	require.Empty(t, rep.Errors)
	var order []string
	by := map[string]admin.SubjectHeadroom{}
	for _, s := range rep.Subjects {
		order = append(order, s.Kind+":"+s.ID)
		by[s.Kind+":"+s.ID] = s
	}
	require.Equal(t, []string{"user:vip", "user:alice", "key:k2", "key:" + gk, "team:ml"}, order,
		"top 2 per kind by today's spend; bob is third")
	lim := admin.NewLimitHeadroom
	require.Equal(t, []admin.LimitHeadroom{
		lim("rate_limit", "requests", "minute", 10, 2, minute),
		lim("rate_limit", "tokens", "day", 10_000, 1200, day),
		lim("budget", "usd", "day", 10, 1.5, day),
	}, by["user:alice"].Limits, "the in-flight call counts in the stores")
	require.Equal(t, 1.25, by["user:alice"].SpendTodayUSD, "the ledger has settled spend only")
	require.Equal(t, int64(1), by["user:alice"].RequestsToday)
	require.Equal(t, []admin.LimitHeadroom{
		lim("rate_limit", "requests", "minute", 3, 2, minute),
		lim("budget", "usd", "day", 2, 1.5, day),
	}, by["key:"+gk].Limits, "a gateway key's own limits replace the configured ones")
	require.Equal(t, []admin.LimitHeadroom{
		lim("rate_limit", "requests", "minute", 100, 2, minute),
		lim("budget", "usd", "month", 500, 2, month),
	}, by["team:ml"].Limits, "the team's shared limits; the month holds the earlier call too")
	require.Equal(t, []admin.LimitHeadroom{
		lim("rate_limit", "requests", "minute", 10, 1, minute),
		lim("rate_limit", "tokens", "day", 10_000, 50, day),
	}, by["user:vip"].Limits, "vip's budget override exempts it")
	require.Equal(t, []admin.LimitHeadroom{
		lim("rate_limit", "requests", "minute", 10, 2, minute),
		lim("rate_limit", "tokens", "day", 10_000, 60, day),
		lim("budget", "usd", "day", 50, 3.01, day),
		lim("budget", "usd", "month", 100, 3.01, month),
	}, by["key:k2"].Limits)

	// Next minute: the minute windows start empty, the day keeps counting.
	later, err := f.h.Headroom(t.Context(), 1, minute)
	require.NoError(t, err)
	require.Len(t, later.Subjects, 3, "one per kind")
	require.Equal(t, lim("rate_limit", "requests", "minute", 10, 0, minute.Add(time.Minute)), later.Subjects[0].Limits[0])
}

func TestHeadroomStoreDown(t *testing.T) {
	now := time.Date(2030, 5, 6, 12, 0, 30, 0, time.UTC)
	f := newHeadroomFixture(t, now)
	f.call(t, "alice", "k1", 10, 1, true, now)
	srv := redistest.Start(t)
	bc := budget.Config{Enabled: true, PerUser: budget.Policy{Default: budget.Limits{DailyUSD: 10}}}
	bc.Backend, bc.Redis.Address = "redis", srv.Addr
	require.NoError(t, bc.Validate())
	down, err := budget.Open(t.Context(), bc, quota.Hooks{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = down.Close() })
	srv.Stop()
	f.h.budgets = down

	rep, err := f.h.Headroom(t.Context(), 5, now)
	require.NoError(t, err, "one guard's store failing does not hide the others")
	require.Contains(t, rep.Errors["budget"], "unavailable")
	require.NotContains(t, rep.Errors, "rate_limit")
	require.Len(t, rep.Subjects, 2)
	require.Equal(t, "user:alice", rep.Subjects[0].Kind+":"+rep.Subjects[0].ID)
	require.Len(t, rep.Subjects[0].Limits, 2, "the rate limits only")
}

func TestHeadroomWithoutLedger(t *testing.T) {
	now := time.Date(2030, 5, 6, 12, 0, 30, 0, time.UTC)
	f := newHeadroomFixture(t, now)
	f.h.ledger, f.h.budgets = nil, nil
	f.call(t, "alice", "k1", 10, 0.2, true, now)
	f.h.series.Add(admin.Sample{Time: now, Provider: "openai", Model: "gpt-4o", User: "alice", KeyID: "k1",
		Class: admin.ClassOK, CostNanos: budget.Nanos(0.2)})
	rep, err := f.h.Headroom(t.Context(), 5, now)
	require.NoError(t, err)
	require.Equal(t, "this_instance", rep.RankedBy)
	require.Equal(t, []string{"rate_limit"}, rep.Guards)
	require.Len(t, rep.Subjects, 2, "alice and k1; no team without the ledger")
	require.Equal(t, int64(1), rep.Subjects[0].RequestsToday)
	require.Equal(t, admin.NewLimitHeadroom("rate_limit", "requests", "minute", 10, 1, time.Date(2030, 5, 6, 12, 1, 0, 0, time.UTC)),
		rep.Subjects[1].Limits[0])

	f.h.limiter = nil
	rep, err = f.h.Headroom(t.Context(), 5, now)
	require.NoError(t, err)
	require.Empty(t, rep.Guards)
	require.Empty(t, rep.Subjects[0].Limits)
}

func TestConsoleWiring(t *testing.T) {
	cfg := config.Defaults()
	cfg.Features.CircuitBreaker.Enabled = true
	cfg.Features.RateLimiting.Enabled = true
	cfg.Features.RateLimiting.Limits.RequestsPerMinute = 5
	require.NoError(t, cfg.Validate())
	env := map[string]string{"LLM_PROXY_ADMIN_TOKEN": "tok"}
	g, err := New(t.Context(), cfg, Options{Logger: quiet(), Getenv: func(k string) string { return env[k] }})
	require.NoError(t, err)
	defer g.Close()
	get := func(path, auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		g.Admin.ServeHTTP(rec, req)
		return rec
	}
	require.Equal(t, http.StatusUnauthorized, get("/", "").Code)
	require.Equal(t, http.StatusUnauthorized, get("/api/v1/circuits", "Bearer nope").Code)
	require.Equal(t, http.StatusOK, get("/health", "").Code, "probes need no token")
	require.Equal(t, http.StatusOK, get("/", "Bearer tok").Code)
	rec := get("/api/v1/circuits", "Bearer tok")
	require.Equal(t, http.StatusOK, rec.Code)
	var rep admin.CircuitReport
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &rep))
	require.True(t, rep.Enabled)
	require.Len(t, rep.Providers, 3)
	require.Equal(t, "anthropic", rep.Providers[0].Provider)
	require.Equal(t, "closed", rep.Providers[0].State)
	require.Equal(t, int64(breaker.DefaultCooldownSeconds), rep.CooldownSeconds)

	rec = get("/api/v1/headroom", "Bearer tok")
	require.Equal(t, http.StatusOK, rec.Code)
	var hr admin.HeadroomReport
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &hr))
	require.Equal(t, []string{"rate_limit"}, hr.Guards, "the limiter in use is the one reported")
	require.Equal(t, "this_instance", hr.RankedBy, "no cost tracking: this instance's calls rank")
	require.Empty(t, hr.Subjects)
}

func TestSeriesObserverCountsRecords(t *testing.T) {
	now := time.Date(2030, 5, 6, 12, 0, 0, 0, time.UTC)
	s := admin.NewSeries(admin.SeriesOptions{})
	obs := seriesObserver{series: s, now: func() time.Time { return now }}
	rec := processor.Record{Status: 200, Outcome: processor.OutcomeCompleted, Duration: 80 * time.Millisecond,
		Cost: processor.Cost{Known: true, TotalUSD: 0.25}}
	rec.Provider = "openai"
	rec.Identity = processor.Identity{User: "alice", KeyID: "k1"}
	rec.Usage.Model = "gpt-4o-2024-08-06" // the request named no model: the vendor's is used
	rec.Usage.InputTokens, rec.Usage.OutputTokens = 100, 20
	obs.Observe(&rec)
	refused := processor.Record{Status: 429, Outcome: processor.OutcomeRefused, RefusedBy: processor.RateLimitDetails}
	refused.Provider = "openai"
	refused.Info.Model = "gpt-4o"
	obs.Observe(&refused)

	u := s.Usage(admin.RangeToday, admin.ByModel, 8, now)
	require.Equal(t, admin.Totals{Requests: 2, CostNanos: 250_000_000, InputTokens: 100, OutputTokens: 20}, u.Total)
	require.Equal(t, "openai/gpt-4o-2024-08-06", u.Series[0].Name)
	require.Equal(t, "openai/gpt-4o", u.Series[1].Name)
	byKey := s.Usage(admin.RangeToday, admin.ByKey, 8, now)
	require.Len(t, byKey.Series, 1)
	require.Equal(t, "k1", byKey.Series[0].Name)
	tr := s.Traffic(1, now)
	require.Equal(t, int64(1), tr.Summary.Classes[admin.ClassOK])
	require.Equal(t, int64(1), tr.Summary.Classes[admin.ClassRateLimited])
}

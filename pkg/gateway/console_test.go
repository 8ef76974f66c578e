package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/admin"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
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

func TestBudgetHeadroom(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 5, 6, 12, 0, 0, 0, time.UTC)
	cfg := budget.Config{Enabled: true,
		PerUser: budget.Policy{Default: budget.Limits{DailyUSD: 10}, Overrides: map[string]budget.Limits{"vip": {}}},
		PerKey:  budget.Policy{Default: budget.Limits{DailyUSD: 50, MonthlyUSD: 100}}}
	led, err := usage.New(ctx, cfg.Ledger(), usage.Hooks{})
	require.NoError(t, err)
	defer led.Close()
	record := func(user, key string, usd float64, at time.Time) {
		require.NoError(t, led.Record(ctx, usage.Usage{User: user, KeyID: key, Provider: "openai", Model: "gpt-4o",
			CostNanos: budget.Nanos(usd), CostKnown: true}, at))
	}
	record("alice", "k1", 20, now.AddDate(0, 0, -3)) // earlier this month
	record("alice", "k1", 4, now)
	record("vip", "k1", 30, now)
	record("bob", "k2", 1, now)

	rep, err := budgetHeadroom{ledger: led, cfg: cfg}.Headroom(ctx, 2, now)
	require.NoError(t, err)
	require.Equal(t, []string{"budget"}, rep.Guards)
	byID := map[string]admin.SubjectHeadroom{}
	for _, s := range rep.Subjects {
		byID[s.Kind+":"+s.ID] = s
	}
	require.Len(t, rep.Subjects, 4, "top 2 users and top 2 keys")
	require.Equal(t, []admin.LimitHeadroom{admin.NewLimitHeadroom("budget", "usd", "day", 10, 4)}, byID["user:alice"].Limits)
	require.Empty(t, byID["user:vip"].Limits, "an override of zeros exempts")
	require.Equal(t, 30.0, byID["user:vip"].SpendTodayUSD)
	require.Equal(t, []admin.LimitHeadroom{admin.NewLimitHeadroom("budget", "usd", "day", 50, 34),
		admin.NewLimitHeadroom("budget", "usd", "month", 100, 54)}, byID["key:k1"].Limits)
	require.Equal(t, "user", rep.Subjects[0].Kind)
	require.Equal(t, "vip", rep.Subjects[0].ID, "heaviest first")

	cfg.Enabled = false
	rep, err = budgetHeadroom{ledger: led, cfg: cfg}.Headroom(ctx, 5, now)
	require.NoError(t, err)
	require.Empty(t, rep.Guards)
	require.Len(t, rep.Subjects, 5)
	require.Empty(t, rep.Subjects[0].Limits)
}

func TestConsoleWiring(t *testing.T) {
	cfg := config.Defaults()
	cfg.Features.CircuitBreaker.Enabled = true
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

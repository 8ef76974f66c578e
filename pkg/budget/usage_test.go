package budget

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

func TestUsage(t *testing.T) {
	at := time.Date(2030, 5, 6, 12, 30, 0, 0, time.UTC)
	day, month := time.Date(2030, 5, 7, 0, 0, 0, 0, time.UTC), time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	cfg := Config{Enabled: true, PerUser: Policy{Default: Limits{DailyUSD: 10}},
		PerKey: Policy{Default: Limits{DailyUSD: 50, MonthlyUSD: 100}, Overrides: map[string]Limits{"free": {}}}}
	teamBudget := Limits{MonthlyUSD: 500}
	backends := map[string]func(t *testing.T) *Quota{
		"memory": func(t *testing.T) *Quota { require.NoError(t, cfg.Validate()); return newMemory(t, cfg) },
		"redis":  func(t *testing.T) *Quota { return newRedisFor(t, redistest.Start(t), cfg) },
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			q := open(t)
			ctx := t.Context()
			req := Request{User: "alice", KeyID: "k1", Team: "ml", TeamBudget: &teamBudget, EstimatedUSD: 2}
			settled, err := q.Reserve(ctx, req, at)
			require.NoError(t, err)
			require.NoError(t, q.Settle(ctx, settled.Reservation, 1.25, at))
			inFlight, err := q.Reserve(ctx, req, at)
			require.NoError(t, err)
			require.True(t, inFlight.Allowed)

			got, err := q.Usage(ctx, []Request{{User: "alice"}, {KeyID: "k1"}, {KeyID: "free"},
				{Team: "ml", TeamBudget: &teamBudget}, {KeyID: "own", KeyBudget: &Limits{DailyUSD: 3}}}, at)
			require.NoError(t, err)
			spend := Nanos(1.25) + Nanos(2) // settled plus the reservation in flight
			require.Equal(t, []WindowUsage{
				{Scope: "user:alice", Window: WindowDay, Reset: day, LimitNanos: Nanos(10), SpendNanos: spend},
				{Scope: "key:k1", Window: WindowDay, Reset: day, LimitNanos: Nanos(50), SpendNanos: spend},
				{Scope: "key:k1", Window: WindowMonth, Reset: month, LimitNanos: Nanos(100), SpendNanos: spend},
				{Scope: "team:ml", Window: WindowMonth, Reset: month, LimitNanos: Nanos(500), SpendNanos: spend},
				{Scope: "key:own", Window: WindowDay, Reset: day, LimitNanos: Nanos(3)},
			}, got, "an exempt key has no window; a gateway key's own budget wins")
		})
	}
}

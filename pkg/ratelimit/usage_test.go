package ratelimit

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

func TestUsage(t *testing.T) {
	cfg := Config{Enabled: true, Global: Limits{RequestsPerMinute: 1000},
		Limits:    Limits{RequestsPerMinute: 10, TokensPerDay: 5000},
		Overrides: Overrides{PerUser: map[string]Limits{"vip": {}}}}
	team := Limits{TokensPerMinute: 9000}
	backends := map[string]func(t *testing.T) *Quota{
		"memory": func(t *testing.T) *Quota { require.NoError(t, cfg.Validate()); return newMemory(t, cfg) },
		"redis":  func(t *testing.T) *Quota { return newRedisFor(t, redistest.Start(t), cfg) },
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			q := open(t)
			ctx := t.Context()
			charge := Request{Provider: "openai", User: "alice", KeyID: "k1", Team: "ml", TeamLimits: &team, InputTokens: 120}
			for range 3 {
				d, err := q.Reserve(ctx, charge, t0)
				require.NoError(t, err)
				require.True(t, d.Allowed)
			}
			d, err := q.Reserve(ctx, charge, t0)
			require.NoError(t, err)
			require.NoError(t, q.Settle(ctx, d.Reservation, 20, t0)) // 100 tokens fewer than reserved

			got, err := q.Usage(ctx, []Request{{User: "alice"}, {KeyID: "k1"}, {Team: "ml", TeamLimits: &team},
				{User: "vip"}, {User: "nobody"}}, t0)
			require.NoError(t, err)
			want := []WindowUsage{
				{Scope: "global", Window: WindowMinute, Reset: nextMinute, RequestLimit: 1000, Requests: 4, Tokens: 380},
				{Scope: "user:alice", Window: WindowMinute, Reset: nextMinute, RequestLimit: 10, Requests: 4, Tokens: 380},
				{Scope: "user:alice", Window: WindowDay, Reset: nextDay, TokenLimit: 5000, Requests: 4, Tokens: 380},
				{Scope: "key:k1", Window: WindowMinute, Reset: nextMinute, RequestLimit: 10, Requests: 4, Tokens: 380},
				{Scope: "key:k1", Window: WindowDay, Reset: nextDay, TokenLimit: 5000, Requests: 4, Tokens: 380},
				{Scope: "team:ml", Window: WindowMinute, Reset: nextMinute, TokenLimit: 9000, Requests: 4, Tokens: 380},
				{Scope: "user:nobody", Window: WindowMinute, Reset: nextMinute, RequestLimit: 10},
				{Scope: "user:nobody", Window: WindowDay, Reset: nextDay, TokenLimit: 5000},
			}
			require.Equal(t, want, got, "the global window once; vip is exempt so has none")

			// Reading charged nothing: the same figures again.
			again, err := q.Usage(ctx, []Request{{User: "alice"}}, t0)
			require.NoError(t, err)
			require.Equal(t, want[:3], again)
			// The next minute starts empty; the day keeps counting.
			later, err := q.Usage(ctx, []Request{{User: "alice"}}, nextMinute)
			require.NoError(t, err)
			require.Equal(t, int64(0), later[1].Requests)
			require.Equal(t, int64(4), later[2].Requests)
		})
	}
}

func TestUsageUnavailable(t *testing.T) {
	s := redistest.Start(t)
	q := newRedisFor(t, s, Config{Enabled: true, Limits: Limits{RequestsPerMinute: 1}})
	s.Stop()
	_, err := q.Usage(t.Context(), []Request{{User: "alice"}}, t0)
	require.ErrorIs(t, err, ErrBackendUnavailable)
}

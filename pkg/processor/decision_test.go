package processor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

// namedGuard answers as configured and names itself.
type namedGuard struct {
	name  string
	state string // the admitted ticket's State, when set
	reply *Reply
	err   error
}

func (g *namedGuard) Name() string { return g.name }

func (g *namedGuard) Admit(context.Context, *Call) (Ticket, *Reply, error) {
	if g.err != nil || g.reply != nil {
		return nil, g.reply, g.err
	}
	if g.state != "" {
		return stateTicket(g.state), nil, nil
	}
	return ticketFunc(func(context.Context, *Record) {}), nil, nil
}

type stateTicket string

func (stateTicket) Settle(context.Context, *Record) {}
func (s stateTicket) State() string                 { return string(s) }

func TestRecordCarriesGuardDecisionsInOrder(t *testing.T) {
	refusal := &Reply{Status: 429, Details: RateLimitDetails}
	h := newHarness(t, config.Defaults(),
		&namedGuard{name: "circuit_breaker", state: "half_open"},
		&countingGuard{}, // unnamed
		&namedGuard{name: "budget", err: errors.New("store down")},
		&namedGuard{name: "rate_limit", reply: refusal},
		&namedGuard{name: "never_asked"},
	)
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
	c.do(reqBody([]byte(`{"model":"m","text":"abcd"}`), true))
	rec := h.waitRecords(1)[0]
	require.Len(t, rec.Guards, 4, "guards after the refusal are not asked")
	for i, d := range rec.Guards {
		require.False(t, d.At.IsZero())
		require.False(t, d.At.Before(rec.Start), "decision %d before the request started", i)
		rec.Guards[i].At = time.Time{}
	}
	require.Equal(t, []GuardDecision{
		{Guard: "circuit_breaker", Verdict: VerdictAdmitted, State: "half_open"},
		{Verdict: VerdictAdmitted},
		{Guard: "budget", Verdict: VerdictError},
		{Guard: "rate_limit", Verdict: VerdictRefused, Details: RateLimitDetails},
	}, rec.Guards)
	require.Equal(t, OutcomeRefused, rec.Outcome)
}

func TestRecordWithoutGuardsHasNoDecisions(t *testing.T) {
	h := newHarness(t, config.Defaults())
	c := h.open()
	c.do(reqHeaders(hdrs(false, ":method", "POST", ":path", "/fake/v1/x", "content-type", "application/json")))
	c.do(reqBody([]byte(`{"model":"m","text":"abcd"}`), true))
	c.do(respHeaders(hdrs(true, ":status", "204")))
	require.Nil(t, h.waitRecords(1)[0].Guards)
}

func TestBuiltInGuardsAreNamed(t *testing.T) {
	for want, g := range map[string]Guard{
		"circuit_breaker": &Circuit{}, "rate_limit": &RateLimit{}, "budget": &Budget{},
	} {
		ng, ok := g.(NamedGuard)
		require.True(t, ok, want)
		require.Equal(t, want, ng.Name())
	}
	var _ StateTicket = (*circuitTicket)(nil)
}

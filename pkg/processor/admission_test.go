package processor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

// remoteGuard is a RemoteGuard fake. Admit marks it started, then waits
// until every guard in waitFor has started too (at most 30 s, after which
// it records that they did not overlap), and answers reply or a ticket.
type remoteGuard struct {
	name    string
	remote  bool
	reply   *Reply
	waitFor []*remoteGuard

	once    sync.Once
	started chan struct{}

	mu       sync.Mutex
	calls    int
	overlap  bool
	outcomes []Outcome
}

func newRemoteGuard(name string, remote bool, reply *Reply) *remoteGuard {
	return &remoteGuard{name: name, remote: remote, reply: reply, started: make(chan struct{})}
}

func (g *remoteGuard) Name() string      { return g.name }
func (g *remoteGuard) Remote(*Call) bool { return g.remote }
func (g *remoteGuard) Settle(_ context.Context, r *Record) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.outcomes = append(g.outcomes, r.Outcome)
}

func (g *remoteGuard) Admit(context.Context, *Call) (Ticket, *Reply, error) {
	g.once.Do(func() { close(g.started) })
	overlap := true
	for _, o := range g.waitFor {
		select {
		case <-o.started:
		case <-time.After(30 * time.Second):
			overlap = false
		}
	}
	g.mu.Lock()
	g.calls++
	g.overlap = overlap
	g.mu.Unlock()
	if g.reply != nil {
		return nil, g.reply, nil
	}
	return g, nil, nil
}

func (g *remoteGuard) state() (calls int, overlap bool, outcomes []Outcome) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls, g.overlap, append([]Outcome(nil), g.outcomes...)
}

func refusal(details string) *Reply {
	return &Reply{Status: 429, Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(`{}`), Details: details}
}

// admitOnce sends one GET through guards and returns the record and the
// HTTP status the client got (0 when the call went upstream).
func admitOnce(t *testing.T, guards ...Guard) (*Record, int) {
	t.Helper()
	h := newHarness(t, config.Defaults(), guards...)
	c := h.open()
	resp := c.do(reqHeaders(hdrs(true, ":method", "GET", ":path", "/fake/v1/x")))
	status := 0
	if ir := resp.GetImmediateResponse(); ir != nil {
		status = int(ir.GetStatus().GetCode())
	} else {
		c.do(respHeaders(hdrs(true, ":status", "200")))
	}
	c.cf()
	require.Eventually(t, func() bool { return len(h.obs.all()) == 1 }, 30*time.Second, time.Millisecond)
	return h.obs.all()[0], status
}

func guardNames(r *Record) []string {
	var names []string
	for _, d := range r.Guards {
		names = append(names, d.Guard+":"+string(d.Verdict))
	}
	return names
}

func TestRemoteGuardsAreAdmittedAtOnce(t *testing.T) {
	t.Run("consecutive remote guards overlap and both settle", func(t *testing.T) {
		a, b := newRemoteGuard("a", true, nil), newRemoteGuard("b", true, nil)
		a.waitFor, b.waitFor = []*remoteGuard{b}, []*remoteGuard{a}
		rec, status := admitOnce(t, a, b)
		require.Zero(t, status)
		require.Equal(t, []string{"a:admitted", "b:admitted"}, guardNames(rec))
		for _, g := range []*remoteGuard{a, b} {
			calls, overlap, outcomes := g.state()
			require.Equal(t, 1, calls, g.name)
			require.True(t, overlap, "%s ran alone", g.name)
			require.Equal(t, []Outcome{OutcomeCompleted}, outcomes, g.name)
		}
	})
	t.Run("a refusal settles the guards admitted with it as refused", func(t *testing.T) {
		a, b := newRemoteGuard("a", true, nil), newRemoteGuard("b", true, refusal("b_says_no"))
		c := newRemoteGuard("c", true, nil)
		a.waitFor, b.waitFor, c.waitFor = []*remoteGuard{b, c}, []*remoteGuard{a, c}, []*remoteGuard{a, b}
		rec, status := admitOnce(t, a, b, c)
		require.Equal(t, 429, status)
		require.Equal(t, "b_says_no", rec.RefusedBy)
		require.Equal(t, []string{"a:admitted", "b:refused"}, guardNames(rec), "c counts as not run")
		for _, g := range []*remoteGuard{a, c} {
			_, overlap, outcomes := g.state()
			require.True(t, overlap, g.name)
			require.Equal(t, []Outcome{OutcomeRefused}, outcomes, "%s's claim is given back", g.name)
		}
	})
	t.Run("the first refusal in guard order wins", func(t *testing.T) {
		a, b := newRemoteGuard("a", true, refusal("a_says_no")), newRemoteGuard("b", true, refusal("b_says_no"))
		a.waitFor, b.waitFor = []*remoteGuard{b}, []*remoteGuard{a}
		rec, status := admitOnce(t, a, b)
		require.Equal(t, 429, status)
		require.Equal(t, "a_says_no", rec.RefusedBy)
		require.Equal(t, []string{"a:refused"}, guardNames(rec))
	})
	t.Run("a guard that is not remote runs alone, and a refusal stops the rest", func(t *testing.T) {
		a, b := newRemoteGuard("a", false, refusal("a_says_no")), newRemoteGuard("b", true, nil)
		rec, status := admitOnce(t, a, b)
		require.Equal(t, 429, status)
		require.Equal(t, []string{"a:refused"}, guardNames(rec))
		calls, _, _ := b.state()
		require.Zero(t, calls, "b never asked")
	})
	t.Run("remote guards after a local one overlap", func(t *testing.T) {
		l := newRemoteGuard("local", false, nil)
		a, b := newRemoteGuard("a", true, nil), newRemoteGuard("b", true, nil)
		a.waitFor, b.waitFor = []*remoteGuard{b}, []*remoteGuard{a}
		rec, _ := admitOnce(t, l, a, b)
		require.Equal(t, []string{"local:admitted", "a:admitted", "b:admitted"}, guardNames(rec))
		for _, g := range []*remoteGuard{a, b} {
			_, overlap, _ := g.state()
			require.True(t, overlap, g.name)
		}
	})
}

// erringGuard admits with a ticket and an error, as the circuit breaker does
// when its store fails (fail open, the ticket still classifies the response).
type erringGuard struct{ *remoteGuard }

func (g erringGuard) Admit(ctx context.Context, c *Call) (Ticket, *Reply, error) {
	t, _, _ := g.remoteGuard.Admit(ctx, c)
	return t, nil, errors.New("store down")
}

func TestGuardErrorKeepsItsTicket(t *testing.T) {
	g := erringGuard{newRemoteGuard("flaky", false, nil)}
	rec, status := admitOnce(t, g)
	require.Zero(t, status, "let through")
	require.Equal(t, []string{"flaky:error"}, guardNames(rec))
	_, _, outcomes := g.state()
	require.Equal(t, []Outcome{OutcomeCompleted}, outcomes, "the ticket is settled")
}

package e2e

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoytest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
)

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// Every attempt fails to connect. Envoy connects before the upstream filter
// chain runs, so such an attempt may leave no attempt_<n> entry; the final
// response (Envoy's own 503) still says how many attempts there were
// (x-envoy-attempt-count), and the breaker counts each of them: with
// retry_contribution_mode on and a threshold of 3, one call opens the
// circuit.
func TestConnectFailuresCountForEveryAttempt(t *testing.T) {
	dead := closedAddr(t)
	s := startEmulated(t, withClock(newClock(midMinute).Now), circuit(func(c *breaker.Config) {
		c.FailureThreshold = 3
		c.RetryContributionMode = breaker.ContributionOn
	}), withEnvoy(func(c *envoytest.Config) { c.Clusters["anthropic"] = dead }))
	_, err := anthropicClient(s, "/anthropic/").Messages.New(t.Context(), messageParams())
	require.Error(t, err)
	line := s.AccessLog(t, 1)[0]
	require.EqualValues(t, 503, num(line["response_code"]))
	require.EqualValues(t, 3, num(line["attempts"]), "Envoy retried twice")
	require.Equal(t, "open", providerHealth(t, s, "anthropic")["circuit_state"],
		"two retried connect failures and the terminal one")
}

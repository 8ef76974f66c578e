package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	adminapi "github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/admin"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

// The demo's rules (configs/demo.yml, what make demo and the compose mock
// profile run): calls from a shell use up the key's and the user's limits,
// the sixth of the minute is refused, and the console's headroom endpoint
// reports exactly that from the limiter's and the budgets' counters.
func TestDemoHeadroom(t *testing.T) {
	env := map[string]string{"DEMO_COST_RECORDS": filepath.Join(t.TempDir(), "records.jsonl")}
	demo, err := config.Load([]string{"../configs/base.yml", "../configs/demo.yml"}, func(k string) string { return env[k] })
	require.NoError(t, err)
	s := startEmulated(t, withConfig(func(c *config.Config) { *c = demo }), withClock(newClock(midMinute).Now))

	body := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello!"}]}`)
	user := http.Header{"X-User-Id": {"dana"}}
	for i := range 5 {
		resp := post(t, s, "/openai/v1/chat/completions", "application/json", body, user)
		readAll(t, resp)
		require.Equal(t, http.StatusOK, resp.StatusCode, "call %d", i+1)
	}
	resp := post(t, s, "/openai/v1/chat/completions", "application/json", body, user)
	readAll(t, resp)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the sixth call of the minute")
	s.Records(t, 6)

	hr, err := httpClient().Get(s.adminURL + "/api/v1/headroom")
	require.NoError(t, err)
	defer hr.Body.Close()
	require.Equal(t, http.StatusOK, hr.StatusCode)
	var rep adminapi.HeadroomReport
	require.NoError(t, json.NewDecoder(hr.Body).Decode(&rep))
	require.Equal(t, []string{"rate_limit", "budget"}, rep.Guards)
	require.Equal(t, "usage_ledger", rep.RankedBy)
	require.Empty(t, rep.Errors)
	byKind := map[string]adminapi.SubjectHeadroom{}
	for _, sub := range rep.Subjects {
		require.NotContains(t, byKind, sub.Kind, "one user and one key made every call")
		byKind[sub.Kind] = sub
	}
	dana, key := byKind["user"], byKind["key"]
	require.Equal(t, "dana", dana.ID)
	require.NotContains(t, key.ID, "sk-test", "keys are reported by their hash")
	require.EqualValues(t, 5, dana.RequestsToday, "the refused call spent nothing")
	limits := func(s adminapi.SubjectHeadroom) map[string]adminapi.LimitHeadroom {
		out := map[string]adminapi.LimitHeadroom{}
		for _, l := range s.Limits {
			out[l.Guard+" "+l.Metric+"/"+l.Window] = l
		}
		return out
	}
	for _, s := range []adminapi.SubjectHeadroom{dana, key} {
		rpm := limits(s)["rate_limit requests/minute"]
		require.Equal(t, 5.0, rpm.Limit, s.Kind)
		require.Equal(t, 5.0, rpm.Used, "%s: five admitted calls; the refusal charged nothing", s.Kind)
		require.Zero(t, rpm.Remaining)
		require.Equal(t, midMinute.Truncate(time.Minute).Add(time.Minute), rpm.Reset)
		tpm := limits(s)["rate_limit tokens/minute"]
		require.Equal(t, 20_000.0, tpm.Limit)
		require.Positive(t, tpm.Used, "settled input tokens")
	}
	spend := limits(dana)["budget usd/day"]
	require.Equal(t, 0.05, spend.Limit)
	require.InDelta(t, dana.SpendTodayUSD, spend.Used, 1e-9, "settled: the budget counter equals the ledger's spend")
	require.Positive(t, spend.Used)
	require.NotContains(t, limits(key), "budget usd/day", "the demo budgets users only")
}

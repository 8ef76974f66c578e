package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/cost"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/costlog"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/usage"
)

// Test prices, USD per million tokens, chosen so costs are easy to check by
// hand; they replace the shipped table for these models.
var testPrices = map[string]map[string]cost.Model{
	"openai":    {"gpt-4o-mini": {Pricing: cost.Price{Input: 1, CacheRead: 0.5, Output: 4}}},
	"anthropic": {"claude-sonnet-4-5": {Pricing: cost.Price{Input: 3, CacheRead: 0.3, CacheWrite: 3.75, Output: 15}}},
	"gemini":    {"gemini-2.5-flash": {Pricing: cost.Price{Input: 0.3, CacheRead: 0.03, Output: 2.5}}},
}

// costTracking turns on cost records to a file in dir, with the test prices.
func costTracking(dir string, f func(*config.CostTracking)) emuOption {
	return withConfig(func(c *config.Config) {
		for p, models := range testPrices {
			pc := c.Providers[p]
			pc.Models = models
			c.Providers[p] = pc
		}
		ct := &c.Features.CostTracking
		ct.Enabled = true
		ct.FlushInterval = "10ms"
		ct.Sinks = []costlog.SinkConfig{{Type: costlog.SinkFile, File: &costlog.FileConfig{Path: filepath.Join(dir, "costs.jsonl")}}}
		if f != nil {
			f(ct)
		}
	})
}

func readRecords(t *testing.T, path string) []costlog.Record {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var out []costlog.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r costlog.Record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		out = append(out, r)
	}
	return out
}

// recorded waits, for call i of calls alternating between two instances
// writing cost records in dirs, until the call's record is written: its
// settlement, which runs before the record, has landed.
func recorded(t *testing.T, dirs [2]string) func(i int) {
	return func(i int) { waitRecords(t, filepath.Join(dirs[i%2], "costs.jsonl"), i/2+1) }
}

func waitRecords(t *testing.T, path string, n int) []costlog.Record {
	t.Helper()
	var recs []costlog.Record
	require.Eventually(t, func() bool {
		recs = readRecords(t, path)
		return len(recs) >= n
	}, 10*time.Second, 10*time.Millisecond, "waiting for %d cost records", n)
	return recs
}

func TestCostRecordsMatchHandComputedCost(t *testing.T) {
	// Forced usage: the fake writes exactly these numbers on the wire, in
	// each vendor's own semantics.
	oaHeaders := []string{"x-fake-input-tokens", "1000", "x-fake-cached-tokens", "400", "x-fake-output-tokens", "200", "x-fake-reasoning-tokens", "50"}
	// OpenAI: prompt_tokens 1000 include 400 cached; completion 200 include 50 reasoning.
	oaCost := (600*1.0 + 400*0.5 + 200*4.0) / 1e6
	antHeaders := []string{"x-fake-input-tokens", "1000", "x-fake-cached-tokens", "2000", "x-fake-cache-write-tokens", "500", "x-fake-output-tokens", "300"}
	// Anthropic: input 1000 excludes cache read 2000 and cache write 500.
	antCost := (1000*3.0 + 2000*0.3 + 500*3.75 + 300*15.0) / 1e6
	gmHeaders := http.Header{"X-Fake-Input-Tokens": {"1000"}, "X-Fake-Cached-Tokens": {"400"},
		"X-Fake-Output-Tokens": {"200"}, "X-Fake-Reasoning-Tokens": {"100"}}
	// Gemini: promptTokenCount 1000 includes 400 cached; thoughts 100 bill as output.
	gmCost := (600*0.3 + 400*0.03 + 300*2.5) / 1e6

	oaOpts := func() []option.RequestOption {
		var o []option.RequestOption
		for i := 0; i < len(oaHeaders); i += 2 {
			o = append(o, option.WithHeader(oaHeaders[i], oaHeaders[i+1]))
		}
		return o
	}
	antOpts := func() []aoption.RequestOption {
		var o []aoption.RequestOption
		for i := 0; i < len(antHeaders); i += 2 {
			o = append(o, aoption.WithHeader(antHeaders[i], antHeaders[i+1]))
		}
		return o
	}
	tests := []struct {
		name     string
		provider string
		want     float64
		call     func(t *testing.T, s stack)
	}{
		{"openai json", "openai", oaCost, func(t *testing.T, s stack) {
			var resp *http.Response
			_, err := openaiClient(s, oaOpts()...).Chat.Completions.New(t.Context(), chatParams(), option.WithResponseInto(&resp))
			require.NoError(t, err)
			got, err := parseFloat(resp.Header.Get("X-LLM-Cost-USD"))
			require.NoError(t, err)
			require.InDelta(t, oaCost, got, 1e-12, "the client sees the cost on JSON responses")
		}},
		{"openai stream", "openai", oaCost, func(t *testing.T, s stack) {
			st := openaiClient(s, oaOpts()...).Chat.Completions.NewStreaming(t.Context(), chatParams())
			for st.Next() {
			}
			require.NoError(t, st.Err())
		}},
		{"anthropic json", "anthropic", antCost, func(t *testing.T, s stack) {
			_, err := anthropicClient(s, "/anthropic/", antOpts()...).Messages.New(t.Context(), messageParams())
			require.NoError(t, err)
		}},
		{"anthropic stream", "anthropic", antCost, func(t *testing.T, s stack) {
			st := anthropicClient(s, "/anthropic/", antOpts()...).Messages.NewStreaming(t.Context(), messageParams())
			for st.Next() {
			}
			require.NoError(t, st.Err())
		}},
		{"gemini json", "gemini", gmCost, func(t *testing.T, s stack) {
			_, err := genaiClient(t, s, gmHeaders).Models.GenerateContent(t.Context(), "gemini-2.5-flash", genai.Text("hi"), nil)
			require.NoError(t, err)
		}},
		{"gemini stream", "gemini", gmCost, func(t *testing.T, s stack) {
			for _, err := range genaiClient(t, s, gmHeaders).Models.GenerateContentStream(t.Context(), "gemini-2.5-flash", genai.Text("hi"), nil) {
				require.NoError(t, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := startEmulated(t, costTracking(dir, nil))
			tt.call(t, s)
			r := waitRecords(t, filepath.Join(dir, "costs.jsonl"), 1)[0]
			require.True(t, r.CostKnown)
			require.Equal(t, tt.provider, r.Provider)
			require.InDelta(t, tt.want, r.TotalCostUSD, 1e-12, "recorded cost equals the hand-computed cost")
			require.InDelta(t, r.TotalCostUSD, r.InputCostUSD+r.CacheReadCostUSD+r.CacheWriteCostUSD+r.OutputCostUSD, 1e-12)
			require.False(t, r.UsageEstimated)
			require.Equal(t, processor.KeyID(keyOf(tt.provider)), r.KeyID, "records carry the key id, never the key")
			line := s.AccessLog(t, 1)[0]
			require.NotNil(t, line["cost_usd"], "envoy.yaml's access log prints the cost")
			got, err := parseFloat(str(line["cost_usd"]))
			require.NoError(t, err)
			require.InDelta(t, tt.want, got, 1e-12)
		})
	}
}

func keyOf(provider string) string {
	switch provider {
	case "anthropic":
		return "sk-ant-test"
	case "gemini":
		return "gemini-test"
	}
	return "sk-test"
}

func parseFloat(s string) (float64, error) {
	var f float64
	_, err := fmt.Sscan(s, &f)
	return f, err
}

func TestUsageEndpoint(t *testing.T) {
	dir := t.TempDir()
	s := startEmulated(t, costTracking(dir, nil))
	_, err := openaiClient(s, option.WithHeader("X-User-ID", "ursula"), option.WithHeader("x-fake-input-tokens", "1000"),
		option.WithHeader("x-fake-output-tokens", "1000")).Chat.Completions.New(t.Context(), chatParams())
	require.NoError(t, err)
	waitRecords(t, filepath.Join(dir, "costs.jsonl"), 1)
	resp, err := httpClient().Get(s.adminURL + "/usage")
	require.NoError(t, err)
	var rep usage.Report
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rep))
	resp.Body.Close()
	require.EqualValues(t, 1, rep.Today.Total.Requests)
	require.InDelta(t, 0.005, rep.Today.Total.CostUSD, 1e-9)
	require.Equal(t, "ursula", rep.Today.ByUser.Rows[0].Name)
	require.InDelta(t, 0.005, rep.Month.ByModel.Rows[0].CostUSD, 1e-9)

	resp, err = httpClient().Get(s.adminURL + "/usage?format=text")
	require.NoError(t, err)
	table := readAll(t, resp)
	require.Contains(t, table, "user ursula")
	require.Contains(t, table, "0.005")
}

func TestBudgetAcrossInstancesZeroDrift(t *testing.T) {
	rdb := redistest.Start(t)
	clk := newClock(midMinute)
	dirs := [2]string{t.TempDir(), t.TempDir()}
	mk := func(dir string) *emulated {
		return startEmulated(t, withClock(clk.Now), costTracking(dir, func(ct *config.CostTracking) {
			ct.Budgets.Enabled = true
			ct.Budgets.Backend = quota.BackendRedis
			ct.Budgets.Redis.Address = rdb.Addr
			ct.Budgets.PerUser.Default = budget.Limits{DailyUSD: 0.012}
		}))
	}
	gws := [2]*emulated{mk(dirs[0]), mk(dirs[1])}
	// Each call costs exactly $0.005 (1000 input at $1/M + 1000 output at $4/M).
	call := func(i int) error {
		_, err := openaiClient(gws[i%2], option.WithHeader("X-User-ID", "bea"), option.WithHeader("x-fake-input-tokens", "1000"),
			option.WithHeader("x-fake-output-tokens", "1000")).Chat.Completions.New(t.Context(), chatParams())
		return err
	}
	// $0, $0.005, $0.010 spent before calls 1-3: each estimate fits; after
	// the third ($0.015 > $0.012) the budget refuses on either instance.
	for _, apiErr := range spendThenRefuse(t, call, recorded(t, dirs)) {
		h := apiErr.Response.Header
		require.Equal(t, "daily_cost_limit_exceeded", h.Get("X-Cost-Limit-Reason"))
		require.Equal(t, "0.012", h.Get("X-Cost-Limit-USD"))
		require.Equal(t, "0.015", h.Get("X-Cost-Spend-USD"))
		require.Equal(t, "proxy", h.Get("X-Llm-Proxy-Error-Source"))
	}
	// Zero drift: the budget's settled spend equals the sum of the records.
	var sum float64
	recs := append(waitRecords(t, filepath.Join(dirs[0], "costs.jsonl"), 3), waitRecords(t, filepath.Join(dirs[1], "costs.jsonl"), 2)...)
	require.Len(t, recs, 5, "one record per request, refused ones included")
	refused := 0
	for _, r := range recs {
		sum += r.TotalCostUSD
		if r.Outcome == "refused" {
			refused++
			require.Equal(t, 402, r.Status)
			require.Zero(t, r.TotalCostUSD)
		}
	}
	require.Equal(t, 2, refused)
	spent := dailySpendNanos(t, rdb.Addr, "user:bea", midMinute)
	require.EqualValues(t, budget.Nanos(sum), spent)
	require.InDelta(t, 0.015, sum, 1e-12)
	require.Less(t, math.Abs(float64(spent)-15_000_000), 1.0)
}

// spendThenRefuse makes five calls of $0.005 against a budget of $0.012:
// the first three must pass (the third is estimated to fit), the last two
// must be refused with 402; it returns their errors. After each served call
// it waits for settled(i): a call is settled after its reply was sent (off
// the client's path), so a client's next call may otherwise be admitted
// against the previous call's estimate rather than its cost.
func spendThenRefuse(t *testing.T, call func(i int) error, settled func(i int)) []*openai.Error {
	t.Helper()
	for i := range 3 {
		require.NoError(t, call(i), "call %d", i+1)
		settled(i)
	}
	var refused []*openai.Error
	for i := 3; i < 5; i++ {
		var apiErr *openai.Error
		require.ErrorAs(t, call(i), &apiErr, "call %d", i+1)
		require.Equal(t, http.StatusPaymentRequired, apiErr.StatusCode, "call %d", i+1)
		refused = append(refused, apiErr)
	}
	return refused
}

// dailySpendNanos reads a budget scope's settled spend for the day of at
// from the Redis at addr.
func dailySpendNanos(t *testing.T, addr, scope string, at time.Time) int64 {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	spent, err := client.HGet(t.Context(), fmt.Sprintf("llmproxy:budget:{%s}:d:%d", scope, at.Unix()/86400), "s").Int64()
	require.NoError(t, err)
	return spent
}

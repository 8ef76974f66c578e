package admin

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// liveHeadroom is a headroom source a test changes while the page runs.
type liveHeadroom struct {
	mu  sync.Mutex
	rep HeadroomReport
}

func (l *liveHeadroom) Headroom(context.Context, int, time.Time) (HeadroomReport, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := json.Marshal(l.rep) // a deep copy: set may change the slices
	if err != nil {
		return HeadroomReport{}, err
	}
	var out HeadroomReport
	return out, json.Unmarshal(b, &out)
}

func (l *liveHeadroom) set(f func(*HeadroomReport)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(&l.rep)
}

// chromiumPath is Debian's chromium; .ci/run installs it.
const chromiumPath = "/usr/bin/chromium"

// doneMarker is logged by the test itself after its checks: every console
// message the page wrote before it has then been received, in order.
const doneMarker = "llm-proxy-browser-test-done"

// TestConsoleInBrowser loads the console in headless Chromium against an
// admin handler holding known data, checks that the page logs no console
// errors and that the charts and tables show exactly that data, and saves
// a screenshot (test artifact; also docs/console.png with
// UPDATE_CONSOLE_SCREENSHOT=1).
func TestConsoleInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test skipped: %s not found (apt-get install -y chromium)", chromiumPath)
	}
	now := time.Now().UTC()
	day := now.Truncate(24 * time.Hour)
	at := func(hoursAgo int) time.Time { // earlier today, never yesterday
		if t := now.Add(-time.Duration(hoursAgo) * time.Hour); t.After(day) {
			return t
		}
		return now
	}
	s := NewSeries(SeriesOptions{})
	type call struct {
		ago             int
		provider, model string
		user, key       string
		class           string
		costMicros      int64
		in, out         int64
		ms              int
		from            string // the provider:model asked for, when another target served
	}
	calls := []call{
		{5, "openai", "gpt-4o", "alice", "3f9a0c1d2e4b5a6978c1", ClassOK, 4_200_000, 120_000, 30_000, 900, ""},
		{3, "openai", "gpt-4o", "bob", "3f9a0c1d2e4b5a6978c1", ClassOK, 2_100_000, 60_000, 15_000, 1200, ""},
		{2, "anthropic", "claude-sonnet-4-5", "alice", "9b1e22aa0c7d4f1e8a55", ClassOK, 3_300_000, 80_000, 22_000, 2400, "openai:gpt-4o"},
		{1, "gemini", "gemini-2.5-flash", "carol", "77d0e1c2b3a4958675ff", ClassOK, 400_000, 150_000, 9_000, 450, "gemini:gemini-2.5-pro"},
		{0, "openai", "gpt-4o", "alice", "3f9a0c1d2e4b5a6978c1", ClassOK, 1_600_000, 40_000, 12_000, 700, ""},
		{0, "anthropic", "claude-sonnet-4-5", "bob", "9b1e22aa0c7d4f1e8a55", ClassUpstreamError, 0, 0, 0, 3100, "openai:gpt-4o"},
		{0, "openai", "gpt-4o", "alice", "3f9a0c1d2e4b5a6978c1", ClassRateLimited, 0, 0, 0, 2, ""},
		{0, "openai", "gpt-4o", "alice", "3f9a0c1d2e4b5a6978c1", ClassRateLimited, 0, 0, 0, 3, ""},
	}
	var wantSpend = map[string]float64{}
	for _, c := range calls {
		s.Add(Sample{Time: at(c.ago), Provider: c.provider, Model: c.model, User: c.user, KeyID: c.key, Class: c.class,
			CostNanos: c.costMicros * 1000, InputTokens: c.in, OutputTokens: c.out, Duration: time.Duration(c.ms) * time.Millisecond,
			FailoverFrom: c.from, FailoverReason: map[bool]string{true: "circuit_open"}[c.from != ""]})
		wantSpend[c.provider+"/"+c.model] += float64(c.costMicros) / 1e6
	}
	until := now.Add(4 * time.Minute)
	circuits := fakeCircuits{rep: CircuitReport{Enabled: true, CooldownSeconds: 300,
		Providers: []ProviderCircuit{{Provider: "anthropic", State: "open", Failures: 5, CooldownUntil: &until},
			{Provider: "gemini", State: "closed"}, {Provider: "openai", State: "closed"}},
		Circuits: []Circuit{{Provider: "anthropic", Model: "claude-sonnet-4-5", State: "open", Reason: "threshold",
			Since: now.Add(-time.Minute), CooldownUntil: &until, RemainingSeconds: 240}}}}
	minute, day, month := now.Truncate(time.Minute).Add(time.Minute), day.Add(24*time.Hour),
		time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	aliceLimits := func(requests float64) []LimitHeadroom {
		return []LimitHeadroom{
			NewLimitHeadroom("rate_limit", "requests", "minute", 10, requests, minute),
			NewLimitHeadroom("rate_limit", "tokens", "day", 500_000, 212_000, day),
			NewLimitHeadroom("budget", "usd", "day", 10, 9.1, day)}
	}
	headroom := &liveHeadroom{rep: HeadroomReport{Guards: []string{"rate_limit", "budget"}, RankedBy: "usage_ledger",
		Subjects: []SubjectHeadroom{
			{Kind: "user", ID: "alice", SpendTodayUSD: 9.1, RequestsToday: 4, Limits: aliceLimits(7)},
			{Kind: "user", ID: "carol", SpendTodayUSD: 0.4, RequestsToday: 1, Limits: []LimitHeadroom{}},
			{Kind: "key", ID: "3f9a0c1d2e4b5a6978c1", SpendTodayUSD: 7.9, RequestsToday: 5, Limits: []LimitHeadroom{
				NewLimitHeadroom("budget", "usd", "day", 50, 7.9, day)}},
			{Kind: "team", ID: "search", SpendTodayUSD: 11.6, RequestsToday: 8, Limits: []LimitHeadroom{
				NewLimitHeadroom("rate_limit", "requests", "minute", 100, 3, minute),
				NewLimitHeadroom("budget", "usd", "month", 500, 61, month)}},
		}}}
	const token = "browser-test-token"
	// The server's clock is pinned to the samples' now, so no hour or day
	// boundary can fall between recording and reading.
	srv := httptest.NewServer(New(Options{Providers: providers.Default(), Ready: func() bool { return true },
		Version: "v1.2.3", Now: func() time.Time { return now }, Console: &Console{Series: s, Circuits: circuits, Headroom: headroom,
			FailoverChains: []string{"openai:gpt-4o", "gemini:gemini-2.5-*"}}, Token: token,
		UnpricedModels: func(context.Context) any {
			return []map[string]any{{"provider": "openai", "model": "gpt-9-preview", "requests": 3,
				"first_seen": now.Add(-time.Hour), "last_seen": now}}
		}}))
	defer srv.Close()

	// The deadline only guards against a hung browser.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	var (
		mu       sync.Mutex
		messages []chromedp.ConsoleMessage
		drained  = make(chan struct{})
	)
	require.NoError(t, chromedp.Do(bctx, chromedp.EmulateViewport(1280, 1000)))
	stream := chromedp.Console(bctx)
	go func() {
		defer close(drained)
		for m, err := range stream {
			if err != nil || m.Text == doneMarker {
				return
			}
			mu.Lock()
			messages = append(messages, m)
			mu.Unlock()
		}
	}()
	setAuth := chromedp.Action[chromedp.Void](func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
			Headers: network.Headers{"Authorization": "Bearer " + token}})
		return chromedp.Void{}, err
	})
	require.NoError(t, chromedp.Do(bctx, setAuth, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(`body[data-loaded="true"]`)))

	type rendered struct {
		Status        string
		SpendByName   map[string]float64
		SpendLegend   []string
		TokenRects    int
		TrafficSeries []string
		LatencyLines  int
		Circuits      map[string]string
		Headroom      map[string]string
		HeadroomNote  string
		Failover      map[string]string
		FailoverNote  string
		Unpriced      []string
		TileSpend     string
	}
	got, err := chromedp.Run(bctx, chromedp.Evaluate[rendered](`(() => {
		const q = (s) => Array.from(document.querySelectorAll(s));
		const spend = {};
		q('#chart-spend g[data-series]').forEach((g) => {
			spend[g.dataset.series] = q('#chart-spend g[data-series="' + g.dataset.series + '"] rect')
				.reduce((a, r) => a + Number(r.dataset.value), 0);
		});
		const circuits = {};
		q('#circuits tr[data-circuit]').forEach((tr) => { circuits[tr.dataset.circuit] = tr.querySelector('.state').textContent; });
		return {
			Status: document.getElementById('status').dataset.state,
			SpendByName: spend,
			SpendLegend: q('#legend-spend [data-series]').map((e) => e.dataset.series),
			TokenRects: q('#chart-tokens rect').length,
			TrafficSeries: q('#chart-traffic g[data-series]').map((g) => g.dataset.series),
			LatencyLines: q('#chart-latency polyline').length,
			Circuits: circuits,
			Headroom: Object.fromEntries(q('#headroom tr[data-subject]').map((tr) =>
				[tr.dataset.subject + " " + (tr.dataset.limit || "unlimited"), tr.querySelector('.used') ? tr.querySelector('.used').textContent : ""])),
			HeadroomNote: document.getElementById('headroom-note').textContent,
			Failover: Object.fromEntries(q('#failover tr[data-route]').map((tr) => [tr.dataset.route, tr.querySelector('.calls').textContent])),
			FailoverNote: document.getElementById('failover-note').textContent,
			Unpriced: q('#unpriced tr[data-unpriced]').map((tr) => tr.dataset.unpriced),
			TileSpend: document.getElementById('tile-spend').textContent,
		};
	})()`))
	require.NoError(t, err)

	// Live refresh: new figures from the API reach the page without a
	// reload (the console refreshes every 5 s; the poll waits for it).
	headroom.set(func(r *HeadroomReport) { r.Subjects[0].Limits = aliceLimits(9) })
	_, err = chromedp.Run(bctx, chromedp.Poll[chromedp.Void](`(() => {
		const c = document.querySelector('#headroom tr[data-subject="user:alice"][data-limit="rate_limit requests/minute"] .used');
		return c !== null && c.textContent === "9 of 10 (90%)";
	})()`, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(0)))
	require.NoError(t, err, "the refreshed headroom is rendered")

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(t.ArtifactDir(), "console.png"), shot, 0o644))
	if os.Getenv("UPDATE_CONSOLE_SCREENSHOT") == "1" {
		require.NoError(t, os.WriteFile(filepath.Join("..", "..", "docs", "console.png"), shot, 0o644))
	}

	_, err = chromedp.Run(bctx, chromedp.Evaluate[any](`console.info("`+doneMarker+`")`))
	require.NoError(t, err)
	select {
	case <-drained:
	case <-ctx.Done():
		t.Fatal("console messages were not drained before the deadline")
	}
	mu.Lock()
	for _, m := range messages {
		if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
			t.Errorf("console %s", m.String())
		}
	}
	mu.Unlock()

	require.Equal(t, "healthy", got.Status)
	require.Len(t, got.SpendByName, len(wantSpend))
	for name, usd := range wantSpend {
		require.InDelta(t, usd, got.SpendByName[name], 1e-9, name)
	}
	require.Equal(t, []string{"openai/gpt-4o", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"}, got.SpendLegend,
		"legend ordered by spend")
	require.Positive(t, got.TokenRects)
	require.ElementsMatch(t, []string{ClassOK, ClassUpstreamError, ClassRateLimited}, got.TrafficSeries)
	require.Equal(t, 3, got.LatencyLines, "p50, p90 and p99")
	require.Equal(t, "open", got.Circuits["anthropic"])
	require.Equal(t, "open", got.Circuits["anthropic:claude-sonnet-4-5"])
	require.Equal(t, "closed", got.Circuits["openai"])
	require.Equal(t, map[string]string{
		"user:alice rate_limit requests/minute":   "7 of 10 (70%)",
		"user:alice rate_limit tokens/day":        "212.0k of 500.0k (42%)",
		"user:alice budget usd/day":               "$9.10 of $10.00 (91%)",
		"user:carol unlimited":                    "",
		"key:3f9a0c1d2e4b5a6978c1 budget usd/day": "$7.90 of $50.00 (16%)",
		"team:search rate_limit requests/minute":  "3 of 100 (3%)",
		"team:search budget usd/month":            "$61.00 of $500.00 (12%)",
	}, got.Headroom, "every limit of every subject, with the figures the API gave")
	require.Equal(t, "ranked by today's spend (all instances)", got.HeadroomNote)
	require.Equal(t, map[string]string{
		"openai:gpt-4o>anthropic:claude-sonnet-4-5":     "2",
		"gemini:gemini-2.5-pro>gemini:gemini-2.5-flash": "1",
	}, got.Failover, "every failover route with its calls")
	require.Equal(t, "3 of 8 calls (37.5%) served by another target today · chains: gemini:gemini-2.5-*, openai:gpt-4o",
		got.FailoverNote)
	require.Equal(t, "$11.60", got.TileSpend)
	require.Equal(t, []string{"openai/gpt-9-preview"}, got.Unpriced, "the unpriced models of /health are listed")
}

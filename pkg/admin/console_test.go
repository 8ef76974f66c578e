package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

type fakeCircuits struct {
	rep CircuitReport
	err error
}

func (f fakeCircuits) Circuits(context.Context, time.Time) (CircuitReport, error) {
	return f.rep, f.err
}

type fakeHeadroom struct {
	rep     HeadroomReport
	err     error
	lastTop *int
}

func (f fakeHeadroom) Headroom(_ context.Context, top int, _ time.Time) (HeadroomReport, error) {
	if f.lastTop != nil {
		*f.lastTop = top
	}
	return f.rep, f.err
}

func newConsoleHandler(token string, c *Console) http.Handler {
	return New(Options{Providers: providers.Default(), Ready: func() bool { return true },
		Gatherer: prometheus.NewRegistry(), Now: func() time.Time { return seriesNow },
		Handlers: map[string]http.Handler{"/usage": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("usage"))
		})},
		Console: c, Token: token})
}

func do(h http.Handler, path string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestConsoleToken(t *testing.T) {
	h := newConsoleHandler("s3cret", &Console{Series: NewSeries(SeriesOptions{})})
	protected := []string{"/", "/console/console.js", "/console/console.css", "/api/v1/usage", "/api/v1/traffic",
		"/api/v1/circuits", "/api/v1/headroom", "/usage"}
	for _, p := range protected {
		t.Run(p, func(t *testing.T) {
			rec := do(h, p)
			require.Equal(t, http.StatusUnauthorized, rec.Code)
			require.Equal(t, tokenRealm, rec.Header().Get("WWW-Authenticate"))
			require.NotContains(t, rec.Body.String(), "s3cret")
			require.Equal(t, http.StatusUnauthorized, do(h, p, "Authorization", "Bearer wrong").Code)
			require.Equal(t, http.StatusOK, do(h, p, "Authorization", "Bearer s3cret").Code)
			req := httptest.NewRequest(http.MethodGet, p, nil)
			req.SetBasicAuth("anyone", "s3cret")
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, http.StatusOK, rec.Code)
		})
	}
	for _, p := range []string{"/health", "/ready", "/metrics"} {
		require.Equal(t, http.StatusOK, do(h, p).Code, "%s stays open for probes", p)
	}
	open := newConsoleHandler("", &Console{})
	require.Equal(t, http.StatusOK, do(open, "/").Code)
	require.Equal(t, http.StatusOK, do(open, "/usage").Code)
}

func TestConsolePage(t *testing.T) {
	h := newConsoleHandler("", &Console{})
	rec := do(h, "/")
	require.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	require.Equal(t, consoleCSP, rec.Header().Get("Content-Security-Policy"))
	require.Contains(t, rec.Body.String(), `<script src="/console/console.js" defer></script>`)
	js := do(h, "/console/console.js")
	require.Equal(t, http.StatusOK, js.Code)
	require.Contains(t, js.Header().Get("Content-Type"), "javascript")
	require.Equal(t, http.StatusNotFound, do(h, "/console/missing.js").Code)
	require.Equal(t, http.StatusNotFound, do(h, "/nowhere").Code)
	// Without a Console the root is not served.
	require.Equal(t, http.StatusNotFound, do(newConsoleHandler("", nil), "/").Code)
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var v T
	dec := json.NewDecoder(strings.NewReader(rec.Body.String()))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&v))
	return v
}

func TestConsoleAPI(t *testing.T) {
	s := NewSeries(SeriesOptions{})
	s.Add(Sample{Time: seriesNow, Provider: "openai", Model: "gpt-4o", User: "alice", Class: ClassOK, CostNanos: 2_000_000,
		Duration: 40 * time.Millisecond})
	var top int
	until := seriesNow.Add(time.Minute)
	c := &Console{Series: s,
		Circuits: fakeCircuits{rep: CircuitReport{Enabled: true, Providers: []ProviderCircuit{{Provider: "openai", State: "open", CooldownUntil: &until}},
			Circuits: []Circuit{{Provider: "openai", Model: "gpt-4o", State: "open", CooldownUntil: &until, RemainingSeconds: 60}}}},
		Headroom: fakeHeadroom{rep: HeadroomReport{Guards: []string{"budget"}, Subjects: []SubjectHeadroom{{Kind: "user", ID: "alice",
			SpendTodayUSD: 2, Limits: []LimitHeadroom{NewLimitHeadroom("budget", "usd", "day", 10, 2, seriesNow)}}}}, lastTop: &top},
	}
	h := newConsoleHandler("", c)

	u := decode[UsageSeries](t, do(h, "/api/v1/usage?range=today&by=user"))
	require.Equal(t, "user", u.By)
	require.Equal(t, "alice", u.Series[0].Name)
	require.Equal(t, int64(2_000_000), u.Series[0].Points[14].CostNanos)
	require.Equal(t, Range7d, decode[UsageSeries](t, do(h, "/api/v1/usage?range=7d")).Range)
	require.Equal(t, ByModel, decode[UsageSeries](t, do(h, "/api/v1/usage")).By)

	tr := decode[Traffic](t, do(h, "/api/v1/traffic?minutes=10"))
	require.Len(t, tr.Buckets, 10)
	require.Equal(t, int64(1), tr.Summary.Classes[ClassOK])

	cr := decode[CircuitReport](t, do(h, "/api/v1/circuits"))
	require.Equal(t, "gpt-4o", cr.Circuits[0].Model)
	require.Equal(t, int64(60), cr.Circuits[0].RemainingSeconds)

	fo := decode[FailoverReport](t, do(h, "/api/v1/failover?range=7d"))
	require.Equal(t, Range7d, fo.Range)
	require.Equal(t, int64(1), fo.Requests)
	require.False(t, fo.Enabled)

	hr := decode[HeadroomReport](t, do(h, "/api/v1/headroom?top=3"))
	require.Equal(t, 3, top)
	require.Equal(t, 8.0, hr.Subjects[0].Limits[0].Remaining)
	require.InDelta(t, 0.2, hr.Subjects[0].Limits[0].UsedRatio, 1e-12)

	for _, bad := range []string{"/api/v1/usage?range=month", "/api/v1/usage?by=team", "/api/v1/usage?top=0",
		"/api/v1/traffic?minutes=61", "/api/v1/traffic?minutes=x", "/api/v1/headroom?top=51", "/api/v1/failover?range=1h"} {
		rec := do(h, bad)
		require.Equal(t, http.StatusBadRequest, rec.Code, bad)
		require.NotEmpty(t, decode[apiError](t, rec).Error)
	}

	failing := newConsoleHandler("", &Console{Circuits: fakeCircuits{err: errors.New("redis down")},
		Headroom: fakeHeadroom{err: errors.New("redis down")}})
	require.Equal(t, http.StatusServiceUnavailable, do(failing, "/api/v1/circuits").Code)
	require.Equal(t, http.StatusServiceUnavailable, do(failing, "/api/v1/headroom").Code)

	// Nothing wired: the endpoints answer with empty, stable shapes.
	empty := newConsoleHandler("", &Console{})
	require.False(t, decode[CircuitReport](t, do(empty, "/api/v1/circuits")).Enabled)
	require.Empty(t, decode[HeadroomReport](t, do(empty, "/api/v1/headroom")).Guards)
	require.Zero(t, decode[UsageSeries](t, do(empty, "/api/v1/usage")).Total.Requests)
}

func TestNewLimitHeadroom(t *testing.T) {
	reset := time.Date(2030, 5, 7, 0, 0, 0, 0, time.UTC)
	require.Equal(t, LimitHeadroom{Guard: "budget", Metric: "usd", Window: "day", Limit: 5, Used: 7, Remaining: 0, UsedRatio: 1.4,
		Reset: reset}, NewLimitHeadroom("budget", "usd", "day", 5, 7, reset.In(time.FixedZone("x", 3600))))
	require.Zero(t, NewLimitHeadroom("rate_limit", "requests", "minute", 0, 3, reset).UsedRatio)
}

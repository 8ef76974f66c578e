package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/costlog"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/usage"
)

// costRecorder is the Observer that turns each Record into a cost record
// (queued, never blocking) and a ledger entry for /usage.
type costRecorder struct {
	w      *costlog.Writer
	ledger usage.Ledger
	now    func() time.Time
	errors prometheus.Counter // failed ledger writes
}

var _ processor.Observer = (*costRecorder)(nil)

func newCostMetrics(reg prometheus.Registerer) (errs, dropped, written prometheus.Counter) {
	errs = prometheus.NewCounter(prometheus.CounterOpts{Name: "llm_proxy_cost_ledger_errors_total",
		Help: "Usage ledger writes that failed (the /usage totals miss them)."})
	dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "llm_proxy_cost_records_dropped_total",
		Help: "Cost records dropped because the queue was full or the writer closed."})
	written = prometheus.NewCounter(prometheus.CounterOpts{Name: "llm_proxy_cost_records_written_total",
		Help: "Cost records acknowledged by every sink."})
	reg.MustRegister(errs, dropped, written)
	return errs, dropped, written
}

// Observe implements [processor.Observer].
func (c *costRecorder) Observe(r *processor.Record) {
	u := r.Usage
	model := r.Info.Model
	if model == "" {
		model = u.Model
	}
	rec := costlog.Record{
		Timestamp: c.now(), RequestID: r.RequestID, User: r.Identity.User, KeyID: r.Identity.KeyID,
		Team: r.Identity.Team, Owner: r.Identity.Owner,
		ClientIP: r.Identity.ClientIP, Provider: r.Provider, Model: model, PricedModel: r.Cost.Model,
		Endpoint: string(r.Info.Endpoint), Path: r.Path, Stream: r.Info.Stream, Status: r.Status,
		Outcome: string(r.Outcome), InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		TotalTokens: u.TotalTokens, CacheReadTokens: u.CacheReadTokens, CacheWriteTokens: u.CacheWriteTokens,
		ReasoningTokens: u.ReasoningTokens, InputCostUSD: r.Cost.InputUSD, CacheReadCostUSD: r.Cost.CacheReadUSD,
		CacheWriteCostUSD: r.Cost.CacheWriteUSD, OutputCostUSD: r.Cost.OutputUSD, TotalCostUSD: r.Cost.TotalUSD,
		CostKnown: r.Cost.Known, UsageEstimated: r.UsageEstimated, FinishReason: u.FinishReason,
		VendorRequestID: u.RequestID, TTFBMillis: r.TTFB.Milliseconds(), DurationMillis: r.Duration.Milliseconds(),
	}
	if fo := r.Failover; fo != nil {
		rec.RequestedProvider, rec.RequestedModel = fo.Requested.Provider, fo.Requested.Model
	}
	c.w.Enqueue(rec) // drops are counted by the writer's hook
	if c.ledger == nil || r.Outcome == processor.OutcomeRefused {
		return
	}
	// No per-call deadline: the Redis ledger's client bounds every command
	// with its own I/O timeouts, and the memory one never waits.
	err := c.ledger.Record(context.Background(), usage.Usage{User: r.Identity.User, KeyID: r.Identity.KeyID, Team: r.Identity.Team, Provider: r.Provider,
		Model: model, CostNanos: budget.Nanos(r.Cost.TotalUSD), InputTokens: u.InputTokens,
		OutputTokens: u.OutputTokens, CostKnown: r.Cost.Known}, c.now())
	if err != nil {
		c.errors.Inc()
	}
}

// usageHandler serves GET /usage: today's and this month's spend by user,
// key id and model, as JSON, or as a plain-text table with ?format=text.
func usageHandler(l usage.Ledger, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep, err := l.Report(r.Context(), now())
		if err != nil {
			http.Error(w, "usage unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if r.URL.Query().Get("format") == "text" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			writeUsageTable(w, rep)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// writeUsageTable renders a Report as aligned text tables.
func writeUsageTable(w http.ResponseWriter, rep usage.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	for _, p := range []usage.Period{rep.Today, rep.Month} {
		fmt.Fprintf(tw, "%s (%s to %s)\tcost USD\trequests\tinput tokens\toutput tokens\tunpriced\t\n",
			strings.ToUpper(p.Name), p.Start.Format("2006-01-02"), p.End.Format("2006-01-02"))
		row := func(name string, t usage.Totals) {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t\n", name, budget.FormatNanos(t.CostNanos), t.Requests,
				t.InputTokens, t.OutputTokens, t.UnknownCostRequests)
		}
		row("total", p.Total)
		for _, d := range []struct {
			title string
			b     usage.Breakdown
		}{{"user", p.ByUser}, {"key", p.ByKey}, {"team", p.ByTeam}, {"model", p.ByModel}} {
			rows := append([]usage.Row(nil), d.b.Rows...)
			sort.SliceStable(rows, func(i, j int) bool { return rows[i].CostNanos > rows[j].CostNanos })
			for _, r := range rows {
				name := r.Name
				if d.title == "model" && r.Provider != "" {
					name = r.Provider + "/" + r.Model
				}
				row(d.title+" "+name, r.Totals)
			}
		}
		fmt.Fprintln(tw, "\t\t\t\t\t\t")
	}
	_ = tw.Flush()
}

// closerFunc adapts a close function to io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }

package admin

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"time"
)

// Sample is one finished LLM call as the console counts it. The gateway
// builds it from its request record; nothing in it is a secret (KeyID is
// already the key's hash).
type Sample struct {
	// Time is when the call ended.
	Time time.Time
	// Provider and Model name the vendor and the model that served the call
	// (empty model: the request named none).
	Provider, Model string
	// User is the end-user id and KeyID the hashed API key; empty when the
	// request had none (then the call counts in the totals but in no user or
	// key row).
	User, KeyID string
	// Class is the call's outcome class, one of the Class* constants;
	// anything else counts as [ClassOther].
	Class string
	// CostNanos is the call's cost in nano-dollars; negative counts as 0.
	CostNanos int64
	// InputTokens and OutputTokens are the billed tokens; negative counts
	// as 0.
	InputTokens, OutputTokens int64
	// Duration is the time from the request headers to the end.
	Duration time.Duration
	// FailoverFrom is the provider:model the client asked for when another
	// target of its chain (Provider, Model) served the call, and
	// FailoverReason the condition that moved it; both empty otherwise.
	FailoverFrom, FailoverReason string
}

// Outcome classes of a [Sample], as GET /api/v1/traffic reports them.
const (
	ClassOK            = "ok"             // the vendor answered 1xx-3xx
	ClassClientError   = "client_error"   // the vendor answered 4xx other than 429
	ClassVendorLimited = "vendor_limited" // the vendor answered 429
	ClassUpstreamError = "upstream_error" // the vendor (or Envoy for it) answered 5xx
	ClassRateLimited   = "rate_limited"   // refused by the gateway's rate limits
	ClassBudget        = "budget_exceeded"
	ClassCircuitOpen   = "circuit_open" // refused, or answered degraded, by the circuit breaker
	ClassAborted       = "aborted"      // the stream ended before the response did
	ClassOther         = "other"
)

// Classes lists every outcome class in display order.
var Classes = []string{ClassOK, ClassClientError, ClassVendorLimited, ClassUpstreamError,
	ClassRateLimited, ClassBudget, ClassCircuitOpen, ClassAborted, ClassOther}

// Dimensions a usage series is broken down by.
const (
	ByProvider = "provider"
	ByModel    = "model"
	ByUser     = "user"
	ByKey      = "key"
)

var dimensions = []string{ByProvider, ByModel, ByUser, ByKey}

// SeriesOptions configures NewSeries. Zero values take the defaults.
type SeriesOptions struct {
	// MaxNames caps the distinct names kept per dimension in one hour;
	// further names add to the [OtherName] row. Default 200.
	MaxNames int
}

// OtherName is the row that collects names beyond SeriesOptions.MaxNames in
// an hour, and beyond the requested top N in a report.
const OtherName = "(other)"

const (
	hourBuckets   = 8 * 24 // 7 full days plus today
	minuteBuckets = 60
)

// latencyBounds are the upper bounds, in milliseconds, of the latency
// histogram: 2^(i/4) ms, so a reported percentile is at most 19% above the
// true value, from 1 ms to about 4.6 hours; slower calls land in the last.
var latencyBounds = func() []float64 {
	b := make([]float64, 96)
	for i := range b {
		b[i] = math.Pow(2, float64(i)/4)
	}
	return b
}()

// Series keeps this instance's per-hour usage (8 days) and per-minute
// traffic (the last hour) in memory, for the console's JSON API. Memory is
// bounded by the bucket counts and SeriesOptions.MaxNames. It is safe for
// concurrent use; Add takes one mutex for a few map updates.
type Series struct {
	maxNames int

	mu      sync.Mutex
	hours   [hourBuckets]hourBucket
	minutes [minuteBuckets]minuteBucket
	// recent is a ring of the latest failed-over calls; recentNext counts
	// every one ever added.
	recent     [recentFailovers]FailoverEvent
	recentNext int
}

// Totals are summed usage in a bucket or a row.
type Totals struct {
	Requests     int64 `json:"requests"`
	CostNanos    int64 `json:"cost_nanos"`
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

func (t *Totals) add(s *Sample) {
	t.Requests++
	t.CostNanos += max(s.CostNanos, 0)
	t.InputTokens += max(s.InputTokens, 0)
	t.OutputTokens += max(s.OutputTokens, 0)
}

func (t *Totals) merge(o Totals) {
	t.Requests += o.Requests
	t.CostNanos += o.CostNanos
	t.InputTokens += o.InputTokens
	t.OutputTokens += o.OutputTokens
}

type hourBucket struct {
	index int64 // hours since the Unix epoch; 0 = unused
	total Totals
	by    map[string]map[string]*Totals // dimension -> name -> totals
	// failovers tallies the hour's failed-over calls; nil until one.
	failovers map[failoverRoute]*FailoverRoute
}

type minuteBucket struct {
	index   int64 // minutes since the Unix epoch; 0 = unused
	classes map[string]int64
	latency []int64 // counts per latencyBounds entry
}

// NewSeries returns an empty Series.
func NewSeries(o SeriesOptions) *Series {
	if o.MaxNames <= 0 {
		o.MaxNames = 200
	}
	return &Series{maxNames: o.MaxNames}
}

// Add counts s in its hour and minute. Samples older than the kept range
// (8 days for usage, an hour for traffic) are ignored there.
func (s *Series) Add(sm Sample) {
	if !slices.Contains(Classes, sm.Class) {
		sm.Class = ClassOther
	}
	h := sm.Time.Unix() / 3600
	m := sm.Time.Unix() / 60
	s.mu.Lock()
	defer s.mu.Unlock()
	var inHour *hourBucket // nil when sm is older than the kept hours
	if hb := &s.hours[h%hourBuckets]; hb.index <= h {
		inHour = hb
		if hb.index != h {
			*hb = hourBucket{index: h, by: make(map[string]map[string]*Totals, len(dimensions))}
		}
		hb.total.add(&sm)
		for _, d := range dimensions {
			name := sampleName(&sm, d)
			if name == "" {
				continue
			}
			rows := hb.by[d]
			if rows == nil {
				rows = map[string]*Totals{}
				hb.by[d] = rows
			}
			t := rows[name]
			if t == nil {
				if len(rows) >= s.maxNames {
					name = OtherName
					t = rows[name]
				}
				if t == nil {
					t = &Totals{}
					rows[name] = t
				}
			}
			t.add(&sm)
		}
	}
	if sm.FailoverFrom != "" {
		s.addFailoverLocked(inHour, &sm)
	}
	if mb := &s.minutes[m%minuteBuckets]; mb.index <= m {
		if mb.index != m {
			*mb = minuteBucket{index: m, classes: map[string]int64{}, latency: make([]int64, len(latencyBounds))}
		}
		mb.classes[sm.Class]++
		mb.latency[latencyBucket(sm.Duration)]++
	}
}

func sampleName(s *Sample, dim string) string {
	switch dim {
	case ByProvider:
		return s.Provider
	case ByModel:
		if s.Provider == "" && s.Model == "" {
			return ""
		}
		return s.Provider + "/" + s.Model
	case ByUser:
		return s.User
	default:
		return s.KeyID
	}
}

func latencyBucket(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	i, _ := slices.BinarySearch(latencyBounds, ms)
	return min(i, len(latencyBounds)-1)
}

// UsageRange is the span of a usage report.
type UsageRange string

// Usage ranges.
const (
	// RangeToday is the UTC day containing now, in hourly steps up to now's
	// hour.
	RangeToday UsageRange = "today"
	// Range7d is the last 7 UTC days including today, in daily steps.
	Range7d UsageRange = "7d"
)

// UsageSeries is the body of GET /api/v1/usage.
type UsageSeries struct {
	// Range is "today" or "7d"; By the dimension of Series.
	Range UsageRange `json:"range"`
	By    string     `json:"by"`
	// Scope is "instance": the figures are this server's own, kept in
	// memory (GET /usage has the totals shared by every instance).
	Scope string `json:"scope"`
	// StepSeconds is the bucket length: 3600 for today, 86400 for 7d.
	StepSeconds int64 `json:"step_seconds"`
	// Buckets are the buckets' start times (UTC), oldest first.
	Buckets []time.Time `json:"buckets"`
	// Total sums every call in the range; Points per bucket.
	Total  Totals   `json:"total"`
	Points []Totals `json:"points"`
	// Series are the top names by cost (then requests, then name), each
	// with one point per bucket; [OtherName] collects the rest.
	Series []NamedSeries `json:"series"`
}

// NamedSeries is one name's usage per bucket.
type NamedSeries struct {
	Name   string   `json:"name"`
	Total  Totals   `json:"total"`
	Points []Totals `json:"points"`
}

// Usage reports usage over r broken down by dim (ByProvider, ByModel,
// ByUser, ByKey), keeping the top names by cost.
func (s *Series) Usage(r UsageRange, dim string, top int, now time.Time) UsageSeries {
	out := UsageSeries{Range: r, By: dim, Scope: "instance"}
	first, last, step := hourSpan(r, now)
	out.StepSeconds = step * 3600
	n := int((last-first)/step + 1)
	for i := range n {
		out.Buckets = append(out.Buckets, time.Unix((first+int64(i)*step)*3600, 0).UTC())
	}
	out.Points = make([]Totals, n)
	rows := map[string][]Totals{}
	s.mu.Lock()
	for h := first; h <= last; h++ {
		hb := &s.hours[h%hourBuckets]
		if hb.index != h {
			continue
		}
		i := int((h - first) / step)
		out.Points[i].merge(hb.total)
		out.Total.merge(hb.total)
		for name, t := range hb.by[dim] {
			pts := rows[name]
			if pts == nil {
				pts = make([]Totals, n)
				rows[name] = pts
			}
			pts[i].merge(*t)
		}
	}
	s.mu.Unlock()
	out.Series = topSeries(rows, top, n)
	return out
}

// hourSpan returns the first and last hour index (hours since the Unix
// epoch) of range r ending at now, and the hours per reported bucket.
func hourSpan(r UsageRange, now time.Time) (first, last, step int64) {
	day := now.UTC().Truncate(24 * time.Hour)
	if r == Range7d {
		return day.AddDate(0, 0, -6).Unix() / 3600, day.Unix()/3600 + 23, 24
	}
	return day.Unix() / 3600, now.Unix() / 3600, 1
}

// topSeries sorts rows by cost, requests and name and folds all but the
// first top into OtherName.
func topSeries(rows map[string][]Totals, top, n int) []NamedSeries {
	all := make([]NamedSeries, 0, len(rows))
	for name, pts := range rows {
		ns := NamedSeries{Name: name, Points: pts}
		for _, p := range pts {
			ns.Total.merge(p)
		}
		all = append(all, ns)
	}
	slices.SortFunc(all, func(a, b NamedSeries) int {
		if c := cmp.Compare(b.Total.CostNanos, a.Total.CostNanos); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Total.Requests, a.Total.Requests); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	if top <= 0 || len(all) <= top {
		return all
	}
	other := NamedSeries{Name: OtherName, Points: make([]Totals, n)}
	for _, ns := range all[top:] {
		other.Total.merge(ns.Total)
		for i, p := range ns.Points {
			other.Points[i].merge(p)
		}
	}
	// An existing OtherName row among the top is merged, not duplicated.
	kept := all[:top:top]
	if i := slices.IndexFunc(kept, func(ns NamedSeries) bool { return ns.Name == OtherName }); i >= 0 {
		other.Total.merge(kept[i].Total)
		for j, p := range kept[i].Points {
			other.Points[j].merge(p)
		}
		kept = slices.Delete(kept, i, i+1)
	}
	return append(kept, other)
}

// Traffic is the body of GET /api/v1/traffic: this instance's calls per
// minute over the last Minutes minutes, ending with now's minute.
type Traffic struct {
	// Scope is "instance" (see [UsageSeries.Scope]).
	Scope       string      `json:"scope"`
	StepSeconds int64       `json:"step_seconds"`
	Buckets     []time.Time `json:"buckets"`
	// Requests per bucket; Classes holds per-bucket counts for every class
	// in [Classes] (zeros included, so the keys are stable).
	Requests []int64            `json:"requests"`
	Classes  map[string][]int64 `json:"classes"`
	// LatencyMS holds per-bucket p50, p90 and p99 call durations in
	// milliseconds (0 for a bucket without calls). Percentiles are the
	// upper bound of a histogram bucket: at most 19% above the true value.
	LatencyMS map[string][]float64 `json:"latency_ms"`
	// Summary covers the whole window.
	Summary TrafficSummary `json:"summary"`
}

// TrafficSummary sums a Traffic window.
type TrafficSummary struct {
	Requests int64 `json:"requests"`
	// RequestsPerSecond is Requests over the window's length.
	RequestsPerSecond float64            `json:"requests_per_second"`
	Classes           map[string]int64   `json:"classes"`
	LatencyMS         map[string]float64 `json:"latency_ms"`
}

var percentiles = []struct {
	name string
	q    float64
}{{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}}

// Traffic reports the last minutes (1 to 60) minutes ending with now's.
func (s *Series) Traffic(minutes int, now time.Time) Traffic {
	minutes = min(max(minutes, 1), minuteBuckets)
	last := now.Unix() / 60
	first := last - int64(minutes) + 1
	out := Traffic{Scope: "instance", StepSeconds: 60, Requests: make([]int64, minutes),
		Classes: map[string][]int64{}, LatencyMS: map[string][]float64{},
		Summary: TrafficSummary{Classes: map[string]int64{}, LatencyMS: map[string]float64{}}}
	for _, c := range Classes {
		out.Classes[c] = make([]int64, minutes)
		out.Summary.Classes[c] = 0
	}
	for _, p := range percentiles {
		out.LatencyMS[p.name] = make([]float64, minutes)
	}
	all := make([]int64, len(latencyBounds))
	s.mu.Lock()
	for m := first; m <= last; m++ {
		i := int(m - first)
		out.Buckets = append(out.Buckets, time.Unix(m*60, 0).UTC())
		mb := &s.minutes[m%minuteBuckets]
		if mb.index != m {
			continue
		}
		for c, n := range mb.classes {
			out.Classes[c][i] = n
			out.Requests[i] += n
			out.Summary.Classes[c] += n
		}
		for _, p := range percentiles {
			out.LatencyMS[p.name][i] = percentile(mb.latency, p.q)
		}
		for j, n := range mb.latency {
			all[j] += n
		}
	}
	s.mu.Unlock()
	for _, n := range out.Requests {
		out.Summary.Requests += n
	}
	out.Summary.RequestsPerSecond = float64(out.Summary.Requests) / float64(minutes*60)
	for _, p := range percentiles {
		out.Summary.LatencyMS[p.name] = percentile(all, p.q)
	}
	return out
}

// percentile returns the upper bound of the histogram bucket holding the
// q-quantile of counts, 0 when counts are all 0.
func percentile(counts []int64, q float64) float64 {
	var n int64
	for _, c := range counts {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(n)))
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return math.Round(latencyBounds[i]*100) / 100
		}
	}
	return latencyBounds[len(latencyBounds)-1]
}

package admin

import (
	"cmp"
	"slices"
	"time"
)

// recentFailovers is how many of the latest failed-over calls a [Series]
// keeps for GET /api/v1/failover.
const recentFailovers = 20

// failoverRoute keys a failover tally: the target asked for, the target
// that served, and why the call moved.
type failoverRoute struct {
	from, to, reason string
}

// FailoverReport is the body of GET /api/v1/failover: this instance's calls
// that another target of their chain served.
type FailoverReport struct {
	// Enabled is true when the rules define at least one failover chain;
	// Chains lists their keys ("openai:gpt-4o"), sorted.
	Enabled bool     `json:"enabled"`
	Chains  []string `json:"chains"`
	// Scope is "instance" (see [UsageSeries.Scope]); Range "today" or
	// "7d", as for GET /api/v1/usage.
	Scope string     `json:"scope"`
	Range UsageRange `json:"range"`
	// Total counts the failed-over calls in Range; Requests every call in
	// Range, so Total / Requests is the share of calls that moved.
	Total    int64 `json:"total"`
	Requests int64 `json:"requests"`
	// Routes tallies Total by requested target, serving target and
	// reason, most calls first (then by names).
	Routes []FailoverRoute `json:"routes"`
	// Recent are the latest failed-over calls this instance finished
	// (whatever Range says), newest first, at most 20.
	Recent []FailoverEvent `json:"recent"`
}

// FailoverRoute is one requested → serving pair and its tally.
type FailoverRoute struct {
	// From is the provider:model the client asked for, To the one that
	// served, Reason the condition that moved the call ("circuit_open").
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason"`
	Calls  int64  `json:"calls"`
	// Last is when the latest of these calls ended.
	Last time.Time `json:"last"`
}

// FailoverEvent is one failed-over call.
type FailoverEvent struct {
	Time   time.Time `json:"time"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
	// Class is the call's outcome class (one of [Classes]).
	Class string `json:"class"`
}

// routeOf is the tally key of a failed-over sample.
func routeOf(s *Sample) failoverRoute {
	return failoverRoute{from: s.FailoverFrom, to: s.Provider + ":" + s.Model, reason: s.FailoverReason}
}

// addFailoverLocked counts a failed-over sample in hb and the recent ring;
// the caller holds s.mu. Distinct routes per hour are capped at maxNames,
// beyond which a route is counted under [OtherName] for all three names.
func (s *Series) addFailoverLocked(hb *hourBucket, sm *Sample) {
	r := routeOf(sm)
	s.recent[s.recentNext%recentFailovers] = FailoverEvent{Time: sm.Time.UTC(), From: r.from, To: r.to,
		Reason: r.reason, Class: sm.Class}
	s.recentNext++
	if hb != nil {
		if hb.failovers == nil {
			hb.failovers = map[failoverRoute]*FailoverRoute{}
		}
		t := hb.failovers[r]
		if t == nil {
			if len(hb.failovers) >= s.maxNames {
				r = failoverRoute{OtherName, OtherName, OtherName}
				t = hb.failovers[r]
			}
			if t == nil {
				t = &FailoverRoute{From: r.from, To: r.to, Reason: r.reason}
				hb.failovers[r] = t
			}
		}
		t.Calls++
		if sm.Time.After(t.Last) {
			t.Last = sm.Time.UTC()
		}
	}
}

// Failover reports the failed-over calls over r (RangeToday or Range7d)
// ending at now; chains are the configured chain keys.
func (s *Series) Failover(r UsageRange, chains []string, now time.Time) FailoverReport {
	first, last, _ := hourSpan(r, now)
	sorted := append(make([]string, 0, len(chains)), chains...)
	slices.Sort(sorted)
	out := FailoverReport{Enabled: len(chains) > 0, Chains: sorted,
		Scope: "instance", Range: r, Routes: []FailoverRoute{}, Recent: []FailoverEvent{}}
	routes := map[failoverRoute]*FailoverRoute{}
	s.mu.Lock()
	for h := first; h <= last; h++ {
		hb := &s.hours[h%hourBuckets]
		if hb.index != h {
			continue
		}
		out.Requests += hb.total.Requests
		for k, t := range hb.failovers {
			sum := routes[k]
			if sum == nil {
				sum = &FailoverRoute{From: t.From, To: t.To, Reason: t.Reason}
				routes[k] = sum
			}
			sum.Calls += t.Calls
			if t.Last.After(sum.Last) {
				sum.Last = t.Last
			}
			out.Total += t.Calls
		}
	}
	for i := range min(s.recentNext, recentFailovers) {
		out.Recent = append(out.Recent, s.recent[(s.recentNext-1-i)%recentFailovers])
	}
	s.mu.Unlock()
	for _, t := range routes {
		out.Routes = append(out.Routes, *t)
	}
	slices.SortFunc(out.Routes, func(a, b FailoverRoute) int {
		return cmp.Or(cmp.Compare(b.Calls, a.Calls), cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To),
			cmp.Compare(a.Reason, b.Reason))
	})
	return out
}

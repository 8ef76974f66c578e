package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Console configures the web console at / and the JSON API under /api/v1/
// that it reads. Every field may be nil: its endpoint then reports the
// feature as disabled.
type Console struct {
	// Series is this instance's usage and traffic (GET /api/v1/usage,
	// GET /api/v1/traffic).
	Series *Series
	// Circuits reports circuit-breaker state (GET /api/v1/circuits).
	Circuits CircuitSource
	// Headroom reports what the heaviest callers have left of their limits
	// (GET /api/v1/headroom).
	Headroom HeadroomSource
	// FailoverChains are the keys of the configured failover chains
	// (GET /api/v1/failover reports failover as disabled when empty).
	FailoverChains []string
}

// CircuitSource reports the circuit breaker's state. Implementations are
// safe for concurrent use.
type CircuitSource interface {
	// Circuits returns the known circuits at now.
	Circuits(ctx context.Context, now time.Time) (CircuitReport, error)
}

// CircuitReport is the body of GET /api/v1/circuits.
type CircuitReport struct {
	// Enabled is false when the breaker is off.
	Enabled bool `json:"enabled"`
	// CooldownSeconds is the configured time an opened circuit stays open.
	CooldownSeconds int64 `json:"cooldown_seconds,omitempty"`
	// Providers is each provider's roll-up from the breaker's store (shared
	// by every instance on Redis).
	Providers []ProviderCircuit `json:"providers"`
	// Circuits are the provider:model circuits this instance saw change
	// state, most recent change first.
	Circuits []Circuit `json:"circuits"`
}

// ProviderCircuit is one provider's worst circuit state.
type ProviderCircuit struct {
	Provider string `json:"provider"`
	// State is "closed", "open" or "half_open"; "unknown" when the store
	// could not answer.
	State    string `json:"state"`
	Failures int    `json:"failures"`
	// CooldownUntil is the earliest cooldown end among open circuits.
	CooldownUntil *time.Time `json:"cooldown_until,omitempty"`
}

// Circuit is one provider:model circuit (Model "" is the provider-wide
// circuit that quota exhaustion opens).
type Circuit struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	// State is "closed", "open" or "half_open" as of the last change.
	State string `json:"state"`
	// Reason is why it last changed (for example "threshold").
	Reason string `json:"reason"`
	// Since is when it last changed.
	Since time.Time `json:"since"`
	// CooldownUntil is when an open circuit admits its probe; set only while
	// open. RemainingSeconds counts down to it (0 once it passed).
	CooldownUntil    *time.Time `json:"cooldown_until,omitempty"`
	RemainingSeconds int64      `json:"remaining_seconds,omitempty"`
}

// HeadroomSource reports how much of their limits the heaviest callers have
// left. Implementations are safe for concurrent use.
type HeadroomSource interface {
	// Headroom returns up to top users, up to top keys and up to top
	// teams, each kind heaviest first.
	Headroom(ctx context.Context, top int, now time.Time) (HeadroomReport, error)
}

// HeadroomReport is the body of GET /api/v1/headroom.
type HeadroomReport struct {
	// Guards names the guards whose limits are reported ("rate_limit",
	// "budget"); empty when none is enabled.
	Guards []string `json:"guards"`
	// RankedBy says where the ranking comes from: "usage_ledger" (today's
	// spend, shared by every instance on Redis) or "this_instance" (this
	// instance's calls today, when cost tracking is off).
	RankedBy string            `json:"ranked_by,omitempty"`
	Subjects []SubjectHeadroom `json:"subjects"`
	// Errors names, per guard, why its limits are missing from Subjects
	// (its store could not answer); absent when every guard answered.
	Errors map[string]string `json:"errors,omitempty"`
}

// SubjectHeadroom is one user's, key's or team's limits.
type SubjectHeadroom struct {
	// Kind is "user", "key" or "team"; ID the user id, the key id (a
	// hash, or a gateway key's id) or the team id.
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// SpendTodayUSD and RequestsToday are the subject's use today, by
	// which it is ranked (spend, then requests).
	SpendTodayUSD float64 `json:"spend_today_usd"`
	RequestsToday int64   `json:"requests_today"`
	// Limits are the subject's limits that apply, rate limits (minute,
	// day) before budgets (day, month); none when unlimited.
	Limits []LimitHeadroom `json:"limits"`
}

// LimitHeadroom is one limit of a subject in its current window.
type LimitHeadroom struct {
	// Guard is "rate_limit" or "budget"; Metric "requests", "tokens" or
	// "usd"; Window "minute", "day" or "month".
	Guard  string `json:"guard"`
	Metric string `json:"metric"`
	Window string `json:"window"`
	// Limit, Used and Remaining are in Metric's unit; Used counts what is
	// reserved by calls in flight as well as what is settled; Remaining
	// is never negative. UsedRatio is Used / Limit.
	Limit     float64 `json:"limit"`
	Used      float64 `json:"used"`
	Remaining float64 `json:"remaining"`
	UsedRatio float64 `json:"used_ratio"`
	// Reset is when the window ends and the limit is whole again (UTC).
	Reset time.Time `json:"reset"`
}

// NewLimitHeadroom fills Remaining and UsedRatio from limit and used.
func NewLimitHeadroom(guard, metric, window string, limit, used float64, reset time.Time) LimitHeadroom {
	h := LimitHeadroom{Guard: guard, Metric: metric, Window: window, Limit: limit, Used: used,
		Remaining: max(limit-used, 0), Reset: reset.UTC()}
	if limit > 0 {
		h.UsedRatio = used / limit
	}
	return h
}

// apiError is the JSON body of a failed /api/v1 request.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// intParam parses the query parameter name as an integer in [lo, hi];
// absent gives def.
func intParam(r *http.Request, name string, def, lo, hi int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// rangeParam parses the range query parameter (default today); on a bad
// value it answers 400 and returns false.
func rangeParam(w http.ResponseWriter, r *http.Request) (UsageRange, bool) {
	switch rng := UsageRange(r.URL.Query().Get("range")); rng {
	case "":
		return RangeToday, true
	case RangeToday, Range7d:
		return rng, true
	}
	writeJSON(w, http.StatusBadRequest, apiError{"range must be today or 7d"})
	return "", false
}

// series returns c.Series, or an empty one when none is configured.
func (c *Console) series() *Series {
	if c.Series == nil {
		return NewSeries(SeriesOptions{})
	}
	return c.Series
}

// registerAPI adds the /api/v1 endpoints to mux.
func (c *Console) registerAPI(mux *http.ServeMux, now func() time.Time) {
	mux.HandleFunc("GET /api/v1/usage", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		rng, ok := rangeParam(w, r)
		if !ok {
			return
		}
		by := q.Get("by")
		if by == "" {
			by = ByModel
		}
		if !slices.Contains(dimensions, by) {
			writeJSON(w, http.StatusBadRequest, apiError{"by must be provider, model, user or key"})
			return
		}
		top, ok := intParam(r, "top", 8, 1, 100)
		if !ok {
			writeJSON(w, http.StatusBadRequest, apiError{"top must be an integer from 1 to 100"})
			return
		}
		writeJSON(w, http.StatusOK, c.series().Usage(rng, by, top, now()))
	})
	mux.HandleFunc("GET /api/v1/traffic", func(w http.ResponseWriter, r *http.Request) {
		minutes, ok := intParam(r, "minutes", 60, 1, minuteBuckets)
		if !ok {
			writeJSON(w, http.StatusBadRequest, apiError{"minutes must be an integer from 1 to 60"})
			return
		}
		writeJSON(w, http.StatusOK, c.series().Traffic(minutes, now()))
	})
	mux.HandleFunc("GET /api/v1/failover", func(w http.ResponseWriter, r *http.Request) {
		rng, ok := rangeParam(w, r)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, c.series().Failover(rng, c.FailoverChains, now()))
	})
	mux.HandleFunc("GET /api/v1/circuits", func(w http.ResponseWriter, r *http.Request) {
		if c.Circuits == nil {
			writeJSON(w, http.StatusOK, CircuitReport{Providers: []ProviderCircuit{}, Circuits: []Circuit{}})
			return
		}
		rep, err := c.Circuits.Circuits(r.Context(), now())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, apiError{"circuits unavailable: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("GET /api/v1/headroom", func(w http.ResponseWriter, r *http.Request) {
		top, ok := intParam(r, "top", 5, 1, 50)
		if !ok {
			writeJSON(w, http.StatusBadRequest, apiError{"top must be an integer from 1 to 50"})
			return
		}
		if c.Headroom == nil {
			writeJSON(w, http.StatusOK, HeadroomReport{Guards: []string{}, Subjects: []SubjectHeadroom{}})
			return
		}
		rep, err := c.Headroom.Headroom(r.Context(), top, now())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, apiError{"headroom unavailable: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
}

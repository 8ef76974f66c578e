package usage

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// OtherName is the row that collects the spend of names beyond
// [Config.MaxUsageNames] in a period and dimension.
const OtherName = "(other)"

// UsageRetention is how long, past the end of its day or month, the redis
// ledger keeps a period's totals (so yesterday can still be inspected).
const UsageRetention = 7 * 24 * time.Hour

// Usage is what one finished request spent, as recorded by
// [Ledger.Record].
type Usage struct {
	// User is the user id; empty when the request had none (then the
	// request counts in the totals but in no user row). Ids longer than 128
	// bytes are recorded as "sha256:<hash>".
	User string
	// KeyID is the hashed API key, or the gateway key's id; empty when
	// none.
	KeyID string
	// Team is the gateway key's team; empty when none.
	Team string
	// Provider is the vendor ("openai", "anthropic", "gemini").
	Provider string
	// Model is the model that served the call; the model row is
	// "<provider>/<model>".
	Model string
	// CostNanos is the call's cost in nano-dollars (budget.Nanos of the USD
	// cost). It is added as given; normally 0 when CostKnown is false.
	// Negative values count as 0.
	CostNanos int64
	// InputTokens and OutputTokens are the billed tokens. Negative values
	// count as 0.
	InputTokens  int64
	OutputTokens int64
	// CostKnown is false when the call could not be priced (unknown model);
	// such calls are counted in [Totals.UnknownCostRequests].
	CostKnown bool
}

// Ledger records the spend of every request by user, key and model, for
// today and this month, and reports it for GET /usage. It works whether or
// not budgets are enforced. Implementations are safe for concurrent use.
//
// Record is not idempotent: call it exactly once per request. The redis
// ledger never retries a command whose reply was lost, so a network fault
// loses that record (the error says so) rather than counting it twice.
type Ledger interface {
	// Record adds u to the totals of the day and the month containing now,
	// and to its user, key and model rows. An error wraps
	// [ErrBackendUnavailable].
	Record(ctx context.Context, u Usage, now time.Time) error
	// Report returns the totals of the day and the month containing now.
	Report(ctx context.Context, now time.Time) (Report, error)
	// Status reports the backend's health; the redis backend pings.
	Status(ctx context.Context) BackendStatus
	// Close releases the backend's resources.
	Close() error
}

// Report is the body of GET /usage: spend for today and this month.
type Report struct {
	// GeneratedAt is the time the report was asked for (UTC).
	GeneratedAt time.Time `json:"generated_at"`
	// Backend is "memory" or "redis".
	Backend string `json:"backend"`
	// Today covers the UTC day containing GeneratedAt.
	Today Period `json:"today"`
	// Month covers the UTC calendar month containing GeneratedAt.
	Month Period `json:"month"`
}

// Period is the spend of one day or month.
type Period struct {
	// Name is "2030-05-06" for a day, "2030-05" for a month.
	Name string `json:"period"`
	// Start and End bound the period (UTC, End exclusive).
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Total covers every recorded request, with or without user or key.
	Total Totals `json:"total"`
	// ByUser, ByKey, ByModel and ByTeam break Total down; ByModel rows are
	// named "<provider>/<model>"; ByTeam has gateway-key teams.
	ByUser  Breakdown `json:"by_user"`
	ByKey   Breakdown `json:"by_key"`
	ByModel Breakdown `json:"by_model"`
	ByTeam  Breakdown `json:"by_team"`
}

// Breakdown is one dimension of a period.
type Breakdown struct {
	// Rows are sorted by cost, highest first, then by requests, then by
	// name; at most [Config.ReportRows] of them.
	Rows []Row `json:"rows"`
	// Omitted is how many further rows were left out of Rows.
	Omitted int `json:"omitted,omitempty"`
}

// Row is the spend of one user, key or model.
type Row struct {
	// Name is the user id, key id or "<provider>/<model>"; [OtherName]
	// collects names beyond [Config.MaxUsageNames].
	Name string `json:"name"`
	// Provider and Model are set on ByModel rows.
	Provider string `json:"provider,omitempty"`
	Model    string `json:"model,omitempty"`
	Totals
}

// Totals are summed usage.
type Totals struct {
	// Requests is the number of recorded requests.
	Requests int64 `json:"requests"`
	// CostNanos is the summed cost, in nano-dollars (exact).
	CostNanos int64 `json:"cost_nanos"`
	// CostUSD is CostNanos in USD.
	CostUSD float64 `json:"cost_usd"`
	// InputTokens and OutputTokens are the summed billed tokens.
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	// UnknownCostRequests counts requests recorded without a known cost.
	UnknownCostRequests int64 `json:"unknown_cost_requests"`
}

func (t *Totals) add(u *Usage) {
	t.Requests++
	t.CostNanos += u.CostNanos
	t.InputTokens += u.InputTokens
	t.OutputTokens += u.OutputTokens
	if !u.CostKnown {
		t.UnknownCostRequests++
	}
}

// dimension indexes the breakdowns of a period.
type dimension int

const (
	dimUser dimension = iota
	dimKey
	dimModel
	dimTeam
	numDims
)

var dimNames = [numDims]string{"user", "key", "model", "team"}

// normalize clamps u's amounts at 0.
func (u Usage) normalize() Usage {
	u.CostNanos = max(u.CostNanos, 0)
	u.InputTokens = max(u.InputTokens, 0)
	u.OutputTokens = max(u.OutputTokens, 0)
	return u
}

// names returns the row names of u per dimension; empty means "no row".
func (u *Usage) names() [numDims]string {
	var n [numDims]string
	if u.User != "" {
		n[dimUser] = quota.ScopeName("", u.User)
	}
	if u.KeyID != "" {
		n[dimKey] = quota.ScopeName("", u.KeyID)
	}
	if u.Provider != "" || u.Model != "" {
		n[dimModel] = u.Provider + "/" + quota.ScopeName("", u.Model)
	}
	if u.Team != "" {
		n[dimTeam] = quota.ScopeName("", u.Team)
	}
	return n
}

// newPeriod returns the empty period w idx.
func newPeriod(w quota.Window, idx int64) Period {
	return Period{
		Name:    windowLabel(w, idx),
		Start:   w.Start(idx),
		End:     w.End(idx),
		ByUser:  Breakdown{Rows: []Row{}},
		ByKey:   Breakdown{Rows: []Row{}},
		ByModel: Breakdown{Rows: []Row{}},
		ByTeam:  Breakdown{Rows: []Row{}},
	}
}

// breakdown sorts rows by cost (highest first), requests, then name, and
// keeps the first limit.
func breakdown(rows []Row, d dimension, limit int) Breakdown {
	for i := range rows {
		rows[i].CostUSD = USD(rows[i].CostNanos)
		if d == dimModel {
			rows[i].Provider, rows[i].Model, _ = strings.Cut(rows[i].Name, "/")
		}
	}
	slices.SortFunc(rows, func(a, b Row) int {
		if c := cmp.Compare(b.CostNanos, a.CostNanos); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Requests, a.Requests); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	out := Breakdown{Rows: rows}
	if len(rows) > limit {
		out.Rows, out.Omitted = rows[:limit:limit], len(rows)-limit
	}
	if out.Rows == nil {
		out.Rows = []Row{}
	}
	return out
}

func (p *Period) setBreakdown(d dimension, b Breakdown) {
	switch d {
	case dimUser:
		p.ByUser = b
	case dimKey:
		p.ByKey = b
	case dimTeam:
		p.ByTeam = b
	default:
		p.ByModel = b
	}
}

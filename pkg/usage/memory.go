package usage

import (
	"context"
	"sync"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// MemoryLedger is the in-process ledger: this instance's spend only, lost on
// restart. It keeps the current day and the current month, and per
// dimension at most [Config.MaxUsageNames] names plus [OtherName], so its
// memory is bounded by about 2 x 3 x MaxUsageNames rows. A record whose now
// lags the latest period seen (a clock read just before midnight) joins the
// newer period.
//
// MemoryLedger is safe for concurrent use; one mutex guards it.
type MemoryLedger struct {
	maxNames int
	rows     int

	mu      sync.Mutex
	periods [2]memPeriod // day, month
}

type memPeriod struct {
	window quota.Window
	index  int64
	total  Totals
	dims   [numDims]map[string]*Totals
}

var _ Ledger = (*MemoryLedger)(nil)

// NewMemoryLedger returns an empty memory ledger for cfg (defaults applied;
// call cfg.Validate first).
func NewMemoryLedger(cfg Config) *MemoryLedger {
	cfg.ApplyDefaults()
	l := &MemoryLedger{maxNames: cfg.MaxUsageNames, rows: cfg.ReportRows}
	l.periods[0].window, l.periods[1].window = quota.Day, quota.Month
	for i := range l.periods {
		l.periods[i].index = -1 << 62
	}
	return l
}

// Record implements [Ledger.Record].
func (l *MemoryLedger) Record(_ context.Context, u Usage, now time.Time) error {
	u = u.normalize()
	names := u.names()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.periods {
		p := &l.periods[i]
		if idx := p.window.Index(now); idx > p.index {
			*p = memPeriod{window: p.window, index: idx}
		}
		p.total.add(&u)
		for d, name := range names {
			if name == "" {
				continue
			}
			m := p.dims[d]
			if m == nil {
				m = make(map[string]*Totals)
				p.dims[d] = m
			}
			t := m[name]
			if t == nil {
				if len(m) >= l.maxNames {
					name = OtherName
					t = m[name]
				}
				if t == nil {
					t = &Totals{}
					m[name] = t
				}
			}
			t.add(&u)
		}
	}
	return nil
}

// Report implements [Ledger.Report]. Periods other than the latest day and
// month recorded are reported empty.
func (l *MemoryLedger) Report(_ context.Context, now time.Time) (Report, error) {
	rep := Report{GeneratedAt: now.UTC(), Backend: BackendMemory}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, dst := range []*Period{&rep.Today, &rep.Month} {
		p := &l.periods[i]
		idx := p.window.Index(now)
		*dst = newPeriod(p.window, idx)
		if p.index != idx {
			continue
		}
		dst.Total = p.total
		dst.Total.CostUSD = USD(p.total.CostNanos)
		for d := range numDims {
			rows := make([]Row, 0, len(p.dims[d]))
			for name, t := range p.dims[d] {
				rows = append(rows, Row{Name: name, Totals: *t})
			}
			dst.setBreakdown(d, breakdown(rows, d, l.rows))
		}
	}
	return rep, nil
}

// Status implements [Ledger.Status]; memory is always healthy.
func (l *MemoryLedger) Status(context.Context) BackendStatus {
	return BackendStatus{Backend: BackendMemory, Healthy: true}
}

// Close implements [Ledger.Close]; it does nothing.
func (l *MemoryLedger) Close() error { return nil }

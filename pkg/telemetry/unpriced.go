package telemetry

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

const (
	// UnpricedWindow is how long an unpriced model stays listed after it
	// was last seen.
	UnpricedWindow = 24 * time.Hour
	// MaxUnpriced bounds the unpriced models remembered; past it the model
	// seen least recently is forgotten.
	MaxUnpriced = 256
)

// UnpricedModel is one model that answered with usage but had no price.
type UnpricedModel struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	// Requests counts the unpriced requests since FirstSeen.
	Requests  int64     `json:"requests"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// UnpricedModels remembers the models whose responses carried usage but
// resolved to no price (cost_known false), so that an operator can add a
// price before the month closes. It keeps at most [MaxUnpriced] models
// for [UnpricedWindow] after they were last seen; names that could not be
// a model id are kept as "other". It is a [processor.Observer] and safe
// for concurrent use.
type UnpricedModels struct {
	now  func() time.Time
	mu   sync.Mutex
	seen map[unpricedKey]*UnpricedModel
}

type unpricedKey struct{ provider, model string }

// NewUnpricedModels returns an empty list that reads the time from now
// (time.Now when nil).
func NewUnpricedModels(now func() time.Time) *UnpricedModels {
	if now == nil {
		now = time.Now
	}
	return &UnpricedModels{now: now, seen: map[unpricedKey]*UnpricedModel{}}
}

// Observe implements [processor.Observer].
func (u *UnpricedModels) Observe(r *processor.Record) {
	if r.Cost.Known || !r.Usage.Found {
		return
	}
	model := r.Usage.Model
	if model == "" {
		model = r.Info.Model
	}
	switch {
	case model == "":
		model = "unknown"
	case !plausibleModel(model):
		model = "other"
	}
	now := u.now()
	k := unpricedKey{r.Provider, model}
	u.mu.Lock()
	defer u.mu.Unlock()
	if e := u.seen[k]; e != nil {
		e.Requests++
		e.LastSeen = now
		return
	}
	if len(u.seen) >= MaxUnpriced {
		u.forgetOldest()
	}
	u.seen[k] = &UnpricedModel{Provider: strings.Clone(r.Provider), Model: strings.Clone(model),
		Requests: 1, FirstSeen: now, LastSeen: now}
}

func (u *UnpricedModels) forgetOldest() {
	var oldest unpricedKey
	var at time.Time
	first := true
	for k, e := range u.seen {
		if first || e.LastSeen.Before(at) {
			oldest, at, first = k, e.LastSeen, false
		}
	}
	delete(u.seen, oldest)
}

// List returns the models seen unpriced within [UnpricedWindow], most
// recently seen first, and forgets the older ones.
func (u *UnpricedModels) List() []UnpricedModel {
	cutoff := u.now().Add(-UnpricedWindow)
	u.mu.Lock()
	out := make([]UnpricedModel, 0, len(u.seen))
	for k, e := range u.seen {
		if e.LastSeen.Before(cutoff) {
			delete(u.seen, k)
			continue
		}
		out = append(out, *e)
	}
	u.mu.Unlock()
	slices.SortFunc(out, func(a, b UnpricedModel) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		if c := strings.Compare(a.Provider, b.Provider); c != 0 {
			return c
		}
		return strings.Compare(a.Model, b.Model)
	})
	return out
}

// Health returns List for the admin /health section (see
// admin.Options.UnpricedModels).
func (u *UnpricedModels) Health(context.Context) any { return u.List() }

package correction

import (
	"cmp"
	"math"
	"sync"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// Config tunes a [Corrector]. Zero fields take the defaults.
type Config struct {
	// Alpha is the weight of a new observation in the moving average,
	// in (0, 1]. Default 0.1 (roughly the last 20 observations matter).
	Alpha float64
	// MinObservations is how many observations a provider and model need
	// before their factor departs from 1. Default 10.
	MinObservations int
	// MaxEntries bounds the provider and model pairs tracked. When full, the
	// pair updated longest ago is forgotten. Default 1024.
	MaxEntries int
	// MinFactor and MaxFactor clamp every observed ratio and so the factor.
	// Defaults 0.25 and 4.
	MinFactor, MaxFactor float64
}

// Corrector learns, per provider and model, how far token estimates are
// from the usage the vendor reports: an exponentially weighted moving
// average of actual/estimated input tokens. Multiply a raw estimate by
// [Corrector.Factor] (or call [Corrector.Correct]) before reserving, and
// feed the RAW estimate (never a corrected one) and the reported input
// tokens to [Corrector.Observe] when usage arrives.
//
// Memory is bounded by MaxEntries. The state is per process; replicas learn
// separately, which is fine for an estimate. A Corrector is safe for
// concurrent use.
type Corrector struct {
	cfg Config

	mu      sync.RWMutex
	entries map[correctorKey]*correction
	seq     uint64
}

type correctorKey struct{ provider, model string }

type correction struct {
	factor float64
	n      int
	seq    uint64 // last update, for eviction
}

// New returns a Corrector with cfg's zero fields defaulted and
// invalid fields replaced by their defaults.
func New(cfg Config) *Corrector {
	if !(cfg.Alpha > 0 && cfg.Alpha <= 1) {
		cfg.Alpha = 0.1
	}
	cfg.MinObservations = cmp.Or(max(cfg.MinObservations, 0), 10)
	cfg.MaxEntries = cmp.Or(max(cfg.MaxEntries, 0), 1024)
	if !(cfg.MinFactor > 0) || math.IsInf(cfg.MinFactor, 0) {
		cfg.MinFactor = 0.25
	}
	if !(cfg.MaxFactor >= cfg.MinFactor) || math.IsInf(cfg.MaxFactor, 0) {
		cfg.MaxFactor = max(4, cfg.MinFactor)
	}
	return &Corrector{cfg: cfg, entries: make(map[correctorKey]*correction)}
}

// Observe records that a request estimated at estimated input tokens (the
// raw estimate) used actual input tokens. Observations with a non-positive
// estimate or actual count are ignored: they carry no ratio.
func (c *Corrector) Observe(provider, model string, estimated, actual int64) {
	if estimated <= 0 || actual <= 0 {
		return
	}
	ratio := min(max(float64(actual)/float64(estimated), c.cfg.MinFactor), c.cfg.MaxFactor)
	k := correctorKey{provider, correctorModel(model)}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	e := c.entries[k]
	if e == nil {
		if len(c.entries) >= c.cfg.MaxEntries {
			c.evictOldest()
		}
		c.entries[k] = &correction{factor: ratio, n: 1, seq: c.seq}
		return
	}
	e.factor += c.cfg.Alpha * (ratio - e.factor)
	e.n++
	e.seq = c.seq
}

// Factor returns the correction for provider and model: 1 until
// MinObservations have been seen, then the moving average, within
// [MinFactor, MaxFactor].
func (c *Corrector) Factor(provider, model string) float64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.entries[correctorKey{provider, correctorModel(model)}]
	if e == nil || e.n < c.cfg.MinObservations {
		return 1
	}
	return e.factor
}

// Correct returns estimated multiplied by Factor, rounded up. A positive
// estimate stays at least 1.
func (c *Corrector) Correct(provider, model string, estimated int64) int64 {
	if estimated <= 0 {
		return estimated
	}
	return max(int64(math.Ceil(float64(estimated)*c.Factor(provider, model))), 1)
}

// evictOldest drops the entry updated longest ago. Callers hold c.mu. It
// scans the map: O(MaxEntries), only when a new pair arrives on a full map.
func (c *Corrector) evictOldest() {
	var oldest *correctorKey
	var seq uint64
	for k, e := range c.entries {
		if oldest == nil || e.seq < seq {
			oldest, seq = &k, e.seq
		}
	}
	if oldest != nil {
		delete(c.entries, *oldest)
	}
}

// correctorModel bounds the model part of a key; model names come from
// clients.
func correctorModel(model string) string { return quota.ScopeName("", model) }

package ratelimit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Scope kinds, also the prefixes of [Decision.Scope].
const (
	scopeGlobal   = "global"
	scopeProvider = "provider:"
	scopeModel    = "model:"
	scopeKey      = "key:"
	scopeUser     = "user:"
)

// maxIdentityLen bounds identities kept verbatim in scope names; longer ones
// (user ids and model names come from clients) are replaced by a hash so a
// counter key stays small.
const maxIdentityLen = 128

// check is one window of one scope that a request must pass: the unit both
// backends evaluate, in plan order.
type check struct {
	scope    string
	window   Window
	index    int64
	reqLimit int64
	tokLimit int64
}

// plan appends to dst the checks that apply to req at now, in the order
// they are evaluated: scopes global, provider, model, key, user; for each,
// the minute window before the day window. Windows whose limits are all 0
// are left out.
func (c *Config) plan(dst []check, req Request, now time.Time) []check {
	minute, day := windowIndex(now, WindowMinute), windowIndex(now, WindowDay)
	dst = appendChecks(dst, scopeGlobal, c.Global, minute, day)
	if req.Provider != "" {
		if l, ok := c.PerProvider[req.Provider]; ok {
			dst = appendChecks(dst, scopeName(scopeProvider, req.Provider), l, minute, day)
		}
	}
	if req.Model != "" {
		if l, ok := c.Overrides.PerModel[req.Model]; ok {
			dst = appendChecks(dst, scopeName(scopeModel, req.Model), l, minute, day)
		}
	}
	if req.KeyID != "" {
		l, ok := c.Overrides.PerKey[req.KeyID]
		if !ok {
			l = c.Limits
		}
		dst = appendChecks(dst, scopeName(scopeKey, req.KeyID), l, minute, day)
	}
	if req.User != "" {
		l, ok := c.Overrides.PerUser[req.User]
		if !ok {
			l = c.Limits
		}
		dst = appendChecks(dst, scopeName(scopeUser, req.User), l, minute, day)
	}
	return dst
}

func appendChecks(dst []check, scope string, l Limits, minute, day int64) []check {
	if l.RequestsPerMinute > 0 || l.TokensPerMinute > 0 {
		dst = append(dst, check{scope: scope, window: WindowMinute, index: minute, reqLimit: l.RequestsPerMinute, tokLimit: l.TokensPerMinute})
	}
	if l.RequestsPerDay > 0 || l.TokensPerDay > 0 {
		dst = append(dst, check{scope: scope, window: WindowDay, index: day, reqLimit: l.RequestsPerDay, tokLimit: l.TokensPerDay})
	}
	return dst
}

func scopeName(kind, id string) string {
	if len(id) <= maxIdentityLen {
		return kind + id
	}
	sum := sha256.Sum256([]byte(id))
	return kind + "sha256:" + hex.EncodeToString(sum[:16])
}

// exceeds reports which metric of ch refuses a request charging tokens when
// the window already holds reqs requests and toks tokens. The request limit
// is checked first. The token check is skipped while the window holds no
// tokens (optimistic first request); after that a request is refused when
// the tokens already reach the limit or the charge would pass it.
func (ch check) exceeds(reqs, toks, tokens int64) (Metric, bool) {
	if ch.reqLimit > 0 && reqs+1 > ch.reqLimit {
		return MetricRequests, true
	}
	if ch.tokLimit > 0 && toks > 0 && (toks >= ch.tokLimit || toks+tokens > ch.tokLimit) {
		return MetricTokens, true
	}
	return "", false
}

// denial builds the refusal for metric m of ch, whose window holds reqs and
// toks.
func (ch check) denial(m Metric, reqs, toks int64, now time.Time) Decision {
	limit, used := ch.reqLimit, reqs
	if m == MetricTokens {
		limit, used = ch.tokLimit, toks
	}
	reset := windowEnd(ch.window, ch.index)
	return Decision{
		Scope:      ch.scope,
		Metric:     m,
		Window:     ch.window,
		Limit:      limit,
		Remaining:  max(limit-used, 0),
		Reset:      reset,
		RetryAfter: max(reset.Sub(now), 0),
	}
}

func windowSeconds(w Window) int64 {
	if w == WindowDay {
		return 86400
	}
	return 60
}

// windowIndex is the number of whole windows between the Unix epoch and now.
func windowIndex(now time.Time, w Window) int64 {
	s, size := now.Unix(), windowSeconds(w)
	idx := s / size
	if s%size < 0 {
		idx--
	}
	return idx
}

// windowEnd is when window idx ends (the next one starts).
func windowEnd(w Window, idx int64) time.Time {
	return time.Unix((idx+1)*windowSeconds(w), 0).UTC()
}

// current reports whether charge ch's window has not rotated at now.
func (ch Charge) current(now time.Time) bool { return windowIndex(now, ch.Window) <= ch.Index }

// expiry is when the last window of res ends; after it the reservation has
// nothing left to settle.
func (res Reservation) expiry() time.Time {
	var end time.Time
	for _, ch := range res.Charges {
		if e := windowEnd(ch.Window, ch.Index); e.After(end) {
			end = e
		}
	}
	return end
}

func newID() string { return rand.Text() }

package budget

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Scope kinds, also the prefixes of [Decision.Scope].
const (
	scopeKey  = "key:"
	scopeUser = "user:"
)

// maxIdentityLen bounds identities kept verbatim in scope and ledger names;
// longer ones (user ids come from clients) are replaced by a hash so keys
// and fields stay small.
const maxIdentityLen = 128

// check is one window of one budget that a request must pass: the unit both
// backends evaluate, in plan order.
type check struct {
	scope  string
	window Window
	index  int64
	limit  int64 // micro-dollars, > 0
}

// plan appends to dst the checks that apply to req at now, in evaluation
// order: the key's budget, then the user's; for each, the day before the
// month. Windows whose limit is 0 are left out.
func (c *Config) plan(dst []check, req Request, now time.Time) []check {
	day, month := windowIndex(now, WindowDay), windowIndex(now, WindowMonth)
	if req.KeyID != "" {
		dst = appendChecks(dst, identity(scopeKey, req.KeyID), c.PerKey.limits(req.KeyID), day, month)
	}
	if req.User != "" {
		dst = appendChecks(dst, identity(scopeUser, req.User), c.PerUser.limits(req.User), day, month)
	}
	return dst
}

func appendChecks(dst []check, scope string, l Limits, day, month int64) []check {
	if lim := Micros(l.DailyUSD); lim > 0 {
		dst = append(dst, check{scope: scope, window: WindowDay, index: day, limit: lim})
	}
	if lim := Micros(l.MonthlyUSD); lim > 0 {
		dst = append(dst, check{scope: scope, window: WindowMonth, index: month, limit: lim})
	}
	return dst
}

// identity returns prefix+id, or prefix+"sha256:"+hash when id is too long
// to keep verbatim.
func identity(prefix, id string) string {
	if len(id) <= maxIdentityLen {
		return prefix + id
	}
	sum := sha256.Sum256([]byte(id))
	return prefix + "sha256:" + hex.EncodeToString(sum[:16])
}

// exceeds reports whether a window holding spend micro-dollars refuses a
// request estimated at charge: when spend has reached the limit, or when
// spend plus the estimate would pass it. The first clause refuses a
// zero-cost estimate once the budget is used up.
func (ch check) exceeds(spend, charge int64) bool {
	return spend >= ch.limit || spend+charge > ch.limit
}

// denial builds the refusal by ch, whose window holds spend.
func (ch check) denial(spend, charge int64) Decision {
	return Decision{
		Scope:          ch.scope,
		Window:         ch.window,
		LimitMicros:    ch.limit,
		SpendMicros:    spend,
		EstimateMicros: charge,
		Reset:          windowEnd(ch.window, ch.index),
	}
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

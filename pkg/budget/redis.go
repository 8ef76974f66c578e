package budget

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// reserveScript checks every window of the request and, only if all admit,
// charges them all (all-or-nothing, atomic because a script runs alone).
//
// KEYS[1] is the reservation's marker, KEYS[2..] the window hashes (field
// s = spend in micro-dollars) in plan order. ARGV[1] is the estimate in
// micro-dollars, ARGV[2] the marker's TTL in ms, then per window: limit in
// micro-dollars, TTL in ms.
//
// Returns {1} when admitted (also when the marker already exists: a retried
// call is not charged twice), or {0, window number, spend} for the first
// refusing window.
var reserveScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
local charge = tonumber(ARGV[1])
local n = #KEYS - 1
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local s = tonumber(redis.call('HGET', KEYS[i + 1], 's')) or 0
  if s >= limit or s + charge > limit then return {0, i, s} end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[i + 1], 's', ARGV[1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[2 + 2 * i])
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
return {1}
`)

// releaseScript applies a settlement or cancellation once per reservation.
//
// KEYS[1] is the reservation's marker, KEYS[2..] the unrotated window
// hashes. ARGV[1] is the spend delta in micro-dollars. Spend is clamped at
// 0 and missing (expired) hashes are not recreated. Returns 0 when the
// marker was already gone.
var releaseScript = redis.NewScript(`
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
if tonumber(ARGV[1]) == 0 then return 1 end
for i = 2, #KEYS do
  local k = KEYS[i]
  if redis.call('EXISTS', k) == 1 and redis.call('HINCRBY', k, 's', ARGV[1]) < 0 then
    redis.call('HSET', k, 's', 0)
  end
end
return 1
`)

// Redis is the shared limiter: every instance using the same Redis and
// [Config.KeyPrefix] enforces one budget per identity, exactly. Each Reserve
// is one EVALSHA that checks and charges all windows; each Settle or Cancel
// is one more (none when every charged window has rotated).
//
// Key layout, with P the key prefix without its trailing colon:
//
//	{P}:d:<day index>:<scope>     hash {s: spend in micro-dollars}, UTC day
//	{P}:mo:<month index>:<scope>  hash {s}, UTC calendar month
//	{P}:res:<reservation id>      marker of an unsettled reservation
//
// Every key expires shortly after its window ends; a marker lives until the
// last window it charged ends, so a reservation never settled (a crashed
// instance) keeps its estimate counted until then. Scopes hold key ids,
// never raw API keys. All keys share the hash tag {P}, so on Redis Cluster
// they live in one slot, as a multi-key script requires.
//
// Redis is safe for concurrent use.
type Redis struct {
	cfg  Config
	conn *redisConn
}

var _ Limiter = (*Redis)(nil)

// NewRedis connects to the Redis of cfg (defaults applied; call cfg.Validate
// first) and pings it. An unreachable server is not an error: the limiter
// starts unhealthy, its calls fail with [ErrBackendUnavailable], and it
// recovers when the server answers. Only unusable settings are an error.
func NewRedis(ctx context.Context, cfg Config, hooks Hooks) (*Redis, error) {
	cfg.ApplyDefaults()
	conn, err := newRedisConn(cfg, hooks)
	if err != nil {
		return nil, err
	}
	r := &Redis{cfg: cfg, conn: conn}
	r.Status(ctx)
	return r, nil
}

// Reserve implements [Limiter.Reserve].
func (r *Redis) Reserve(ctx context.Context, req Request, now time.Time) (Decision, error) {
	checks := r.cfg.plan(make([]check, 0, 4), req, now)
	if len(checks) == 0 {
		return Decision{Allowed: true}, nil
	}
	if !r.conn.health.Admit() {
		return Decision{}, r.conn.skipped("reserve")
	}
	charge := Micros(req.EstimatedUSD)
	res := Reservation{ID: newID(), EstimateMicros: charge, Charges: make([]Charge, len(checks))}
	keys := make([]string, 0, len(checks)+1)
	keys = append(keys, r.markerKey(res.ID))
	args := make([]any, 0, 2+2*len(checks))
	args = append(args, charge, 0)
	var last time.Time
	for i, ch := range checks {
		res.Charges[i] = Charge{Scope: ch.scope, Window: ch.window, Index: ch.index}
		keys = append(keys, r.windowKey(ch.window, ch.index, ch.scope))
		end := windowEnd(ch.window, ch.index)
		last = later(last, end)
		args = append(args, ch.limit, ttlMillis(end, now))
	}
	args[1] = ttlMillis(last, now)
	out, err := reserveScript.Run(ctx, r.conn.client, keys, args...).Int64Slice()
	if err != nil {
		return Decision{}, r.conn.fail(ctx, "reserve", err)
	}
	r.conn.health.Observe(nil)
	if len(out) == 3 && out[0] == 0 {
		i := int(out[1]) - 1
		if i < 0 || i >= len(checks) {
			return Decision{}, r.conn.fail(ctx, "reserve", fmt.Errorf("script returned window %d of %d", i+1, len(checks)))
		}
		return checks[i].denial(out[2], charge), nil
	}
	if len(out) < 1 || out[0] != 1 {
		return Decision{}, r.conn.fail(ctx, "reserve", fmt.Errorf("unexpected script reply %v", out))
	}
	return Decision{Allowed: true, Reservation: res}, nil
}

// Settle implements [Limiter.Settle].
func (r *Redis) Settle(ctx context.Context, res Reservation, actualUSD float64, now time.Time) error {
	return r.release(ctx, "settle", res, Micros(actualUSD)-res.EstimateMicros, now)
}

// Cancel implements [Limiter.Cancel].
func (r *Redis) Cancel(ctx context.Context, res Reservation, now time.Time) error {
	return r.release(ctx, "cancel", res, -res.EstimateMicros, now)
}

func (r *Redis) release(ctx context.Context, op string, res Reservation, delta int64, now time.Time) error {
	keys := make([]string, 0, len(res.Charges)+1)
	keys = append(keys, r.markerKey(res.ID))
	for _, ch := range res.Charges {
		if ch.current(now) {
			keys = append(keys, r.windowKey(ch.Window, ch.Index, ch.Scope))
		}
	}
	if len(keys) == 1 {
		// Nothing left to adjust; the marker expires with the last window.
		return nil
	}
	if !r.conn.health.Admit() {
		return r.conn.skipped(op)
	}
	if err := releaseScript.Run(ctx, r.conn.client, keys, delta).Err(); err != nil {
		return r.conn.fail(ctx, op, err)
	}
	r.conn.health.Observe(nil)
	return nil
}

// Status implements [Limiter.Status]. It pings Redis with ctx.
func (r *Redis) Status(ctx context.Context) BackendStatus { return r.conn.status(ctx) }

// Close implements [Limiter.Close]: it closes the Redis client.
func (r *Redis) Close() error { return r.conn.client.Close() }

func (r *Redis) windowKey(w Window, idx int64, scope string) string {
	b := make([]byte, 0, len(r.conn.tag)+len(scope)+16)
	b = append(b, r.conn.tag...)
	if w == WindowMonth {
		b = append(b, "mo:"...)
	} else {
		b = append(b, "d:"...)
	}
	b = strconv.AppendInt(b, idx, 10)
	b = append(b, ':')
	b = append(b, scope...)
	return string(b)
}

func (r *Redis) markerKey(id string) string { return r.conn.tag + "res:" + id }

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

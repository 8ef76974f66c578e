package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ttlGrace keeps a window's key a little past the window's end, so an
// instance whose clock lags slightly still finds the counters it charged.
// Keys are stamped with the window index, so the grace never lets counts
// leak into the next window.
const ttlGrace = 2 * time.Second

// redisMaxRetries lets go-redis retry a command once: the reserve script
// is idempotent (a marker key per reservation). Timeouts come from
// internal/redisconf: fail fast, then the fail mode applies.
const redisMaxRetries = 1

// redisRetryInterval is how often, while Redis is unhealthy, one call is let
// through to try it; the others fail at once with [ErrBackendUnavailable].
// [Redis.Status] always tries.
const redisRetryInterval = time.Second

// reserveScript checks every window of the request and, only if all admit,
// charges them all (all-or-nothing, atomic because a script runs alone).
//
// KEYS[1] is the reservation's marker, KEYS[2..] the window hashes (fields
// r = requests, t = tokens) in plan order. ARGV[1] is the token charge,
// ARGV[2] the marker's TTL in ms, then per window: request limit, token
// limit, TTL in ms.
//
// Returns {1} when admitted (also when the marker already exists: a retried
// call is not charged twice), or {0, window number, metric (0 requests,
// 1 tokens), requests, tokens} for the first refusing window.
var reserveScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
local tokens = tonumber(ARGV[1])
local n = #KEYS - 1
for i = 1, n do
  local a = 2 + (i - 1) * 3
  local rl, tl = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local v = redis.call('HMGET', KEYS[i + 1], 'r', 't')
  local r, t = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if rl > 0 and r + 1 > rl then return {0, i, 0, r, t} end
  if tl > 0 and t > 0 and (t >= tl or t + tokens > tl) then return {0, i, 1, r, t} end
end
for i = 1, n do
  local k = KEYS[i + 1]
  redis.call('HINCRBY', k, 'r', 1)
  redis.call('HINCRBY', k, 't', ARGV[1])
  redis.call('PEXPIRE', k, ARGV[2 + (i - 1) * 3 + 3])
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
return {1}
`)

// releaseScript applies a settlement or cancellation once per reservation.
//
// KEYS[1] is the reservation's marker, KEYS[2..] the unrotated window
// hashes. ARGV[1] is the request delta, ARGV[2] the token delta. Counters are
// clamped at 0 and missing (expired) hashes are not recreated. Returns 0 when
// the marker was already gone.
var releaseScript = redis.NewScript(`
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
local dr, dt = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 2, #KEYS do
  local k = KEYS[i]
  if redis.call('EXISTS', k) == 1 then
    if dr ~= 0 and redis.call('HINCRBY', k, 'r', ARGV[1]) < 0 then redis.call('HSET', k, 'r', 0) end
    if dt ~= 0 and redis.call('HINCRBY', k, 't', ARGV[2]) < 0 then redis.call('HSET', k, 't', 0) end
  end
end
return 1
`)

// Redis is the shared backend: every instance using the same Redis and
// [Config.KeyPrefix] enforces one budget, exactly. Each Reserve is one
// EVALSHA that checks and charges all scopes; each Settle or Cancel is one
// more (none when every charged window has rotated).
//
// Key layout, with P the key prefix without its trailing colon:
//
//	{P}:m:<minute index>:<scope>   hash {r: requests, t: tokens}, minute window
//	{P}:d:<day index>:<scope>      hash {r, t}, day window
//	{P}:res:<reservation id>       marker of an unsettled reservation
//
// Every key expires shortly after its window ends. Scopes hold key ids,
// never raw API keys. All keys share the hash tag {P}, so on Redis Cluster
// they live in one slot (one shard carries all limiter traffic): a
// multi-scope script needs all its keys in one slot, and the scopes of one
// request (a user, a key, a model) cannot share a slot any other way.
//
// Redis is safe for concurrent use.
type Redis struct {
	cfg    Config
	client *redis.Client
	tag    string // "{P}:"
	health *health
}

var _ Limiter = (*Redis)(nil)

// NewRedis connects to the Redis of cfg (defaults applied; call cfg.Validate
// first) and pings it. An unreachable server is not an error: the limiter
// starts unhealthy, its calls fail with [ErrBackendUnavailable], and it
// recovers when the server answers. Only unusable settings are an error.
func NewRedis(ctx context.Context, cfg Config, hooks Hooks) (*Redis, error) {
	cfg.ApplyDefaults()
	opts, err := redisOptions(cfg.Redis)
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(cfg.KeyPrefix, ":")
	if prefix == "" {
		prefix = strings.TrimSuffix(DefaultKeyPrefix, ":")
	}
	r := &Redis{
		cfg:    cfg,
		client: redis.NewClient(opts),
		tag:    "{" + prefix + "}:",
		health: newHealth(BackendRedis, hooks, redisRetryInterval),
	}
	r.Status(ctx)
	return r, nil
}

func redisOptions(c RedisConfig) (*redis.Options, error) { return c.Options(redisMaxRetries) }

// Reserve implements [Limiter.Reserve].
func (r *Redis) Reserve(ctx context.Context, req Request, now time.Time) (Decision, error) {
	checks := r.cfg.plan(make([]check, 0, 8), req, now)
	if len(checks) == 0 {
		return Decision{Allowed: true}, nil
	}
	if !r.health.Admit() {
		return Decision{}, r.skipped("reserve")
	}
	tokens := r.cfg.charge(req)
	res := Reservation{ID: newID(), Tokens: tokens, Charges: make([]Charge, len(checks))}
	keys := make([]string, 0, len(checks)+1)
	keys = append(keys, r.markerKey(res.ID))
	args := make([]any, 0, 2+3*len(checks))
	args = append(args, tokens, ttlMillis(lastEnd(checks), now))
	for i, ch := range checks {
		res.Charges[i] = Charge{Scope: ch.scope, Window: ch.window, Index: ch.index}
		keys = append(keys, r.windowKey(ch.window, ch.index, ch.scope))
		args = append(args, ch.reqLimit, ch.tokLimit, ttlMillis(windowEnd(ch.window, ch.index), now))
	}
	out, err := reserveScript.Run(ctx, r.client, keys, args...).Int64Slice()
	if err != nil {
		return Decision{}, r.fail(ctx, "reserve", err)
	}
	r.health.Observe(nil)
	if len(out) == 5 && out[0] == 0 {
		i := int(out[1]) - 1
		if i < 0 || i >= len(checks) {
			return Decision{}, r.fail(ctx, "reserve", fmt.Errorf("script returned window %d of %d", i+1, len(checks)))
		}
		metric := MetricRequests
		if out[2] == 1 {
			metric = MetricTokens
		}
		return checks[i].denial(metric, out[3], out[4], now), nil
	}
	if len(out) < 1 || out[0] != 1 {
		return Decision{}, r.fail(ctx, "reserve", fmt.Errorf("unexpected script reply %v", out))
	}
	return Decision{Allowed: true, Reservation: res}, nil
}

// Settle implements [Limiter.Settle].
func (r *Redis) Settle(ctx context.Context, res Reservation, actualTokens int64, now time.Time) error {
	return r.release(ctx, "settle", res, 0, max(actualTokens, 0)-res.Tokens, now)
}

// Cancel implements [Limiter.Cancel].
func (r *Redis) Cancel(ctx context.Context, res Reservation, now time.Time) error {
	return r.release(ctx, "cancel", res, -1, -res.Tokens, now)
}

func (r *Redis) release(ctx context.Context, op string, res Reservation, dReqs, dToks int64, now time.Time) error {
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
	if !r.health.Admit() {
		return r.skipped(op)
	}
	if err := releaseScript.Run(ctx, r.client, keys, dReqs, dToks).Err(); err != nil {
		return r.fail(ctx, op, err)
	}
	r.health.Observe(nil)
	return nil
}

// Status implements [Limiter.Status]. It pings Redis with ctx.
func (r *Redis) Status(ctx context.Context) BackendStatus {
	if err := r.client.Ping(ctx).Err(); err != nil {
		_ = r.fail(ctx, "ping", err)
	} else {
		r.health.Observe(nil)
	}
	return r.health.Status()
}

// Close implements [Limiter.Close]: it closes the Redis client.
func (r *Redis) Close() error { return r.client.Close() }

// fail wraps err in ErrBackendUnavailable and records it, unless the
// caller's own context ended (that says nothing about Redis).
func (r *Redis) fail(ctx context.Context, op string, err error) error {
	err = fmt.Errorf("redis %s: %w", op, err)
	if ctx.Err() == nil {
		r.health.Observe(err)
	}
	return fmt.Errorf("%w: %w", ErrBackendUnavailable, err)
}

func (r *Redis) skipped(op string) error {
	return fmt.Errorf("%w: redis %s: skipped while unhealthy (last error: %s)",
		ErrBackendUnavailable, op, r.health.Status().LastError)
}

func (r *Redis) windowKey(w Window, idx int64, scope string) string {
	b := make([]byte, 0, len(r.tag)+len(scope)+16)
	b = append(b, r.tag...)
	if w == WindowDay {
		b = append(b, "d:"...)
	} else {
		b = append(b, "m:"...)
	}
	b = strconv.AppendInt(b, idx, 10)
	b = append(b, ':')
	b = append(b, scope...)
	return string(b)
}

func (r *Redis) markerKey(id string) string { return r.tag + "res:" + id }

// lastEnd is when the last window of checks ends.
func lastEnd(checks []check) time.Time {
	var end time.Time
	for _, ch := range checks {
		if e := windowEnd(ch.window, ch.index); e.After(end) {
			end = e
		}
	}
	return end
}

// ttlMillis is the TTL, in ms, of a key whose window ends at end.
func ttlMillis(end, now time.Time) int64 {
	return max(end.Sub(now)+ttlGrace, time.Millisecond).Milliseconds()
}

package breaker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the shared [Store]: every instance pointed at one Redis server
// sees the same state, probes are single-flight across all of them, and
// each call is one atomic Lua script (EVALSHA; one round trip).
//
// Layout, with P the provider and K a key name ("openai:gpt-4o", or
// "openai" for the provider-wide key), all under one hash tag per provider
// so every script's keys share a Redis Cluster slot:
//
//	<prefix>{P}:h:K   hash: ou (open until), pu/pt (probe lease until and
//	                  token), hs (half-open announced), g1/gl (first/last
//	                  global rate limit), ex (logical expiry), sq (sequence)
//	<prefix>{P}:f:K   sorted set of failure instants (score = unix ms)
//	<prefix>{P}:idx   sorted set of the provider's live keys (score = ex),
//	                  read by Stats instead of SCAN
//
// All instants are unix milliseconds of the callers' clock. A record whose
// ex has passed is treated as absent, exactly like [Memory]; Redis TTLs are
// set to ex plus a second and only reclaim space, so a key never decays
// from open to closed before its state lapses (seed §12.8). The Redis
// client's own timeouts bound every call; it is safe for concurrent use.
type Redis struct {
	c      redis.UniversalClient
	prefix string
	p      Policy
}

var _ Store = (*Redis)(nil)

// NewRedis returns a store on c with keys under prefix (default
// "llmproxy:cb:" when empty). It does not own c.
func NewRedis(c redis.UniversalClient, prefix string, p Policy) *Redis {
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	return &Redis{c: c, prefix: prefix, p: p}
}

// luaCommon holds helpers shared by the scripts. Class and reason numbers
// are the Go constants' values (checked by TestLuaConstants). slack is how
// long after a record's logical expiry Redis reclaims it, in milliseconds.
const luaCommon = `
local slack = 1000
local function load(h, now)
  local v = redis.call('HMGET', h, 'ou', 'pu', 'pt', 'hs', 'g1', 'gl', 'ex', 'sq')
  if not v[7] or tonumber(v[7]) <= now then
    return {ou = 0, pu = 0, pt = '', hs = 0, g1 = 0, gl = 0, ex = 0, sq = 0, live = false}
  end
  return {ou = tonumber(v[1]) or 0, pu = tonumber(v[2]) or 0, pt = v[3] or '', hs = tonumber(v[4]) or 0,
    g1 = tonumber(v[5]) or 0, gl = tonumber(v[6]) or 0, ex = tonumber(v[7]), sq = tonumber(v[8]) or 0, live = true}
end
local function state(r, now)
  if r.ou == 0 then return 0 end
  if now < r.ou then return 2 end
  return 1
end
local function touchidx(idx, name, ex, ttl)
  redis.call('ZADD', idx, ex, name)
  if redis.call('PTTL', idx) < ttl then redis.call('PEXPIRE', idx, ttl) end
end
`

// admitScript: KEYS model hash, model set, provider hash, provider set,
// index; ARGV now, lease ms, token, model name, provider name.
// Reply: reject, reason, target, model state, provider state, cooldown
// until, tracked, announce.
var admitScript = redis.NewScript(luaCommon + `
local now = tonumber(ARGV[1])
local k = load(KEYS[1], now)
local p = load(KEYS[3], now)
local ks, ps = state(k, now), state(p, now)
local tracked = 0
if k.g1 > 0 then tracked = 1 end
if ps == 2 then return {1, 7, 0, ks, ps, p.ou, tracked, 0} end
if ks == 2 then return {1, 6, 0, ks, ps, k.ou, tracked, 0} end
local h, z, r, name, target
if ps == 1 then
  h, z, r, name, target = KEYS[3], KEYS[4], p, ARGV[5], 2
elseif ks == 1 then
  h, z, r, name, target = KEYS[1], KEYS[2], k, ARGV[4], 1
else
  return {0, 0, 0, ks, ps, 0, tracked, 0}
end
if r.pu > now then return {1, 8, 0, ks, ps, r.ou, tracked, 0} end
local pu = now + tonumber(ARGV[2])
local announce = 0
if r.hs == 0 then announce = 1 end
redis.call('HSET', h, 'pu', pu, 'pt', ARGV[3], 'hs', 1)
if pu > r.ex then
  local ttl = pu - now + slack
  redis.call('HSET', h, 'ex', pu)
  redis.call('PEXPIRE', h, ttl)
  redis.call('PEXPIRE', z, ttl)
  touchidx(KEYS[5], name, pu, ttl)
end
return {0, 0, target, ks, ps, r.ou, tracked, announce}
`)

// recordScript: KEYS as admitScript; ARGV now, window, cooldown,
// threshold, escalation, retention, max entries (all ms or counts),
// terminal (0/1), final class, attempt failures, probe target, token,
// model name, provider name.
// Reply: model from, to, reason; provider from, to, reason; escalated;
// probe outcome; model failures.
var recordScript = redis.NewScript(luaCommon + `
local now = tonumber(ARGV[1])
local window, cd, threshold = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local esc, retention, cap = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local terminal, final, add = ARGV[8] == '1', tonumber(ARGV[9]), tonumber(ARGV[10])
local target, token = tonumber(ARGV[11]), ARGV[12]
local kh, kz, ph, pz, idx = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local function prune(z)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now - window)
  local c = redis.call('ZCARD', z)
  if c > cap then
    redis.call('ZREMRANGEBYRANK', z, 0, c - cap - 1)
    c = cap
  end
  return c
end
local function save(h, z, name, r)
  local ex = 0
  local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
  if last[2] then ex = tonumber(last[2]) + window end
  if r.ou > 0 then ex = math.max(ex, r.ou + retention) end
  if r.g1 > 0 then ex = math.max(ex, r.gl + esc) end
  ex = math.max(ex, r.pu)
  if ex <= now then
    redis.call('DEL', h, z)
    redis.call('ZREM', idx, name)
    return
  end
  redis.call('HSET', h, 'ou', r.ou, 'pu', r.pu, 'pt', r.pt, 'hs', r.hs, 'g1', r.g1, 'gl', r.gl, 'ex', ex, 'sq', r.sq)
  local ttl = ex - now + slack
  redis.call('PEXPIRE', h, ttl)
  redis.call('PEXPIRE', z, ttl)
  touchidx(idx, name, ex, ttl)
end
local function reopen(r)
  r.ou, r.pu, r.pt, r.hs = now + cd, 0, '', 0
end
local function close(r, z)
  r.ou, r.pu, r.pt, r.hs, r.g1, r.gl = 0, 0, '', 0, 0, 0
  redis.call('DEL', z)
end

local k = load(kh, now)
if not k.live then redis.call('DEL', kh, kz) end
local p = load(ph, now)
if not p.live then redis.call('DEL', ph, pz) end
local kfrom, pfrom = state(k, now), state(p, now)
local kto, kreason, pto, preason, escalated, probe = kfrom, 0, pfrom, 0, 0, 0

if terminal then
  if final == 0 then
    k.g1, k.gl = 0, 0
  elseif final == 4 then
    if k.g1 == 0 or now - k.gl >= esc then k.g1 = now end
    k.gl = now
    if now - k.g1 >= esc then
      escalated = 1
      add = add + 1
    end
  elseif final == 6 then
    add = add + 1
  end
end
for i = 1, add do
  k.sq = k.sq + 1
  redis.call('ZADD', kz, now, ARGV[1] .. ':' .. k.sq)
end
local count = prune(kz)
local failed = terminal and (final == 6 or escalated == 1)
if target == 1 and token ~= '' and k.pt == token and terminal then
  if final == 0 then
    close(k, kz)
    count, kto, kreason, probe = 0, 0, 4, 1
  elseif failed then
    reopen(k)
    kto, kreason, probe = 2, 2, 2
  else
    k.pu, k.pt, probe = 0, '', 3
  end
elseif kfrom == 0 and count >= threshold then
  reopen(k)
  kto, kreason = 2, 1
end
save(kh, kz, ARGV[13], k)

local pprobe = target == 2 and token ~= '' and p.pt == token
local touched = true
if terminal and final == 5 then
  p.sq = p.sq + 1
  redis.call('ZADD', pz, now, ARGV[1] .. ':' .. p.sq)
  reopen(p)
  pto, preason = 2, 3
  if pprobe then probe = 2 end
elseif pprobe and terminal and final == 0 then
  close(p, pz)
  pto, preason, probe = 0, 4, 1
elseif pprobe and terminal then
  p.pu, p.pt, probe = 0, '', 3
else
  touched = false
end
if touched then
  prune(pz)
  save(ph, pz, ARGV[14], p)
end
return {kfrom, kto, kreason, pfrom, pto, preason, escalated, probe, count}
`)

type redisKeys struct {
	names [5]string
	model string
	prov  string
}

func (r *Redis) keys(k Key) redisKeys {
	tag := r.prefix + "{" + k.Provider + "}:"
	model, prov := k.String(), k.Provider
	return redisKeys{
		names: [5]string{tag + "h:" + model, tag + "f:" + model, tag + "h:" + prov, tag + "f:" + prov, tag + "idx"},
		model: model,
		prov:  prov,
	}
}

// Load preloads the scripts so the first calls are single EVALSHAs.
func (r *Redis) Load(ctx context.Context) error {
	for _, s := range []*redis.Script{admitScript, recordScript} {
		if err := s.Load(ctx, r.c).Err(); err != nil {
			return fmt.Errorf("load breaker script: %w", err)
		}
	}
	return nil
}

// Ping checks that the server answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// Admit implements [Store.Admit] with one EVALSHA.
func (r *Redis) Admit(ctx context.Context, key Key, token string, now time.Time) (Decision, error) {
	ks := r.keys(key)
	v, err := admitScript.Run(ctx, r.c, ks.names[:], ms(now), r.p.ProbeLease.Milliseconds(), token, ks.model, ks.prov).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("breaker admit %s: %w", ks.model, err)
	}
	if len(v) != 8 {
		return Decision{}, fmt.Errorf("breaker admit %s: unexpected reply length %d", ks.model, len(v))
	}
	return Decision{
		Reject:        v[0] == 1,
		Reason:        Reason(v[1]),
		Probe:         Target(v[2]),
		ModelState:    State(v[3]),
		ProviderState: State(v[4]),
		CooldownUntil: fromMS(v[5]),
		Tracked:       v[6] == 1,
		Announce:      v[7] == 1,
	}, nil
}

// Peek implements [Store.Peek] with one pipelined read of the two hashes
// (no script, no write): a record whose ex has passed is absent, as the
// scripts' load treats it.
func (r *Redis) Peek(ctx context.Context, key Key, now time.Time) (Decision, error) {
	ks := r.keys(key)
	n := ms(now)
	pipe := r.c.Pipeline()
	km := pipe.HMGet(ctx, ks.names[0], "ou", "pu", "g1", "ex")
	pm := pipe.HMGet(ctx, ks.names[2], "ou", "pu", "g1", "ex")
	if _, err := pipe.Exec(ctx); err != nil {
		return Decision{}, fmt.Errorf("breaker peek %s: %w", ks.model, err)
	}
	rec := func(v []any) *record {
		if int64Of(v, 3) <= n {
			return nil
		}
		return &record{openUntil: int64Of(v, 0), probeUntil: int64Of(v, 1), glrFirst: int64Of(v, 2)}
	}
	d, _ := decide(rec(km.Val()), rec(pm.Val()), n)
	return d, nil
}

// Record implements [Store.Record] with one EVALSHA.
func (r *Redis) Record(ctx context.Context, key Key, ev Event, now time.Time) (Result, error) {
	ks := r.keys(key)
	terminal := 0
	if ev.Terminal {
		terminal = 1
	}
	v, err := recordScript.Run(ctx, r.c, ks.names[:],
		ms(now), r.p.Window.Milliseconds(), r.p.Cooldown.Milliseconds(), r.p.Threshold,
		r.p.EscalationWindow.Milliseconds(), r.p.Retention.Milliseconds(), r.p.MaxWindowEntries,
		terminal, int(ev.Final), ev.AttemptFailures, int(ev.Probe), ev.Token, ks.model, ks.prov,
	).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("breaker record %s: %w", ks.model, err)
	}
	if len(v) != 9 {
		return Result{}, fmt.Errorf("breaker record %s: unexpected reply length %d", ks.model, len(v))
	}
	return Result{
		Model:     Change{From: State(v[0]), To: State(v[1]), Reason: Reason(v[2])},
		Provider:  Change{From: State(v[3]), To: State(v[4]), Reason: Reason(v[5])},
		Escalated: v[6] == 1,
		Probe:     ProbeOutcome(v[7]),
		Failures:  int(v[8]),
	}, nil
}

// maxStatsKeys bounds the keys Stats reads per provider.
const maxStatsKeys = 1000

// Stats implements [Store.Stats] from the provider's index in two round
// trips (index, then one pipeline over the live keys); no SCAN.
func (r *Redis) Stats(ctx context.Context, provider string, now time.Time) (ProviderStats, error) {
	n := ms(now)
	idx := r.prefix + "{" + provider + "}:idx"
	names, err := r.c.ZRangeByScore(ctx, idx, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(n, 10), Max: "+inf", Count: maxStatsKeys,
	}).Result()
	if err != nil {
		return ProviderStats{}, fmt.Errorf("breaker stats %s: %w", provider, err)
	}
	if len(names) == 0 {
		return ProviderStats{}, nil
	}
	tag := r.prefix + "{" + provider + "}:"
	cutoff := "(" + strconv.FormatInt(n-r.p.Window.Milliseconds(), 10)
	pipe := r.c.Pipeline()
	hs := make([]*redis.SliceCmd, len(names))
	zs := make([]*redis.IntCmd, len(names))
	for i, name := range names {
		hs[i] = pipe.HMGet(ctx, tag+"h:"+name, "ou", "ex")
		zs[i] = pipe.ZCount(ctx, tag+"f:"+name, cutoff, "+inf")
	}
	pipe.ZRemRangeByScore(ctx, idx, "-inf", strconv.FormatInt(n, 10))
	if _, err := pipe.Exec(ctx); err != nil {
		return ProviderStats{}, fmt.Errorf("breaker stats %s: %w", provider, err)
	}
	var st ProviderStats
	for i := range names {
		v := hs[i].Val()
		ex := int64Of(v, 1)
		if ex <= n {
			continue
		}
		rec := record{openUntil: int64Of(v, 0)}
		s := rec.state(n)
		st.State = max(st.State, s)
		st.Failures += int(min(zs[i].Val(), int64(r.p.MaxWindowEntries)))
		if s == StateOpen && (st.CooldownUntil.IsZero() || rec.openUntil < ms(st.CooldownUntil)) {
			st.CooldownUntil = fromMS(rec.openUntil)
		}
	}
	return st, nil
}

func int64Of(v []any, i int) int64 {
	if i >= len(v) {
		return 0
	}
	s, ok := v[i].(string)
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

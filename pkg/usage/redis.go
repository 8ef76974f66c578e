package usage

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// ledgerMetrics are the per-name counters of a dimension, in the order of
// their keys in a period's key list. The first is the cost hash, whose key
// has no suffix.
var ledgerMetrics = [...]string{"cost", "in", "out", "req", "unk"}

const (
	metricReq     = 3                                   // index of "req" in ledgerMetrics
	keysPerPeriod = 1 + int(numDims)*len(ledgerMetrics) // total, then numDims dimensions x 5 metrics
)

// recordScript adds one request to the day and the month.
//
// KEYS holds two periods (day, month) of keysPerPeriod keys each: the total
// hash (fields cost, in, out, req, unk), then for each dimension (user, key,
// model, team) the hashes cost, in, out, req and unk, each keyed by name.
// ARGV: 1 cost in nano-dollars, 2 input tokens, 3 output tokens, 4
// unknown-cost flag (0 or 1), 5 names cap, 6 day TTL ms, 7 month TTL ms,
// then one name per dimension from 8 on ("" = no row).
//
// A new name joins a dimension only while its req hash holds fewer than the
// cap; beyond, it is counted as "(other)". Zero increments are skipped, so
// hashes stay sparse.
var recordScript = redis.NewScript(`
local vals = {ARGV[1], ARGV[2], ARGV[3], '1', ARGV[4]}
local fields = {'cost', 'in', 'out', 'req', 'unk'}
local maxNames = tonumber(ARGV[5])
local dims = #ARGV - 7
local per = 1 + dims * 5
for p = 0, 1 do
  local base = p * per
  local ttl = ARGV[6 + p]
  local total = KEYS[base + 1]
  for m = 1, 5 do
    if vals[m] ~= '0' then redis.call('HINCRBY', total, fields[m], vals[m]) end
  end
  redis.call('PEXPIRE', total, ttl)
  for d = 0, dims - 1 do
    local name = ARGV[8 + d]
    if name ~= '' then
      local k = base + 2 + d * 5
      if redis.call('HEXISTS', KEYS[k + 3], name) == 0 and redis.call('HLEN', KEYS[k + 3]) >= maxNames then
        name = '(other)'
      end
      for m = 1, 5 do
        if vals[m] ~= '0' then
          redis.call('HINCRBY', KEYS[k + m - 1], name, vals[m])
          redis.call('PEXPIRE', KEYS[k + m - 1], ttl)
        end
      end
    end
  end
end
return 1
`)

// RedisLedger is the shared ledger: every instance using the same Redis and
// [Config.KeyPrefix] adds to the same totals, exactly (integer HINCRBY,
// nano-dollars). Each Record is one EVALSHA; each Report is one pipeline
// of HGETALLs.
//
// Key layout, with P the key prefix without its trailing colon and <per>
// "d:<day index>" or "mo:<month index>":
//
//	{P}:usage:<per>:total          hash {cost, in, out, req, unk}
//	{P}:usage:<per>:<dim>          hash name -> cost in nano-dollars
//	{P}:usage:<per>:<dim>:in       hash name -> input tokens
//	{P}:usage:<per>:<dim>:out      hash name -> output tokens
//	{P}:usage:<per>:<dim>:req      hash name -> requests
//	{P}:usage:<per>:<dim>:unk      hash name -> requests of unknown cost
//
// with <dim> one of user, key, model. Each hash holds at most
// [Config.MaxUsageNames] names plus [OtherName], and expires
// [UsageRetention] after its period ends.
//
// RedisLedger is safe for concurrent use.
type RedisLedger struct {
	cfg  Config
	conn *redisConn
	keys atomic.Pointer[ledgerKeys]
}

// ledgerKeys caches the key list of one (day, month) pair.
type ledgerKeys struct {
	day, month int64
	keys       []string
}

var _ Ledger = (*RedisLedger)(nil)

// NewRedisLedger connects to the Redis of cfg (defaults applied; call
// cfg.Validate first) and pings it. An unreachable server is not an error:
// the ledger starts unhealthy and recovers when the server answers.
func NewRedisLedger(ctx context.Context, cfg Config, hooks Hooks) (*RedisLedger, error) {
	cfg.ApplyDefaults()
	conn, err := newRedisConn(cfg, hooks)
	if err != nil {
		return nil, err
	}
	l := &RedisLedger{cfg: cfg, conn: conn}
	l.Status(ctx)
	return l, nil
}

// Record implements [Ledger.Record].
func (l *RedisLedger) Record(ctx context.Context, u Usage, now time.Time) error {
	if !l.conn.health.Admit() {
		return l.conn.skipped("record")
	}
	u = u.normalize()
	names := u.names()
	day, month := quota.Day.Index(now), quota.Month.Index(now)
	unknown := 0
	if !u.CostKnown {
		unknown = 1
	}
	err := recordScript.Run(ctx, l.conn.client, l.keysFor(day, month),
		u.CostNanos, u.InputTokens, u.OutputTokens, unknown, l.cfg.MaxUsageNames,
		ttlMillis(quota.Day.End(day).Add(UsageRetention), now),
		ttlMillis(quota.Month.End(month).Add(UsageRetention), now),
		names[dimUser], names[dimKey], names[dimModel], names[dimTeam]).Err()
	if err != nil {
		return l.conn.fail(ctx, "record", err)
	}
	l.conn.health.Observe(nil)
	return nil
}

// keysFor returns the script's key list for day and month, built once per
// period pair.
func (l *RedisLedger) keysFor(day, month int64) []string {
	if k := l.keys.Load(); k != nil && k.day == day && k.month == month {
		return k.keys
	}
	keys := make([]string, 0, 2*keysPerPeriod)
	keys = l.appendPeriodKeys(keys, quota.Day, day)
	keys = l.appendPeriodKeys(keys, quota.Month, month)
	l.keys.Store(&ledgerKeys{day: day, month: month, keys: keys})
	return keys
}

func (l *RedisLedger) appendPeriodKeys(dst []string, w quota.Window, idx int64) []string {
	base := l.conn.tag + "usage:d:"
	if w == quota.Month {
		base = l.conn.tag + "usage:mo:"
	}
	base += strconv.FormatInt(idx, 10) + ":"
	dst = append(dst, base+"total")
	for _, dim := range dimNames {
		for i, m := range ledgerMetrics {
			if i == 0 {
				dst = append(dst, base+dim)
			} else {
				dst = append(dst, base+dim+":"+m)
			}
		}
	}
	return dst
}

// Report implements [Ledger.Report].
func (l *RedisLedger) Report(ctx context.Context, now time.Time) (Report, error) {
	rep := Report{GeneratedAt: now.UTC(), Backend: BackendRedis}
	if !l.conn.health.Admit() {
		return rep, l.conn.skipped("report")
	}
	day, month := quota.Day.Index(now), quota.Month.Index(now)
	keys := l.keysFor(day, month)
	pipe := l.conn.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HGetAll(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return rep, l.conn.fail(ctx, "report", err)
	}
	l.conn.health.Observe(nil)
	for p, w := range []quota.Window{quota.Day, quota.Month} {
		dst := &rep.Today
		idx := day
		if w == quota.Month {
			dst, idx = &rep.Month, month
		}
		*dst = newPeriod(w, idx)
		pc := cmds[p*keysPerPeriod : (p+1)*keysPerPeriod]
		total, err := parseTotals(pc[0].Val())
		if err != nil {
			return rep, fmt.Errorf("redis report: %w", err)
		}
		dst.Total = total
		for d := range numDims {
			at := 1 + int(d)*len(ledgerMetrics)
			rows, err := parseRows(pc[at : at+len(ledgerMetrics)])
			if err != nil {
				return rep, fmt.Errorf("redis report: %w", err)
			}
			dst.setBreakdown(d, breakdown(rows, d, l.cfg.ReportRows))
		}
	}
	return rep, nil
}

// parseTotals reads a total hash.
func parseTotals(h map[string]string) (Totals, error) {
	var t Totals
	for i, dst := range []*int64{&t.CostNanos, &t.InputTokens, &t.OutputTokens, &t.Requests, &t.UnknownCostRequests} {
		v, ok := h[ledgerMetrics[i]]
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return Totals{}, fmt.Errorf("total field %s: %w", ledgerMetrics[i], err)
		}
		*dst = n
	}
	t.CostUSD = USD(t.CostNanos)
	return t, nil
}

// parseRows merges the five metric hashes of a dimension into rows, one per
// name of the req hash.
func parseRows(cmds []*redis.MapStringStringCmd) ([]Row, error) {
	reqs := cmds[metricReq].Val()
	rows := make([]Row, 0, len(reqs))
	for name := range reqs {
		r := Row{Name: name}
		for i, dst := range []*int64{&r.CostNanos, &r.InputTokens, &r.OutputTokens, &r.Requests, &r.UnknownCostRequests} {
			v, ok := cmds[i].Val()[name]
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s of %q: %w", ledgerMetrics[i], name, err)
			}
			*dst = n
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// Status implements [Ledger.Status]. It pings Redis with ctx.
func (l *RedisLedger) Status(ctx context.Context) BackendStatus { return l.conn.status(ctx) }

// Close implements [Ledger.Close]: it closes the Redis client.
func (l *RedisLedger) Close() error { return l.conn.client.Close() }

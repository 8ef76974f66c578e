package quota

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/backendhealth"
)

// TTLGrace keeps a window's key a little past the window's end, so an
// instance whose clock lags slightly still finds the counters it charged.
// Keys are stamped with the window index, so the grace never lets counts
// leak into the next window.
const TTLGrace = 2 * time.Second

// RetryInterval is how often, while Redis is unhealthy, one call is let
// through to try it; the others fail at once with [ErrUnavailable].
// [Redis.Status] always tries.
const RetryInterval = time.Second

// reserveSource is the Lua of a reservation for metrics, their fields and
// optimistic flags written in: it checks every window of one slot and,
// only if all admit, charges them all (atomic: a script runs alone).
//
// KEYS[1] is the reservation's marker in this slot, KEYS[2..] the window
// hashes in plan order. ARGV: 1 marker TTL in ms, 2..M+1 the M amounts,
// then per window its TTL in ms and M limits.
//
// Returns {1} when admitted (also when the marker exists: a retried call is
// not charged twice), or {0, window, metric, used} for the first refusal.
func reserveSource(metrics []Metric) string {
	m := len(metrics)
	fields := make([]string, m)
	for j, mt := range metrics {
		fields[j] = luaString(mt.Field)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end\nfor i = 2, #KEYS do\n  local w = %d + (i - 2) * %d\n", m+2, m+1)
	used := func(j int) string { return fmt.Sprintf("v[%d]", j+1) }
	if m == 1 {
		fmt.Fprintf(&b, "  local v = redis.call('HGET', KEYS[i], %s)\n", fields[0])
		used = func(int) string { return "v" }
	} else {
		fmt.Fprintf(&b, "  local v = redis.call('HMGET', KEYS[i], %s)\n", strings.Join(fields, ", "))
	}
	for j, mt := range metrics {
		skip := "" // an optimistic metric is not checked while the window holds 0
		if mt.Optimistic {
			skip = " and u ~= 0"
		}
		fmt.Fprintf(&b, "  do local l, u = tonumber(ARGV[w + %d]), tonumber(%s) or 0\n", j+1, used(j))
		fmt.Fprintf(&b, "    if l > 0%s and (u >= l or u + tonumber(ARGV[%d]) > l) then return {0, i - 1, %d, u} end end\n", skip, j+2, j+1)
	}
	b.WriteString("end\nfor i = 2, #KEYS do\n")
	for j := range metrics {
		fmt.Fprintf(&b, "  redis.call('HINCRBY', KEYS[i], %s, ARGV[%d])\n", fields[j], j+2)
	}
	fmt.Fprintf(&b, "  redis.call('PEXPIRE', KEYS[i], ARGV[%d + (i - 2) * %d])\nend\nredis.call('SET', KEYS[1], '1', 'PX', ARGV[1])\nreturn {1}\n", m+2, m+1)
	return b.String()
}

// adjustSource is the Lua that applies an adjustment once per reservation
// and slot. KEYS[1] is the marker, KEYS[2..] the unrotated window hashes,
// ARGV the M deltas. Counters are clamped at 0 and expired hashes are not
// recreated. Returns 0 when the marker was already gone.
func adjustSource(metrics []Metric) string {
	var b, zero strings.Builder
	for j, mt := range metrics {
		f := luaString(mt.Field)
		fmt.Fprintf(&zero, "ARGV[%d] == '0' and ", j+1)
		fmt.Fprintf(&b, "    if ARGV[%d] ~= '0' and redis.call('HINCRBY', KEYS[i], %s, ARGV[%d]) < 0 then redis.call('HSET', KEYS[i], %s, 0) end\n", j+1, f, j+1, f)
	}
	return "if redis.call('DEL', KEYS[1]) == 0 then return 0 end\nif " + zero.String() + "true then return 1 end\n" +
		"for i = 2, #KEYS do\n  if redis.call('EXISTS', KEYS[i]) == 1 then\n" + b.String() + "  end\nend\nreturn 1\n"
}

// luaString quotes s as a Lua string literal, every byte but letters,
// digits and '_' as a decimal escape.
func luaString(s string) string {
	b := []byte{'\''}
	for _, c := range []byte(s) {
		if c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
			b = append(b, c)
		} else {
			b = fmt.Appendf(b, "\\%03d", c)
		}
	}
	return string(append(b, '\''))
}

// RedisOptions configure [NewRedis].
type RedisOptions struct {
	// Prefix starts every key, like "llmproxy:rl:". It must not contain
	// '{' or '}'.
	Prefix string
	// OnStateChange is called once per health transition. May be nil.
	OnStateChange func(Status)
	// Now is the clock of background retries (adjustments apply to the
	// windows still current when they finally land). Default time.Now.
	Now func() time.Time
}

// MaxPendingAdjustments bounds the adjustments (settlements, releases)
// queued for retry while Redis is unreachable; beyond it the oldest is
// dropped and counted, its estimate staying charged until its window ends.
const MaxPendingAdjustments = 10_000

type pendingAdjust struct {
	res    Reservation
	deltas []int64
}

// Redis is the shared store: every instance using the same Redis and
// prefix enforces one set of counters, exactly. Key layout, with P the
// prefix and S the scope:
//
//	P{S}:<m|d|mo>:<window index>   hash {field: used} per metric
//	P{S}:res:<reservation id>      marker of an unadjusted reservation
//
// The scope is the hash tag, so all windows of a scope share a slot. On a
// cluster client, the checks of a reservation are grouped by slot (in slot
// order), each group is one script call, the groups run in parallel, and
// when one refuses or fails the groups already charged are released. On a
// single server or Sentinel, a reservation is one script call. Every key
// expires [TTLGrace] after its window ends. Redis is safe for concurrent
// use.
type Redis struct {
	client  redis.UniversalClient
	cluster bool
	prefix  string
	metrics []Metric
	names   []string // the metrics' field names
	reserve *redis.Script
	adjust  *redis.Script
	whole   [][]group // off a cluster: whole[n] is the one group of n checks
	health  *backendhealth.Tracker
	now     func() time.Time

	mu       sync.Mutex
	queue    []pendingAdjust // failed adjustments, oldest first
	dropped  int64
	stop     chan struct{}
	done     chan struct{}
	closed   sync.Once
	retrying sync.Mutex
}

var _ Store = (*Redis)(nil)

// NewRedis returns a store on client (owned: Close closes it) counting
// metrics. A *redis.ClusterClient (or a wrapper whose Unwrap returns one)
// gets the per-slot protocol. It does not contact Redis.
func NewRedis(client redis.UniversalClient, metrics []Metric, o RedisOptions) *Redis {
	inner := client
	if w, ok := client.(interface{ Unwrap() redis.UniversalClient }); ok {
		inner = w.Unwrap()
	}
	_, cluster := inner.(*redis.ClusterClient)
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Redis{client: client, cluster: cluster, prefix: o.Prefix, metrics: metrics, now: o.Now,
		health: backendhealth.New("redis", o.OnStateChange, RetryInterval),
		stop:   make(chan struct{}), done: make(chan struct{})}
	for _, mt := range metrics {
		r.names = append(r.names, mt.Field)
	}
	r.reserve, r.adjust = redis.NewScript(reserveSource(metrics)), redis.NewScript(adjustSource(metrics))
	members := make([]int, wholeGroups)
	r.whole = make([][]group, wholeGroups)
	for n := range wholeGroups {
		members[n] = n
		r.whole[n] = []group{{members: members[:n:n]}}
	}
	go r.retryLoop()
	return r
}

// retryLoop retries queued adjustments once per [RetryInterval] until
// Close.
func (r *Redis) retryLoop() {
	defer close(r.done)
	t := time.NewTicker(RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			if r.Pending() > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r.RetryPending(ctx)
				cancel()
			}
		}
	}
}

// RetryPending applies queued adjustments, oldest first, until the queue
// is empty or Redis fails again, and returns how many are left. Each is
// idempotent by reservation id: a retry of one that had landed does
// nothing. The background loop calls it every [RetryInterval]; tests call
// it directly.
func (r *Redis) RetryPending(ctx context.Context) int {
	r.retrying.Lock() // one retry pass at a time; each item leaves the queue only once it landed
	defer r.retrying.Unlock()
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.mu.Unlock()
			return 0
		}
		p := r.queue[0]
		r.mu.Unlock()
		if err := r.apply(ctx, p.res, p.deltas, r.now()); err != nil {
			return r.Pending()
		}
		r.mu.Lock()
		if len(r.queue) > 0 && r.queue[0].res.ID == p.res.ID {
			r.queue = r.queue[1:]
		}
		r.mu.Unlock()
	}
}

// Pending is the number of adjustments waiting for a retry.
func (r *Redis) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

func (r *Redis) enqueue(res Reservation, deltas []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) >= MaxPendingAdjustments {
		r.queue = r.queue[1:]
		r.dropped++
	}
	r.queue = append(r.queue, pendingAdjust{res: res, deltas: append([]int64(nil), deltas...)})
}

// wholeGroups bounds the check counts whose single group (off a cluster)
// is built once in [NewRedis]; a larger reservation builds its own.
const wholeGroups = 32

// group is the checks (or charges) of a reservation that live in one slot.
type group struct {
	slot    int
	members []int // indexes into the checks, in plan order
}

// groups splits n scopes into slot groups, in slot order; off a cluster,
// everything is one group (shared, read-only: no allocation).
func (r *Redis) groups(n int, scope func(int) string) []group {
	if !r.cluster && n < len(r.whole) {
		return r.whole[n]
	}
	var gs []group
	for i := range n {
		s := 0
		if r.cluster {
			s = Slot(r.windowKey(scope(i), Minute, 0))
		}
		k := slices.IndexFunc(gs, func(g group) bool { return g.slot == s })
		if k < 0 {
			gs = append(gs, group{slot: s})
			k = len(gs) - 1
		}
		gs[k].members = append(gs[k].members, i)
	}
	slices.SortFunc(gs, func(a, b group) int { return a.slot - b.slot })
	return gs
}

// Reserve implements [Store.Reserve].
func (r *Redis) Reserve(ctx context.Context, checks []Check, amounts []int64, now time.Time) (Result, error) {
	if len(checks) == 0 {
		return Result{Allowed: true}, nil
	}
	if !r.health.Admit() {
		return Result{}, r.skipped("reserve")
	}
	res := Reservation{ID: newID(), Charges: make([]Charge, len(checks))}
	for i, c := range checks {
		res.Charges[i] = c.charge()
	}
	gs := r.groups(len(checks), func(i int) string { return checks[i].Scope })
	outs := make([]groupOutcome, len(gs))
	r.each(len(gs), func(g int) { outs[g] = r.reserveGroup(ctx, res.ID, checks, gs[g].members, amounts, now) })

	var errs []error
	refused := -1
	for g, o := range outs {
		switch {
		case o.err != nil:
			errs = append(errs, o.err)
		case !o.allowed && (refused < 0 || o.result.Check < outs[refused].result.Check):
			refused = g
		}
	}
	if len(errs) > 0 || refused >= 0 {
		// All or nothing: give back what the other slots took.
		neg := make([]int64, len(amounts))
		for j, a := range amounts {
			neg[j] = -a
		}
		lost := false
		r.each(len(gs), func(g int) {
			if outs[g].err == nil && outs[g].allowed && r.adjustGroup(ctx, res, gs[g].members, neg, now) != nil {
				lost = true
			}
		})
		// A slot that answered with an error may still have run its
		// script (the reply was lost, or the call timed out after Redis
		// took it): its charge is released in the background too. Slots
		// never charged, or already released, have no marker and ignore
		// the release.
		if lost || len(errs) > 0 {
			r.enqueue(res, neg)
		}
	}
	if len(errs) > 0 {
		return Result{}, r.fail(ctx, "reserve", errors.Join(errs...))
	}
	r.health.Observe(nil)
	if refused >= 0 {
		return outs[refused].result, nil
	}
	return Result{Allowed: true, Reservation: res}, nil
}

type groupOutcome struct {
	allowed bool
	result  Result
	err     error
}

// each runs f(0..n-1), in parallel when n > 1.
func (r *Redis) each(n int, f func(int)) {
	if n == 1 {
		f(0)
		return
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

func (r *Redis) reserveGroup(ctx context.Context, id string, checks []Check, members []int, amounts []int64, now time.Time) groupOutcome {
	m := len(r.metrics)
	keys := make([]string, 0, len(members)+1)
	keys = append(keys, r.markerKey(checks[members[0]].Scope, id))
	args := make([]any, 0, 1+m+len(members)*(m+1))
	args = append(args, 0) // the marker's TTL, set below
	for _, a := range amounts {
		args = append(args, a)
	}
	var last time.Time
	for _, i := range members {
		ch := checks[i]
		keys = append(keys, r.windowKey(ch.Scope, ch.Window, ch.Index))
		end := ch.Window.End(ch.Index)
		if end.After(last) {
			last = end
		}
		args = append(args, ttlMillis(end, now))
		for _, l := range ch.Limits {
			args = append(args, l)
		}
	}
	args[0] = ttlMillis(last, now)
	out, err := r.run(ctx, r.reserve, keys, args).Int64Slice()
	if err != nil {
		return groupOutcome{err: err}
	}
	if len(out) == 4 && out[0] == 0 {
		w, j := int(out[1])-1, int(out[2])-1
		if w < 0 || w >= len(members) || j < 0 || j >= m {
			return groupOutcome{err: fmt.Errorf("script returned window %d metric %d", w+1, j+1)}
		}
		i := members[w]
		return groupOutcome{result: Result{Check: i, Index: checks[i].Index, Metric: j, Limit: checks[i].Limits[j], Used: out[3]}}
	}
	if len(out) != 1 || out[0] != 1 {
		return groupOutcome{err: fmt.Errorf("unexpected script reply %v", out)}
	}
	return groupOutcome{allowed: true}
}

// Adjust implements [Store.Adjust]. Each slot's part is applied once; when
// some slots fail, the others stay applied and a retry of the whole call
// applies only the missing ones. A failed adjustment is queued and retried
// in the background (see [Redis.RetryPending]); the error says so.
func (r *Redis) Adjust(ctx context.Context, res Reservation, deltas []int64, now time.Time) error {
	if !slices.ContainsFunc(res.Charges, func(c Charge) bool { return c.Current(now) }) {
		return nil // nothing left to adjust; the markers expire with the windows
	}
	var err error
	if !r.health.Admit() {
		err = r.skipped("adjust")
	} else {
		err = r.apply(ctx, res, deltas, now)
	}
	if err != nil {
		r.enqueue(res, deltas)
		return fmt.Errorf("%w (queued for retry)", err)
	}
	return nil
}

// apply adjusts every slot of res once.
func (r *Redis) apply(ctx context.Context, res Reservation, deltas []int64, now time.Time) error {
	gs := r.groups(len(res.Charges), func(i int) string { return res.Charges[i].Scope })
	errs := make([]error, len(gs))
	r.each(len(gs), func(g int) { errs[g] = r.adjustGroup(ctx, res, gs[g].members, deltas, now) })
	if err := errors.Join(errs...); err != nil {
		return r.fail(ctx, "adjust", err)
	}
	r.health.Observe(nil)
	return nil
}

func (r *Redis) adjustGroup(ctx context.Context, res Reservation, members []int, deltas []int64, now time.Time) error {
	keys := make([]string, 0, len(members)+1)
	keys = append(keys, r.markerKey(res.Charges[members[0]].Scope, res.ID))
	for _, i := range members {
		if c := res.Charges[i]; c.Current(now) {
			keys = append(keys, r.windowKey(c.Scope, c.Window, c.Index))
		}
	}
	if len(keys) == 1 {
		return nil
	}
	args := make([]any, len(deltas))
	for j, d := range deltas {
		args[j] = d
	}
	return r.run(ctx, r.adjust, keys, args).Err()
}

// run runs s (EVALSHA, then EVAL when the server lacks the script), once
// more after a transport error that is not a timeout (a pooled connection
// the server closed on restart): both scripts are idempotent by their
// marker, so a lost reply is never charged twice.
func (r *Redis) run(ctx context.Context, s *redis.Script, keys []string, args []any) *redis.Cmd {
	cmd := s.Run(ctx, r.client, keys, args...)
	if err := cmd.Err(); err != nil && ctx.Err() == nil && retriable(err) {
		cmd = s.Run(ctx, r.client, keys, args...)
	}
	return cmd
}

// retriable reports whether err is a transport error other than a timeout.
func retriable(err error) bool {
	var re redis.Error
	var ne net.Error
	return !errors.As(err, &re) && !(errors.As(err, &ne) && ne.Timeout())
}

// Usage implements [Store.Usage]: one HMGET per check, pipelined (split by
// node on a cluster client). While Redis is unhealthy it fails at once
// like Reserve, except once per [RetryInterval].
func (r *Redis) Usage(ctx context.Context, checks []Check, _ time.Time) ([][]int64, error) {
	if len(checks) == 0 {
		return [][]int64{}, nil
	}
	if !r.health.Admit() {
		return nil, r.skipped("usage")
	}
	cmds := make([]*redis.SliceCmd, len(checks))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ch := range checks {
			cmds[i] = p.HMGet(ctx, r.windowKey(ch.Scope, ch.Window, ch.Index), r.names...)
		}
		return nil
	})
	out := make([][]int64, len(checks))
	for i, c := range cmds {
		out[i] = make([]int64, len(r.metrics))
		for j, v := range c.Val() {
			if s, ok := v.(string); ok && err == nil {
				out[i][j], err = strconv.ParseInt(s, 10, 64)
			}
		}
	}
	if err != nil {
		return nil, r.fail(ctx, "usage", err)
	}
	r.health.Observe(nil)
	return out, nil
}

// Status implements [Store.Status]. It pings Redis with ctx.
func (r *Redis) Status(ctx context.Context) Status {
	if err := r.client.Ping(ctx).Err(); err != nil {
		_ = r.fail(ctx, "ping", err)
	} else {
		r.health.Observe(nil)
	}
	st := r.health.Status()
	r.mu.Lock()
	st.PendingAdjustments, st.DroppedAdjustments = len(r.queue), r.dropped
	r.mu.Unlock()
	return st
}

// Close implements [Store.Close]: it stops the retry loop (adjustments
// still queued are lost, their estimates expiring with their windows) and
// closes the client. A second call does nothing.
func (r *Redis) Close() error {
	var err error
	r.closed.Do(func() {
		close(r.stop)
		<-r.done
		err = r.client.Close()
	})
	return err
}

// RetryNow lets the next call try Redis at once while unhealthy, as if the
// retry interval had passed.
func (r *Redis) RetryNow() { r.health.RetryNow() }

// fail wraps err in ErrUnavailable and records it, unless the caller's own
// context ended (that says nothing about Redis).
func (r *Redis) fail(ctx context.Context, op string, err error) error {
	err = fmt.Errorf("redis %s: %w", op, err)
	if ctx.Err() == nil {
		r.health.Observe(err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func (r *Redis) skipped(op string) error {
	return fmt.Errorf("%w: redis %s: skipped while unhealthy (last error: %s)",
		ErrUnavailable, op, r.health.Status().LastError)
}

// windowKey and markerKey build in a stack buffer: the key string is the
// only allocation.
func (r *Redis) windowKey(scope string, w Window, idx int64) string {
	var buf [128]byte
	b := append(append(append(append(buf[:0], r.prefix...), '{'), scope...), "}:"...)
	b = append(append(b, w.code()...), ':')
	return string(strconv.AppendInt(b, idx, 10))
}

func (r *Redis) markerKey(scope, id string) string {
	var buf [128]byte
	b := append(append(append(append(buf[:0], r.prefix...), '{'), scope...), "}:res:"...)
	return string(append(b, id...))
}

// ttlMillis is the TTL, in ms, of a key whose window ends at end.
func ttlMillis(end, now time.Time) int64 {
	return max(end.Sub(now)+TTLGrace, time.Millisecond).Milliseconds()
}

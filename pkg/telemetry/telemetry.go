package telemetry

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// MaxModels is the number of distinct model label values kept per process;
// later models are labelled "other".
const MaxModels = 200

// Metrics holds the gateway's request metrics. It is safe for concurrent
// use.
type Metrics struct {
	requests   *prometheus.CounterVec
	tokens     *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	ttfb       *prometheus.HistogramVec
	noUsage    *prometheus.CounterVec
	estimation *prometheus.HistogramVec
	costUSD    *prometheus.CounterVec
	noPrice    *prometheus.CounterVec
	// noPriceModel is noPrice by model, with the bounded model label.
	noPriceModel *prometheus.CounterVec
	genAI        *genAIMetrics
	// keyRequests and keyCost count gateway-key calls by team and key id
	// (bounded like the model label).
	keyRequests *prometheus.CounterVec
	keyCost     *prometheus.CounterVec
	// failovers counts calls served by another target of their chain.
	failovers *prometheus.CounterVec

	models   *labelSet
	keyNames *labelSet
}

// MaxKeyLabels is the number of distinct team/key label pairs kept per
// process on the gateway-key series; later ones are labelled "other".
const MaxKeyLabels = 1000

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_requests_total",
			Help: "Provider requests by provider, model, HTTP status class, outcome and stream flag.",
		}, []string{"provider", "model", "status_class", "outcome", "stream"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_tokens_total",
			Help: "Tokens reported by vendors, by provider, model and token type (input, output, cache_read, cache_write, reasoning).",
		}, []string{"provider", "model", "type"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "llm_proxy_request_duration_seconds",
			Help:    "Time from request headers to the end of the response, in seconds.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"provider", "outcome"}),
		ttfb: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "llm_proxy_time_to_first_byte_seconds",
			Help:    "Time from request headers to the first response body byte, in seconds.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60},
		}, []string{"provider", "stream"}),
		noUsage: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_usage_missing_total",
			Help: "Successful responses that carried no usage block, by provider.",
		}, []string{"provider"}),
		estimation: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "llm_proxy_estimation_ratio",
			Help:    "Estimated input tokens divided by the vendor's reported input tokens, by provider.",
			Buckets: []float64{0.25, 0.5, 0.75, 0.9, 1, 1.1, 1.25, 1.5, 2, 4},
		}, []string{"provider"}),
		costUSD: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_cost_usd_total",
			Help: "Cost of vendor usage in USD, by provider and priced model.",
		}, []string{"provider", "model"}),
		noPrice: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_cost_unknown_total",
			Help: "Requests with usage whose model has no price (cost unknown), by provider.",
		}, []string{"provider"}),
		noPriceModel: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_cost_unknown_model_total",
			Help: "Requests with usage whose model has no price (cost unknown), by provider and reported model (bounded: late or implausible names are \"other\").",
		}, []string{"provider", "model"}),
		keyRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_gateway_key_requests_total",
			Help: "Requests made with a gateway key, by team, key id (never the secret) and outcome. Team and key pairs beyond the first 1000 are \"other\".",
		}, []string{"team", "key_id", "outcome"}),
		keyCost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_gateway_key_cost_usd_total",
			Help: "Cost in USD of the calls made with a gateway key, by team and key id (bounded like llm_proxy_gateway_key_requests_total).",
		}, []string{"team", "key_id"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_failover_total",
			Help: "Calls served by another target of their failover chain (moved at admission, or retried on it before the first byte), one per call, by chain key (from, as written in the rules), serving target provider:model (to) and the condition that moved it (reason). Every label comes from the rules, so the series are bounded by them.",
		}, []string{"from", "to", "reason"}),
		models:   newLabelSet(MaxModels),
		keyNames: newLabelSet(MaxKeyLabels),
	}
	reg.MustRegister(m.requests, m.tokens, m.duration, m.ttfb, m.noUsage, m.estimation, m.costUSD, m.noPrice, m.noPriceModel,
		m.keyRequests, m.keyCost, m.failovers)
	m.genAI = newGenAIMetrics(reg)
	return m
}

// Observe implements [processor.Observer].
func (m *Metrics) Observe(r *processor.Record) {
	model := r.Usage.Model
	if model == "" {
		model = r.Info.Model
	}
	model = m.modelLabel(r.Provider, model)
	stream := strconv.FormatBool(r.Info.Stream)
	if fo := r.Failover; fo != nil {
		// The chain key, not the requested model: a pattern key matches
		// names the client chose.
		m.failovers.WithLabelValues(fo.Chain, r.Provider+":"+r.Info.Model, fo.Reason).Inc()
	}
	m.requests.WithLabelValues(r.Provider, model, statusClass(r.Status), string(r.Outcome), stream).Inc()
	m.duration.WithLabelValues(r.Provider, string(r.Outcome)).Observe(r.Duration.Seconds())
	m.genAI.observe(r, m.modelLabel)
	if r.Cost.Known {
		m.costUSD.WithLabelValues(r.Provider, m.modelLabel(r.Provider, r.Cost.Model)).Add(r.Cost.TotalUSD)
	} else if r.Usage.Found {
		m.noPrice.WithLabelValues(r.Provider).Inc()
		m.noPriceModel.WithLabelValues(r.Provider, model).Inc()
	}
	if r.TTFB > 0 {
		m.ttfb.WithLabelValues(r.Provider, stream).Observe(r.TTFB.Seconds())
	}
	if r.Identity.GatewayKey != nil {
		team, key := r.Identity.Team, "other"
		if m.keyNames.label(team, r.Identity.KeyID) != "other" {
			key = r.Identity.KeyID
		} else {
			team = "other"
		}
		m.keyRequests.WithLabelValues(team, key, string(r.Outcome)).Inc()
		if r.Cost.Known {
			m.keyCost.WithLabelValues(team, key).Add(r.Cost.TotalUSD)
		}
	}
	u := r.Usage
	if u.Found {
		for _, t := range [...]struct {
			name string
			n    int64
		}{
			{"input", u.InputTokens}, {"output", u.OutputTokens}, {"cache_read", u.CacheReadTokens},
			{"cache_write", u.CacheWriteTokens}, {"reasoning", u.ReasoningTokens},
		} {
			if t.n > 0 {
				m.tokens.WithLabelValues(r.Provider, model, t.name).Add(float64(t.n))
			}
		}
		if u.InputTokens > 0 && r.EstimateSource == "text" {
			m.estimation.WithLabelValues(r.Provider).Observe(float64(r.EstimatedInputTokens) / float64(u.InputTokens))
		}
	} else if r.Outcome == processor.OutcomeCompleted && r.Status >= 200 && r.Status < 300 {
		m.noUsage.WithLabelValues(r.Provider).Inc()
	}
}

// modelLabel bounds the model label's cardinality.
func (m *Metrics) modelLabel(provider, model string) string { return m.models.label(provider, model) }

// labelSet hands out model label values: the first max plausible names
// (per process) keep their name, later or implausible ones become "other",
// an empty one "unknown". It is safe for concurrent use.
type labelSet struct {
	max  int
	mu   sync.Mutex
	seen map[string]struct{}
}

func newLabelSet(max int) *labelSet { return &labelSet{max: max, seen: map[string]struct{}{}} }

func (s *labelSet) label(provider, model string) string {
	if model == "" {
		return "unknown"
	}
	if !plausibleModel(model) {
		return "other"
	}
	key := provider + "\x00" + model
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[key]; ok {
		return model
	}
	if len(s.seen) >= s.max {
		return "other"
	}
	s.seen[key] = struct{}{}
	return model
}

func plausibleModel(s string) bool {
	if len(s) > 96 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == ':' || c == '/' || c == '@'
		if !ok {
			return false
		}
	}
	return true
}

func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "none"
	}
	return strconv.Itoa(code/100) + "xx"
}

// Logger writes one structured line per provider request.
type Logger struct{ log *slog.Logger }

// NewLogger returns a Logger writing to log from the caller's goroutine.
func NewLogger(log *slog.Logger) *Logger { return &Logger{log: log} }

// AsyncLogger writes the request log lines from one long-lived goroutine:
// formatting a wide JSON line on each stream's fresh goroutine grew that
// goroutine's stack on every request. The writer does not wake for every
// line: after writing what is queued it waits [logGather] for more before
// it looks again, and only a line that finds it idle wakes it, so under
// load it wakes a few hundred times a second instead of once per request
// (each wake-up is a futex call on both sides). A line is written at most
// about logGather after it is observed. When its queue (4096 lines) is
// full it writes on the caller's goroutine instead, so no line is lost.
// Close drains the queue. It is safe for concurrent use.
type AsyncLogger struct {
	l    *Logger
	q    chan *processor.Record
	kick chan struct{} // capacity 1: wakes the writer while it is idle
	idle atomic.Bool   // the writer waits on kick
	done chan struct{}
	mu   sync.RWMutex
	shut bool
}

// logGather is how long the AsyncLogger's writer lets lines gather after
// writing some.
const logGather = 2 * time.Millisecond

// NewAsyncLogger starts an AsyncLogger writing to log.
func NewAsyncLogger(log *slog.Logger) *AsyncLogger {
	a := &AsyncLogger{l: NewLogger(log), q: make(chan *processor.Record, 4096), kick: make(chan struct{}, 1),
		done: make(chan struct{})}
	go a.write()
	return a
}

// write is the writer goroutine.
func (a *AsyncLogger) write() {
	defer close(a.done)
	for {
		n, open := a.drain()
		switch {
		case !open:
			return
		case n > 0:
			time.Sleep(logGather)
			continue
		}
		a.idle.Store(true)
		if len(a.q) > 0 {
			// Queued between the drain and idle: its sender may have
			// seen the writer busy and not kicked.
			a.idle.Store(false)
			continue
		}
		<-a.kick
	}
}

// drain writes every queued line; open is false once Close closed the
// queue and it is empty.
func (a *AsyncLogger) drain() (n int, open bool) {
	for {
		select {
		case r, ok := <-a.q:
			if !ok {
				return n, false
			}
			a.l.Observe(r)
			n++
		default:
			return n, true
		}
	}
}

// Observe implements [processor.Observer]. Records are not modified after
// they are observed, so the pointer is shared with the writer goroutine.
func (a *AsyncLogger) Observe(r *processor.Record) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.shut {
		a.l.Observe(r)
		return
	}
	select {
	case a.q <- r:
		if a.idle.Load() && a.idle.CompareAndSwap(true, false) {
			a.wake()
		}
	default:
		a.l.Observe(r)
	}
}

func (a *AsyncLogger) wake() {
	select {
	case a.kick <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Close writes every queued line and stops the goroutine. Later lines are
// written synchronously. It is safe to call twice.
func (a *AsyncLogger) Close() error {
	a.mu.Lock()
	if !a.shut {
		a.shut = true
		close(a.q)
		a.wake()
	}
	a.mu.Unlock()
	<-a.done
	return nil
}

// Observe implements [processor.Observer]. Fields that are empty or zero
// are left out (the line is on every request's path and its cost grows with
// its width); request_id, provider, model, stream, status, outcome,
// duration_ms and usage_found are always present.
func (l *Logger) Observe(r *processor.Record) {
	ctx := context.Background()
	h := l.log.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	buf := attrPool.Get().(*[]slog.Attr)
	attrs := lineAttrs((*buf)[:0], r)
	// The Record is built here rather than by LogAttrs, which records the
	// caller's program counter (a stack walk on every line, about a third of
	// the line's cost) for a source that would always be this function.
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, "llm request", 0)
	rec.AddAttrs(attrs...)
	_ = h.Handle(ctx, rec)
	// Handlers must not keep a Record's attributes past Handle (they Clone
	// it), and AddAttrs copied them: the slice is free again.
	clear(attrs)
	*buf = attrs
	attrPool.Put(buf)
}

// attrPool holds the attribute slices of request log lines (room for every
// field a line can have).
var attrPool = sync.Pool{New: func() any { b := make([]slog.Attr, 0, 40); return &b }}

// lineAttrs appends the request line's fields for r to attrs.
func lineAttrs(attrs []slog.Attr, r *processor.Record) []slog.Attr {
	u := r.Usage
	model := u.Model
	if model == "" {
		model = r.Info.Model
	}
	attrs = append(attrs,
		slog.String("request_id", r.RequestID),
		slog.String("provider", r.Provider),
		slog.String("model", model),
		slog.Bool("stream", r.Info.Stream),
		slog.Int("status", r.Status),
		slog.String("outcome", string(r.Outcome)),
		slog.Int64("duration_ms", r.Duration.Milliseconds()),
		slog.Bool("usage_found", u.Found),
	)
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	num := func(k string, v int64) {
		if v != 0 {
			attrs = append(attrs, slog.Int64(k, v))
		}
	}
	if fo := r.Failover; fo != nil {
		str("requested_provider", fo.Requested.Provider)
		str("requested_model", fo.Requested.Model)
		str("failover_chain", fo.Chain)
		str("failover_reason", fo.Reason)
	}
	str("user", r.Identity.User)
	str("key_id", r.Identity.KeyID)
	str("key_owner", r.Identity.Owner)
	str("team", r.Identity.Team)
	str("client_ip", r.Identity.ClientIP)
	str("endpoint", string(r.Info.Endpoint))
	num("estimated_input_tokens", r.EstimatedInputTokens)
	str("estimate_source", r.EstimateSource)
	num("input_tokens", u.InputTokens)
	num("output_tokens", u.OutputTokens)
	num("total_tokens", u.TotalTokens)
	num("cache_read_tokens", u.CacheReadTokens)
	num("cache_write_tokens", u.CacheWriteTokens)
	num("reasoning_tokens", u.ReasoningTokens)
	str("finish_reason", u.FinishReason)
	str("vendor_request_id", u.RequestID)
	num("ttfb_ms", r.TTFB.Milliseconds())
	num("request_bytes", r.RequestBytes)
	num("response_bytes", r.ResponseBytes)
	str("refused_by", r.RefusedBy)
	str("replaced_by", r.ReplacedBy)
	if r.Cost.Known {
		attrs = append(attrs, slog.Float64("cost_usd", r.Cost.TotalUSD), slog.String("priced_model", r.Cost.Model))
	}
	if r.UsageEstimated {
		attrs = append(attrs, slog.Bool("usage_estimated", true))
	}
	return attrs
}

// Observers fans a Record out to several observers in order.
type Observers []processor.Observer

// Observe implements [processor.Observer].
func (os Observers) Observe(r *processor.Record) {
	for _, o := range os {
		o.Observe(r)
	}
}

package telemetry

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
)

// RateLimitMetrics counts the rate limiter's decisions. It is safe for
// concurrent use.
type RateLimitMetrics struct {
	admitted  *prometheus.CounterVec
	refused   *prometheus.CounterVec
	errors    *prometheus.CounterVec
	settled   *prometheus.CounterVec
	cancelled *prometheus.CounterVec
	healthy   prometheus.Gauge
}

// NewRateLimitMetrics registers the rate-limit metrics with reg.
func NewRateLimitMetrics(reg prometheus.Registerer) *RateLimitMetrics {
	m := &RateLimitMetrics{
		admitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_ratelimit_admitted_total", Help: "Requests admitted by the rate limiter, by provider.",
		}, []string{"provider"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_ratelimit_refused_total",
			Help: "Requests refused with 429, by provider, scope kind (user, key, model, provider, global), metric and window.",
		}, []string{"provider", "scope", "metric", "window"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_ratelimit_backend_errors_total",
			Help: "Admissions the backend could not decide, by provider and whether the request was let through.",
		}, []string{"provider", "fail_open"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_ratelimit_settled_tokens_total",
			Help: "Tokens finally charged to the limits after reconciliation, by provider.",
		}, []string{"provider"}),
		cancelled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_ratelimit_cancelled_total",
			Help: "Admitted requests whose charge was cancelled (5xx, no response, refused later), by provider.",
		}, []string{"provider"}),
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llm_proxy_ratelimit_backend_healthy", Help: "1 while the rate-limit backend answers, 0 otherwise.",
		}),
	}
	m.healthy.Set(1)
	reg.MustRegister(m.admitted, m.refused, m.errors, m.settled, m.cancelled, m.healthy)
	return m
}

// Hooks returns the processor hooks that feed these metrics.
func (m *RateLimitMetrics) Hooks() processor.RateLimitHooks {
	return processor.RateLimitHooks{
		OnAdmit: func(p string) { m.admitted.WithLabelValues(p).Inc() },
		OnRefuse: func(p, scope string, metric ratelimit.Metric, window ratelimit.Window) {
			m.refused.WithLabelValues(p, scope, string(metric), string(window)).Inc()
		},
		OnBackendError: func(p string, failOpen bool) {
			m.errors.WithLabelValues(p, strconv.FormatBool(failOpen)).Inc()
		},
		OnSettle: func(p string, tokens int64, cancelled bool) {
			if cancelled {
				m.cancelled.WithLabelValues(p).Inc()
				return
			}
			m.settled.WithLabelValues(p).Add(float64(tokens))
		},
	}
}

// SetBackendHealthy records the backend's state (quota.Hooks.OnStateChange).
func (m *RateLimitMetrics) SetBackendHealthy(ok bool) {
	if ok {
		m.healthy.Set(1)
		return
	}
	m.healthy.Set(0)
}

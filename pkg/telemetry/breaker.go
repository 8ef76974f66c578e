package telemetry

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
)

// BreakerMetrics counts the circuit breaker's transitions and decisions,
// labelled by provider, a bounded model label and the failure class. It is
// safe for concurrent use.
type BreakerMetrics struct {
	transitions *prometheus.CounterVec
	fastFails   *prometheus.CounterVec
	terminal    *prometheus.CounterVec
	probes      *prometheus.CounterVec
	attempts    *prometheus.CounterVec
	fallback    prometheus.Gauge
	models      *labelSet
}

// NewBreakerMetrics registers the breaker metrics with reg.
func NewBreakerMetrics(reg prometheus.Registerer) *BreakerMetrics {
	m := &BreakerMetrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_circuit_transitions_total",
			Help: "Circuit state changes by provider, model (\"\" for the provider-wide key), new state and reason.",
		}, []string{"provider", "model", "state", "reason"}),
		fastFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_circuit_fast_fail_total",
			Help: "Requests answered locally (or, in log mode, that would have been) because a circuit was open.",
		}, []string{"provider", "model", "mode"}),
		terminal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_circuit_terminal_failures_total",
			Help: "Final responses that were provider failures, by provider, model and failure class.",
		}, []string{"provider", "model", "class"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_circuit_probes_total",
			Help: "Half-open probe outcomes (success, failure, released) by provider and model.",
		}, []string{"provider", "model", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_circuit_failed_attempts_total",
			Help: "Failed attempts Envoy retried, by provider, class and whether they counted toward the breaker.",
		}, []string{"provider", "class", "counted"}),
		fallback: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llm_proxy_circuit_backend_fallback",
			Help: "1 while the breaker runs on its memory fallback because Redis is unreachable.",
		}),
		models: newLabelSet(MaxModels),
	}
	reg.MustRegister(m.transitions, m.fastFails, m.terminal, m.probes, m.attempts, m.fallback)
	return m
}

func (m *BreakerMetrics) model(k breaker.Key) string {
	if k.Model == "" {
		return ""
	}
	return m.models.label(k.Provider, k.Model)
}

// Hooks returns breaker hooks feeding these metrics; extra runs after
// them (for logging), with any field nil.
func (m *BreakerMetrics) Hooks(mode string, extra breaker.Hooks) breaker.Hooks {
	return breaker.Hooks{
		OnStateChange: func(k breaker.Key, from, to breaker.State, reason breaker.Reason) {
			m.transitions.WithLabelValues(k.Provider, m.model(k), to.String(), reason.String()).Inc()
			if extra.OnStateChange != nil {
				extra.OnStateChange(k, from, to, reason)
			}
		},
		OnFastFail: func(adm breaker.Admission) {
			m.fastFails.WithLabelValues(adm.Key.Provider, m.model(adm.Key), mode).Inc()
		},
		OnTerminalFailure: func(k breaker.Key, c breaker.Class) {
			m.terminal.WithLabelValues(k.Provider, m.model(k), c.String()).Inc()
		},
		OnProbe: func(k breaker.Key, o breaker.ProbeOutcome) {
			m.probes.WithLabelValues(k.Provider, m.model(k), o.String()).Inc()
		},
		OnAttempt: func(k breaker.Key, c breaker.Class, counted bool) {
			m.attempts.WithLabelValues(k.Provider, c.String(), strconv.FormatBool(counted)).Inc()
		},
		OnBackendChange: func(s breaker.Status) {
			if s.Fallback {
				m.fallback.Set(1)
			} else {
				m.fallback.Set(0)
			}
			if extra.OnBackendChange != nil {
				extra.OnBackendChange(s)
			}
		},
	}
}

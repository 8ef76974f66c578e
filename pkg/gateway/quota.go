package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/backendhealth"
)

// quotaMetrics count the shared stores' switches between healthy and
// unavailable (so between the store and the fail mode), per feature.
type quotaMetrics struct {
	transitions *prometheus.CounterVec
	degraded    *prometheus.GaugeVec
}

func newQuotaMetrics(reg prometheus.Registerer) *quotaMetrics {
	m := &quotaMetrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_quota_store_transitions_total",
			Help: "Switches of a rate-limit or budget store between healthy and unavailable (the fail mode then applies), by feature and new state.",
		}, []string{"feature", "state"}),
		degraded: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "llm_proxy_quota_degraded",
			Help: "1 while a rate-limit or budget store is unavailable and the feature runs on its fail mode (open, closed or local).",
		}, []string{"feature", "fail_mode"}),
	}
	reg.MustRegister(m.transitions, m.degraded)
	return m
}

// observe returns the hook that counts feature's transitions and then
// calls next.
func (m *quotaMetrics) observe(feature, failMode string, next func(backendhealth.Status)) func(backendhealth.Status) {
	m.degraded.WithLabelValues(feature, failMode).Set(0)
	return func(st backendhealth.Status) {
		state, v := "healthy", 0.0
		if !st.Healthy {
			state, v = "unavailable", 1
		}
		m.transitions.WithLabelValues(feature, state).Inc()
		m.degraded.WithLabelValues(feature, failMode).Set(v)
		next(st)
	}
}

package processor

import (
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// headerDegraded marks a refusal decided by in-process counters while the
// shared store was unreachable (fail_mode local).
const headerDegraded = "X-Llm-Proxy-Degraded"

// quotaGuard is what the rate-limit and budget guards share: refusals in
// the vendor's error shape, the store's fail mode and the clock. It is
// read-only after construction, so safe for concurrent use.
type quotaGuard struct {
	providers  providers.Registry
	now        func() time.Time
	failClosed bool
	// onBackendError, when not nil, is told of every store failure and
	// whether the request was let through.
	onBackendError func(provider string, failOpen bool)
	// subject names the store in the fail-closed 503's message ("Rate
	// limiter"), and details is that 503's %RESPONSE_CODE_DETAILS%.
	subject, details string
	// remote is set when the store is Redis (see [RemoteGuard]).
	remote bool
}

// Remote implements [RemoteGuard]: the store is Redis.
func (q *quotaGuard) Remote(*Call) bool { return q.remote }

// storeFailed applies the fail mode to a store that could not decide: nil
// (fail open: admit unchecked) or the 503 of fail mode closed.
func (q *quotaGuard) storeFailed(c *Call) *Reply {
	if q.onBackendError != nil {
		q.onBackendError(c.Provider, !q.failClosed)
	}
	if !q.failClosed {
		return nil
	}
	return q.reply(c, 503, q.details, providers.ErrorUnavailable, "[PROXY] "+q.subject+
		" unavailable; the gateway is configured to fail closed. Please try again later.", false)
}

// reply renders a refusal by the proxy: status with the body in the
// vendor's error shape of kind (OpenAI's for an unknown provider),
// Content-Type, the given headers, X-Llm-Proxy-Error-Source: proxy, and
// X-Llm-Proxy-Degraded: local when the store's local fallback decided.
func (q *quotaGuard) reply(c *Call, status int, details string, kind providers.ErrorKind, msg string, degraded bool, headers ...[2]string) *Reply {
	h := append(append(make([][2]string, 0, len(headers)+3), [2]string{"Content-Type", "application/json"}), headers...)
	h = append(h, [2]string{headerErrorSource, "proxy"})
	if degraded {
		h = append(h, [2]string{headerDegraded, "local"})
	}
	var p providers.Provider = providers.OpenAI{}
	if vp, ok := q.providers[c.Provider]; ok {
		p = vp
	}
	return &Reply{Status: status, Headers: h, Body: p.ErrorBody(c.Info, kind, msg), Details: details}
}

// costsNothing reports whether an admitted call is given back in full: a
// later guard refused it, it was answered with a 5xx (vendor or Envoy) or
// never answered.
func costsNothing(r *Record) bool {
	return r.Outcome == OutcomeRefused || r.Status >= 500 || r.Status == 0
}

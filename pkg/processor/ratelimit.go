package processor

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/correction"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
)

// Headers of a rate-limit refusal, besides Retry-After.
const (
	headerLimit       = "X-RateLimit-Limit"
	headerRemaining   = "X-RateLimit-Remaining"
	headerReset       = "X-RateLimit-Reset"
	headerScope       = "X-RateLimit-Scope"
	headerMetric      = "X-RateLimit-Metric"
	headerWindow      = "X-RateLimit-Window"
	headerErrorSource = "X-Llm-Proxy-Error-Source"
)

// RateLimitDetails is the %RESPONSE_CODE_DETAILS% of a rate-limit refusal.
const RateLimitDetails = "llm_proxy_rate_limited"

// RateLimitHooks observe the rate limiter without this package importing
// metrics. Every field may be nil. They must not block.
type RateLimitHooks struct {
	// OnAdmit is called for each admitted request.
	OnAdmit func(provider string)
	// OnRefuse is called for each refusal with the refusing scope kind
	// ("user", "key", "model", "provider", "global"), metric and window.
	OnRefuse func(provider, scopeKind string, metric ratelimit.Metric, window ratelimit.Window)
	// OnBackendError is called when the backend could not decide; failOpen
	// says whether the request was let through.
	OnBackendError func(provider string, failOpen bool)
	// OnSettle is called once per admitted request with the tokens finally
	// charged (0 when cancelled) and whether the charge was cancelled.
	OnSettle func(provider string, tokens int64, cancelled bool)
}

// RateLimit is the Guard that enforces request and token limits. It is safe
// for concurrent use.
type RateLimit struct {
	quotaGuard
	lim       ratelimit.Limiter
	cfg       ratelimit.Config
	corrector *correction.Corrector
	hooks     RateLimitHooks
}

var _ Guard = (*RateLimit)(nil)

// RateLimitOptions configures NewRateLimit.
type RateLimitOptions struct {
	Limiter ratelimit.Limiter
	// Config is the limiter's configuration (fail mode, output counting).
	Config ratelimit.Config
	// Providers renders refusals in each vendor's error shape.
	Providers providers.Registry
	// Corrector learns how far text estimates are from the vendors' counts;
	// nil disables correction.
	Corrector *correction.Corrector
	Hooks     RateLimitHooks
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// NewRateLimit returns the rate-limit Guard.
func NewRateLimit(o RateLimitOptions) *RateLimit {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &RateLimit{lim: o.Limiter, cfg: o.Config, corrector: o.Corrector, hooks: o.Hooks,
		quotaGuard: quotaGuard{providers: o.Providers, now: o.Now, failClosed: o.Config.FailClosed(),
			onBackendError: o.Hooks.OnBackendError, subject: "Rate limiter", details: "llm_proxy_rate_limiter_unavailable",
			remote: o.Config.Backend == quota.BackendRedis}}
}

// Name implements [NamedGuard].
func (*RateLimit) Name() string { return "rate_limit" }

// Admit implements [Guard.Admit]. Estimates read from the body's text are
// scaled by the learned correction for the provider and model; with
// count_output_tokens the request's output cap is reserved too.
func (g *RateLimit) Admit(ctx context.Context, c *Call) (Ticket, *Reply, error) {
	input := c.EstimatedInputTokens
	if g.corrector != nil && c.EstimateSource == "text" {
		input = g.corrector.Correct(c.Provider, c.Info.Model, input)
	}
	req := ratelimit.Request{Provider: c.Provider, Model: c.Info.Model, User: c.Identity.User,
		KeyID: c.Identity.KeyID, InputTokens: input, OutputTokens: c.Info.MaxOutputTokens}
	req.KeyLimits, req.Team, req.TeamLimits = GatewayKeyLimits(c.Identity.GatewayKey)
	d, err := g.lim.Reserve(ctx, req, g.now())
	if err != nil {
		return nil, g.storeFailed(c), nil
	}
	if !d.Allowed {
		if g.hooks.OnRefuse != nil {
			g.hooks.OnRefuse(c.Provider, scopeKind(d.Scope), d.Metric, d.Window)
		}
		return nil, g.refusal(c, d), nil
	}
	if g.hooks.OnAdmit != nil {
		g.hooks.OnAdmit(c.Provider)
	}
	return &rateTicket{g: g, res: d.Reservation}, nil, nil
}

func scopeKind(scope string) string {
	for i := 0; i < len(scope); i++ {
		if scope[i] == ':' {
			return scope[:i]
		}
	}
	return scope
}

// refusal renders the 429: Retry-After in whole seconds (at least 1), the
// X-RateLimit-* headers, and a body in the vendor's error shape so each
// official SDK raises its native rate-limit error.
func (g *RateLimit) refusal(c *Call, d ratelimit.Decision) *Reply {
	retry := int64(math.Ceil(d.RetryAfter.Seconds()))
	if retry < 1 {
		retry = 1
	}
	msg := fmt.Sprintf("[PROXY] Rate limit exceeded: %s %s per %s (limit %d, remaining %d). Retry after %d s.",
		d.Scope, d.Metric, d.Window, d.Limit, d.Remaining, retry)
	return g.reply(c, 429, RateLimitDetails, providers.ErrorRateLimited, msg, d.Degraded,
		[2]string{"Retry-After", strconv.FormatInt(retry, 10)},
		[2]string{headerLimit, strconv.FormatInt(d.Limit, 10)},
		[2]string{headerRemaining, strconv.FormatInt(d.Remaining, 10)},
		[2]string{headerReset, strconv.FormatInt(d.Reset.Unix(), 10)},
		[2]string{headerScope, d.Scope},
		[2]string{headerMetric, string(d.Metric)},
		[2]string{headerWindow, string(d.Window)})
}

// rateTicket settles one reservation.
type rateTicket struct {
	g   *RateLimit
	res ratelimit.Reservation
}

// Settle implements [Ticket.Settle]:
//   - refused by a later guard, a 5xx (vendor or Envoy), or no response at
//     all: the charge is cancelled;
//   - a 4xx: the request counts, its tokens do not (vendors bill no tokens
//     for rejected requests);
//   - usage reported (complete or cut short): the actual prompt tokens
//     (plus output when counted) replace the estimate;
//   - no usage (an aborted stream before the usage event, a response
//     without usage): the estimate stands.
func (t *rateTicket) Settle(ctx context.Context, r *Record) {
	g := t.g
	now := g.now()
	cancel := costsNothing(r)
	var tokens int64
	switch {
	case cancel:
		_ = g.lim.Cancel(ctx, t.res, now)
	case r.Status >= 400:
		_ = g.lim.Settle(ctx, t.res, 0, now)
	case r.Usage.Found:
		prompt := PromptTokens(r.Provider, r.Info, r.Usage)
		tokens = g.cfg.Billable(prompt, r.Usage.OutputTokens)
		_ = g.lim.Settle(ctx, t.res, tokens, now)
		if g.corrector != nil && r.EstimateSource == "text" && prompt > 0 && r.Outcome == OutcomeCompleted {
			g.corrector.Observe(r.Provider, r.Info.Model, r.EstimatedInputTokens, prompt)
		}
	default:
		tokens = t.res.Tokens
		_ = g.lim.Settle(ctx, t.res, tokens, now)
	}
	if g.hooks.OnSettle != nil {
		g.hooks.OnSettle(r.Provider, tokens, cancel)
	}
}

// PromptTokens returns every input token the vendor processed for the
// request, cached or not: the quantity the text estimate predicts. OpenAI
// and Gemini count cached tokens inside the input; Anthropic's native API
// reports cache reads and writes beside it.
func PromptTokens(provider string, info providers.RequestInfo, u providers.Usage) int64 {
	if provider == "anthropic" && !info.OpenAICompatible {
		return u.InputTokens + u.CacheReadTokens + u.CacheWriteTokens
	}
	return u.InputTokens
}

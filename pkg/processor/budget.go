package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/budget"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// BudgetDetails is the %RESPONSE_CODE_DETAILS% of a budget refusal.
const BudgetDetails = "llm_proxy_budget_exceeded"

// Headers of a budget refusal.
const (
	headerCostReason = "X-Cost-Limit-Reason"
	headerCostLimit  = "X-Cost-Limit-USD"
	headerCostSpend  = "X-Cost-Spend-USD"
)

// Estimator returns the expected cost in USD of a request before it is
// sent; ok is false when the model has no price.
type Estimator interface {
	Estimate(provider, model string, input, output int64) (usd float64, ok bool)
}

// BudgetHooks observe the budget guard. Every field may be nil.
type BudgetHooks struct {
	OnRefuse       func(provider, scopeKind string, window budget.Window)
	OnBackendError func(provider string, failOpen bool)
}

// Budget is the Guard that enforces daily and monthly USD budgets per API
// key and per user: it reserves the estimated cost before the call and
// settles the actual cost after it. It is safe for concurrent use.
type Budget struct {
	quotaGuard
	lim   budget.Limiter
	est   Estimator
	hooks BudgetHooks
}

var _ Guard = (*Budget)(nil)

// NewBudget returns the budget Guard.
func NewBudget(lim budget.Limiter, cfg budget.Config, est Estimator, provs providers.Registry,
	hooks BudgetHooks, now func() time.Time,
) *Budget {
	if now == nil {
		now = time.Now
	}
	return &Budget{lim: lim, est: est, hooks: hooks, quotaGuard: quotaGuard{providers: provs, now: now,
		failClosed: cfg.FailClosed(), onBackendError: hooks.OnBackendError, subject: "Budget store",
		details: "llm_proxy_budget_unavailable", remote: cfg.Backend == quota.BackendRedis}}
}

// Name implements [NamedGuard].
func (*Budget) Name() string { return "budget" }

// Admit implements [Guard.Admit]. The reservation is the estimated input
// plus the request's output cap at the model's prices; a model without a
// price reserves nothing but is still refused once a budget is spent.
func (g *Budget) Admit(ctx context.Context, c *Call) (Ticket, *Reply, error) {
	usd, _ := g.est.Estimate(c.Provider, c.Info.Model, c.EstimatedInputTokens, c.Info.MaxOutputTokens)
	req := budget.Request{User: c.Identity.User, KeyID: c.Identity.KeyID, EstimatedUSD: usd}
	req.KeyBudget, req.Team, req.TeamBudget = GatewayKeyBudgets(c.Identity.GatewayKey)
	d, err := g.lim.Reserve(ctx, req, g.now())
	if err != nil {
		return nil, g.storeFailed(c), nil
	}
	if !d.Allowed {
		if g.hooks.OnRefuse != nil {
			g.hooks.OnRefuse(c.Provider, scopeKind(d.Scope), d.Window)
		}
		msg := fmt.Sprintf("[PROXY] Budget exceeded: %s has spent $%s of its $%s %s budget. It resets at %s.",
			d.Scope, budget.FormatNanos(d.SpendNanos), budget.FormatNanos(d.LimitNanos), budgetPeriod(d.Window),
			d.Reset.UTC().Format(time.RFC3339))
		return nil, g.reply(c, 402, BudgetDetails, providers.ErrorBudgetExceeded, msg, d.Degraded,
			[2]string{headerCostReason, d.Reason()},
			[2]string{headerCostLimit, budget.FormatNanos(d.LimitNanos)},
			[2]string{headerCostSpend, budget.FormatNanos(d.SpendNanos)}), nil
	}
	return &budgetTicket{g: g, res: d.Reservation}, nil, nil
}

func budgetPeriod(w budget.Window) string {
	if w == budget.WindowMonth {
		return "monthly"
	}
	return "daily"
}

type budgetTicket struct {
	g   *Budget
	res budget.Reservation
}

// Settle implements [Ticket.Settle]: a request refused later, answered
// with a 5xx or never answered is cancelled; any other is charged its
// priced cost (0 when the model has no price or the vendor reported no
// usage; a stream cut short is charged what its reported usage shows).
func (t *budgetTicket) Settle(ctx context.Context, r *Record) {
	now := t.g.now()
	if costsNothing(r) {
		_ = t.g.lim.Cancel(ctx, t.res, now)
		return
	}
	usd := 0.0
	if r.Cost.Known {
		usd = r.Cost.TotalUSD
	}
	_ = t.g.lim.Settle(ctx, t.res, usd, now)
}

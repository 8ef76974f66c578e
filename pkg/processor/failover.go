package processor

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/breaker"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/credentials"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// HeaderFallback names, on the response, the provider:model that served a
// call failed over ("anthropic:claude-sonnet-4-5"), at admission or before
// the first byte. It is set on every response of such a call, the
// gateway's own refusals included.
const HeaderFallback = "x-llm-proxy-fallback"

// Failover describes a call that another target of its chain serves. The
// target is the Call's Provider and Info.Model.
type Failover struct {
	// Requested is the provider and model the client asked for.
	Requested failover.Target
	// Chain is the rules key of the chain followed ("openai:gpt-4o").
	Chain string
	// Reason is the condition that moved the call: "circuit_open" at
	// admission; "upstream_5xx", "rate_limited" or
	// "timeout_before_first_byte" on a chain route (the requested target's
	// first failed attempt).
	Reason string
}

// failoverState is a call's walk down its chain at admission. Only the
// stream's goroutine uses it.
type failoverState struct {
	chain      *failover.Chain
	req        failover.Request  // the client's request, for Rewrite
	candidates []failover.Target // in chain order, not yet tried
	path       string            // the :path for the target, once one was taken
	// route holds the chain's targets (after the requested one) that
	// Envoy's chain route may send the call to, in chain order; nil when
	// the call keeps its vendor route (chainRoute).
	route []failover.Target
	first *Reply      // the requested target's refusal
	orig  targetState // the call as the client asked it
}

// failedOver reports whether the call was moved to another target.
func (st *stream) failedOver() bool { return st.fo != nil && st.fo.path != "" }

// chainFor returns the failover state of the call about to be admitted, or
// nil when no chain can apply: failover off, no chain for the provider and
// model, no candidate for the request's API, or a request whose reply
// cannot rewrite it (a body that did not arrive whole in the message being
// answered, was too large to read, or is compressed). body is the
// request's body as it came.
func (st *stream) chainFor(body []byte) *failoverState {
	set := st.s.failover
	if !set.Enabled() || !st.oneMessage || st.bodyOver || (st.encoding != "" && st.encoding != "identity") ||
		st.call.Info.Malformed {
		return nil
	}
	chain, ok := set.Lookup(st.call.Provider, st.call.Info.Model)
	if !ok {
		return nil
	}
	shape := failover.Native
	if st.call.Info.Endpoint == providers.EndpointChatCompletions {
		shape = failover.ChatCompletions
	}
	from := failover.Target{Provider: st.call.Provider, Model: st.call.Info.Model}
	cands := chain.Candidates(nil, from, shape)
	if len(cands) == 0 {
		return nil
	}
	return &failoverState{chain: chain, candidates: cands, req: failover.Request{
		From: from, User: st.metaUser, Path: st.req.Path, RawQuery: st.req.RawQuery, Shape: shape, Body: body,
	}}
}

// failOver moves the call to the next target of its chain that the gateway
// can serve, after refusal refused it, and reports true: the guards must
// run again. It reports false with the reply to answer when the refusal is
// not a condition of the chain or no target is left; the call is then the
// one the client asked for again and the reply its first refusal (the
// degraded 503 of an open circuit, as without failover).
//
// Only an open circuit fails over at admission: the breaker's Allow (shared
// across instances through its store) is the one admission-time check that
// says the target is degraded. The tickets taken before the refusal, for
// the previous target, are released first; the guards then run again, on
// the target, so limits, budgets and the breaker account for what is
// served.
func (st *stream) failOver(ctx context.Context, refusal *Reply) (*Reply, bool) {
	if refusal.Details != CircuitOpenDetails {
		return refusal, false
	}
	if st.fo == nil {
		// Looked up on the first refusal only: a call whose circuit is
		// closed costs nothing.
		st.fo = st.chainFor(st.reqBody)
		st.reqBody = nil
	}
	fo := st.fo
	if fo == nil || !fo.chain.On.Has(failover.CircuitOpen) {
		return refusal, false
	}
	if fo.first == nil {
		fo.first = refusal
		fo.orig = st.snapshot()
	}
	for len(fo.candidates) > 0 {
		t := fo.candidates[0]
		fo.candidates = fo.candidates[1:]
		if !st.retarget(t) {
			continue
		}
		st.releaseTickets(ctx, refusal)
		st.call.Failover = &Failover{Requested: fo.req.From, Chain: fo.chain.Key, Reason: failover.CircuitOpen.String()}
		st.s.log.Debug("request failed over", "request_id", st.call.RequestID, "chain", fo.chain.Key,
			"from", fo.req.From.String(), "to", t.String(), "reason", st.call.Failover.Reason)
		return nil, true
	}
	if st.failedOver() {
		// Every target is down too: answer as the requested target.
		st.releaseTickets(ctx, refusal)
		st.restore(fo.orig)
		fo.path = ""
	}
	noteChain(fo.first, fo.chain.Key, "no target left")
	return fo.first, false
}

// noteChain names the failover chain a call followed, and what became of
// it, in a degraded signal answered for the call (its marker unchanged).
func noteChain(reply *Reply, chain, what string) {
	if reply.Details == CircuitOpenDetails || reply.Details == CircuitDegradedDetails {
		reply.Body = breaker.NoteDegraded(reply.Body, fmt.Sprintf("Failover chain %q: %s", chain, what))
	}
}

// targetState is what retarget changes, kept to undo it.
type targetState struct {
	provider    providers.Provider
	keysMode    bool
	req         providers.Request
	call        Call
	credHeaders [][2]string
	credential  string
	newBody     []byte
	injected    bool
}

func (st *stream) snapshot() targetState {
	return targetState{provider: st.provider, keysMode: st.keysMode, req: st.req, call: st.call,
		credHeaders: append([][2]string(nil), st.credHeaders...), credential: st.credential, newBody: st.newBody,
		injected: st.injected}
}

func (st *stream) restore(s targetState) {
	st.provider, st.keysMode, st.req, st.call = s.provider, s.keysMode, s.req, s.call
	st.credHeaders, st.credential, st.newBody, st.injected = s.credHeaders, s.credential, s.newBody, s.injected
}

// targetPlan is the call rewritten for one target, not yet applied.
type targetPlan struct {
	p     providers.Provider
	rw    failover.Rewritten
	path  string // the target's vendor path, without prefix or query
	query string
	info  providers.RequestInfo
}

// plan rewrites the call for t when the gateway can send it there: t's
// provider is enabled, the request rewrites for it and reads as valid, and,
// for a gateway key, the key may use t (another vendor also needs the
// gateway to hold t's vendor key: the chain's validation checked the
// configuration, this checks the key). It changes nothing.
func (st *stream) plan(t failover.Target) (targetPlan, bool) {
	fo := st.fo
	p, ok := st.s.providers[t.Provider]
	if !ok {
		return targetPlan{}, false
	}
	rw, err := failover.Rewrite(fo.req, t)
	if err != nil {
		return targetPlan{}, false
	}
	path, query, _ := strings.Cut(rw.Path, "?")
	res, ok := st.s.providers.Resolve(path)
	if !ok || res.Provider.Name() != t.Provider {
		return targetPlan{}, false
	}
	req := providers.Request{Method: st.req.Method, Path: res.Path, RawQuery: query, Accept: st.req.Accept,
		ContentType: st.req.ContentType, Body: rw.Body}
	info := p.ParseRequest(req)
	if info.Malformed || info.Model != t.Model {
		return targetPlan{}, false
	}
	id := st.call.Identity.GatewayKey
	ga := st.s.gatewayKeys
	if t.Provider != fo.req.From.Provider && (id == nil || ga == nil || !st.s.keysMode[t.Provider]) {
		return targetPlan{}, false
	}
	if id != nil && ga != nil {
		if ref := ga.Permit(id, p, info); ref != nil {
			return targetPlan{}, false
		}
	}
	return targetPlan{p: p, rw: rw, path: res.Path, query: query, info: info}, true
}

// retarget rewrites the call for t at admission when plan accepts t and,
// for another vendor, a vendor key is at hand. It reports false, changing
// nothing, otherwise.
func (st *stream) retarget(t failover.Target) bool {
	fo := st.fo
	pl, ok := st.plan(t)
	if !ok {
		return false
	}
	if t.Provider != fo.req.From.Provider {
		cred, m, ref := st.s.gatewayKeys.Credential(pl.p, pl.info, pl.rw.Path)
		if ref != nil {
			return false
		}
		st.setCredential(m)
		st.credential = cred.Name
	}
	fo.path = pl.rw.Path
	st.commit(t, pl)
	st.newBody = nil
	if pl.rw.BodyChanged {
		st.newBody = pl.rw.Body
	}
	// A stream the gateway asked usage for keeps asking on the target: an
	// OpenAI-compatible endpoint takes stream_options like OpenAI.
	info := pl.info
	inject := wantsUsageInjection(t.Provider, info, pl.rw.Body) ||
		(fo.orig.injected && info.OpenAICompatible && info.Stream && info.Endpoint == providers.EndpointChatCompletions)
	st.injected = false
	if st.s.injectUsage && inject {
		if b := injectIncludeUsage(pl.rw.Body); b != nil {
			st.newBody, st.injected = b, true
		}
	}
	return true
}

// commit makes the call t's: provider, path, request info and estimate.
func (st *stream) commit(t failover.Target, pl targetPlan) {
	st.provider = pl.p
	st.keysMode = st.s.keysMode[t.Provider]
	st.req.Path, st.req.RawQuery = pl.path, pl.query
	st.call.Provider, st.call.Path = t.Provider, pl.path
	user := st.call.Identity.User
	st.call.Info = pl.info
	st.call.Identity.User = user
	if st.call.EstimateSource == "text" {
		st.call.EstimatedInputTokens = st.s.cfg.Features.RateLimiting.Estimation.InputTokens(t.Provider, pl.info)
	}
}

// releaseTickets settles the tickets taken for the previous target, as a
// refusal by refusal would have, and drops what they asked of the request.
func (st *stream) releaseTickets(ctx context.Context, refusal *Reply) {
	if len(st.tickets) > 0 {
		rec := &Record{Call: st.call, Status: refusal.Status, Outcome: OutcomeRefused, Guards: st.decisions,
			RefusedBy: refusal.Details, Duration: st.s.now().Sub(st.call.Start), RequestBytes: st.bodySeen}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.s.settleTO)
		for _, t := range st.tickets {
			t.Settle(sctx, rec)
		}
		cancel()
	}
	st.tickets, st.ticketGuard = nil, nil
	st.setHeaders = nil
	st.extraMD = nil
}

// fallbackHeaders adds HeaderFallback to a reply's headers when the call
// failed over.
func (st *stream) fallbackHeaders(h [][2]string) [][2]string {
	if st.call.Failover == nil {
		return h
	}
	return append(h[:len(h):len(h)], [2]string{HeaderFallback, st.call.Provider + ":" + st.call.Info.Model})
}

// fallbackMutation adds HeaderFallback to a response header mutation
// (allocated when mut is nil).
func (st *stream) fallbackMutation(mut *extprocv3.HeaderMutation) *extprocv3.HeaderMutation {
	if mut == nil {
		mut = &extprocv3.HeaderMutation{}
	}
	mut.SetHeaders = append(mut.SetHeaders, setHeader(HeaderFallback, st.call.Provider+":"+st.call.Info.Model))
	return mut
}

// Failover before the first byte, through Envoy's chain route
// (features.failover.envoy_chains, docs/failover.md).
//
// At admission, a call whose chain Envoy carries is sent to the chain's
// route: the body reply sets x-llm-proxy-chain to the chain key with
// clear_route_cache, and writes the chain (key, the path the attempts
// start from, the targets the call may use) into the shared metadata. The
// router then walks the chain cluster's priorities, retrying a failure
// before the first byte on the next one, and this server's upstream filter
// rewrites each attempt for the target its host names (attempt.go),
// recording chain_target_<n> and chain_status_<n>. At the final response
// headers the downstream stream reads which target served
// (chain_target_<x-envoy-attempt-count>) and, when another than the
// requested one did, moves the call and its accounting there.

// HeaderChain selects the chain route of a call in Envoy's route table; its
// value is the chain's rules key. A client's own value is removed (as every
// x-llm-proxy- header) and the route chosen on it is discarded.
const HeaderChain = "x-llm-proxy-chain"

// Metadata keys of the chain route.
const (
	mdChain        = "chain"         // the chain key
	mdChainPath    = "chain_path"    // vendor path and query the attempts start from
	mdChainTargets = "chain_targets" // the targets after the requested one, comma-separated
	mdChainTarget  = "chain_target_" // + n: the target attempt n was sent to
	mdChainStatus  = "chain_status_" // + n: the status attempt n was answered with
)

// chained reports whether the call was sent to its chain's route.
func (st *stream) chained() bool { return st.fo != nil && st.fo.route != nil }

// chainRoute sends an admitted call to its chain's route when Envoy carries
// it. The route's attempts are limited (x-envoy-max-retries) to the leading
// targets the gateway can serve this call with (plan: the key's permitted
// models, an equivalent API, the vendor keys); a call with none keeps its
// vendor route. Neither is a call that failed over at admission (its
// target is chosen), a circuit's half-open probe (one attempt, its own
// outcome) nor one whose query carries a credential (key=, which the shared
// metadata must never hold).
func (st *stream) chainRoute() {
	if !st.s.envoyChains || st.failedOver() {
		return
	}
	if st.fo == nil {
		st.fo = st.chainFor(st.reqBody)
		st.reqBody = nil
	}
	fo := st.fo
	if fo == nil || !fo.chain.Envoy || fo.chain.On&failover.BeforeFirstByte == 0 {
		return
	}
	for _, h := range st.setHeaders {
		if strings.EqualFold(h[0], "x-envoy-max-retries") {
			return
		}
	}
	if _, secret := credentials.StripKeyParam("?" + st.req.RawQuery); secret {
		return
	}
	route := make([]failover.Target, 0, len(fo.chain.Targets))
	for _, t := range fo.chain.Targets {
		if t != fo.req.From && !st.mayUse(t) {
			break
		}
		route = append(route, t)
	}
	if len(route) == 0 {
		return
	}
	fo.route = route
	if len(route) < len(fo.chain.Targets) {
		st.setHeaders = append(st.setHeaders, [2]string{"x-envoy-max-retries", strconv.Itoa(len(route))})
	}
	st.setHeaders = append(st.setHeaders, [2]string{HeaderChain, fo.chain.Key})
}

// mayUse reports whether the gateway may send the call to t: plan's
// checks that need no rewritten request (the rewrite is the upstream
// filter's, per attempt, which fails an attempt it cannot rewrite): t's
// provider is enabled, another vendor gets an OpenAI chat-completions
// request with a gateway key and t's vendor key, and a gateway key may use
// t's model.
func (st *stream) mayUse(t failover.Target) bool {
	p, ok := st.s.providers[t.Provider]
	if !ok {
		return false
	}
	id, ga := st.call.Identity.GatewayKey, st.s.gatewayKeys
	if t.Provider != st.fo.req.From.Provider &&
		(st.fo.req.Shape != failover.ChatCompletions || id == nil || ga == nil || !st.s.keysMode[t.Provider]) {
		return false
	}
	if id != nil && ga != nil {
		info := st.call.Info
		info.Model = t.Model
		if ga.Permit(id, p, info) != nil {
			return false
		}
	}
	return true
}

// chainPath is the vendor path and query every attempt starts from.
func (st *stream) chainPath() string {
	if st.req.RawQuery == "" {
		return st.req.Path
	}
	return st.req.Path + "?" + st.req.RawQuery
}

// chainTargets joins the route's targets for the metadata.
func chainTargets(ts []failover.Target) string {
	var b strings.Builder
	for i, t := range ts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(t.String())
	}
	return b.String()
}

// parseTarget reads "provider:model".
func parseTarget(s string) (failover.Target, bool) {
	p, m, ok := strings.Cut(s, ":")
	if !ok || p == "" || m == "" {
		return failover.Target{}, false
	}
	return failover.Target{Provider: p, Model: m}, true
}

// failedOverTicket is a Ticket told that its target's attempts failed and
// another target of the chain served the call (the circuit breaker's: the
// failures count against the requested target). classes are that target's
// attempts, in order; the last is its terminal outcome.
type failedOverTicket interface {
	Ticket
	FailedOver(ctx context.Context, classes []string)
}

// chainServed reads, at the final response headers of a chained call, the
// target that served it. When that is not the requested target the call
// becomes the target's (provider, path, request info, usage parser and
// prices follow), records the failover with the condition that moved it
// off the requested target, and its claims move (recharge). A final
// attempt the upstream filter did not see (it died connecting) names no
// target: the call stays the requested one's.
func (st *stream) chainServed(ctx context.Context, hs []*corev3.HeaderValue) {
	fo := st.fo
	ns := namespace(st.md, st.s.cfg.Processing.MetadataNamespace)
	count, _ := header(hs, "x-envoy-attempt-count")
	n := attemptCount(count)
	if n == 0 || n > maxAttempts {
		return
	}
	served, ok := parseTarget(ns[mdChainTarget+strconv.Itoa(n)].GetStringValue())
	if !ok || served == fo.req.From {
		return
	}
	inRoute := false
	for _, t := range fo.route {
		inRoute = inRoute || t == served
	}
	if !inRoute {
		return
	}
	pl, ok := st.plan(served)
	if !ok {
		return
	}
	requested := st.call
	var failed []string
	var reason string
	for i := 1; i < n; i++ {
		k := strconv.Itoa(i)
		if ns[mdChainTarget+k] == nil {
			// Died connecting, before the upstream filter: its target is
			// not known.
			if i == 1 {
				reason = chainReason(ns, k)
			}
			continue
		}
		if t, _ := parseTarget(ns[mdChainTarget+k].GetStringValue()); t != fo.req.From {
			continue
		}
		if reason == "" {
			reason = chainReason(ns, k)
		}
		if c := ns["attempt_"+k].GetStringValue(); c != "" {
			failed = append(failed, c)
		} else {
			failed = append(failed, AttemptNoResponse)
		}
	}
	if reason == "" {
		reason = failover.Upstream5xx.String()
	}
	st.commit(served, pl)
	st.call.Failover = &Failover{Requested: fo.req.From, Chain: fo.chain.Key, Reason: reason}
	st.reMD = true
	st.recharge(ctx, &requested, failed)
	st.s.log.Debug("request failed over before the first byte", "request_id", st.call.RequestID, "chain", fo.chain.Key,
		"from", fo.req.From.String(), "to", served.String(), "reason", reason, "attempts", n)
}

// chainReason names the condition that ended attempt k: the vendor's 429
// (rate_limited), no response headers after the request went out
// (timeout_before_first_byte: per_try_timeout, or a reset), else
// upstream_5xx (a 5xx, or no trace at all of the attempt: Envoy could not
// connect before the upstream filter ran).
func chainReason(ns map[string]*structpb.Value, k string) string {
	if ns[mdChainTarget+k] == nil {
		return failover.Upstream5xx.String()
	}
	switch status := int(ns[mdChainStatus+k].GetNumberValue()); {
	case status == 429:
		return failover.RateLimited.String()
	case status == 0:
		return failover.TimeoutBeforeFirstByte.String()
	default:
		return failover.Upstream5xx.String()
	}
}

// recharge moves the call's claims from the requested target to the one
// that served, once the call is the served target's: every guard admits
// the call again, and a guard that admits it there gives the requested
// target's claim back in full (nothing charged twice). A guard that
// refuses the served target keeps the requested target's claim, which then
// settles with the served call's record (nothing lost: its usage is still
// charged, in the requested target's provider and model windows). The
// circuit breaker's ticket of the requested target is told its attempts
// failed (failedOverTicket) whatever the served target's breaker says.
func (st *stream) recharge(ctx context.Context, requested *Call, failed []string) {
	prev := make(map[int]Ticket, len(st.tickets))
	for i, t := range st.tickets {
		prev[st.ticketGuard[i]] = t
	}
	st.tickets, st.ticketGuard = st.tickets[:0:0], st.ticketGuard[:0:0]
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.s.settleTO)
	defer cancel()
	// Given back in full: costsNothing.
	release := &Record{Call: *requested, Outcome: OutcomeRefused, Duration: st.s.now().Sub(st.call.Start),
		RequestBytes: st.bodySeen}
	giveBack := func(t Ticket) {
		if ft, ok := t.(failedOverTicket); ok {
			ft.FailedOver(sctx, failed)
			return
		}
		t.Settle(sctx, release)
	}
	for i, g := range st.s.guards {
		old := prev[i]
		t, reply, err := g.Admit(ctx, &st.call)
		switch {
		case err == nil && reply == nil && t != nil:
			st.tickets, st.ticketGuard = append(st.tickets, t), append(st.ticketGuard, i)
			if old != nil {
				giveBack(old)
			}
		case old == nil:
		case isFailedOverTicket(old):
			giveBack(old)
		default:
			st.tickets, st.ticketGuard = append(st.tickets, old), append(st.ticketGuard, i)
		}
		if err != nil {
			st.s.log.Warn("guard failed on the failover target; its claim stays on the requested target",
				"provider", st.call.Provider, "request_id", st.call.RequestID, "error", err)
		}
	}
}

func isFailedOverTicket(t Ticket) bool {
	_, ok := t.(failedOverTicket)
	return ok
}

// servedAttempts keeps, of a chained call's attempt classes (attempt 1
// first), those of the target that served: the served target's breaker
// judges its own attempts only (also the requested target's, when it
// served after another).
func (st *stream) servedAttempts(classes []string) []string {
	if !st.chained() {
		return classes
	}
	ns := namespace(st.md, st.s.cfg.Processing.MetadataNamespace)
	served := failover.Target{Provider: st.call.Provider, Model: st.call.Info.Model}
	out := classes[:0:0]
	for i, c := range classes {
		if t, _ := parseTarget(ns[mdChainTarget+strconv.Itoa(i+1)].GetStringValue()); t == served {
			out = append(out, c)
		}
	}
	return out
}

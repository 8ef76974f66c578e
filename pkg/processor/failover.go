package processor

import (
	"context"
	"strings"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// HeaderFallback names, on the response, the provider:model that served a
// call failed over at admission ("anthropic:claude-sonnet-4-5"). It is set
// on every response of such a call, the gateway's own refusals included.
const HeaderFallback = "x-llm-proxy-fallback"

// Failover describes a call that another target of its chain serves. The
// target is the Call's Provider and Info.Model.
type Failover struct {
	// Requested is the provider and model the client asked for.
	Requested failover.Target
	// Chain is the rules key of the chain followed ("openai:gpt-4o").
	Chain string
	// Reason is the condition that moved the call ("circuit_open").
	Reason string
}

// failoverState is a call's walk down its chain at admission. Only the
// stream's goroutine uses it.
type failoverState struct {
	chain      *failover.Chain
	req        failover.Request  // the client's request, for Rewrite
	candidates []failover.Target // in chain order, not yet tried
	path       string            // the :path for the target, once one was taken
	first      *Reply            // the requested target's refusal
	orig       targetState       // the call as the client asked it
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
	return fo.first, false
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

// retarget rewrites the call for t when the gateway can send it there: t's
// provider is enabled, the request rewrites for it and reads as valid, and,
// for a gateway key, the key may use t (another vendor also needs the
// gateway to hold t's vendor key: the chain's validation checked the
// configuration, this checks the key). It reports false, changing nothing,
// otherwise.
func (st *stream) retarget(t failover.Target) bool {
	fo := st.fo
	p, ok := st.s.providers[t.Provider]
	if !ok {
		return false
	}
	rw, err := failover.Rewrite(fo.req, t)
	if err != nil {
		return false
	}
	path, query, _ := strings.Cut(rw.Path, "?")
	res, ok := st.s.providers.Resolve(path)
	if !ok || res.Provider.Name() != t.Provider {
		return false
	}
	req := providers.Request{Method: st.req.Method, Path: res.Path, RawQuery: query, Accept: st.req.Accept,
		ContentType: st.req.ContentType, Body: rw.Body}
	info := p.ParseRequest(req)
	req.Body = nil
	if info.Malformed || info.Model != t.Model {
		return false
	}
	id := st.call.Identity.GatewayKey
	crossVendor := t.Provider != fo.req.From.Provider
	ga := st.s.gatewayKeys
	if crossVendor && (id == nil || ga == nil || !st.s.keysMode[t.Provider]) {
		return false
	}
	if id != nil && ga != nil {
		if ref := ga.Permit(id, p, info); ref != nil {
			return false
		}
	}
	if crossVendor {
		cred, m, ref := ga.Credential(p, info, rw.Path)
		if ref != nil {
			return false
		}
		st.setCredential(m)
		st.credential = cred.Name
	}
	// Commit: from here on the call is the target's.
	fo.path = rw.Path
	st.provider = p
	st.keysMode = st.s.keysMode[t.Provider]
	st.req.Path, st.req.RawQuery = res.Path, query
	st.call.Provider, st.call.Path = t.Provider, res.Path
	user := st.call.Identity.User
	st.call.Info = info
	st.call.Identity.User = user
	if st.call.EstimateSource == "text" {
		st.call.EstimatedInputTokens = st.s.cfg.Features.RateLimiting.Estimation.InputTokens(t.Provider, info)
	}
	st.newBody = nil
	if rw.BodyChanged {
		st.newBody = rw.Body
	}
	// A stream the gateway asked usage for keeps asking on the target: an
	// OpenAI-compatible endpoint takes stream_options like OpenAI.
	inject := wantsUsageInjection(t.Provider, info, rw.Body) ||
		(fo.orig.injected && info.OpenAICompatible && info.Stream && info.Endpoint == providers.EndpointChatCompletions)
	st.injected = false
	if st.s.injectUsage && inject {
		if b := injectIncludeUsage(rw.Body); b != nil {
			st.newBody, st.injected = b, true
		}
	}
	return true
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
	st.tickets = nil
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

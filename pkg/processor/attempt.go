package processor

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/failover"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// Upstream attempts.
//
// Envoy's router retries inside one downstream request, and a filter before
// the router sees only the final attempt. To learn how every attempt ended,
// envoy.yaml also runs this server as an ext_proc filter in each vendor
// cluster's upstream filter chain: one filter instance, and one Process
// stream, per attempt. Such a stream is recognised by its rewritten :path
// (no provider prefix), the x-envoy-attempt-count request header
// (include_request_attempt_count) and the provider that the downstream
// stream wrote into the shared dynamic metadata at admission (upstream
// filters share the downstream request's stream info). It answers with
// metadata only: attempt_<n> = the attempt's failure class, "no_response"
// until its response headers arrive, so an attempt that died before any
// response (connect failure, reset, timeout) stays "no_response". The
// downstream stream reads attempt_1..attempt_N from its metadata_context
// at the final response headers: no state crosses server instances.

// AttemptClassifier names the failure class of one attempt's response (for
// example "provider_degraded", "none"). It must be safe for concurrent use.
type AttemptClassifier func(provider string, status int, header func(string) string) string

// AttemptNoResponse is the class of an attempt that ended before response
// headers.
const AttemptNoResponse = "no_response"

// attemptForcedKey is the admission metadata key that asks the upstream
// filter to fail the first attempt (test mode force_transient_recover).
const attemptForcedKey = "force_first_attempt_failure"

type attemptState struct {
	n        int
	provider string
	force    bool          // answer this attempt's response with 503 (test mode, or a target not served)
	chain    *chainAttempt // an attempt of a chain route, nil otherwise
}

// upstreamAttempt starts an upstream filter's stream, or returns nil when
// the stream is not one.
func (st *stream) upstreamAttempt(hs []*corev3.HeaderValue) *extprocv3.ProcessingResponse {
	if st.s.attempts == nil {
		return nil
	}
	count, ok := header(hs, "x-envoy-attempt-count")
	if !ok {
		return nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil || n < 1 || n > 100 {
		return nil
	}
	ns := namespace(st.md, st.s.cfg.Processing.MetadataNamespace)
	provider := ns["provider"].GetStringValue()
	if _, known := st.s.providers[provider]; !known {
		return nil
	}
	st.attempt = &attemptState{n: n, provider: provider,
		force: n == 1 && ns[attemptForcedKey].GetBoolValue()}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{}}}
	resp.DynamicMetadata = st.attemptMetadata(AttemptNoResponse)
	// Bodies are not needed, whatever the filter was configured with.
	resp.ModeOverride = &filterv3.ProcessingMode{}
	return resp
}

// attemptResponse classifies one attempt's response headers.
func (st *stream) attemptResponse(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{}}}
	hs := headersOf(h)
	code, _ := header(hs, ":status")
	status, _ := strconv.Atoi(code)
	a := st.attempt
	if a.force {
		// Test mode: this attempt fails as if the vendor were degraded, so
		// Envoy's retry policy takes over. The router reads the status
		// after the upstream filters.
		status = 503
		resp.GetResponseHeaders().Response = &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{
			SetHeaders: []*corev3.HeaderValueOption{setHeader(":status", "503")}}}
	}
	class := ""
	if st.s.attempts != nil {
		class = st.s.attempts(a.provider, status, func(name string) string {
			v, _ := header(hs, name)
			return v
		})
	}
	if c := a.chain; c != nil {
		c.status = status
		if c.credential != "" && st.s.gatewayKeys != nil {
			st.s.gatewayKeys.Report(c.to.Provider, c.credential, status, st.s.now())
		}
	}
	resp.DynamicMetadata = st.attemptMetadata(class)
	st.closed = true
	return resp
}

func (st *stream) attemptMetadata(class string) *structpb.Struct {
	f := make(map[string]*structpb.Value, 3)
	n := strconv.Itoa(st.attempt.n)
	if class != "" {
		f["attempt_"+n] = structpb.NewStringValue(class)
	}
	if a := st.attempt.chain; a != nil {
		f[mdChainTarget+n] = structpb.NewStringValue(a.host)
		if a.status > 0 {
			f[mdChainStatus+n] = structpb.NewNumberValue(float64(a.status))
		}
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		st.s.cfg.Processing.MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: f}),
	}}
}

// namespace returns the fields of one untyped metadata namespace.
func namespace(md *corev3.Metadata, ns string) map[string]*structpb.Value {
	return md.GetFilterMetadata()[ns].GetFields()
}

// maxAttempts bounds the attempt count read from x-envoy-attempt-count.
const maxAttempts = 100

// attemptClasses returns one class per upstream attempt of the request, in
// attempt order, from the attempt_<n> entries the upstream filter wrote in
// md and the attempt count Envoy put in the final response
// (x-envoy-attempt-count, include_attempt_count_in_response; 0 when absent).
//
// Envoy opens the upstream connection before the upstream filter chain
// runs, so an attempt that failed to connect (or died before the filter's
// stream started) leaves no entry. Such an attempt is AttemptNoResponse
// when the downstream view shows it happened: the count is above the
// entries and either the upstream filter is evidently deployed (some entry
// exists) or the final response is Envoy's own (local is true: the final
// attempt died before a response too). Without any entry and with a
// vendor's final response the filter may simply not be deployed, and the
// earlier attempts are unknown: only the entries are returned (none).
func attemptClasses(md *corev3.Metadata, ns string, count int, local bool) []string {
	classes := map[int]string{}
	highest := 0
	for k, v := range namespace(md, ns) {
		rest, ok := strings.CutPrefix(k, "attempt_")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 || n > maxAttempts {
			continue
		}
		classes[n] = v.GetStringValue()
		highest = max(highest, n)
	}
	n := highest
	if count > n && count <= maxAttempts && (len(classes) > 0 || local) {
		n = count
	}
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		c, ok := classes[i]
		if !ok {
			if len(classes) == 0 && !local {
				continue
			}
			c = AttemptNoResponse
		}
		out = append(out, c)
	}
	return out
}

// attemptCount parses x-envoy-attempt-count; 0 when absent or invalid.
func attemptCount(v string) int {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// stripProxyParams removes llm_proxy_* parameters from a raw query.
func stripProxyParams(rawQuery string) (string, bool) {
	if !strings.Contains(rawQuery, "llm_proxy_") {
		return rawQuery, false
	}
	var kept []string
	changed := false
	for _, part := range strings.Split(rawQuery, "&") {
		if strings.HasPrefix(part, "llm_proxy_") {
			changed = true
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&"), changed
}

// Attempts of a chain route (failover before the first byte,
// docs/failover.md). The router chose this attempt's host before the
// upstream filter chain ran, and its metadata names the chain target the
// host stands for; envoy.yaml's upstream ext_proc asks for it
// (request_attributes). The attempt is rewritten for that target, whatever
// the attempt count and :authority say: with a priority skipped the first
// attempt may already be the second target's. Every attempt runs on the
// router's one header map, so each rewrite sets everything it owns (path,
// content-length, the vendor key) and removes the previous vendor's key;
// the body is the router's replayed copy of the downstream's, never an
// earlier attempt's rewrite. A reply here is never a local reply (Envoy
// would not retry it): a target this call may not use (not in its
// chain_targets, no vendor key left, not rewritable) is sent emptied, with
// no credential, and its answer turned into a 503, so the router moves on
// to the next target or, with none left, ends with that 503.

// ChainTargetAttribute is the attribute the upstream ext_proc filter must
// ask for (request_attributes) to learn the target of its attempt's host.
const ChainTargetAttribute = "xds.upstream_host_metadata.filter_metadata['llm_proxy.failover']['target']"

// attributesKey is where Envoy puts the attributes in a ProcessingRequest.
const attributesKey = "envoy.filters.http.ext_proc"

// chainAttempt is one attempt of a chain route.
type chainAttempt struct {
	from, to   failover.Target // requested target; the host's
	host       string          // the host's target as its metadata names it
	key        string          // the chain
	path       string          // vendor path and query the attempts start from
	served     bool            // the call may be served by to
	method, ct string
	hasLength  bool   // the request has a content-length to keep true
	credential string // the vendor key used, to report the answer
	status     int    // the attempt's response status, once seen
}

// chainAttempt starts the stream of a chain route's attempt: one whose
// first message carries the host's target attribute (only an upstream
// filter's can: the downstream request has no host). ok is false for
// every other stream. An attempt whose call was not sent there by this
// server (no chain in the metadata: the downstream filter failed open, or
// a stale route) is passed through.
func (st *stream) chainAttempt(hs []*corev3.HeaderValue) (*extprocv3.ProcessingResponse, bool) {
	host := st.attrs[attributesKey].GetFields()[ChainTargetAttribute].GetStringValue()
	if host == "" {
		return nil, false
	}
	count, _ := header(hs, "x-envoy-attempt-count")
	n := attemptCount(count)
	ns := namespace(st.md, st.s.cfg.Processing.MetadataNamespace)
	from := failover.Target{Provider: ns["provider"].GetStringValue(), Model: ns["model"].GetStringValue()}
	key := ns[mdChain].GetStringValue()
	if _, known := st.s.providers[from.Provider]; !known || key == "" || from.Model == "" || n == 0 || n > maxAttempts {
		return st.passThrough(), true
	}
	a := &chainAttempt{from: from, host: host, key: key, path: ns[mdChainPath].GetStringValue()}
	a.method, _ = header(hs, ":method")
	a.ct, _ = header(hs, "content-type")
	_, a.hasLength = header(hs, "content-length")
	if t, ok := parseTarget(host); host == key || (ok && t == from) {
		a.to, a.served = from, true
	} else if ok {
		a.to = t
		for _, s := range strings.Split(ns[mdChainTargets].GetStringValue(), ",") {
			a.served = a.served || s == host
		}
	}
	provider := a.to.Provider
	if _, known := st.s.providers[provider]; !known {
		provider, a.served = from.Provider, false
	}
	// Test mode force_transient_recover fails the first attempt: on a
	// chain route the next target serves.
	st.attempt = &attemptState{n: n, provider: provider, chain: a, force: n == 1 && ns[attemptForcedKey].GetBoolValue()}
	class := ""
	if st.s.attempts != nil {
		class = AttemptNoResponse
	}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{}}}
	resp.DynamicMetadata = st.attemptMetadata(class)
	// The body is needed to set the target's model (and held with the
	// headers until this server answers it).
	resp.ModeOverride = &filterv3.ProcessingMode{RequestBodyMode: filterv3.ProcessingMode_BUFFERED}
	return resp, true
}

// chainRewrite answers a chain attempt's request body with the request for
// the attempt's target.
func (st *stream) chainRewrite(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	a := st.attempt.chain
	mut := &extprocv3.HeaderMutation{RemoveHeaders: []string{HeaderChain}}
	common := &extprocv3.CommonResponse{HeaderMutation: mut}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: common}}}
	path, body, cred, ok := st.chainRequest(a, b.GetBody())
	if !ok {
		st.s.log.Warn("failover target cannot serve this call; its attempt is sent empty and failed",
			"chain", a.key, "target", a.host, "attempt", st.attempt.n)
		st.attempt.force = true
		mut.RemoveHeaders = append(mut.RemoveHeaders, credentialHeaders...)
		common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte{}}}
		if a.hasLength {
			mut.SetHeaders = append(mut.SetHeaders, setHeader("content-length", "0"))
		}
		return resp
	}
	mut.SetHeaders = append(mut.SetHeaders, setHeader(":path", path))
	length := len(b.GetBody())
	if body != nil {
		common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}}
		length = len(body)
	}
	if a.hasLength {
		// Also when the body is the original: an earlier attempt's
		// rewrite left its own length in the shared header map.
		mut.SetHeaders = append(mut.SetHeaders, setHeader("content-length", strconv.Itoa(length)))
	}
	if cred != nil {
		a.credential = cred.name
		for _, h := range credentialHeaders {
			if h != cred.header {
				mut.RemoveHeaders = append(mut.RemoveHeaders, h)
			}
		}
		mut.SetHeaders = append(mut.SetHeaders, setHeader(cred.header, cred.value))
	}
	return resp
}

// chainCredential is the vendor key an attempt carries.
type chainCredential struct{ name, header, value string }

// chainRequest returns the attempt's :path, its new body (nil: the
// original, as replayed, is right) and, for a gateway_keys target, the vendor key.
// ok is false when the target cannot serve the call.
func (st *stream) chainRequest(a *chainAttempt, orig []byte) (path string, body []byte, cred *chainCredential, ok bool) {
	if !a.served || a.path == "" {
		return "", nil, nil, false
	}
	p := st.s.providers[a.to.Provider]
	vpath, query, _ := strings.Cut(a.path, "?")
	path = a.path
	sent := orig
	if a.to != a.from {
		shape := failover.Native
		if st.s.providers[a.from.Provider].ParseRequest(providers.Request{Method: a.method, Path: vpath, RawQuery: query,
			ContentType: a.ct}).Endpoint == providers.EndpointChatCompletions {
			shape = failover.ChatCompletions
		}
		rw, err := failover.Rewrite(failover.Request{From: a.from, Path: vpath, RawQuery: query, Shape: shape, Body: orig}, a.to)
		if err != nil {
			return "", nil, nil, false
		}
		rpath, rquery, _ := strings.Cut(rw.Path, "?")
		res, found := st.s.providers.Resolve(rpath)
		if !found || res.Provider.Name() != a.to.Provider {
			return "", nil, nil, false
		}
		vpath, query, sent = res.Path, rquery, rw.Body
		if rw.BodyChanged {
			body = rw.Body
		}
		path = vpath
		if query != "" {
			path += "?" + query
		}
	}
	if st.s.keysMode[a.to.Provider] {
		ga := st.s.gatewayKeys
		if ga == nil {
			return "", nil, nil, false
		}
		info := p.ParseRequest(providers.Request{Method: a.method, Path: vpath, RawQuery: query, ContentType: a.ct, Body: sent})
		c, m, ref := ga.Credential(p, info, path)
		if ref != nil || len(m.Set) == 0 {
			return "", nil, nil, false
		}
		if m.Path != "" {
			path = m.Path
		}
		cred = &chainCredential{name: c.Name, header: m.Set[0].Name, value: m.Set[0].Value.Reveal()}
	}
	return path, body, cred, true
}

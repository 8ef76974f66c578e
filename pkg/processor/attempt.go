package processor

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
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
	force    bool // answer this attempt's response with 503 (test mode)
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
	class := st.s.attempts(a.provider, status, func(name string) string {
		v, _ := header(hs, name)
		return v
	})
	resp.DynamicMetadata = st.attemptMetadata(class)
	st.closed = true
	return resp
}

func (st *stream) attemptMetadata(class string) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		st.s.cfg.Processing.MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"attempt_" + strconv.Itoa(st.attempt.n): structpb.NewStringValue(class),
		}}),
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

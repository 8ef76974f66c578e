package processor

import (
	"context"
	"strings"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/credentials"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/gatewayauth"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// GatewayKeysGuard names gateway-key refusals in GuardDecision.Guard.
const GatewayKeysGuard = "gateway_keys"

// GatewayKeyDetailsPrefix starts the %RESPONSE_CODE_DETAILS% of a
// gateway-key refusal; the gatewayauth reason follows
// ("llm_proxy_gateway_key_revoked_key").
const GatewayKeyDetailsPrefix = "llm_proxy_gateway_key_"

// credentialHeaders are where vendor SDKs send their key. In gateway_keys
// mode all of them are removed at request headers, whatever happens next,
// so a gateway key never reaches a vendor.
var credentialHeaders = []string{"authorization", "x-api-key", "x-goog-api-key"}

// gatewayKeysHeaders strips the client's credential from a gateway_keys
// request at request headers: the credential headers and any key= query
// parameter. The vendor key is added at admission, once the gateway key
// was checked. It returns the query to forward.
func gatewayKeysHeaders(mut *extprocv3.HeaderMutation, rawQuery string) string {
	if mut.RemoveHeaders == nil {
		mut.RemoveHeaders = make([]string, 0, len(credentialHeaders)+1)
	}
	for _, h := range credentialHeaders {
		mut.RemoveHeaders = appendUnique(mut.RemoveHeaders, h)
	}
	if rawQuery == "" {
		return rawQuery
	}
	if p, changed := credentials.StripKeyParam("?" + rawQuery); changed {
		return strings.TrimPrefix(p, "?")
	}
	return rawQuery
}

// authenticate checks the gateway key of a request to a gateway_keys
// provider, then that the key may use the provider and model. On success
// the call carries the key's identity and the vendor key header is queued
// for the request; on refusal it returns the reply (401, 403, 429 or 503
// in the vendor's error shape), which costs nothing and never reaches the
// vendor.
func (st *stream) authenticate(ctx context.Context) *extprocv3.ProcessingResponse {
	ga := st.s.gatewayKeys
	if ga == nil {
		// A gateway_keys provider without the key machinery: refuse rather
		// than forward a request that carries no credential.
		st.decisions = append(st.decisions, GuardDecision{Guard: GatewayKeysGuard, Verdict: VerdictRefused,
			Details: GatewayKeyDetailsPrefix + gatewayauth.ReasonUnavailable, At: st.s.now()})
		return st.refuse(&Reply{
			Status:  503,
			Headers: [][2]string{{"Content-Type", "application/json"}, {headerErrorSource, "proxy"}},
			Body:    st.provider.ErrorBody(st.call.Info, providers.ErrorUnavailable, "[PROXY] The gateway cannot check API keys right now. Please try again later."),
			Details: GatewayKeyDetailsPrefix + gatewayauth.ReasonUnavailable,
		})
	}
	adm, ref := ga.Admit(ctx, gatewayauth.Request{
		Provider: st.provider, Info: st.call.Info, Header: st.call.Header,
		Path: st.fullPath, ClientIP: st.call.Identity.ClientIP, Now: st.call.Start,
	})
	if ref == nil {
		ref = ga.Permit(adm.Identity, st.provider, st.call.Info)
	}
	d := GuardDecision{Guard: GatewayKeysGuard, Verdict: VerdictAdmitted, At: st.s.now()}
	if ref != nil {
		d.Verdict, d.Details = VerdictRefused, GatewayKeyDetailsPrefix+ref.Reason
		st.decisions = append(st.decisions, d)
		st.s.log.Debug("gateway key refused", "provider", st.call.Provider, "request_id", st.call.RequestID,
			"reason", ref.Reason, "status", ref.Status, "error", ref.Err)
		return st.refuse(&Reply{
			Status:  ref.Status,
			Headers: [][2]string{{"Content-Type", "application/json"}, {headerErrorSource, "proxy"}},
			Body:    ref.Body,
			Details: d.Details,
		})
	}
	st.decisions = append(st.decisions, d)
	id := adm.Identity
	st.call.Identity.KeyID = id.Key.ID
	st.call.Identity.Owner = id.Key.Owner
	st.call.Identity.Team = id.Key.Team
	st.call.Identity.GatewayKey = id
	st.credential = adm.Credential.Name
	st.setCredential(adm.Mutation)
	return nil
}

// setCredential queues the vendor key header of m for the request,
// replacing any queued before (a failover to another vendor).
func (st *stream) setCredential(m credentials.HeaderMutation) {
	st.credHeaders = st.credHeaders[:0]
	for _, h := range m.Set {
		st.credHeaders = append(st.credHeaders, [2]string{h.Name, h.Value.Reveal()})
	}
}

// reportCredential tells the vendor key pool how the vendor answered the
// key used (a 429 feeds least_recently_limited selection).
func (st *stream) reportCredential(status int) {
	// A chained call's attempts chose their keys upstream and reported
	// them there (attempt.go).
	if st.credential != "" && st.s.gatewayKeys != nil && !st.chained() {
		st.s.gatewayKeys.Report(st.call.Provider, st.credential, status, st.s.now())
	}
}

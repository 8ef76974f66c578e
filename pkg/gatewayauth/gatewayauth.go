// Package gatewayauth is the admission step of a provider in gateway_keys
// mode, in two calls the processor makes:
//
//   - [Admission.Admit] at request headers: find the gateway key where the
//     client's SDK put it, authenticate it (through the failed-lookup
//     limiter), pick the vendor key and build the header mutation that
//     replaces the one with the other.
//   - [Admission.Permit] once the model is known (request body, or the
//     Gemini path): check the key may use the provider and model.
//
// A refusal carries its HTTP status and a body in the vendor's own error
// shape (rendered by [providers.Provider.ErrorBody], the mechanism of the
// gateway's 429/402/503 answers), so official SDKs raise their native
// errors; it never reaches the vendor. No message names or echoes a
// secret. The package does no I/O of its own: a cache hit is in-process.
package gatewayauth

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/credentials"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// Refusal reasons, for logs and metrics.
const (
	ReasonMissing         = "missing_key"
	ReasonUnknown         = "unknown_key"
	ReasonExpired         = "expired_key"
	ReasonRevoked         = "revoked_key"
	ReasonForbidden       = "forbidden"
	ReasonTooManyFailures = "too_many_failures"
	ReasonUnavailable     = "key_store_unavailable"
	ReasonNoCredential    = "no_vendor_credential"
)

// Refusal is an answer the gateway sends instead of calling the vendor.
type Refusal struct {
	// Status is the HTTP status: 401, 403, 429 or 503.
	Status int
	// Body is the vendor-shaped JSON error.
	Body []byte
	// Reason is one of the Reason constants.
	Reason string
	// Err is the underlying error, safe to log (no secrets).
	Err error
}

// Admitted is an authenticated request ready to go to the vendor.
type Admitted struct {
	Identity *keys.Identity
	// Credential names the vendor key used (Credential.Name); pass it to
	// Admission.Report with the vendor's status.
	Credential credentials.Credential
	// Mutation replaces the client's credential with the vendor key.
	Mutation credentials.HeaderMutation
}

// Request is what Admit needs from request headers.
type Request struct {
	// Provider is the vendor the request goes to.
	Provider providers.Provider
	// Info is what the provider read so far (ParseRequest of the path
	// without body is enough): it picks the error shape and the
	// credential style of OpenAI-compatible endpoints.
	Info providers.RequestInfo
	// Header returns a lower-case request header's value, "" if absent.
	Header func(name string) string
	// Path is the request :path with its query.
	Path string
	// ClientIP is the client address the failure limiter counts by. An
	// empty address shares one bucket with every other empty one.
	ClientIP string
	// Now is the request's time; zero means the authenticator's clock.
	Now time.Time
}

// Admission holds the authenticator and the vendor key pools of the
// providers in gateway_keys mode. Safe for concurrent use.
type Admission struct {
	auth  *keys.Authenticator
	pools map[string]*credentials.Pool
}

// New returns an Admission; pools maps provider name to its vendor keys.
func New(auth *keys.Authenticator, pools map[string]*credentials.Pool) *Admission {
	return &Admission{auth: auth, pools: pools}
}

// Admit authenticates a request at its headers.
func (a *Admission) Admit(ctx context.Context, r Request) (Admitted, *Refusal) {
	presented := keys.Extract(r.Header, r.Path)
	var id *keys.Identity
	var err error
	if r.Now.IsZero() {
		id, err = a.auth.AuthenticateFrom(ctx, r.ClientIP, presented.Secret.Reveal())
	} else {
		id, err = a.auth.AuthenticateAt(ctx, r.Now, r.ClientIP, presented.Secret.Reveal())
	}
	if err != nil {
		return Admitted{}, refusal(r.Provider, r.Info, err)
	}
	cred, m, ref := a.Credential(r.Provider, r.Info, r.Path)
	if ref != nil {
		return Admitted{}, ref
	}
	return Admitted{Identity: id, Credential: cred, Mutation: m}, nil
}

// Credential picks a vendor key of p for a request to path (with query)
// that p read as info, and returns the header mutation that puts it on the
// request in p's style (Bearer on an OpenAI-compatible endpoint). Admit
// uses it for the provider asked; a failover to another vendor uses it for
// the target. It refuses with 503 when p holds no usable key.
func (a *Admission) Credential(p providers.Provider, info providers.RequestInfo, path string) (credentials.Credential, credentials.HeaderMutation, *Refusal) {
	name := p.Name()
	cred, err := a.pools[name].Pick()
	if err != nil {
		return credentials.Credential{}, credentials.HeaderMutation{}, &Refusal{
			Status: http.StatusServiceUnavailable, Reason: ReasonNoCredential, Err: err,
			Body: p.ErrorBody(info, providers.ErrorUnavailable, "[PROXY] No vendor credential is configured for this provider."),
		}
	}
	return cred, credentials.Mutation(credentials.StyleFor(name, info.OpenAICompatible), cred.Secret, path), nil
}

// Permit checks that the admitted key may use info.Model of p.
func (a *Admission) Permit(id *keys.Identity, p providers.Provider, info providers.RequestInfo) *Refusal {
	if err := keys.Authorize(id, p.Name(), info.Model); err != nil {
		return refusal(p, info, err)
	}
	return nil
}

// Report passes the vendor's answer status for a request made with the
// named credential to the provider's pool (a 429 feeds the
// least_recently_limited policy).
func (a *Admission) Report(provider, credential string, status int, now time.Time) {
	if pool := a.pools[provider]; pool != nil {
		pool.Report(credential, status, now)
	}
}

func refusal(p providers.Provider, info providers.RequestInfo, err error) *Refusal {
	type rule struct {
		target error
		status int
		kind   providers.ErrorKind
		reason string
		msg    string
	}
	rules := []rule{
		{keys.ErrMissingKey, 401, providers.ErrorUnauthenticated, ReasonMissing, "[PROXY] No API key provided. Send your gateway key as you would the vendor's API key."},
		{keys.ErrUnknownKey, 401, providers.ErrorUnauthenticated, ReasonUnknown, "[PROXY] Incorrect API key provided."},
		{keys.ErrExpiredKey, 401, providers.ErrorUnauthenticated, ReasonExpired, "[PROXY] This API key has expired."},
		{keys.ErrRevokedKey, 401, providers.ErrorUnauthenticated, ReasonRevoked, "[PROXY] This API key has been revoked."},
		{keys.ErrTooManyFailures, 429, providers.ErrorRateLimited, ReasonTooManyFailures, "[PROXY] Too many requests with invalid API keys from this address. Please try again later."},
		{keys.ErrStoreUnavailable, 503, providers.ErrorUnavailable, ReasonUnavailable, "[PROXY] The gateway cannot check API keys right now. Please try again later."},
	}
	for _, r := range rules {
		if errors.Is(err, r.target) {
			return &Refusal{Status: r.status, Body: p.ErrorBody(info, r.kind, r.msg), Reason: r.reason, Err: err}
		}
	}
	var pe *keys.PermissionError
	if errors.As(err, &pe) {
		return &Refusal{Status: 403, Body: p.ErrorBody(info, providers.ErrorPermissionDenied, "[PROXY] "+pe.Error()+"."), Reason: ReasonForbidden, Err: err}
	}
	return &Refusal{Status: 503, Body: p.ErrorBody(info, providers.ErrorUnavailable, "[PROXY] The gateway cannot check API keys right now. Please try again later."), Reason: ReasonUnavailable, Err: err}
}

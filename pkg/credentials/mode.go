package credentials

import (
	"errors"
	"fmt"
)

// Mode is how a provider authenticates clients.
type Mode string

// Modes accepted in [ProviderAuth.Auth].
const (
	// ModePassthrough forwards the client's own vendor key (the default).
	ModePassthrough Mode = "passthrough"
	// ModeGatewayKeys requires a gateway key and sends the vendor key of
	// [ProviderAuth.Credentials] instead.
	ModeGatewayKeys Mode = "gateway_keys"
)

// ProviderAuth is the authentication part of providers.<name> in the YAML
// configuration, meant to be embedded inline in pkg/config's Provider:
//
//	providers:
//	  openai:
//	    auth: gateway_keys
//	    credentials:
//	      api_key: ${OPENAI_API_KEY}
type ProviderAuth struct {
	// Auth is "passthrough" (default) or "gateway_keys".
	Auth Mode `json:"auth,omitempty"`
	// Credentials is where the vendor key comes from; required with
	// gateway_keys, refused with passthrough (it would never be used).
	Credentials *Config `json:"credentials,omitempty"`
}

// GatewayKeys reports whether the provider runs in gateway_keys mode.
func (p ProviderAuth) GatewayKeys() bool { return p.Auth == ModeGatewayKeys }

// Validate reports every problem, with paths under providers.<provider>.
func (p ProviderAuth) Validate(provider string) error {
	path := "providers." + provider
	switch p.Auth {
	case "", ModePassthrough:
		if p.Credentials != nil {
			return fmt.Errorf("%s.credentials: only used with auth: %s", path, ModeGatewayKeys)
		}
		return nil
	case ModeGatewayKeys:
		if p.Credentials == nil || p.Credentials.IsZero() {
			return fmt.Errorf("%s.credentials: required with auth: %s", path, ModeGatewayKeys)
		}
		return p.Credentials.Validate(path + ".credentials")
	}
	return errors.New(path + ".auth: must be " + string(ModePassthrough) + " or " + string(ModeGatewayKeys))
}

package envoyconfig

import (
	"errors"
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// HTTPConnectionManagers returns the HTTP connection managers configured on
// the bootstrap's static listeners, in listener and filter chain order.
// Network filters whose typed_config is not an HttpConnectionManager are
// skipped; one that cannot be decoded is an error.
func HTTPConnectionManagers(b *bootstrapv3.Bootstrap) ([]*hcmv3.HttpConnectionManager, error) {
	var out []*hcmv3.HttpConnectionManager
	for _, l := range b.GetStaticResources().GetListeners() {
		chains := l.GetFilterChains()
		if l.GetDefaultFilterChain() != nil {
			chains = append(chains[:len(chains):len(chains)], l.GetDefaultFilterChain())
		}
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				h, err := hcmOf(f)
				if err != nil {
					return nil, fmt.Errorf("listener %q: %w", l.GetName(), err)
				}
				if h != nil {
					out = append(out, h)
				}
			}
		}
	}
	return out, nil
}

func hcmOf(f *listenerv3.Filter) (*hcmv3.HttpConnectionManager, error) {
	tc := f.GetTypedConfig()
	if tc == nil || tc.MessageName() != (&hcmv3.HttpConnectionManager{}).ProtoReflect().Descriptor().FullName() {
		return nil, nil
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := tc.UnmarshalTo(h); err != nil {
		return nil, fmt.Errorf("network filter %q: %w", f.GetName(), err)
	}
	return h, nil
}

// ExtProcFilter returns the configuration of the single ext_proc HTTP filter
// in the bootstrap's static listeners, so tests can compare its processing
// mode with the contract. It fails when there is none or more than one.
func ExtProcFilter(b *bootstrapv3.Bootstrap) (*extprocv3.ExternalProcessor, error) {
	hcms, err := HTTPConnectionManagers(b)
	if err != nil {
		return nil, err
	}
	var found []*extprocv3.ExternalProcessor
	for _, h := range hcms {
		for _, f := range h.GetHttpFilters() {
			tc := f.GetTypedConfig()
			if tc == nil || tc.MessageName() != (&extprocv3.ExternalProcessor{}).ProtoReflect().Descriptor().FullName() {
				continue
			}
			e := &extprocv3.ExternalProcessor{}
			if err := tc.UnmarshalTo(e); err != nil {
				return nil, fmt.Errorf("http filter %q: %w", f.GetName(), err)
			}
			found = append(found, e)
		}
	}
	switch len(found) {
	case 0:
		return nil, errors.New("no ext_proc http filter")
	case 1:
		return found[0], nil
	default:
		return nil, fmt.Errorf("%d ext_proc http filters, want one", len(found))
	}
}

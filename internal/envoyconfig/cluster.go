package envoyconfig

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

const httpOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// httpOptions returns the cluster's upstream HTTP protocol options, or nil.
func httpOptions(cl *clusterv3.Cluster) *upstreamhttpv3.HttpProtocolOptions {
	a, ok := cl.GetTypedExtensionProtocolOptions()[httpOptionsKey]
	if !ok {
		return nil
	}
	o := &upstreamhttpv3.HttpProtocolOptions{}
	if err := a.UnmarshalTo(o); err != nil {
		return nil // reported as a bad Any by the walk
	}
	return o
}

// speaksHTTP2 reports whether the cluster always uses HTTP/2 upstream, as an
// envoy_grpc target must. Auto or downstream-derived protocols do not count:
// without TLS ALPN they fall back to HTTP/1.1.
func speaksHTTP2(cl *clusterv3.Cluster) bool {
	//nolint:staticcheck // the deprecated field still selects HTTP/2 in Envoy
	if cl.GetHttp2ProtocolOptions() != nil {
		return true
	}
	return httpOptions(cl).GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
}

// checkClusterTLS requires every upstream TLS socket of the cluster to verify
// the server: a trust anchor for the chain and a subject-alt-name match (or
// auto_san_validation, or auto_sni_san_validation) for the name. Envoy accepts any certificate
// without the first and any valid certificate for any name without the second.
func (c *checker) checkClusterTLS(path string, cl *clusterv3.Cluster) {
	autoSAN := httpOptions(cl).GetUpstreamHttpProtocolOptions().GetAutoSanValidation()
	check := func(p string, ts *corev3.TransportSocket) {
		tc := ts.GetTypedConfig()
		if tc == nil || string(tc.MessageName()) != "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext" {
			return
		}
		t := &tlsv3.UpstreamTlsContext{}
		if err := tc.UnmarshalTo(t); err != nil {
			return // reported as a bad Any by the walk
		}
		c.checkUpstreamTLS(p, t, autoSAN)
	}
	if ts := cl.GetTransportSocket(); ts != nil {
		check(join(path, "transport_socket"), ts)
	}
	for i, m := range cl.GetTransportSocketMatches() {
		check(fmt.Sprintf("%s.transport_socket_matches[%d].transport_socket", path, i), m.GetTransportSocket())
	}
}

func (c *checker) checkUpstreamTLS(path string, t *tlsv3.UpstreamTlsContext, autoSAN bool) {
	ctx := t.GetCommonTlsContext()
	var vc *tlsv3.CertificateValidationContext
	switch {
	case ctx.GetValidationContext() != nil:
		vc = ctx.GetValidationContext()
	case ctx.GetCombinedValidationContext() != nil:
		vc = ctx.GetCombinedValidationContext().GetDefaultValidationContext()
		if ctx.GetCombinedValidationContext().GetValidationContextSdsSecretConfig() != nil {
			return // trust anchors come from SDS at run time
		}
	case ctx.GetValidationContextSdsSecretConfig() != nil,
		ctx.GetValidationContextCertificateProviderInstance() != nil,
		ctx.GetValidationContextCertificateProvider() != nil: //nolint:staticcheck // still honoured by Envoy
		return // trust anchors come from elsewhere at run time
	default:
		c.addf(path, "upstream TLS has no validation context, so Envoy accepts any server certificate")
		return
	}
	if vc.GetTrustedCa() == nil && vc.GetSystemRootCerts() == nil && vc.GetCaCertificateProviderInstance() == nil {
		c.addf(path, "upstream TLS validation context has no trusted_ca, so Envoy accepts any server certificate")
	}
	//nolint:staticcheck // match_subject_alt_names is deprecated but still honoured
	// auto_sni_san_validation checks the name against the SNI sent, which
	// auto_host_sni takes from each host's hostname (a cluster whose hosts
	// are different vendors).
	if len(vc.GetMatchTypedSubjectAltNames()) == 0 && len(vc.GetMatchSubjectAltNames()) == 0 && !autoSAN && !t.GetAutoSniSanValidation() {
		c.addf(path, "upstream TLS checks the certificate chain but not the server name: set match_typed_subject_alt_names (or upstream_http_protocol_options.auto_san_validation, or auto_sni_san_validation)")
	}
}

package processor

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/credentials"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/gatewayauth"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
)

const testVendorKey = "sk-vendor-test-0123456789"

// keysServer returns a Server with openai in gateway_keys mode (a file
// store in a temporary directory holding one key limited to gpt-4o-mini)
// and the key's secret. With noAdmission the Server has no admission at
// all.
func keysServer(tb testing.TB, noAdmission bool) (*Server, string) {
	tb.Helper()
	ctx := context.Background()
	store, err := keys.OpenFileStore(filepath.Join(tb.TempDir(), "keys.json"))
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = store.Close() })
	_, secret, err := (&keys.Manager{Store: store}).CreateKey(ctx, keys.KeySpec{Owner: "ann", Models: []string{"gpt-4o-mini"}})
	require.NoError(tb, err)
	auth := keys.NewAuthenticator(store, keys.AuthenticatorOptions{})
	require.NoError(tb, auth.Sync(ctx))
	pool, err := credentials.New("openai", credentials.Config{APIKey: credentials.NewSecret(testVendorKey)})
	require.NoError(tb, err)
	cfg := config.Defaults()
	pc := cfg.Providers["openai"]
	pc.Auth, pc.Credentials = credentials.ModeGatewayKeys, &credentials.Config{APIKey: credentials.NewSecret(testVendorKey)}
	cfg.Providers["openai"] = pc
	o := Options{Config: cfg}
	if !noAdmission {
		o.GatewayKeys = gatewayauth.New(auth, map[string]*credentials.Pool{"openai": pool})
	}
	return New(o), secret
}

func keyReqHeaders(path string, kv ...string) *extprocv3.ProcessingRequest {
	hs := []*corev3.HeaderValue{{Key: ":path", RawValue: []byte(path)}, {Key: ":method", RawValue: []byte("POST")},
		{Key: "content-type", RawValue: []byte("application/json")}}
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}}}}
}

func keyReqBody(body string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{
		ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_BUFFERED},
		Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}}}
}

func setHeaders(m *extprocv3.HeaderMutation) map[string]string {
	out := map[string]string{}
	for _, h := range m.GetSetHeaders() {
		out[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	return out
}

func TestGatewayKeysAdmission(t *testing.T) {
	const body = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	s, secret := keysServer(t, false)
	tests := []struct {
		name   string
		path   string
		header []string
		body   string
		status int // 0: admitted
	}{
		{"bearer key admitted", "/openai/v1/chat/completions", []string{"authorization", "Bearer " + secret}, body, 0},
		{"key in the query admitted and removed", "/openai/v1/chat/completions?key=" + secret + "&x=1", nil, body, 0},
		{"unknown key", "/openai/v1/chat/completions", []string{"authorization", "Bearer llmp-unknown"}, body, 401},
		{"no key", "/openai/v1/chat/completions", nil, body, 401},
		{"model not allowed", "/openai/v1/chat/completions", []string{"authorization", "Bearer " + secret},
			`{"model":"gpt-4o","messages":[]}`, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStream(s)
			h := st.handle(context.Background(), keyReqHeaders(tt.path, tt.header...))
			mut := h.GetRequestHeaders().GetResponse().GetHeaderMutation()
			require.Subset(t, mut.GetRemoveHeaders(), []string{"authorization", "x-api-key", "x-goog-api-key"},
				"the client's credential headers never reach the vendor")
			if p, ok := setHeaders(mut)[":path"]; ok {
				require.NotContains(t, p, "key=", "nor a key query parameter")
				require.Contains(t, p, "x=1")
			}
			r := st.handle(context.Background(), keyReqBody(tt.body))
			if tt.status != 0 {
				im := r.GetImmediateResponse()
				require.NotNil(t, im, "refused")
				require.EqualValues(t, tt.status, im.GetStatus().GetCode())
				require.NotContains(t, string(im.GetBody()), secret)
				return
			}
			require.Nil(t, r.GetImmediateResponse())
			set := setHeaders(r.GetRequestBody().GetResponse().GetHeaderMutation())
			require.Equal(t, "Bearer "+testVendorKey, set["authorization"], "the vendor key is set once the key was checked")
			require.Regexp(t, `^key_[0-9a-f]{12}$`, st.call.Identity.KeyID)
			require.Equal(t, "ann", st.call.Identity.Owner)
			md := r.GetDynamicMetadata().GetFields()[s.cfg.Processing.MetadataNamespace].GetStructValue().GetFields()
			require.Equal(t, st.call.Identity.KeyID, md["key_id"].GetStringValue())
		})
	}
}

func TestGatewayKeysWithoutAdmissionRefuses(t *testing.T) {
	s, secret := keysServer(t, true)
	st := newStream(s)
	st.handle(context.Background(), keyReqHeaders("/openai/v1/chat/completions", "authorization", "Bearer "+secret))
	r := st.handle(context.Background(), keyReqBody(`{"model":"gpt-4o-mini"}`))
	require.EqualValues(t, 503, r.GetImmediateResponse().GetStatus().GetCode(),
		"never forwarded without a vendor credential")
}

// BenchmarkAdmissionGatewayKey compares the request side (headers and a
// 70-byte body) of a gateway_keys call on a key-cache hit against the same
// call in passthrough mode: the difference per op is what a gateway key
// adds to admission (no network round trip: the key index is in process).
func BenchmarkAdmissionGatewayKey(b *testing.B) {
	const body = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	keyed, secret := keysServer(b, false)
	plain := New(Options{Config: config.Defaults()})
	for _, c := range []struct {
		name string
		s    *Server
	}{{"passthrough", plain}, {"gateway_key", keyed}} {
		b.Run(c.name, func(b *testing.B) {
			hdr := keyReqHeaders("/openai/v1/chat/completions", "authorization", "Bearer "+secret,
				"content-length", strconv.Itoa(len(body)), "x-forwarded-for", "10.0.0.1")
			bd := keyReqBody(body)
			b.ReportAllocs()
			for b.Loop() {
				st := newStream(c.s)
				st.handle(context.Background(), hdr)
				if r := st.handle(context.Background(), bd); r.GetImmediateResponse() != nil {
					b.Fatal("refused")
				}
				st.finish(context.Background())
			}
		})
	}
}

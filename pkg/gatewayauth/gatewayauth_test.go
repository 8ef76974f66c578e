package gatewayauth

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/credentials"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

const vendorKey = "sk-vendor-SECRET-0123456789"

type fixture struct {
	adm     *Admission
	m       *keys.Manager
	auth    *keys.Authenticator
	now     time.Time
	secret  string
	keyID   string
	openai  *credentials.Pool
	limiter *keys.FailureLimiter
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{now: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
	store, err := keys.OpenFileStore(filepath.Join(t.TempDir(), "keys.json"))
	require.NoError(t, err)
	clock := func() time.Time { return f.now }
	f.m = &keys.Manager{Store: store, Now: clock}
	f.limiter = keys.NewFailureLimiter(2, time.Minute, 0)
	f.auth = keys.NewAuthenticator(store, keys.AuthenticatorOptions{Now: clock, Limiter: f.limiter})
	k, secret, err := f.m.CreateKey(context.Background(), keys.KeySpec{Owner: "alice", Models: []string{"gpt-4o*", "claude-sonnet-*", "gemini-2.5-*"}})
	require.NoError(t, err)
	f.secret, f.keyID = secret, k.ID
	require.NoError(t, f.auth.Sync(context.Background()))
	pools := map[string]*credentials.Pool{}
	for _, name := range []string{"openai", "anthropic", "gemini"} {
		p, err := credentials.New(name, credentials.Config{Keys: []credentials.Source{{Name: "primary", APIKey: credentials.NewSecret(vendorKey)}, {Name: "backup", APIKey: credentials.NewSecret(vendorKey + "-2")}}})
		require.NoError(t, err)
		pools[name] = p
	}
	f.openai = pools["openai"]
	f.adm = New(f.auth, pools)
	return f
}

func headers(h map[string]string) func(string) string { return func(n string) string { return h[n] } }

func request(p providers.Provider, path string, h map[string]string) Request {
	base, _, _ := strings.Cut(path, "?")
	_, q, _ := strings.Cut(path, "?")
	return Request{Provider: p, Info: p.ParseRequest(providers.Request{Method: "POST", Path: base, RawQuery: q}), Header: headers(h), Path: path, ClientIP: "10.0.0.1"}
}

func TestAdmitEachSDK(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		p        providers.Provider
		path     string
		headers  map[string]string
		model    string
		setName  string
		setValue string
		newPath  string
	}{
		{"openai sdk", providers.OpenAI{}, "/v1/chat/completions", map[string]string{"authorization": "Bearer " + f.secret}, "gpt-4o-mini", "authorization", "Bearer " + vendorKey, ""},
		{"anthropic sdk", providers.Anthropic{}, "/v1/messages", map[string]string{"x-api-key": f.secret}, "claude-sonnet-4-5", "x-api-key", vendorKey, ""},
		{"anthropic via openai sdk", providers.Anthropic{}, "/v1/chat/completions", map[string]string{"authorization": "Bearer " + f.secret}, "claude-sonnet-4-5", "authorization", "Bearer " + vendorKey, ""},
		{"gemini sdk", providers.Gemini{}, "/v1beta/models/gemini-2.5-flash:generateContent", map[string]string{"x-goog-api-key": f.secret}, "gemini-2.5-flash", "x-goog-api-key", vendorKey, ""},
		{"gemini query key", providers.Gemini{}, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=" + f.secret, nil, "gemini-2.5-flash", "x-goog-api-key", vendorKey, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(tt.p, tt.path, tt.headers)
			adm, ref := f.adm.Admit(context.Background(), r)
			require.Nil(t, ref)
			require.Equal(t, f.keyID, adm.Identity.Key.ID)
			require.Equal(t, tt.setName, adm.Mutation.Set[0].Name)
			require.Equal(t, tt.setValue[:len(tt.setValue)-len(vendorKey)]+vendorKey, strings.TrimSuffix(adm.Mutation.Set[0].Value.Reveal(), "-2"))
			require.Equal(t, tt.newPath, adm.Mutation.Path)
			// The gateway key leaves the request: every other credential
			// header is removed, the set one overwritten, the query cleaned.
			for name := range tt.headers {
				if name != tt.setName {
					require.Contains(t, adm.Mutation.Remove, name)
				}
			}
			require.NotContains(t, adm.Mutation.Path, f.secret)
			info := r.Info
			info.Model = tt.model
			require.Nil(t, f.adm.Permit(adm.Identity, tt.p, info))
		})
	}
}

func TestRefusalsInVendorShape(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	check := func(t *testing.T, ref *Refusal, status int, reason string) map[string]any {
		t.Helper()
		require.NotNil(t, ref)
		require.Equal(t, status, ref.Status)
		require.Equal(t, reason, ref.Reason)
		var body map[string]any
		require.NoError(t, json.Unmarshal(ref.Body, &body))
		require.NotContains(t, string(ref.Body), f.secret)
		require.NotContains(t, string(ref.Body), vendorKey)
		require.NotContains(t, ref.Err.Error(), f.secret)
		return body
	}

	_, ref := f.adm.Admit(ctx, request(providers.OpenAI{}, "/v1/chat/completions", nil))
	body := check(t, ref, 401, ReasonMissing)
	require.Equal(t, "invalid_api_key", body["error"].(map[string]any)["code"])

	_, ref = f.adm.Admit(ctx, request(providers.Anthropic{}, "/v1/messages", map[string]string{"x-api-key": "llmp-wrong"}))
	body = check(t, ref, 401, ReasonUnknown)
	require.Equal(t, "authentication_error", body["error"].(map[string]any)["type"])

	// A vendor key sent to a gateway_keys provider is refused, not forwarded.
	_, ref = f.adm.Admit(ctx, request(providers.Gemini{}, "/v1beta/models/gemini-2.5-flash:generateContent", map[string]string{"x-goog-api-key": vendorKey}))
	body = check(t, ref, 401, ReasonUnknown)
	require.Equal(t, "UNAUTHENTICATED", body["error"].(map[string]any)["status"])

	// Two failures from 10.0.0.1: the limiter now refuses even the right key.
	_, ref = f.adm.Admit(ctx, request(providers.OpenAI{}, "/v1/chat/completions", map[string]string{"authorization": "Bearer " + f.secret}))
	body = check(t, ref, 429, ReasonTooManyFailures)
	require.Equal(t, "rate_limit_exceeded", body["error"].(map[string]any)["code"])

	// Forbidden model: 403 naming the model, not the key.
	r := request(providers.Anthropic{}, "/v1/messages", map[string]string{"x-api-key": f.secret})
	r.ClientIP = "10.0.0.2"
	adm, ref := f.adm.Admit(ctx, r)
	require.Nil(t, ref)
	info := r.Info
	info.Model = "claude-opus-4-1"
	ref = f.adm.Permit(adm.Identity, providers.Anthropic{}, info)
	body = check(t, ref, 403, ReasonForbidden)
	require.Equal(t, "permission_error", body["error"].(map[string]any)["type"])
	require.Contains(t, string(ref.Body), "claude-opus-4-1")
	require.NotContains(t, string(ref.Body), f.keyID)
	ref = f.adm.Permit(adm.Identity, providers.Gemini{}, providers.RequestInfo{Model: "gemini-1.5-pro"})
	body = check(t, ref, 403, ReasonForbidden)
	require.Equal(t, "PERMISSION_DENIED", body["error"].(map[string]any)["status"])

	// Revoked and expired.
	_, err := f.m.Revoke(ctx, adm.Identity.Key.ID)
	require.NoError(t, err)
	require.NoError(t, f.auth.Sync(ctx))
	r.ClientIP = "10.0.0.3"
	_, ref = f.adm.Admit(ctx, r)
	check(t, ref, 401, ReasonRevoked)
	_, s2, err := f.m.CreateKey(ctx, keys.KeySpec{ExpiresAt: f.now.Add(time.Hour)})
	require.NoError(t, err)
	require.NoError(t, f.auth.Sync(ctx))
	f.now = f.now.Add(time.Hour)
	require.NoError(t, f.auth.Sync(ctx))
	r = request(providers.OpenAI{}, "/v1/chat/completions", map[string]string{"authorization": "Bearer " + s2})
	r.ClientIP = "10.0.0.4"
	_, ref = f.adm.Admit(ctx, r)
	check(t, ref, 401, ReasonExpired)

	// Store not reachable for longer than MaxStale: 503, fail closed.
	f.now = f.now.Add(keys.DefaultMaxStale + time.Second)
	r.ClientIP = "10.0.0.5"
	_, ref = f.adm.Admit(ctx, r)
	body = check(t, ref, 503, ReasonUnavailable)
	require.Equal(t, "service_unavailable", body["error"].(map[string]any)["code"])
}

func TestNoPoolForProvider(t *testing.T) {
	f := newFixture(t)
	adm := New(f.auth, map[string]*credentials.Pool{})
	_, ref := adm.Admit(context.Background(), request(providers.OpenAI{}, "/v1/chat/completions", map[string]string{"authorization": "Bearer " + f.secret}))
	require.NotNil(t, ref)
	require.Equal(t, 503, ref.Status)
	require.Equal(t, ReasonNoCredential, ref.Reason)
}

func TestReportFeedsSelection(t *testing.T) {
	f := newFixture(t)
	pool, err := credentials.New("openai", credentials.Config{Selection: credentials.PolicyLeastRecentlyLimited,
		Keys: []credentials.Source{{Name: "a", APIKey: credentials.NewSecret("ka")}, {Name: "b", APIKey: credentials.NewSecret("kb")}}})
	require.NoError(t, err)
	adm := New(f.auth, map[string]*credentials.Pool{"openai": pool})
	adm.Report("openai", "a", 429, f.now)
	adm.Report("nobody", "a", 429, f.now) // unknown provider: ignored
	for range 3 {
		got, ref := adm.Admit(context.Background(), request(providers.OpenAI{}, "/v1/chat/completions", map[string]string{"authorization": "Bearer " + f.secret}))
		require.Nil(t, ref)
		require.Equal(t, "b", got.Credential.Name)
	}
}

// BenchmarkAdmit is the whole header-time admission of a gateway key on a
// cache hit: extraction, authentication through the limiter, credential
// pick and header mutation.
func BenchmarkAdmit(b *testing.B) {
	f := newFixture(b)
	r := request(providers.OpenAI{}, "/v1/chat/completions", map[string]string{"authorization": "Bearer " + f.secret})
	r.Now = f.now
	b.ReportAllocs()
	for b.Loop() {
		if _, ref := f.adm.Admit(context.Background(), r); ref != nil {
			b.Fatal(ref.Err)
		}
	}
}

package keysapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/adminauth"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
)

const token = "test-admin-token-0123456789"

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

type fixture struct {
	t       *testing.T
	srv     *httptest.Server
	auth    *keys.Authenticator
	changes atomic.Int64
	now     atomic.Int64
}

func newFixture(t *testing.T) *fixture {
	store, err := keys.OpenFileStore(filepath.Join(t.TempDir(), "keys.json"))
	require.NoError(t, err)
	f := &fixture{t: t}
	f.now.Store(t0.UnixNano())
	clock := func() time.Time { return time.Unix(0, f.now.Load()).UTC() }
	f.auth = keys.NewAuthenticator(store, keys.AuthenticatorOptions{Now: clock})
	m := &keys.Manager{Store: store, Now: clock}
	h := New(m, adminauth.New(token), Options{OnChange: func(ctx context.Context) {
		f.changes.Add(1)
		_ = f.auth.Sync(ctx)
	}})
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

// do sends a request with the admin token and decodes the JSON answer.
func (f *fixture) do(method, path, body string) (int, map[string]any, http.Header) {
	f.t.Helper()
	return f.doWith(method, path, body, "Bearer "+token)
}

func (f *fixture) doWith(method, path, body, auth string) (int, map[string]any, http.Header) {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	require.NoError(f.t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := f.srv.Client().Do(req)
	require.NoError(f.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(f.t, err)
	var out map[string]any
	if len(raw) > 0 && resp.Header.Get("Content-Type") == "application/json" {
		require.NoError(f.t, json.Unmarshal(raw, &out), string(raw))
	}
	return resp.StatusCode, out, resp.Header
}

func TestKeyLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	code, team, _ := f.do("POST", "/admin/teams", `{"id":"search","budget":{"monthly_usd":100},"limits":{"tokens_per_minute":50000}}`)
	require.Equal(t, http.StatusCreated, code, team)
	require.Equal(t, "search", team["id"])

	code, created, hdr := f.do("POST", "/admin/keys", `{"owner":"alice","team":"search","description":"notebook",
		"models":["gpt-4o*"],"providers":["openai"],"limits":{"requests_per_minute":60},"budget":{"daily_usd":5},
		"labels":{"env":"dev"},"expires_at":"2027-01-01T00:00:00Z"}`)
	require.Equal(t, http.StatusCreated, code, created)
	id, secret := created["id"].(string), created["key"].(string)
	require.True(t, keys.LooksLikeSecret(secret))
	require.Equal(t, "/admin/keys/"+id, hdr.Get("Location"))
	require.Equal(t, "no-store", hdr.Get("Cache-Control"))
	require.Equal(t, "alice", created["owner"])
	require.NotContains(t, created, "secret_hash")

	// The new key works on this instance at once (OnChange synced).
	ident, err := f.auth.Authenticate(ctx, secret)
	require.NoError(t, err)
	require.Equal(t, id, ident.Key.ID)
	require.NoError(t, keys.Authorize(ident, "openai", "gpt-4o-mini"))
	require.Error(t, keys.Authorize(ident, "openai", "o3"))

	// Reads never show a secret or a hash.
	for _, path := range []string{"/admin/keys", "/admin/keys/" + id, "/admin/keys?team=search", "/admin/keys?owner=alice"} {
		code, body, _ := f.do("GET", path, "")
		require.Equal(t, http.StatusOK, code)
		js, _ := json.Marshal(body)
		require.NotContains(t, string(js), secret)
		require.NotContains(t, string(js), keys.HashSecret(secret))
		require.Contains(t, string(js), id)
	}
	_, body, _ := f.do("GET", "/admin/keys?team=other", "")
	require.Empty(t, body["keys"])

	code, patched, _ := f.do("PATCH", "/admin/keys/"+id, `{"models":["o3"],"expires_at":"never","labels":{"env":"prod"}}`)
	require.Equal(t, http.StatusOK, code, patched)
	require.Equal(t, []any{"o3"}, patched["models"])
	require.NotContains(t, patched, "expires_at")
	require.Equal(t, "notebook", patched["description"])

	code, rotated, hdr := f.do("POST", "/admin/keys/"+id+"/rotate", `{"grace_period_seconds":60}`)
	require.Equal(t, http.StatusOK, code, rotated)
	newSecret := rotated["key"].(string)
	require.NotEqual(t, secret, newSecret)
	require.Equal(t, "no-store", hdr.Get("Cache-Control"))
	for _, s := range []string{secret, newSecret} {
		_, err := f.auth.Authenticate(ctx, s)
		require.NoError(t, err, "both secrets work in the grace period")
	}
	f.now.Add(int64(time.Minute))
	require.NoError(t, f.auth.Sync(ctx))
	_, err = f.auth.Authenticate(ctx, secret)
	require.ErrorIs(t, err, keys.ErrExpiredKey)

	code, _, _ = f.do("DELETE", "/admin/teams/search", "")
	require.Equal(t, http.StatusConflict, code, "the team has an active key")

	code, revoked, _ := f.do("DELETE", "/admin/keys/"+id, "")
	require.Equal(t, http.StatusOK, code)
	require.NotEmpty(t, revoked["revoked_at"])
	_, err = f.auth.Authenticate(ctx, newSecret)
	require.ErrorIs(t, err, keys.ErrRevokedKey)
	code, _, _ = f.do("POST", "/admin/keys/"+id+"/rotate", "")
	require.Equal(t, http.StatusConflict, code)

	code, _, _ = f.do("DELETE", "/admin/teams/search", "")
	require.Equal(t, http.StatusNoContent, code)
	require.EqualValues(t, 6, f.changes.Load(), "every successful change, no failed one")
}

func TestTeams(t *testing.T) {
	f := newFixture(t)
	code, _, _ := f.do("POST", "/admin/teams", `{"id":"ads","description":"ads team"}`)
	require.Equal(t, http.StatusCreated, code)
	code, _, _ = f.do("POST", "/admin/teams", `{"id":"ads"}`)
	require.Equal(t, http.StatusConflict, code)
	code, body, _ := f.do("PATCH", "/admin/teams/ads", `{"budget":{"daily_usd":3}}`)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, map[string]any{"daily_usd": 3.0}, body["budget"])
	require.Equal(t, "ads team", body["description"])
	code, body, _ = f.do("GET", "/admin/teams", "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["teams"], 1)
	code, _, _ = f.do("GET", "/admin/teams/ads", "")
	require.Equal(t, http.StatusOK, code)
	code, _, _ = f.do("GET", "/admin/teams/nope", "")
	require.Equal(t, http.StatusNotFound, code)
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	big := `{"description":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	tests := []struct {
		name, method, path, body string
		want                     int
		contains                 string
	}{
		{"unknown field", "POST", "/admin/keys", `{"owner":"a","secret":"x"}`, 400, "unknown field"},
		{"bad json", "POST", "/admin/keys", `{"owner":`, 400, "invalid JSON"},
		{"wrong type", "POST", "/admin/keys", `{"owner":1}`, 400, "owner"},
		{"trailing data", "POST", "/admin/keys", `{} {}`, 400, "trailing"},
		{"unknown team", "POST", "/admin/keys", `{"team":"nope"}`, 400, "team"},
		{"bad expiry", "PATCH", "/admin/keys/key_000000000000", `{"expires_at":"soon"}`, 400, "RFC 3339"},
		{"body too large", "POST", "/admin/keys", big, 413, "larger"},
		{"missing key", "GET", "/admin/keys/key_000000000000", "", 404, "not found"},
		{"secret pasted as id", "GET", "/admin/keys/llmp-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "", 404, "redacted"},
		{"bad grace", "POST", "/admin/keys/key_000000000000/rotate", `{"grace_period_seconds":-1}`, 400, "grace_period_seconds"},
		{"wrong method", "PUT", "/admin/keys", `{}`, 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, _ := f.do(tt.method, tt.path, tt.body)
			require.Equal(t, tt.want, code, body)
			if tt.contains != "" {
				require.Contains(t, body["error"], tt.contains)
			}
			js, _ := json.Marshal(body)
			require.NotContains(t, string(js), "llmp-AAAA")
		})
	}
}

func TestAdminTokenRequired(t *testing.T) {
	f := newFixture(t)
	for _, auth := range []string{"", "Bearer wrong-token-0123456789", "Basic " + token} {
		code, _, _ := f.doWith("POST", "/admin/keys", `{}`, auth)
		require.Equal(t, http.StatusUnauthorized, code, auth)
	}
	code, _, _ := f.do("GET", "/admin/keys", "")
	require.Equal(t, http.StatusOK, code)

	// No token configured: the API does not exist.
	store, err := keys.OpenFileStore(filepath.Join(t.TempDir(), "k.json"))
	require.NoError(t, err)
	srv := httptest.NewServer(New(&keys.Manager{Store: store}, adminauth.New(""), Options{}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/admin/keys", nil)
	req.Header.Set("Authorization", "Bearer ")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

package adminauth

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

const token = "0123456789abcdef-admin"

func TestWrap(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	tests := []struct {
		name   string
		guard  *Guard
		header string
		want   int
	}{
		{"no token configured", New(""), "Bearer " + token, http.StatusNotFound},
		{"too short token is off", New("short"), "Bearer short", http.StatusNotFound},
		{"nil guard", nil, "Bearer " + token, http.StatusNotFound},
		{"right token", New(token), "Bearer " + token, http.StatusTeapot},
		{"scheme any case", New(token), "bearer " + token, http.StatusTeapot},
		{"missing header", New(token), "", http.StatusUnauthorized},
		{"wrong token", New(token), "Bearer " + token + "x", http.StatusUnauthorized},
		{"prefix of token", New(token), "Bearer " + token[:10], http.StatusUnauthorized},
		{"basic scheme", New(token), "Basic " + token, http.StatusUnauthorized},
		{"bare token", New(token), token, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/admin/keys", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			w := httptest.NewRecorder()
			tt.guard.Wrap(ok).ServeHTTP(w, r)
			require.Equal(t, tt.want, w.Code)
			require.NotContains(t, w.Body.String(), token)
			if tt.want == http.StatusUnauthorized {
				require.Contains(t, w.Header().Get("WWW-Authenticate"), "Bearer")
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	g := FromEnv(func(k string) string {
		require.Equal(t, EnvVar, k)
		return token
	})
	require.True(t, g.Enabled())
	require.False(t, FromEnv(func(string) string { return "" }).Enabled())
}

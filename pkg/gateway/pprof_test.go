package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

func TestPprofIsOptInAndBehindTheToken(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		auth string
		want int
	}{
		{"off by default", map[string]string{}, "", http.StatusNotFound},
		{"on", map[string]string{"LLM_PROXY_PPROF": "1"}, "", http.StatusOK},
		{"on, other values are off", map[string]string{"LLM_PROXY_PPROF": "yes"}, "", http.StatusNotFound},
		{"on with a token, none sent", map[string]string{"LLM_PROXY_PPROF": "1", "LLM_PROXY_ADMIN_TOKEN": "tok"}, "", http.StatusUnauthorized},
		{"on with a token, sent", map[string]string{"LLM_PROXY_PPROF": "1", "LLM_PROXY_ADMIN_TOKEN": "tok"}, "Bearer tok", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := New(t.Context(), config.Defaults(), Options{Logger: quiet(), Getenv: func(k string) string { return tc.env[k] }})
			require.NoError(t, err)
			defer g.Close()
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1"} {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				rec := httptest.NewRecorder()
				g.Admin.ServeHTTP(rec, req)
				require.Equal(t, tc.want, rec.Code, path)
			}
		})
	}
}

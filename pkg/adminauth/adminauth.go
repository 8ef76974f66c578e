// Package adminauth guards the admin HTTP endpoints with one bearer token.
// The endpoints are off unless a token is configured (LLM_PROXY_ADMIN_TOKEN),
// and every request must carry "Authorization: Bearer <token>", compared in
// constant time. The gateway-key admin API and the console share it.
package adminauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// EnvVar is the environment variable holding the admin token.
const EnvVar = "LLM_PROXY_ADMIN_TOKEN"

// MinTokenLen is the shortest token accepted; shorter ones leave the admin
// endpoints off, as if unset.
const MinTokenLen = 16

// Guard checks admin requests against a token. The zero value (no token)
// refuses everything. Safe for concurrent use.
type Guard struct {
	// sum is the SHA-256 of the token: comparing fixed-length digests in
	// constant time also hides the token's length.
	sum     [sha256.Size]byte
	enabled bool
}

// New returns a Guard for token. An empty or too short token gives a
// Guard that refuses every request (the endpoints are off).
func New(token string) *Guard {
	if len(token) < MinTokenLen {
		return &Guard{}
	}
	return &Guard{sum: sha256.Sum256([]byte(token)), enabled: true}
}

// FromEnv returns New(getenv(EnvVar)).
func FromEnv(getenv func(string) string) *Guard { return New(getenv(EnvVar)) }

// Enabled reports whether a token is configured.
func (g *Guard) Enabled() bool { return g != nil && g.enabled }

// Check reports whether r carries the admin token.
func (g *Guard) Check(r *http.Request) bool {
	if !g.Enabled() {
		return false
	}
	v := r.Header.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(v[7:])))
	return subtle.ConstantTimeCompare(got[:], g.sum[:]) == 1
}

// Wrap returns next behind the guard: 404 when no token is configured (the
// endpoints do not exist), 401 with a WWW-Authenticate challenge when the
// request lacks the token. Refusals carry a small JSON body and never
// echo what the client sent.
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.Enabled() {
			writeJSONError(w, http.StatusNotFound, "admin API disabled: set "+EnvVar)
			return
		}
		if !g.Check(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="llm-proxy admin"`)
			writeJSONError(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":"` + msg + `"}` + "\n"))
}

package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// tokenRealm is the HTTP Basic realm a browser shows when it asks for the
// admin token.
const tokenRealm = `Basic realm="llm-proxy admin", charset="UTF-8"`

// requireToken wraps h so that, when token is not empty, a request must
// carry it as "Authorization: Bearer <token>" (scripts) or as the password
// of HTTP Basic authentication with any user name (browsers: the 401's
// WWW-Authenticate makes them ask, and they resend it with the console's
// own fetches). Anything else gets 401 with a JSON body. An empty token
// leaves h open. The comparison takes the same time whatever the input.
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if presented, ok := presentedToken(r); ok {
			got := sha256.Sum256([]byte(presented))
			if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
				h.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", tokenRealm)
		writeJSON(w, http.StatusUnauthorized, apiError{"admin token required: send Authorization: Bearer <LLM_PROXY_ADMIN_TOKEN>"})
	})
}

// presentedToken returns the credential of the request's Authorization
// header: a bearer token or a Basic password.
func presentedToken(r *http.Request) (string, bool) {
	if _, pass, ok := r.BasicAuth(); ok {
		return pass, true
	}
	v := r.Header.Get("Authorization")
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:]), true
	}
	return "", false
}

package processor

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"strings"
)

// keyIDLen is the length of a key id in hex characters (80 bits).
const keyIDLen = 20

// KeyID returns the id the gateway uses for an API key everywhere (rate
// limit scopes, logs, metrics, Redis keys, response headers): the first 20
// hex characters of its SHA-256. The raw key is never stored. An empty key
// has an empty id.
func KeyID(key string) string {
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])[:keyIDLen]
}

// bearer returns the credential of an Authorization header value: the
// token after "Bearer " (any case), or the whole value otherwise.
func bearer(v string) string {
	v = strings.TrimSpace(v)
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return v
}

// clientIP returns the client address from Envoy's x-forwarded-for: with
// use_remote_address (envoy/envoy.yaml) Envoy appends the peer it accepted
// the connection from, so the last entry is the one Envoy vouches for.
// Ports and IPv6 brackets are removed. Empty when absent or unparsable.
func clientIP(xff string) string {
	if i := strings.LastIndexByte(xff, ','); i >= 0 {
		xff = xff[i+1:]
	}
	xff = strings.TrimSpace(xff)
	if xff == "" {
		return ""
	}
	if ip := net.ParseIP(xff); ip != nil {
		return ip.String()
	}
	if host, _, err := net.SplitHostPort(xff); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			return ip.String()
		}
	}
	return ""
}

// firstNonEmpty returns the first non-empty value.
func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

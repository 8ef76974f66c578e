package envoytest

import (
	"net/http"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// header is one entry of an Envoy header map. Keys are lower-case.
type header struct {
	key   string
	value string
}

// headerMap is an ordered, multi-valued header map with lower-case keys, the
// way Envoy's HeaderMapImpl stores headers (pseudo-headers first).
type headerMap []header

// get returns the first value of key and whether it exists.
func (h headerMap) get(key string) (string, bool) {
	for _, e := range h {
		if e.key == key {
			return e.value, true
		}
	}
	return "", false
}

// values returns every value of key in order.
func (h headerMap) values(key string) []string {
	var out []string
	for _, e := range h {
		if e.key == key {
			out = append(out, e.value)
		}
	}
	return out
}

// add appends an entry (Envoy addCopy).
func (h *headerMap) add(key, value string) {
	*h = append(*h, header{key: key, value: value})
}

// set replaces the first entry of key and drops the others, or appends a new
// entry (Envoy setCopy). Pseudo-headers are kept in front of regular headers.
func (h *headerMap) set(key, value string) {
	idx := -1
	out := (*h)[:0]
	for _, e := range *h {
		if e.key == key {
			if idx >= 0 {
				continue
			}
			idx = len(out)
			e.value = value
		}
		out = append(out, e)
	}
	*h = out
	if idx >= 0 {
		return
	}
	if strings.HasPrefix(key, ":") {
		pos := 0
		for pos < len(*h) && strings.HasPrefix((*h)[pos].key, ":") {
			pos++
		}
		*h = append(*h, header{})
		copy((*h)[pos+1:], (*h)[pos:])
		(*h)[pos] = header{key: key, value: value}
		return
	}
	h.add(key, value)
}

// del removes every entry of key and reports whether any existed.
func (h *headerMap) del(key string) bool {
	out := (*h)[:0]
	found := false
	for _, e := range *h {
		if e.key == key {
			found = true
			continue
		}
		out = append(out, e)
	}
	*h = out
	return found
}

// clone returns a deep copy.
func (h headerMap) clone() headerMap {
	if h == nil {
		return nil
	}
	out := make(headerMap, len(h))
	copy(out, h)
	return out
}

// proto converts the map to the ext_proc wire form: every entry its own
// HeaderValue, value only in raw_value (Envoy 1.32+).
func (h headerMap) proto() *corev3.HeaderMap {
	out := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, len(h))}
	for _, e := range h {
		out.Headers = append(out.Headers, &corev3.HeaderValue{Key: e.key, RawValue: []byte(e.value)})
	}
	return out
}

// httpHeader converts regular (non-pseudo) entries to a net/http header.
func (h headerMap) httpHeader() http.Header {
	out := http.Header{}
	for _, e := range h {
		if strings.HasPrefix(e.key, ":") {
			continue
		}
		ck := http.CanonicalHeaderKey(e.key)
		out[ck] = append(out[ck], e.value)
	}
	return out
}

// hopByHop lists connection-specific headers that Envoy's HTTP/1 codec never
// forwards.
var hopByHop = map[string]bool{
	"connection":        true,
	"keep-alive":        true,
	"proxy-connection":  true,
	"transfer-encoding": true,
	"upgrade":           true,
	"te":                true,
}

// fromHTTP appends the entries of an http.Header in sorted key order (net/http
// does not keep wire order), lower-casing keys and dropping hop-by-hop headers.
func fromHTTP(dst headerMap, src http.Header) headerMap {
	keys := make([]string, 0, len(src))
	for k := range src {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		if hopByHop[lk] || lk == "host" {
			continue
		}
		for _, v := range src[k] {
			dst = append(dst, header{key: lk, value: v})
		}
	}
	return dst
}

// validHeaderName reports whether name is a valid lower-case header name
// (RFC 9110 token), optionally prefixed by ':' for pseudo-headers.
func validHeaderName(name string) bool {
	n := strings.TrimPrefix(name, ":")
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if !isTokenChar(n[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// validHeaderValue reports whether v can be carried in a header: Envoy
// rejects NUL, CR and LF.
func validHeaderValue(v string) bool {
	return !strings.ContainsAny(v, "\x00\r\n")
}

package processor

import (
	"net/url"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// proxyHeaderPrefix marks request headers meant for this gateway only; they
// never reach the vendor.
const proxyHeaderPrefix = "x-llm-proxy-"

// headerValue returns the value of h as Envoy sends it: raw_value since
// Envoy 1.27, value before.
func headerValue(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

// header returns the first value of name (lower-case) in hs.
func header(hs []*corev3.HeaderValue, name string) (string, bool) {
	for _, h := range hs {
		if h.GetKey() == name {
			return headerValue(h), true
		}
	}
	return "", false
}

func headersOf(h *extprocv3.HttpHeaders) []*corev3.HeaderValue {
	return h.GetHeaders().GetHeaders()
}

// setHeader returns a mutation entry that overwrites name with value. Only
// raw_value is set: Envoy 1.32+ reads nothing else and rejects entries that
// carry both.
func setHeader(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, RawValue: []byte(value)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// mediaType returns the lower-case media type of a Content-Type value,
// without parameters.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// parseLength parses a content-length value; -1 when absent or invalid.
func parseLength(v string, ok bool) int64 {
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// queryValue returns the first value of key in a raw query without
// allocating a url.Values map.
func queryValue(rawQuery, key string) string {
	for rawQuery != "" {
		var part string
		part, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(part, "=")
		if k == key {
			if strings.ContainsAny(v, "%+") {
				if u, err := url.QueryUnescape(v); err == nil {
					return u
				}
			}
			return v
		}
	}
	return ""
}

package processor

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
)

func TestKeyID(t *testing.T) {
	require.Empty(t, KeyID(""))
	id := KeyID("sk-live-secret")
	require.Len(t, id, 20)
	require.Equal(t, id, KeyID("sk-live-secret"))
	require.NotEqual(t, id, KeyID("sk-live-secreT"))
	require.NotContains(t, id, "secret")
}

func TestClientIP(t *testing.T) {
	tests := []struct{ xff, want string }{
		{"", ""},
		{"203.0.113.7", "203.0.113.7"},
		{"10.0.0.1, 198.51.100.2", "198.51.100.2"},
		{"198.51.100.2:4711", "198.51.100.2"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"unknown", ""},
	}
	for _, tt := range tests {
		t.Run(tt.xff, func(t *testing.T) {
			require.Equal(t, tt.want, clientIP(tt.xff))
		})
	}
}

func TestIdentityFromHeaders(t *testing.T) {
	tests := []struct {
		name    string
		kv      []string
		path    string
		wantKey string
		wantIP  string
	}{
		{"bearer", []string{"authorization", "Bearer sk-a"}, "/fake/v1/x", KeyID("sk-a"), ""},
		{"bearer case and spaces", []string{"authorization", "  bearer   sk-a "}, "/fake/v1/x", KeyID("sk-a"), ""},
		{"x-api-key", []string{"x-api-key", "ant-b"}, "/fake/v1/x", KeyID("ant-b"), ""},
		{"goog key", []string{"x-goog-api-key", "g-c"}, "/fake/v1/x", KeyID("g-c"), ""},
		{"query key", nil, "/fake/v1/x?alt=sse&key=g-d", KeyID("g-d"), ""},
		{"authorization wins", []string{"x-api-key", "second", "authorization", "Bearer first"}, "/fake/v1/x", KeyID("first"), ""},
		{"no key", []string{"x-forwarded-for", "1.2.3.4, 5.6.7.8"}, "/fake/v1/x", "", "5.6.7.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &countingGuard{}
			h := newHarness(t, config.Defaults(), g)
			c := h.open()
			kv := append([]string{":method", "GET", ":path", tt.path}, tt.kv...)
			c.do(reqHeaders(hdrs(true, kv...)))
			require.Len(t, g.calls, 1)
			require.Equal(t, tt.wantKey, g.calls[0].Identity.KeyID)
			require.Equal(t, tt.wantIP, g.calls[0].Identity.ClientIP)
		})
	}
}

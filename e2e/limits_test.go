package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
)

// bigChat is an OpenAI chat request of at least size bytes.
func bigChat(size int) []byte {
	return []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("a", size) + `"}]}`)
}

// A 10 MiB request body goes to the server as one gRPC message, and the
// guards apply to it: with grpc-go's default 4 MiB receive limit the stream
// failed and Envoy (failure_mode_allow) forwarded it with no limit applied.
func TestTenMiBRequestIsRateLimited(t *testing.T) {
	clk := newClock(midMinute)
	s := startEmulated(t, withClock(clk.Now), limits(func(c *ratelimit.Config) {
		c.Limits = ratelimit.Limits{RequestsPerMinute: 1}
	}))
	body := bigChat(10 << 20)
	resp := post(t, s, "/openai/v1/chat/completions", "application/json", body, nil)
	readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, "admitted")
	resp = post(t, s, "/openai/v1/chat/completions", "application/json", body, nil)
	got := readAll(t, resp)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the limit applies to a 10 MiB body")
	require.Contains(t, got, "rate_limit_exceeded")
	require.Len(t, s.VendorCalls(t), 1)
	require.EqualValues(t, len(body), s.Records(t, 1)[0].RequestBytes)
}

// A body Envoy buffers but that is over processing.max_request_body_bytes
// gets a clear 413 in the vendor's shape, and the vendor is not called.
func TestRequestOverTheConfiguredMaximumGets413(t *testing.T) {
	s := startEmulated(t, withConfig(func(c *config.Config) { c.Processing.MaxRequestBodyBytes = 5 << 20 }))
	resp := post(t, s, "/openai/v1/chat/completions", "application/json", bigChat(6<<20), nil)
	got := readAll(t, resp)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	var e struct {
		Error struct{ Message, Type, Code string }
	}
	require.NoError(t, json.NewDecoder(bytes.NewReader([]byte(got))).Decode(&e), "OpenAI's error shape")
	require.Equal(t, "request_too_large", e.Error.Code)
	require.Equal(t, "invalid_request_error", e.Error.Type)
	require.Contains(t, e.Error.Message, "5242880 bytes")
	require.Equal(t, "proxy", resp.Header.Get("X-Llm-Proxy-Error-Source"))
	require.Empty(t, s.VendorCalls(t))
	line := s.AccessLog(t, 1)[0]
	require.Equal(t, "llm_proxy_request_too_large", str(line["refused_by"]))
	require.EqualValues(t, 413, num(line["response_code"]))
}

// Envoy answers 413 itself for a body over its buffer limit, through the
// encoder chain, so the server sees the local reply's headers for a request
// it never admitted. It must not run admission there: a refusing guard
// would replace Envoy's 413 (here with a 429 for a request the vendor never
// saw).
func TestEnvoysOwn413IsNotAdmitted(t *testing.T) {
	clk := newClock(midMinute)
	s := startEmulated(t, withClock(clk.Now), limits(func(c *ratelimit.Config) {
		c.Limits = ratelimit.Limits{RequestsPerMinute: 1}
	}))
	resp := post(t, s, "/openai/v1/chat/completions", "application/json", bigChat(10), nil)
	readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, "the minute's one request")
	resp = post(t, s, "/openai/v1/chat/completions", "application/json", bigChat(33<<20), nil)
	readAll(t, resp)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "Envoy's answer stands")
	require.Len(t, s.VendorCalls(t), 1)
	lines := s.AccessLog(t, 2)
	require.Empty(t, str(lines[1]["refused_by"]))
	require.Empty(t, str(lines[1]["replaced_by"]))
}

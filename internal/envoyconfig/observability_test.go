package envoyconfig_test

import (
	"os"
	"strings"
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoyconfig"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

func TestAccessLogCarriesUsage(t *testing.T) {
	hcms, err := envoyconfig.HTTPConnectionManagers(load(t, prodPath))
	require.NoError(t, err)
	logs := hcms[0].GetAccessLog()
	require.Len(t, logs, 1)
	al := &accesslogv3.StdoutAccessLog{}
	require.NoError(t, logs[0].GetTypedConfig().UnmarshalTo(al))
	fields := al.GetLogFormat().GetJsonFormat().GetFields()
	for _, key := range []string{"provider", "model", "user", "input_tokens", "output_tokens", "total_tokens", "cache_read_tokens", "reasoning_tokens", "ttfb_ms"} {
		require.Equal(t, "%DYNAMIC_METADATA(llm_proxy:"+key+")%", fields[key].GetStringValue(), key)
	}
	for key, op := range map[string]string{
		"response_code":         "%RESPONSE_CODE%",
		"response_code_details": "%RESPONSE_CODE_DETAILS%",
		"response_flags":        "%RESPONSE_FLAGS%",
		"attempts":              "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
		"duration_ms":           "%DURATION%",
	} {
		require.Equal(t, op, fields[key].GetStringValue(), key)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		out = append(out, strings.ToLower(strings.TrimSpace(p)))
	}
	return out
}

func TestCORSPolicy(t *testing.T) {
	hcms, err := envoyconfig.HTTPConnectionManagers(load(t, prodPath))
	require.NoError(t, err)
	vh := hcms[0].GetRouteConfig().GetVirtualHosts()[0]
	p := &corsv3.CorsPolicy{}
	require.NoError(t, vh.GetTypedPerFilterConfig()["envoy.filters.http.cors"].UnmarshalTo(p))
	require.Len(t, p.GetAllowOriginStringMatch(), 1)
	require.Equal(t, "*", p.GetAllowOriginStringMatch()[0].GetExact())
	require.Equal(t, []string{"get", "post", "put", "delete", "options"}, splitList(p.GetAllowMethods()))
	allow := splitList(p.GetAllowHeaders())
	for _, h := range []string{"content-type", "authorization", "accept", "cache-control", "x-api-key", "anthropic-version", "anthropic-beta", "x-goog-api-key", "x-user-id", "x-llm-proxy-test-mode", "x-stainless-retry-count", "x-stainless-timeout"} {
		require.Contains(t, allow, h)
	}
	expose := splitList(p.GetExposeHeaders())
	for _, h := range []string{"x-llm-input-tokens", "x-llm-output-tokens", "x-llm-total-tokens", "x-llm-cost-usd", "x-llm-provider", "x-llm-model", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reason", "x-llm-proxy-error-class", "x-llm-proxy-error-source"} {
		require.Contains(t, expose, h)
	}
}

// The server asks Envoy to buffer whole responses up to its configured cap;
// Envoy's buffer limit must hold them.
func TestResponseBufferCapFitsEnvoyLimit(t *testing.T) {
	base, err := os.ReadFile("../../configs/base.yml")
	require.NoError(t, err)
	cfg, err := config.Parse(func(string) string { return "" }, base)
	require.NoError(t, err)
	limit := load(t, prodPath).GetStaticResources().GetListeners()[0].GetPerConnectionBufferLimitBytes().GetValue()
	require.LessOrEqual(t, cfg.Processing.ResponseBufferLimitBytes, int64(limit))
	require.Equal(t, envoyconfig.MetadataNamespace, cfg.Processing.MetadataNamespace)
}

// The largest request body Envoy can send in one message is its buffer
// limit; the server's max_request_body_bytes defaults to exactly that, so a
// body Envoy accepts is never refused by default, and one the server's
// limit refuses gets a 413 instead of a failed stream (the gRPC receive
// limit itself is gRPC's ceiling, see processor.MaxRecvMsgBytes).
func TestMaxRequestBodyMatchesEnvoyBuffer(t *testing.T) {
	base, err := os.ReadFile("../../configs/base.yml")
	require.NoError(t, err)
	cfg, err := config.Parse(func(string) string { return "" }, base)
	require.NoError(t, err)
	for _, p := range []string{prodPath, mockPath} {
		limit := load(t, p).GetStaticResources().GetListeners()[0].GetPerConnectionBufferLimitBytes().GetValue()
		require.EqualValues(t, limit, cfg.Processing.MaxRequestBodyBytes, p)
		require.LessOrEqual(t, int64(limit), int64(processor.MaxRecvMsgBytes)-(1<<20), "room for headers and metadata")
	}
}

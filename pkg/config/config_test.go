package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		docs    []string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr []string
	}{
		{
			name: "empty document gives defaults",
			docs: []string{""},
			check: func(t *testing.T, c Config) {
				require.Equal(t, Defaults(), c)
				require.True(t, c.Providers["openai"].IsEnabled())
				require.EqualValues(t, DefaultMaxSampleBytes, c.Features.RateLimiting.Estimation.MaxSampleBytes)
				require.Equal(t, "llm_proxy", c.Processing.MetadataNamespace)
			},
		},
		{
			name: "later file wins key by key and maps merge",
			docs: []string{
				"features: {rate_limiting: {estimation: {bytes_per_token: 3, max_sample_bytes: 10}}}\nproviders: {openai: {enabled: true}}",
				"features: {rate_limiting: {estimation: {bytes_per_token: 5}}}\nproviders: {gemini: {enabled: false}}",
			},
			check: func(t *testing.T, c Config) {
				e := c.Features.RateLimiting.Estimation
				require.InDelta(t, 5, e.BytesPerToken, 0)
				require.EqualValues(t, 10, e.MaxSampleBytes)
				require.False(t, c.Providers["gemini"].IsEnabled())
				require.True(t, c.Providers["openai"].IsEnabled())
			},
		},
		{
			name: "environment references expand",
			docs: []string{"processing: {metadata_namespace: \"${NS}\"}"},
			env:  map[string]string{"NS": "acme.llm"},
			check: func(t *testing.T, c Config) {
				require.Equal(t, "acme.llm", c.Processing.MetadataNamespace)
			},
		},
		{
			name: "every problem is reported at once",
			docs: []string{`
providers: {bedrock: {enabled: true}}
features:
  rate_limiting:
    estimation: {chars_per_token: 4, max_sample_bytes: -5, typo_key: 1}
processing: {unknown: true}
`},
			wantErr: []string{
				"providers.bedrock: unknown provider",
				"features.rate_limiting.estimation.typo_key: unknown key",
				"processing.unknown: unknown key",
			},
		},
		{
			// Text is priced by its pieces since 2026-12-03 (README,
			// estimation): the characters-per-token keys still load, are
			// validated, and are named as having no effect.
			name: "characters-per-token keys load and are named as deprecated",
			docs: []string{"features: {rate_limiting: {estimation: {chars_per_token: 3.5, provider_chars_per_token: {openai: 4}, wide_chars_per_token: 1.2}}}"},
			check: func(t *testing.T, c Config) {
				require.Equal(t, []string{"features.rate_limiting.estimation.chars_per_token",
					"features.rate_limiting.estimation.provider_chars_per_token",
					"features.rate_limiting.estimation.wide_chars_per_token"}, c.Deprecated())
			},
		},
		{
			name:    "characters-per-token keys are still validated",
			docs:    []string{"features: {rate_limiting: {estimation: {chars_per_token: -1, provider_chars_per_token: {bedrock: 4, openai: 0}}}}"},
			wantErr: []string{"chars_per_token: must be a positive number", "provider_chars_per_token.bedrock: unknown provider", "provider_chars_per_token.openai: must be a positive number"},
		},
		{
			name: "values are validated after defaults",
			docs: []string{"features: {rate_limiting: {estimation: {bytes_per_token: -1, max_sample_bytes: -5}}}"},
			wantErr: []string{
				"bytes_per_token: must be a positive number",
				"max_sample_bytes: must be -1",
			},
		},
		{
			name:    "wrong type names the field",
			docs:    []string{"processing: {response_buffer_limit_bytes: lots}"},
			wantErr: []string{"response_buffer_limit_bytes"},
		},
		{
			name:    "top level must be a mapping",
			docs:    []string{"- a\n- b"},
			wantErr: []string{"top level must be a mapping"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs := make([][]byte, len(tt.docs))
			for i, d := range tt.docs {
				docs[i] = []byte(d)
			}
			c, err := Parse(env(tt.env), docs...)
			if len(tt.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tt.wantErr {
					require.Contains(t, err.Error(), w)
				}
				return
			}
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yml")
	b := filepath.Join(dir, "b.yml")
	require.NoError(t, os.WriteFile(a, []byte("processing: {response_buffer_limit_bytes: 100}\n"), 0o600))
	require.NoError(t, os.WriteFile(b, []byte("processing: {metadata_namespace: x}\n"), 0o600))
	c, err := Load(SplitPaths(" "+a+" , "+b+","), env(nil))
	require.NoError(t, err)
	require.EqualValues(t, 100, c.Processing.ResponseBufferLimitBytes)
	require.Equal(t, "x", c.Processing.MetadataNamespace)

	_, err = Load([]string{a, filepath.Join(dir, "missing.yml")}, env(nil))
	require.ErrorContains(t, err, "missing.yml")
	_, err = Load(nil, env(nil))
	require.Error(t, err)
}

func TestShippedConfigsValidate(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			// Overlays apply on top of base.yml, as documented.
			_, err := Load([]string{"../../configs/base.yml", f}, env(map[string]string{"REDIS_ADDR": "127.0.0.1:6379"}))
			require.NoError(t, err, strings.TrimSpace(f))
		})
	}
	// Without REDIS_ADDR the redis backends have no address: reported.
	_, err = Load([]string{"../../configs/base.yml", "../../configs/gateway.yml"}, env(nil))
	require.ErrorContains(t, err, "redis")
}

func TestGatewayKeysConfig(t *testing.T) {
	env := func(k string) string { return map[string]string{"OPENAI_API_KEY": "sk-test-vendor"}[k] }
	tests := []struct {
		name, yaml string
		errHas     []string // empty: valid
	}{
		{"passthrough by default", `providers: {openai: {}}`, nil},
		{"gateway keys with a file store", `
providers:
  openai: {auth: gateway_keys, credentials: {api_key: "${OPENAI_API_KEY}"}}
features:
  gateway_keys: {store: file, file: {path: /tmp/keys.json}}`, nil},
		{"gateway_keys mode needs the store", `
providers:
  openai: {auth: gateway_keys, credentials: {api_key: "${OPENAI_API_KEY}"}}`,
			[]string{"features.gateway_keys: required"}},
		{"gateway_keys mode needs credentials", `
providers:
  anthropic: {auth: gateway_keys}
features:
  gateway_keys: {store: file, file: {path: /tmp/k.json}}`,
			[]string{"providers.anthropic.credentials: required"}},
		{"credentials without gateway_keys", `
providers:
  gemini: {credentials: {api_key: x}}`,
			[]string{"providers.gemini.credentials: only used with auth: gateway_keys"}},
		{"unknown mode and bad store, reported together", `
providers:
  openai: {auth: magic}
features:
  gateway_keys: {store: s3}`,
			[]string{"providers.openai.auth", "features.gateway_keys.store"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(env, []byte(tt.yaml))
			if len(tt.errHas) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.errHas {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), "sk-test-vendor", "no secret in errors")
			_ = c
		})
	}
	c, err := Parse(env, []byte(tests[1].yaml))
	require.NoError(t, err)
	require.True(t, c.Providers["openai"].GatewayKeys())
	require.False(t, c.Providers["gemini"].GatewayKeys())
	require.Equal(t, 500, c.Features.GatewayKeys.SyncIntervalMS, "defaults applied")
}

func TestFailoverValidatedAtLoad(t *testing.T) {
	env := func(string) string { return "sk-test-vendor" }
	keysMode := `
providers:
  openai: {auth: gateway_keys, credentials: {api_key: "${K}"}}
  anthropic: {auth: gateway_keys, credentials: {api_key: "${K}"}}
features:
  gateway_keys: {store: file, file: {path: /tmp/keys.json}}
`
	tests := []struct {
		name   string
		yaml   string
		errHas []string // empty: valid
	}{
		{"off by default", ``, nil},
		{"same-vendor chain in passthrough", `
features:
  failover:
    enabled: true
    chains: {"openai:gpt-4o": ["openai:gpt-4o-mini"]}`, nil},
		{"cross-vendor chain with both vendors' keys", keysMode + `
  failover:
    enabled: true
    chains: {"openai:gpt-4o": ["openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"]}`, nil},
		{"every impossible chain named, even when disabled", `
providers:
  gemini: {enabled: false}
features:
  failover:
    enabled: false
    chains:
      "openai:gpt-4o": ["anthropic:claude-sonnet-4-5"]
      "openai:o3": ["gemini:gemini-2.5-flash"]
      "mistral:large": ["openai:gpt-4o"]
      "openai:gpt-4.1": ["openai:gpt-4.1"]`,
			[]string{
				`features.failover.chains["openai:gpt-4o"]: target 0: cross-vendor hop to anthropic:claude-sonnet-4-5 needs providers.anthropic.auth: gateway_keys`,
				`features.failover.chains["openai:o3"]: target 0: unknown provider "gemini"`,
				`features.failover.chains["mistral:large"]: unknown provider "mistral"`,
				`features.failover.chains["openai:gpt-4.1"]: target 0: openai:gpt-4.1 is the chain's own key (a cycle)`,
			}},
		{"cross-vendor from a passthrough provider", `
providers:
  anthropic: {auth: gateway_keys, credentials: {api_key: "${K}"}}
features:
  gateway_keys: {store: file, file: {path: /tmp/keys.json}}
  failover:
    enabled: true
    chains: {"openai:gpt-4o": ["anthropic:claude-sonnet-4-5"]}`,
			[]string{`target 0: cross-vendor hop from openai needs providers.openai.auth: gateway_keys`}},
		{"unknown key in the block", `
features:
  failover: {enabled: true, chain: {}}`, []string{"chain"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(env, []byte(tt.yaml))
			if len(tt.errHas) == 0 {
				require.NoError(t, err)
				set, err := c.FailoverChains()
				require.NoError(t, err)
				require.Equal(t, c.Features.Failover.Enabled, set.Enabled())
				return
			}
			require.Error(t, err)
			for _, w := range tt.errHas {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

package ratelimit

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

func TestConfigYAML(t *testing.T) {
	const doc = `
enabled: true
backend: redis
fail_mode: closed
limits: {requests_per_minute: 60, tokens_per_minute: 90000, requests_per_day: 1000, tokens_per_day: 2000000}
overrides:
  per_user: {alice: {requests_per_minute: 600}}
  per_key: {3f9a: {tokens_per_day: 10}}
  per_model: {gpt-4o: {tokens_per_minute: 500000}}
global: {requests_per_minute: 5000}
per_provider: {openai: {tokens_per_minute: 2000000}}
count_output_tokens: true
default_max_output_tokens: 1024
redis: {url: "redis://:pw@127.0.0.1:6379/2", address: "a:1", password: p, db: 3}
key_prefix: "gw:"
max_scopes: 42
`
	var got Config
	require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &got))
	require.Equal(t, Config{
		Enabled:  true,
		Settings: quota.Settings{Backend: quota.BackendRedis, FailMode: quota.FailClosed, Redis: redisconf.Config{URL: "redis://:pw@127.0.0.1:6379/2", Address: "a:1", Password: "p", DB: intp(3)}, KeyPrefix: "gw:", MaxScopes: 42},
		Limits:   Limits{RequestsPerMinute: 60, TokensPerMinute: 90000, RequestsPerDay: 1000, TokensPerDay: 2000000},
		Overrides: Overrides{
			PerUser:  map[string]Limits{"alice": {RequestsPerMinute: 600}},
			PerKey:   map[string]Limits{"3f9a": {TokensPerDay: 10}},
			PerModel: map[string]Limits{"gpt-4o": {TokensPerMinute: 500000}},
		},
		Global:                 Limits{RequestsPerMinute: 5000},
		PerProvider:            map[string]Limits{"openai": {TokensPerMinute: 2000000}},
		CountOutputTokens:      true,
		DefaultMaxOutputTokens: 1024,
	}, got)
	require.NoError(t, got.Validate())
	require.True(t, got.FailClosed())
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	require.NoError(t, c.Validate())
	c.ApplyDefaults()
	require.Equal(t, Config{Settings: quota.Settings{Backend: quota.BackendMemory, FailMode: quota.FailOpen, ExpectedInstances: 1, KeyPrefix: DefaultKeyPrefix, MaxScopes: quota.DefaultMaxScopes}}, c)
	require.False(t, c.FailClosed())
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, one per expected problem
	}{
		{name: "zero is valid", cfg: Config{}},
		{name: "redis with address", cfg: Config{Settings: quota.Settings{Backend: quota.BackendRedis, Redis: redisconf.Config{Address: "127.0.0.1:6379"}}}},
		{
			name: "unknown backend and fail mode",
			cfg:  Config{Settings: quota.Settings{Backend: "memcached", FailMode: "maybe"}},
			want: []string{
				`features.rate_limiting.backend: must be "memory" or "redis", got "memcached"`,
				`features.rate_limiting.fail_mode: must be "open", "closed" or "local", got "maybe"`,
			},
		},
		{
			name: "negative limits everywhere",
			cfg: Config{
				Limits:      Limits{RequestsPerMinute: -1, TokensPerDay: -2},
				Global:      Limits{TokensPerMinute: -3},
				PerProvider: map[string]Limits{"openai": {RequestsPerDay: -4}},
				Overrides: Overrides{
					PerUser:  map[string]Limits{"bob": {RequestsPerMinute: -5}},
					PerKey:   map[string]Limits{"": {}},
					PerModel: map[string]Limits{"m": {TokensPerMinute: -6}},
				},
				DefaultMaxOutputTokens: -7,
				Settings:               quota.Settings{MaxScopes: -8},
			},
			want: []string{
				"features.rate_limiting.limits.requests_per_minute: must be 0 (unlimited) or positive, got -1",
				"features.rate_limiting.limits.tokens_per_day: must be 0 (unlimited) or positive, got -2",
				"features.rate_limiting.global.tokens_per_minute: must be 0 (unlimited) or positive, got -3",
				"features.rate_limiting.per_provider.openai.requests_per_day: must be 0 (unlimited) or positive, got -4",
				"features.rate_limiting.overrides.per_user.bob.requests_per_minute: must be 0 (unlimited) or positive, got -5",
				"features.rate_limiting.overrides.per_key: empty name",
				"features.rate_limiting.overrides.per_model.m.tokens_per_minute: must be 0 (unlimited) or positive, got -6",
				"features.rate_limiting.default_max_output_tokens: must not be negative, got -7",
				"features.rate_limiting.max_scopes: must not be negative, got -8",
			},
		},
		{
			name: "redis without location",
			cfg:  Config{Settings: quota.Settings{Backend: quota.BackendRedis, Redis: redisconf.Config{DB: intp(-1)}}},
			want: []string{
				`features.rate_limiting.redis: url, address or addresses is required`,
				"features.rate_limiting.redis.db: must not be negative, got -1",
			},
		},
		{
			name: "bad redis url does not echo the password",
			cfg:  Config{Settings: quota.Settings{Backend: quota.BackendRedis, Redis: redisconf.Config{URL: "http://user:s3cret@host"}}},
			want: []string{"features.rate_limiting.redis.url: not a valid redis:// or rediss:// URL"},
		},
		{
			name: "hash tag in key prefix",
			cfg:  Config{Settings: quota.Settings{KeyPrefix: "{x}:"}},
			want: []string{"features.rate_limiting.key_prefix: must not contain '{' or '}'"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			lines := strings.Split(err.Error(), "\n")
			require.Len(t, lines, len(tt.want), err.Error())
			for i, w := range tt.want {
				require.Contains(t, lines[i], w)
			}
			require.NotContains(t, err.Error(), "s3cret")
		})
	}
}

func TestBillableAndCharge(t *testing.T) {
	tests := []struct {
		name          string
		cfg           Config
		req           Request
		charge        int64
		input, output int64
		billable      int64
	}{
		{name: "input only", cfg: Config{}, req: Request{InputTokens: 10, OutputTokens: 99}, charge: 10, input: 7, output: 50, billable: 7},
		{name: "input and output cap", cfg: Config{CountOutputTokens: true}, req: Request{InputTokens: 10, OutputTokens: 99}, charge: 109, input: 7, output: 50, billable: 57},
		{name: "default output", cfg: Config{CountOutputTokens: true, DefaultMaxOutputTokens: 256}, req: Request{InputTokens: 10}, charge: 266, input: 7, output: 0, billable: 7},
		{name: "negatives count as zero", cfg: Config{CountOutputTokens: true}, req: Request{InputTokens: -5, OutputTokens: -1}, charge: 0, input: -1, output: -1, billable: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.charge, tt.cfg.charge(tt.req))
			require.Equal(t, tt.billable, tt.cfg.Billable(tt.input, tt.output))
		})
	}
}

func TestNew(t *testing.T) {
	ctx := t.Context()
	l, err := New(ctx, Config{}, quota.Hooks{})
	require.NoError(t, err)
	require.Equal(t, Nop{}, l)
	d, err := l.Reserve(ctx, alice(1), t0)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.Equal(t, quota.Status{Backend: "disabled", Healthy: true}, l.Status(ctx))

	l, err = New(ctx, Config{Enabled: true, Limits: Limits{RequestsPerMinute: 1}}, quota.Hooks{})
	require.NoError(t, err)
	require.IsType(t, &quota.Memory{}, l.(*Quota).Store())
	require.NoError(t, l.Close())

	_, err = New(ctx, Config{Enabled: true, Settings: quota.Settings{Backend: "nope"}}, quota.Hooks{})
	require.ErrorContains(t, err, "features.rate_limiting.backend")
}
func intp(i int) *int { return &i }

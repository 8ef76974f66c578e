package keys

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

func TestConfig(t *testing.T) {
	c := Config{Store: StoreFile, File: FileConfig{Path: filepath.Join(t.TempDir(), "k.json")}}
	c.ApplyDefaults()
	require.NoError(t, c.Validate())
	require.Equal(t, 500*time.Millisecond, c.SyncInterval())
	o := c.AuthenticatorOptions(nil, nil)
	require.Equal(t, 5*time.Minute, o.MaxStale)
	require.NotNil(t, o.Limiter)
	s, err := OpenStore(c)
	require.NoError(t, err)
	require.IsType(t, &FileStore{}, s)

	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no store", func(c *Config) { c.Store = "" }, "features.gateway_keys.store"},
		{"file without path", func(c *Config) { c.File.Path = "" }, "file.path"},
		{"redis without address", func(c *Config) { c.Store = StoreRedis }, "features.gateway_keys.redis"},
		{"slow sync", func(c *Config) { c.SyncIntervalMS = 5000 }, "sync_interval_ms"},
		{"negative stale", func(c *Config) { c.MaxStaleSeconds = -1 }, "max_stale_seconds"},
		{"long grace", func(c *Config) { c.RotationGraceSeconds = 1 << 30 }, "rotation_grace_seconds"},
		{"bad lookups", func(c *Config) { c.FailedLookups.Burst = -1 }, "failed_lookups"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := c
			tt.mod(&cc)
			require.ErrorContains(t, cc.Validate(), tt.want)
		})
	}
}

func TestOpenRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	c := Config{Store: StoreRedis, Redis: redisconf.Config{Address: srv.Addr}}
	c.ApplyDefaults()
	require.NoError(t, c.Validate())
	s, err := OpenStore(c)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Version(context.Background())
	require.NoError(t, err)
	_, err = OpenStore(Config{Store: StoreRedis, Redis: redisconf.Config{URL: "http://x"}})
	require.Error(t, err)
}

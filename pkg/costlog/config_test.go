package costlog

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
)

func TestDefaults(t *testing.T) {
	c := Defaults()
	require.False(t, c.Enabled)
	require.Equal(t, 10000, c.QueueSize)
	require.Equal(t, 256, c.BatchSize)
	require.Equal(t, "200ms", c.FlushInterval)
	require.Equal(t, 5, c.MaxAttempts)
	require.Equal(t, "100ms", c.RetryBackoff)
	require.Equal(t, "5s", c.MaxRetryBackoff)
	require.Empty(t, c.Sinks)
	require.NoError(t, c.Validate())

	c = Config{Enabled: true}
	c.ApplyDefaults()
	require.Equal(t, []SinkConfig{{Type: SinkFile, File: &FileConfig{Path: "cost_records.jsonl"}}}, c.Sinks)

	c = Config{Enabled: true, Sinks: []SinkConfig{{Type: SinkRedisStream, RedisStream: &RedisStreamConfig{Config: redisconf.Config{Address: "127.0.0.1:6379"}}}}}
	c.ApplyDefaults()
	require.Equal(t, "llm_cost_records", c.Sinks[0].RedisStream.Stream)
	require.Equal(t, int64(1_000_000), c.Sinks[0].RedisStream.MaxLen)
	require.NoError(t, c.Validate())
	o := c.options()
	require.Equal(t, 200*time.Millisecond, o.FlushInterval)
	require.Equal(t, 100*time.Millisecond, o.RetryBackoff)
	require.Equal(t, 5*time.Second, o.MaxRetryBackoff)
}

func TestConfigFromJSON(t *testing.T) {
	raw := `{"enabled":true,"queue_size":500,"batch_size":32,"flush_interval":"1s",
	"sinks":[{"type":"file","file":{"path":"/var/log/llm/cost.jsonl"}},
	{"type":"redis_stream","redis_stream":{"url":"redis://127.0.0.1:6379/2","stream":"costs","max_len":5000}}]}`
	var c Config
	require.NoError(t, json.Unmarshal([]byte(raw), &c))
	c.ApplyDefaults()
	require.NoError(t, c.Validate())
	require.Equal(t, "/var/log/llm/cost.jsonl", c.Sinks[0].File.Path)
	require.Equal(t, int64(5000), c.Sinks[1].RedisStream.MaxLen)
	require.Equal(t, time.Second, c.options().FlushInterval)
}

func TestValidate(t *testing.T) {
	neg := -1
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{
			name: "scalars",
			cfg: Config{QueueSize: -1, BatchSize: 200000, MaxAttempts: 1000,
				FlushInterval: "soon", RetryBackoff: "-1s", MaxRetryBackoff: "2h"},
			want: []string{
				"features.cost_tracking.queue_size: must be between 1 and 10000000, got -1",
				"features.cost_tracking.batch_size: must be between 1 and 100000, got 200000",
				"features.cost_tracking.max_attempts: must be between 1 and 100, got 1000",
				`features.cost_tracking.flush_interval: must be a duration such as "200ms" or "5s", got "soon"`,
				`features.cost_tracking.retry_backoff: must be positive and at most 1h, got "-1s"`,
				`features.cost_tracking.max_retry_backoff: must be positive and at most 1h, got "2h"`,
			},
		},
		{
			name: "batch larger than queue",
			cfg:  Config{QueueSize: 10, BatchSize: 11},
			want: []string{"features.cost_tracking.batch_size: must not exceed queue_size (10), got 11"},
		},
		{
			name: "backoff order",
			cfg:  Config{RetryBackoff: "2s", MaxRetryBackoff: "1s"},
			want: []string{`features.cost_tracking.max_retry_backoff: must not be less than retry_backoff (2s), got "1s"`},
		},
		{
			name: "sinks",
			cfg: Config{Enabled: true, Sinks: []SinkConfig{
				{Type: "kafka"},
				{Type: SinkFile, File: &FileConfig{Path: "x"}, RedisStream: &RedisStreamConfig{}},
				{Type: SinkRedisStream, File: &FileConfig{}, RedisStream: &RedisStreamConfig{Stream: "s", MaxLen: 1}},
				{Type: SinkRedisStream, RedisStream: &RedisStreamConfig{Config: redisconf.Config{URL: "http://nope", DB: &neg}, Stream: "s", MaxLen: -5}},
			}},
			want: []string{
				`features.cost_tracking.sinks[0].type: must be "file" or "redis_stream", got "kafka"`,
				`features.cost_tracking.sinks[1].redis_stream: not allowed with type "file"`,
				`features.cost_tracking.sinks[2].file: not allowed with type "redis_stream"`,
				"features.cost_tracking.sinks[2].redis_stream: url, address or addresses is required",
				"features.cost_tracking.sinks[3].redis_stream.url: not a valid redis:// or rediss:// URL",
				"features.cost_tracking.sinks[3].redis_stream.db: must not be negative, got -1",
				"features.cost_tracking.sinks[3].redis_stream.max_len: must not be negative, got -5",
			},
		},
		{
			name: "missing blocks without defaults",
			cfg:  Config{Sinks: []SinkConfig{{Type: SinkFile}, {Type: SinkRedisStream}}},
			want: []string{
				"features.cost_tracking.sinks[0].file.path: is required",
				`features.cost_tracking.sinks[1].redis_stream: is required with type "redis_stream"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			if tt.name != "missing blocks without defaults" {
				c.ApplyDefaults()
			} else {
				c.QueueSize, c.BatchSize, c.MaxAttempts = 1, 1, 1
				c.FlushInterval, c.RetryBackoff, c.MaxRetryBackoff = "1s", "1s", "1s"
			}
			err := c.Validate()
			require.Error(t, err)
			got := strings.Split(err.Error(), "\n")
			require.Equal(t, tt.want, got)
		})
	}
}

func TestNew(t *testing.T) {
	ctx := ctxTimeout(t, 10*time.Second)

	w, err := New(ctx, Config{}, Hooks{})
	require.NoError(t, err)
	require.Nil(t, w, "disabled")

	_, err = New(ctx, Config{Enabled: true, QueueSize: -3}, Hooks{})
	require.ErrorContains(t, err, "features.cost_tracking.queue_size")

	blocked := filepath.Join(t.TempDir(), "f")
	_, err = New(ctx, Config{Enabled: true, Sinks: []SinkConfig{
		{Type: SinkFile, File: &FileConfig{Path: filepath.Join(t.TempDir(), "ok.jsonl")}},
		{Type: SinkFile, File: &FileConfig{Path: blocked}},
		{Type: SinkFile, File: &FileConfig{Path: filepath.Join(blocked, "sub", "c.jsonl")}},
	}}, Hooks{})
	require.ErrorContains(t, err, "features.cost_tracking.sinks[2]")

	path := filepath.Join(t.TempDir(), "logs", "cost.jsonl")
	written := make(chan int, 10)
	w, err = New(ctx, Config{Enabled: true, Sinks: []SinkConfig{{Type: SinkFile, File: &FileConfig{Path: path}}}},
		Hooks{OnWritten: func(n int) { written <- n }})
	require.NoError(t, err)
	require.True(t, w.Enqueue(rec("a")))
	require.Equal(t, 1, <-written, "the real 200ms ticker flushes a partial batch")
	require.NoError(t, w.Close(ctx))
	require.Equal(t, "a", readLines(t, path)[0].RequestID)
}

func TestNewDefaultFileSinkInWorkingDirectory(t *testing.T) {
	t.Chdir(t.TempDir())
	ctx := ctxTimeout(t, 10*time.Second)
	w, err := New(ctx, Config{Enabled: true}, Hooks{})
	require.NoError(t, err)
	require.True(t, w.Enqueue(rec("a")))
	require.NoError(t, w.Close(context.Background()))
	require.Equal(t, "a", readLines(t, DefaultFilePath)[0].RequestID)
}

package costlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
)

// Sink types for [SinkConfig.Type].
const (
	SinkFile        = "file"
	SinkRedisStream = "redis_stream"
)

// Defaults of [Config].
const (
	DefaultFilePath     = "cost_records.jsonl"
	DefaultStream       = "llm_cost_records"
	DefaultStreamMaxLen = 1_000_000
	configPath          = "features.cost_tracking"
	maxQueueSize        = 10_000_000
	maxBatchSize        = 100_000
	maxAttemptsLimit    = 100
	redisTimeout        = 2 * time.Second
	startupPingTimeout  = 2 * time.Second
)

// Config configures cost records. It is read from YAML under
// features.cost_tracking (JSON tags). A zero field means its default; call
// [Config.ApplyDefaults] and then [Config.Validate]. Durations are strings
// in Go syntax ("200ms", "5s").
type Config struct {
	// Enabled gates the feature. Default false: [New] returns a nil
	// *Writer, which accepts nothing.
	Enabled bool `json:"enabled"`
	// QueueSize is the in-memory queue capacity, in records. Default 10000.
	QueueSize int `json:"queue_size"`
	// BatchSize is the largest batch written at once. Default 256.
	BatchSize int `json:"batch_size"`
	// FlushInterval is the longest a record waits for its batch to fill.
	// Default "200ms".
	FlushInterval string `json:"flush_interval"`
	// MaxAttempts bounds the write attempts per batch and sink. Default 5.
	MaxAttempts int `json:"max_attempts"`
	// RetryBackoff is the first wait between attempts; it doubles up to
	// MaxRetryBackoff. Defaults "100ms" and "5s".
	RetryBackoff    string `json:"retry_backoff"`
	MaxRetryBackoff string `json:"max_retry_backoff"`
	// Sinks lists the destinations, each receiving every record. Empty
	// means one file sink at "cost_records.jsonl" (when enabled).
	Sinks []SinkConfig `json:"sinks"`
}

// SinkConfig selects one sink: Type names it and the block of that name
// configures it.
type SinkConfig struct {
	// Type is "file" or "redis_stream".
	Type string `json:"type"`
	// File configures type "file".
	File *FileConfig `json:"file,omitempty"`
	// RedisStream configures type "redis_stream".
	RedisStream *RedisStreamConfig `json:"redis_stream,omitempty"`
}

// FileConfig configures a [FileSink].
type FileConfig struct {
	// Path is the JSONL file, created with its directories. Default
	// "cost_records.jsonl" (relative to the working directory).
	Path string `json:"path"`
}

// RedisStreamConfig configures a [RedisStreamSink]. URL is parsed first; a
// non-empty Address or Password overrides it, and DB overrides it when set.
type RedisStreamConfig struct {
	// Config locates the Redis deployment, inline in this block: mode
	// (single, sentinel, cluster), addresses, master_name, username,
	// password, db, tls, and the older url and address keys (see
	// internal/redisconf).
	redisconf.Config
	// Stream is the stream key. Default "llm_cost_records".
	Stream string `json:"stream"`
	// MaxLen caps the stream approximately (XADD MAXLEN ~). Default
	// 1000000 entries; 0 means the default.
	MaxLen int64 `json:"max_len"`
}

// Defaults returns an enabled-off Config with every default applied.
func Defaults() Config {
	var c Config
	c.ApplyDefaults()
	return c
}

// ApplyDefaults replaces every zero field with its default. When the
// feature is enabled and lists no sink, it adds the default file sink.
func (c *Config) ApplyDefaults() {
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FlushInterval == "" {
		c.FlushInterval = DefaultFlushInterval.String()
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryBackoff == "" {
		c.RetryBackoff = DefaultRetryBackoff.String()
	}
	if c.MaxRetryBackoff == "" {
		c.MaxRetryBackoff = DefaultMaxRetryBackoff.String()
	}
	if c.Enabled && len(c.Sinks) == 0 {
		c.Sinks = []SinkConfig{{Type: SinkFile}}
	}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		switch s.Type {
		case SinkFile:
			if s.File == nil {
				s.File = &FileConfig{}
			}
			if s.File.Path == "" {
				s.File.Path = DefaultFilePath
			}
		case SinkRedisStream:
			if s.RedisStream == nil {
				s.RedisStream = &RedisStreamConfig{}
			}
			if s.RedisStream.Stream == "" {
				s.RedisStream.Stream = DefaultStream
			}
			if s.RedisStream.MaxLen == 0 {
				s.RedisStream.MaxLen = DefaultStreamMaxLen
			}
		}
	}
}

// Validate reports every problem of c at once, joined, each prefixed with
// its path under features.cost_tracking. Call it after
// [Config.ApplyDefaults].
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", configPath, field, fmt.Sprintf(format, args...)))
	}
	if c.QueueSize < 1 || c.QueueSize > maxQueueSize {
		bad("queue_size", "must be between 1 and %d, got %d", maxQueueSize, c.QueueSize)
	}
	if c.BatchSize < 1 || c.BatchSize > maxBatchSize {
		bad("batch_size", "must be between 1 and %d, got %d", maxBatchSize, c.BatchSize)
	}
	if c.BatchSize > c.QueueSize && c.QueueSize >= 1 {
		bad("batch_size", "must not exceed queue_size (%d), got %d", c.QueueSize, c.BatchSize)
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > maxAttemptsLimit {
		bad("max_attempts", "must be between 1 and %d, got %d", maxAttemptsLimit, c.MaxAttempts)
	}
	durations := []struct {
		field, value string
	}{
		{"flush_interval", c.FlushInterval},
		{"retry_backoff", c.RetryBackoff},
		{"max_retry_backoff", c.MaxRetryBackoff},
	}
	for _, d := range durations {
		v, err := time.ParseDuration(d.value)
		switch {
		case err != nil:
			bad(d.field, "must be a duration such as \"200ms\" or \"5s\", got %q", d.value)
		case v <= 0 || v > time.Hour:
			bad(d.field, "must be positive and at most 1h, got %q", d.value)
		}
	}
	if rb, err1 := time.ParseDuration(c.RetryBackoff); err1 == nil {
		if mb, err2 := time.ParseDuration(c.MaxRetryBackoff); err2 == nil && mb < rb {
			bad("max_retry_backoff", "must not be less than retry_backoff (%s), got %q", c.RetryBackoff, c.MaxRetryBackoff)
		}
	}
	if c.Enabled && len(c.Sinks) == 0 {
		bad("sinks", "at least one sink is required")
	}
	for i, s := range c.Sinks {
		p := fmt.Sprintf("sinks[%d]", i)
		switch s.Type {
		case SinkFile:
			if s.File == nil || s.File.Path == "" {
				bad(p+".file.path", "is required")
			}
			if s.RedisStream != nil {
				bad(p+".redis_stream", "not allowed with type %q", SinkFile)
			}
		case SinkRedisStream:
			if s.File != nil {
				bad(p+".file", "not allowed with type %q", SinkRedisStream)
			}
			r := s.RedisStream
			if r == nil {
				bad(p+".redis_stream", "is required with type %q", SinkRedisStream)
				continue
			}
			if err := r.Config.Validate(configPath + "." + p + ".redis_stream"); err != nil {
				errs = append(errs, err)
			}
			if r.Stream == "" {
				bad(p+".redis_stream.stream", "is required")
			}
			if r.MaxLen < 0 {
				bad(p+".redis_stream.max_len", "must not be negative, got %d", r.MaxLen)
			}
		default:
			bad(p+".type", "must be %q or %q, got %q", SinkFile, SinkRedisStream, s.Type)
		}
	}
	return errors.Join(errs...)
}

// options converts a validated c to [Options].
func (c *Config) options() Options {
	parse := func(s string) time.Duration {
		d, _ := time.ParseDuration(s)
		return d
	}
	return Options{
		QueueSize:       c.QueueSize,
		BatchSize:       c.BatchSize,
		FlushInterval:   parse(c.FlushInterval),
		MaxAttempts:     c.MaxAttempts,
		RetryBackoff:    parse(c.RetryBackoff),
		MaxRetryBackoff: parse(c.MaxRetryBackoff),
	}
}

// redisProfile is how a stream sink's client behaves. The Writer retries
// failed batches with its own bounded backoff; go-redis retrying underneath
// would multiply the attempts and stall the queue for seconds per batch.
var redisProfile = redisconf.Profile{DialTimeout: redisTimeout, IOTimeout: redisTimeout, MaxRetries: -1}

// New applies defaults to cfg, validates it, opens its sinks and starts a
// Writer. It returns (nil, nil) when cfg is not enabled; a nil *Writer is
// safe to use and records nothing. A Redis server that does not answer at
// startup is logged, not fatal: its batches are retried like any other
// write failure. ctx bounds the startup checks only.
func New(ctx context.Context, cfg Config, hooks Hooks) (*Writer, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled {
		return nil, nil
	}
	logger := slog.Default()
	var sinks []Sink
	closeAll := func() {
		for _, s := range sinks {
			_ = s.Close(ctx)
		}
	}
	for i, sc := range cfg.Sinks {
		switch sc.Type {
		case SinkFile:
			s, err := NewFileSink(sc.File.Path)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("%s.sinks[%d]: %w", configPath, i, err)
			}
			sinks = append(sinks, s)
		case SinkRedisStream:
			client, err := redisconf.Default.Client(sc.RedisStream.Config, redisProfile)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("%s.sinks[%d]: %w", configPath, i, err)
			}
			s, err := NewRedisStreamSink(client, sc.RedisStream.Stream, sc.RedisStream.MaxLen)
			if err != nil {
				_ = client.Close()
				closeAll()
				return nil, fmt.Errorf("%s.sinks[%d]: %w", configPath, i, err)
			}
			s.ownsClient = true
			pctx, cancel := context.WithTimeout(ctx, startupPingTimeout)
			if err := client.Ping(pctx).Err(); err != nil {
				logger.Warn("cost record redis stream unreachable at startup; writes will be retried",
					"sink", s.Name(), "redis", sc.RedisStream.Describe(), "error", err)
			}
			cancel()
			sinks = append(sinks, s)
		}
	}
	opts := cfg.options()
	opts.Logger = logger
	w, err := NewWriter(sinks, opts, hooks)
	if err != nil {
		closeAll()
		return nil, err
	}
	return w, nil
}

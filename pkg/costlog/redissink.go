package costlog

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// RecordField is the stream entry field that holds a record's JSON.
const RecordField = "record"

// RedisStreamSink appends each record to a Redis stream with XADD, the
// record's JSON (without the newline) in the field "record". A batch is
// sent as one pipeline. When maxLen is positive every XADD trims the
// stream approximately (MAXLEN ~ maxLen): Redis removes whole internal
// nodes only, so the stream may keep somewhat more than maxLen entries.
// A batch is acknowledged when every XADD of its pipeline succeeded; after
// a partial failure the Writer resends the whole batch, so consumers may
// see a record twice (RequestID identifies it).
//
// RedisStreamSink is safe for concurrent use.
type RedisStreamSink struct {
	client     redis.UniversalClient
	stream     string
	maxLen     int64
	ownsClient bool
}

// NewRedisStreamSink returns a sink that writes to stream through client.
// maxLen <= 0 disables trimming. Close does not close client; the caller
// owns it.
func NewRedisStreamSink(client redis.UniversalClient, stream string, maxLen int64) (*RedisStreamSink, error) {
	if client == nil {
		return nil, errors.New("costlog: redis stream sink: nil client")
	}
	if stream == "" {
		return nil, errors.New("costlog: redis stream sink: empty stream key")
	}
	if maxLen < 0 {
		maxLen = 0
	}
	return &RedisStreamSink{client: client, stream: stream, maxLen: maxLen}, nil
}

// Name returns "redis_stream:" followed by the stream key.
func (s *RedisStreamSink) Name() string { return "redis_stream:" + s.stream }

// Write sends one XADD per record in one pipeline.
func (s *RedisStreamSink) Write(ctx context.Context, batch []Record) error {
	if len(batch) == 0 {
		return nil
	}
	pipe := s.client.Pipeline()
	var buf []byte
	for _, r := range batch {
		start := len(buf)
		var err error
		if buf, err = AppendJSON(buf, r); err != nil {
			return err
		}
		line := buf[start : len(buf)-1] // without the newline
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: s.stream,
			MaxLen: s.maxLen,
			Approx: s.maxLen > 0,
			Values: []any{RecordField, line},
		})
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		failed := 0
		for _, c := range cmds {
			if c.Err() != nil {
				failed++
			}
		}
		return fmt.Errorf("costlog: xadd %s: %d of %d failed: %w", s.stream, failed, len(batch), err)
	}
	return nil
}

// Close closes the client when the sink created it (from [Config]);
// otherwise it does nothing.
func (s *RedisStreamSink) Close(context.Context) error {
	if !s.ownsClient {
		return nil
	}
	if err := s.client.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("costlog: close redis client: %w", err)
	}
	return nil
}

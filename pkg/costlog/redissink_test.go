package costlog

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

func newRedisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func streamIDs(t *testing.T, c *redis.Client, stream string) []string {
	t.Helper()
	msgs, err := c.XRange(context.Background(), stream, "-", "+").Result()
	require.NoError(t, err)
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		raw, ok := m.Values[RecordField].(string)
		require.True(t, ok, "entry %s has no %q field", m.ID, RecordField)
		var r Record
		require.NoError(t, json.Unmarshal([]byte(raw), &r))
		ids = append(ids, r.RequestID)
	}
	return ids
}

func TestRedisStreamSinkRoundTrip(t *testing.T) {
	s := redistest.Start(t)
	c := newRedisClient(t, s.Addr)
	sink, err := NewRedisStreamSink(c, "costs", 0)
	require.NoError(t, err)
	require.Equal(t, "redis_stream:costs", sink.Name())
	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, sink.Write(ctx, []Record{rec("1"), rec("2")}))
	require.NoError(t, sink.Write(ctx, []Record{rec("3")}))
	require.NoError(t, sink.Write(ctx, nil))
	require.Equal(t, []string{"1", "2", "3"}, streamIDs(t, c, "costs"))

	msgs, err := c.XRange(ctx, "costs", "-", "+").Result()
	require.NoError(t, err)
	raw := msgs[0].Values[RecordField].(string)
	require.NotContains(t, raw, "\n")
	var r Record
	require.NoError(t, json.Unmarshal([]byte(raw), &r))
	want := rec("1")
	require.True(t, want.Timestamp.Equal(r.Timestamp))
	r.Timestamp = want.Timestamp
	require.Equal(t, want, r)

	require.NoError(t, sink.Close(ctx))
	require.NoError(t, c.Ping(ctx).Err(), "a caller-owned client stays open")
}

func TestRedisStreamSinkRejectsBadArguments(t *testing.T) {
	_, err := NewRedisStreamSink(nil, "s", 0)
	require.Error(t, err)
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	_, err = NewRedisStreamSink(c, "", 0)
	require.Error(t, err)
}

func TestRedisStreamSinkTrimsApproximately(t *testing.T) {
	s := redistest.Start(t)
	c := newRedisClient(t, s.Addr)
	sink, err := NewRedisStreamSink(c, "trimmed", 100)
	require.NoError(t, err)
	ctx := ctxTimeout(t, 10*time.Second)
	batch := make([]Record, 0, 100)
	for i := range 1000 {
		batch = append(batch, rec(strconv.Itoa(i)))
		if len(batch) == cap(batch) {
			require.NoError(t, sink.Write(ctx, batch))
			batch = batch[:0]
		}
	}
	n, err := c.XLen(ctx, "trimmed").Result()
	require.NoError(t, err)
	// MAXLEN ~ keeps at least 100 and trims whole nodes (100 entries by
	// default), so fewer than 100 plus one node remain.
	require.GreaterOrEqual(t, n, int64(100))
	require.Less(t, n, int64(200))
	ids := streamIDs(t, c, "trimmed")
	require.Equal(t, "999", ids[len(ids)-1], "the newest entries are kept")
}

// TestWriterRedisDownThenBack stops Redis, enqueues records, and restarts
// Redis while the Writer retries: every record arrives once Redis is back.
func TestWriterRedisDownThenBack(t *testing.T) {
	s := redistest.Start(t)
	ctx := ctxTimeout(t, 30*time.Second)
	failures := make(chan struct{}, 1000)
	w, err := New(ctx, Config{
		Enabled: true, MaxAttempts: 100, RetryBackoff: "20ms", MaxRetryBackoff: "100ms",
		Sinks: []SinkConfig{{Type: SinkRedisStream, RedisStream: &RedisStreamConfig{Config: redisconf.Config{URL: "redis://" + s.Addr + "/0"}, Stream: "costs"}}},
	}, Hooks{OnWriteError: func(error) {
		select {
		case failures <- struct{}{}:
		default:
		}
	}})
	require.NoError(t, err)
	c := newRedisClient(t, s.Addr)

	require.True(t, w.Enqueue(rec("up")))
	require.NoError(t, w.Flush(ctx))

	s.Stop()
	for i := range 5 {
		require.True(t, w.Enqueue(rec("down-"+strconv.Itoa(i))))
	}
	flushed := make(chan error, 1)
	go func() { flushed <- w.Flush(ctx) }()
	<-failures // at least one attempt failed while Redis was down
	s.Restart(t)
	require.NoError(t, <-flushed)
	require.NoError(t, w.Close(ctx))

	// The restarted server is empty: only the records written after the
	// outage are there, in order, each once.
	require.Equal(t, []string{"down-0", "down-1", "down-2", "down-3", "down-4"}, streamIDs(t, c, "costs"))
	st := w.Stats()
	require.Equal(t, Stats{Accepted: 6, Written: 6}, st)
}

func TestWriterRedisGivesUpAndCounts(t *testing.T) {
	s := redistest.Start(t)
	addr := s.Addr
	s.Stop()
	ctx := ctxTimeout(t, 30*time.Second)
	db := 3
	w, err := New(ctx, Config{
		Enabled: true, MaxAttempts: 2, RetryBackoff: "1ms", MaxRetryBackoff: "1ms",
		Sinks: []SinkConfig{{Type: SinkRedisStream, RedisStream: &RedisStreamConfig{Config: redisconf.Config{Address: addr, DB: &db}}}},
	}, Hooks{})
	require.NoError(t, err, "an unreachable Redis at startup is not fatal")
	require.True(t, w.Enqueue(rec("lost")))
	err = w.Close(ctx)
	require.ErrorContains(t, err, "1 records could not be flushed")
	require.Equal(t, Stats{Accepted: 1, Failed: 1}, w.Stats())
}

func BenchmarkRedisStreamSinkBatch(b *testing.B) {
	s := redistest.Start(b)
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	sink, err := NewRedisStreamSink(c, "bench", 100000)
	require.NoError(b, err)
	batch := make([]Record, 256)
	for i := range batch {
		batch[i] = rec(strconv.Itoa(i))
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		require.NoError(b, sink.Write(ctx, batch))
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "records/s")
}

package costlog

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func readLines(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var r Record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "line %q", sc.Text())
		out = append(out, r)
	}
	require.NoError(t, sc.Err())
	return out
}

func TestFileSinkCreatesDirsAndAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "cost.jsonl")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o750))
	require.NoError(t, os.WriteFile(path, []byte(`{"request_id":"old"}`+"\n"), 0o600))

	s, err := NewFileSink(path)
	require.NoError(t, err)
	require.Equal(t, "file:"+path, s.Name())
	require.Equal(t, path, s.Path())
	ctx := context.Background()
	require.NoError(t, s.Write(ctx, []Record{rec("1"), rec("2")}))
	require.NoError(t, s.Write(ctx, nil))
	require.NoError(t, s.Write(ctx, []Record{rec("3")}))
	require.NoError(t, s.Close(ctx))
	require.NoError(t, s.Close(ctx), "second Close")
	require.ErrorIs(t, s.Write(ctx, []Record{rec("4")}), os.ErrClosed)

	got := readLines(t, path)
	require.Len(t, got, 4)
	for i, want := range []string{"old", "1", "2", "3"} {
		require.Equal(t, want, got[i].RequestID)
	}
	require.Equal(t, "openai", got[1].Provider)
}

func TestFileSinkNewFileModeAndDirs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x", "y", "cost.jsonl")
	s, err := NewFileSink(path)
	require.NoError(t, err)
	require.NoError(t, s.Close(context.Background()))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(fileMode), fi.Mode().Perm()&^umaskBits())
	di, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	require.True(t, di.IsDir())
}

// umaskBits returns bits the process umask may clear, so the mode check
// does not depend on the environment.
func umaskBits() os.FileMode {
	dir, _ := os.MkdirTemp("", "umask")
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "f")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o777)
	if err != nil {
		return 0
	}
	f.Close()
	fi, _ := os.Stat(p)
	return 0o777 &^ fi.Mode().Perm()
}

func TestFileSinkErrors(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o600))
	tests := []struct {
		name string
		path string
	}{
		{name: "empty path", path: ""},
		{name: "parent is a file", path: filepath.Join(blocker, "cost.jsonl")},
		{name: "path is a directory", path: dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewFileSink(tt.path)
			require.Error(t, err)
			require.Nil(t, s)
		})
	}
	s, err := NewFileSink(filepath.Join(dir, "ok.jsonl"))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.Write(ctx, []Record{rec("1")}), context.Canceled)
	require.NoError(t, s.Close(context.Background()))
	require.Error(t, s.Reopen(), "reopen after close")
}

func TestFileSinkReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cost.jsonl")
	rotated := path + ".1"
	s, err := NewFileSink(path)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Write(ctx, []Record{rec("before")}))
	require.NoError(t, os.Rename(path, rotated)) // what logrotate does
	require.NoError(t, s.Write(ctx, []Record{rec("still-old-handle")}))
	require.NoError(t, s.Reopen())
	require.NoError(t, s.Write(ctx, []Record{rec("after")}))
	require.NoError(t, s.Close(ctx))

	old := readLines(t, rotated)
	require.Len(t, old, 2)
	require.Equal(t, "before", old[0].RequestID)
	require.Equal(t, "still-old-handle", old[1].RequestID)
	cur := readLines(t, path)
	require.Len(t, cur, 1)
	require.Equal(t, "after", cur[0].RequestID)
}

func TestWriterReopenRotatesFileSink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cost.jsonl")
	fs, err := NewFileSink(path)
	require.NoError(t, err)
	w, err := NewWriter([]Sink{fs, &memSink{}}, Options{Clock: newFakeClock()}, Hooks{})
	require.NoError(t, err)
	ctx := ctxTimeout(t, 10*time.Second)
	require.True(t, w.Enqueue(rec("1")))
	require.NoError(t, w.Flush(ctx))
	require.NoError(t, os.Rename(path, path+".1"))
	require.NoError(t, w.Reopen())
	require.True(t, w.Enqueue(rec("2")))
	require.NoError(t, w.Close(ctx))
	require.Equal(t, "1", readLines(t, path+".1")[0].RequestID)
	require.Equal(t, "2", readLines(t, path)[0].RequestID)
}

// TestWriterFileEveryAcceptedRecordWritten is the no-loss check: under
// concurrent producers and a small queue, every record Enqueue accepted is
// in the file after Close, exactly once, and every refused one was
// counted as dropped.
func TestWriterFileEveryAcceptedRecordWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cost.jsonl")
	fs, err := NewFileSink(path)
	require.NoError(t, err)
	w, err := NewWriter([]Sink{fs}, Options{QueueSize: 256, BatchSize: 64, FlushInterval: time.Millisecond}, Hooks{})
	require.NoError(t, err)

	const producers, each = 8, 2000
	var mu sync.Mutex
	accepted := map[string]bool{}
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			var mine []string
			for i := range each {
				id := fmt.Sprintf("%d-%d", p, i)
				if w.Enqueue(rec(id)) {
					mine = append(mine, id)
				}
			}
			mu.Lock()
			for _, id := range mine {
				accepted[id] = true
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	require.NoError(t, w.Close(ctxTimeout(t, 30*time.Second)))

	st := w.Stats()
	require.Equal(t, int64(producers*each), st.Accepted+st.Dropped)
	require.Equal(t, int64(len(accepted)), st.Written)
	got := readLines(t, path)
	require.Len(t, got, len(accepted))
	seen := map[string]bool{}
	for _, r := range got {
		require.True(t, accepted[r.RequestID], "record %s was not accepted", r.RequestID)
		require.False(t, seen[r.RequestID], "record %s written twice", r.RequestID)
		seen[r.RequestID] = true
	}
	t.Logf("accepted %d, dropped %d", st.Accepted, st.Dropped)
}

func TestFileSinkFailedWriteThenRecovers(t *testing.T) {
	// A read-only descriptor makes the write fail; the file must hold no
	// trace of the failed batch, and the next good batch follows.
	path := filepath.Join(t.TempDir(), "cost.jsonl")
	s, err := NewFileSink(path)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Write(ctx, []Record{rec("1")}))
	s.mu.Lock()
	good := s.f
	bad, err := os.Open(path) // read-only: writes fail
	require.NoError(t, err)
	s.f = bad
	s.mu.Unlock()
	require.Error(t, s.Write(ctx, []Record{rec("2")}))
	s.mu.Lock()
	s.f = good
	s.mu.Unlock()
	require.NoError(t, bad.Close())
	require.NoError(t, s.Write(ctx, []Record{rec("3")}))
	require.NoError(t, s.Close(ctx))
	got := readLines(t, path)
	require.Equal(t, []string{"1", "3"}, []string{got[0].RequestID, got[1].RequestID})
	require.Len(t, got, 2)
}

func BenchmarkWriterFileThroughput(b *testing.B) {
	path := filepath.Join(b.TempDir(), "cost.jsonl")
	fs, err := NewFileSink(path)
	require.NoError(b, err)
	w, err := NewWriter([]Sink{fs}, Options{QueueSize: 1 << 16, BatchSize: 256}, Hooks{})
	require.NoError(b, err)
	r := rec("bench")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.RequestID = strconv.Itoa(i)
		for !w.Enqueue(r) {
			// The benchmark measures throughput: wait for room instead of
			// dropping.
			time.Sleep(50 * time.Microsecond)
		}
	}
	require.NoError(b, w.Close(context.Background()))
	b.StopTimer()
	st := w.Stats()
	require.Equal(b, int64(b.N), st.Written)
	b.ReportMetric(float64(st.Dropped), "full-queue-retries")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func TestReopenDropsTornTail(t *testing.T) {
	long := strings.Repeat("x", 10000)
	tests := []struct {
		name, before, after string
	}{
		{"empty", "", ""},
		{"complete lines", "{\"a\":1}\n{\"b\":2}\n", "{\"a\":1}\n{\"b\":2}\n"},
		{"torn last line", "{\"a\":1}\n{\"b\":", "{\"a\":1}\n"},
		{"only a torn line", "{\"a\":", ""},
		{"torn line longer than one read", "{\"a\":1}\n" + long, "{\"a\":1}\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.jsonl")
			require.NoError(t, os.WriteFile(path, []byte(tc.before), 0o640))
			s, err := NewFileSink(path)
			require.NoError(t, err)
			require.NoError(t, s.Close(context.Background()))
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, tc.after, string(b))
		})
	}
}

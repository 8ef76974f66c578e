package costlog

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHelperCostlogProducer is not a test: the crash tests run the test
// binary with COSTLOG_HELPER_FILE set, and this function becomes a
// producer process that enqueues records without pause, prints
// "written N" after every acknowledged batch and "accepted N" once it has
// closed the Writer on SIGTERM.
func TestHelperCostlogProducer(t *testing.T) {
	path := os.Getenv("COSTLOG_HELPER_FILE")
	if path == "" {
		t.Skip("helper process only")
	}
	out := bufio.NewWriter(os.Stdout)
	var written int64
	sink, err := NewFileSink(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	w, err := NewWriter([]Sink{sink}, Options{QueueSize: 4096, BatchSize: 128, FlushInterval: 5 * time.Millisecond},
		Hooks{OnWritten: func(n int) {
			written += int64(n)
			fmt.Fprintf(out, "written %d\n", written)
			_ = out.Flush()
		}})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	var accepted int64
	for i := 0; ; i++ {
		select {
		case <-term:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := w.Close(ctx)
			cancel()
			fmt.Fprintf(out, "accepted %d\n", accepted)
			if err != nil {
				fmt.Fprintf(out, "error %v\n", err)
			}
			_ = out.Flush()
			os.Exit(0)
		default:
		}
		if w.Enqueue(rec(strconv.Itoa(i))) {
			accepted++
		}
	}
}

// runProducer starts the helper, waits until it acknowledged at least
// 2000 records, sends sig and returns the lines it printed.
func runProducer(t *testing.T, path string, sig syscall.Signal) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCostlogProducer$")
	cmd.Env = append(os.Environ(), "COSTLOG_HELPER_FILE="+path)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(stdout)
	var lines []string
	signalled := false
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if n, ok := strings.CutPrefix(line, "written "); ok && !signalled {
			if v, _ := strconv.Atoi(n); v >= 2000 {
				require.NoError(t, cmd.Process.Signal(sig))
				signalled = true
			}
		}
	}
	_ = cmd.Wait()
	require.True(t, signalled, "producer output: %v", lines)
	return lines
}

func lastCount(lines []string, prefix string) int {
	n := -1
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			n, _ = strconv.Atoi(v)
		}
	}
	return n
}

// TestCrashKeepsAcknowledgedRecords kills the producer with SIGKILL: every
// record it reported as written is in the file, which holds only complete
// lines, in order.
func TestCrashKeepsAcknowledgedRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	path := filepath.Join(t.TempDir(), "cost.jsonl")
	lines := runProducer(t, path, syscall.SIGKILL)
	acked := lastCount(lines, "written ")
	// A kill inside a write can leave part of an unacknowledged batch; the
	// restarted server's sink drops it before appending.
	restarted, err := NewFileSink(path)
	require.NoError(t, err)
	require.NoError(t, restarted.Close(context.Background()))
	got := readLines(t, path) // fails on any partial or corrupt line
	require.GreaterOrEqual(t, len(got), acked)
	prev := -1
	for i, r := range got {
		id, err := strconv.Atoi(r.RequestID)
		require.NoError(t, err, "line %d", i)
		require.Greater(t, id, prev, "line %d out of order", i)
		prev = id
	}
}

// TestSIGTERMFlushesEverythingAccepted stops the producer with SIGTERM:
// Close writes every accepted record before the process exits.
func TestSIGTERMFlushesEverythingAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	path := filepath.Join(t.TempDir(), "cost.jsonl")
	lines := runProducer(t, path, syscall.SIGTERM)
	for _, l := range lines {
		require.False(t, strings.HasPrefix(l, "error"), l)
	}
	accepted := lastCount(lines, "accepted ")
	require.Positive(t, accepted, "producer output tail: %v", lines[max(0, len(lines)-3):])
	got := readLines(t, path)
	require.Len(t, got, accepted)
	require.Equal(t, accepted, lastCount(lines, "written "))
}

package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv names the server kind a re-executed test binary serves instead
// of running tests.
const childEnv = "BENCH_EXTPROC_CHILD"

func TestMain(m *testing.M) {
	if kind := os.Getenv(childEnv); kind != "" {
		if err := serveChild(kind, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveChild serves kind on 127.0.0.1, writes the address as the first line
// of out, then answers each "cpu" line of in with the process CPU time
// (user + system) in nanoseconds. It returns when in ends.
func serveChild(kind string, in io.Reader, out io.Writer) error {
	srv, err := newServer(kind)
	if err != nil {
		return err
	}
	addr, stop, err := serve(srv)
	if err != nil {
		return err
	}
	defer stop()
	if _, err := fmt.Fprintln(out, addr); err != nil {
		return fmt.Errorf("write address: %w", err)
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != "cpu" {
			return fmt.Errorf("unknown command %q", sc.Text())
		}
		if _, err := fmt.Fprintln(out, processCPU().Nanoseconds()); err != nil {
			return fmt.Errorf("write cpu: %w", err)
		}
	}
	return sc.Err()
}

// processCPU returns the CPU time (user + system) this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// child is a server running in a separate process, so that its CPU time is
// measured apart from the client's.
type child struct {
	*driver
	in  io.WriteCloser
	out *bufio.Reader
}

// cpu returns the child's CPU time so far.
func (c *child) cpu() (time.Duration, error) {
	if _, err := io.WriteString(c.in, "cpu\n"); err != nil {
		return 0, fmt.Errorf("ask child cpu: %w", err)
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("read child cpu: %w", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse child cpu %q: %w", line, err)
	}
	return time.Duration(ns), nil
}

// startChild runs kind in a re-executed copy of the test binary and returns
// a driver connected to it. The child exits when its stdin closes (cleanup,
// or this process ending for any reason).
func startChild(tb testing.TB, kind string) *child {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+kind)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Wait()
	})
	out := bufio.NewReader(outPipe)
	addr, err := out.ReadString('\n')
	if err != nil {
		tb.Fatalf("read %s child address: %v", kind, err)
	}
	d, closeConn, err := dial(strings.TrimSpace(addr))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(closeConn)
	return &child{driver: d, in: in, out: out}
}

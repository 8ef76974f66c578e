// Package redistest starts real Redis deployments for tests on free
// loopback ports with no persistence, and stops them when the test ends: a
// single server ([Start]), a master with a replica watched by Sentinel
// ([StartSentinel]) and a three-master Cluster ([StartCluster]). Tests skip,
// saying why, when redis-server (or, for a cluster, redis-cli) is not
// installed (.ci/run installs Debian's redis-server).
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is one running redis-server process.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	bin  string
	args []string // everything but --port
	cmd  *exec.Cmd
}

// Start runs a fresh redis-server for t and registers its shutdown with
// t.Cleanup. It skips the test when redis-server is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	return startServer(t, lookPath(t, "redis-server"))
}

// StartDurable is [Start] with an append-only file synced on every write
// (appendfsync always) in the server's directory: a kill and [Server.Restart]
// keep every write Redis acknowledged, as a production Redis with AOF does.
func StartDurable(t testing.TB) *Server {
	t.Helper()
	return startServer(t, lookPath(t, "redis-server"), "--appendonly", "yes", "--appendfsync", "always")
}

func lookPath(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install redis-server; .ci/run does it)", name)
	}
	return bin
}

// startServer starts bin with extra arguments on a free port, retrying on
// another port when the first is taken meanwhile.
func startServer(t testing.TB, bin string, extra ...string) *Server {
	t.Helper()
	args := []string{"--bind", "127.0.0.1", "--dir", t.TempDir(), "--protected-mode", "yes", "--loglevel", "warning"}
	if len(extra) == 2 && extra[0] == "--sentinel" {
		// redis-server <config file> --sentinel: the file must come first;
		// a Sentinel keeps no data set.
		args = append([]string{extra[1], "--sentinel"}, args...)
	} else {
		args = append(append(args, "--save", "", "--appendonly", "no"), extra...)
	}
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), bin: bin, args: args}
		if err := s.start(); err != nil {
			t.Logf("%s on port %d: %v; retrying", bin, port, err)
			continue
		}
		t.Cleanup(s.Stop)
		return s
	}
	t.Fatalf("could not start %s", bin)
	return nil
}

func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin, append(append([]string{}, s.args...), "--port", port)...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.Ping() == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("no PONG within 10s")
}

// Ping sends PING over a raw connection and expects PONG.
func (s *Server) Ping() error {
	line, err := Do(s.Addr, "PING")
	if err != nil {
		return err
	}
	if line != "+PONG" {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// Do sends one command to addr over a raw connection and returns the first
// line of the reply (like "+OK" or "$5"); for a bulk reply, the bulk itself.
func Do(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "$") {
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return line, nil
		}
		buf := make([]byte, n+2)
		if _, err := ioReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line, nil
}

func ioReadFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Stop kills the server and waits for it. It is safe to call twice.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart stops the server and starts a new one on the same address with
// the same arguments (an empty data set for a plain server). Tests use it
// to simulate an outage and a recovery.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("restart %s: %v", s.bin, err)
	}
}

// Running reports whether the process is up (not stopped).
func (s *Server) Running() bool { return s.cmd != nil }

func freePort() (int, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls cond until it holds or timeout passes (a hang guard for
// processes converging, not a timing assumption).
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

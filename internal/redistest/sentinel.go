package redistest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// MasterName is the name the Sentinel of [StartSentinel] monitors.
const MasterName = "llmproxy"

// Sentinel is a master, its replica and one Sentinel process watching them
// (quorum 1), all on loopback.
type Sentinel struct {
	// Master and Replica are the data servers; after [Sentinel.Failover]
	// they have swapped roles.
	Master, Replica *Server
	// Sentinel is the redis-server --sentinel process; Addr is what clients
	// list in addresses.
	Sentinel *Server
}

// StartSentinel starts a master, a replica of it and a Sentinel, and waits
// until the Sentinel knows the replica. It skips when redis-server is not
// installed.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin := lookPath(t, "redis-server")
	master := startServer(t, bin)
	host, port, _ := net.SplitHostPort(master.Addr)
	replica := startServer(t, bin, "--replicaof", host, port)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	body := fmt.Sprintf("sentinel monitor %s %s %s 1\n"+
		"sentinel down-after-milliseconds %s 1000\n"+
		"sentinel failover-timeout %s 5000\n"+
		"sentinel parallel-syncs %s 1\n", MasterName, host, port, MasterName, MasterName, MasterName)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatalf("write sentinel config: %v", err)
	}
	s := &Sentinel{Master: master, Replica: replica}
	s.Sentinel = startServer(t, bin, "--sentinel", conf)
	if !waitFor(30*time.Second, func() bool {
		line, err := Do(replica.Addr, "INFO", "replication")
		if err != nil || !strings.Contains(line, "master_link_status:up") {
			return false
		}
		n, err := Do(s.Sentinel.Addr, "SENTINEL", "REPLICAS", MasterName)
		return err == nil && n != "*0"
	}) {
		t.Fatal("sentinel: replica never synchronised or was never discovered")
	}
	return s
}

// MasterAddr asks the Sentinel for the current master's address.
func (s *Sentinel) MasterAddr() (string, error) {
	return masterAddr(s.Sentinel.Addr)
}

func masterAddr(sentinel string) (string, error) {
	// Reply: *2 $host $port; Do returns only the first line, so ask twice
	// the simple way through INFO-like parsing of the raw protocol.
	conn, err := net.DialTimeout("tcp", sentinel, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	cmd := fmt.Sprintf("*3\r\n$8\r\nSENTINEL\r\n$23\r\nGET-MASTER-ADDR-BY-NAME\r\n$%d\r\n%s\r\n", len(MasterName), MasterName)
	if _, err := conn.Write([]byte(cmd)); err != nil {
		return "", err
	}
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil {
		return "", err
	}
	parts := strings.Split(strings.TrimSpace(string(buf[:n])), "\r\n")
	if len(parts) < 5 || parts[0] != "*2" {
		return "", fmt.Errorf("unexpected reply %q", buf[:n])
	}
	return net.JoinHostPort(parts[2], parts[4]), nil
}

// Failover kills the master and waits until the Sentinel has promoted the
// replica, then restarts the old master (it rejoins as a replica) and swaps
// Master and Replica.
func (s *Sentinel) Failover(t testing.TB) {
	t.Helper()
	old := s.Master
	old.Stop()
	if !waitFor(60*time.Second, func() bool {
		a, err := s.MasterAddr()
		return err == nil && a == s.Replica.Addr
	}) {
		t.Fatal("sentinel did not promote the replica")
	}
	if !waitFor(30*time.Second, func() bool {
		line, err := Do(s.Replica.Addr, "INFO", "replication")
		return err == nil && strings.Contains(line, "role:master")
	}) {
		t.Fatal("promoted replica never became master")
	}
	host, port, _ := net.SplitHostPort(s.Replica.Addr)
	old.args = append(withoutReplicaOf(old.args), "--replicaof", host, port)
	if err := old.start(); err != nil {
		t.Fatalf("restart old master: %v", err)
	}
	s.Master, s.Replica = s.Replica, old
}

func withoutReplicaOf(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		if args[i] == "--replicaof" {
			i += 2
			continue
		}
		out = append(out, args[i])
	}
	return out
}

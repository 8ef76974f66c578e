package redistest

import (
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Cluster is three Redis Cluster masters sharing the 16384 slots, with
// one replica each when started by [StartClusterWithReplicas], on loopback.
type Cluster struct {
	// Nodes are every node, masters and replicas (their roles change after
	// a failover); Addrs their addresses, for clients.
	Nodes []*Server
}

// Addrs returns the nodes' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// StartCluster starts three cluster-enabled servers, joins them with
// redis-cli --cluster create and waits until every node reports
// cluster_state:ok. It skips when redis-server or redis-cli is missing.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return startCluster(t, 0)
}

// StartClusterWithReplicas is [StartCluster] with one replica per master
// (six nodes), so that killing a master makes the cluster fail over (see
// [Cluster.KillMaster]). It returns once every replica is in sync.
func StartClusterWithReplicas(t testing.TB) *Cluster {
	t.Helper()
	return startCluster(t, 1)
}

func startCluster(t testing.TB, replicas int) *Cluster {
	t.Helper()
	bin := lookPath(t, "redis-server")
	cli := lookPath(t, "redis-cli")
	c := &Cluster{}
	for range 3 * (1 + replicas) {
		c.Nodes = append(c.Nodes, startServer(t, bin, "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", fmt.Sprint(replicas), "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if !waitFor(30*time.Second, func() bool { return c.ok() && c.replicasInSync() }) {
		t.Fatal("cluster never reached cluster_state:ok with every replica in sync")
	}
	return c
}

// ok reports whether every running node sees cluster_state:ok.
func (c *Cluster) ok() bool {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		info, err := Do(n.Addr, "CLUSTER", "INFO")
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false
		}
	}
	return true
}

// replicasInSync reports whether every running replica's link to its
// master is up.
func (c *Cluster) replicasInSync() bool {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		info, err := Do(n.Addr, "INFO", "replication")
		if err != nil {
			return false
		}
		if strings.Contains(info, "role:slave") && !strings.Contains(info, "master_link_status:up") {
			return false
		}
	}
	return true
}

var masterPortLine = regexp.MustCompile(`master_port:(\d+)`)

// KillMaster kills the first running master that has a replica, waits
// until a replica of it is promoted and every running node sees
// cluster_state:ok again, and returns the killed node (stopped; Restart
// brings it back as a replica of the promoted node). It fails the test
// when no master has a replica or the cluster does not fail over within
// 60 s.
func (c *Cluster) KillMaster(t testing.TB) *Server {
	t.Helper()
	for _, m := range c.Nodes {
		if !m.Running() || !hasRole(m, "master") {
			continue
		}
		_, port, _ := net.SplitHostPort(m.Addr)
		var replicas []*Server
		for _, n := range c.Nodes {
			if info, err := Do(n.Addr, "INFO", "replication"); err == nil && n != m && n.Running() &&
				strings.Contains(info, "role:slave") && masterPortOf(info) == port {
				replicas = append(replicas, n)
			}
		}
		if len(replicas) == 0 {
			continue
		}
		m.Stop()
		if !waitFor(60*time.Second, func() bool {
			for _, r := range replicas {
				if hasRole(r, "master") {
					return c.ok()
				}
			}
			return false
		}) {
			t.Fatalf("cluster did not fail over after killing master %s", m.Addr)
		}
		return m
	}
	t.Fatal("no running master with a replica to kill")
	return nil
}

func hasRole(s *Server, role string) bool {
	info, err := Do(s.Addr, "INFO", "replication")
	return err == nil && strings.Contains(info, "role:"+role)
}

func masterPortOf(info string) string {
	if m := masterPortLine.FindStringSubmatch(info); m != nil {
		return m[1]
	}
	return ""
}

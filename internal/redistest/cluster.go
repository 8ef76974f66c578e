package redistest

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Cluster is three Redis Cluster masters (no replicas) sharing the 16384
// slots, on loopback.
type Cluster struct {
	// Nodes are the masters; Addrs their addresses, for clients.
	Nodes []*Server
}

// Addrs returns the masters' addresses.
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
	bin := lookPath(t, "redis-server")
	cli := lookPath(t, "redis-cli")
	c := &Cluster{}
	for range 3 {
		c.Nodes = append(c.Nodes, startServer(t, bin, "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if !waitFor(30*time.Second, c.ok) {
		t.Fatal("cluster never reached cluster_state:ok")
	}
	return c
}

// ok reports whether every running node sees the cluster as healthy.
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

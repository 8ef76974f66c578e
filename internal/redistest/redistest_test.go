package redistest

import (
	"testing"
	"time"
)

func TestStartPingRestartStop(t *testing.T) {
	s := Start(t)
	if err := s.Ping(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	s.Stop()
	if err := s.Ping(); err == nil {
		t.Fatal("ping succeeded after Stop")
	}
	s.Restart(t)
	if err := s.Ping(); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

func TestSentinelFailover(t *testing.T) {
	s := StartSentinel(t)
	addr, err := s.MasterAddr()
	if err != nil || addr != s.Master.Addr {
		t.Fatalf("master %q (%v), want %q", addr, err, s.Master.Addr)
	}
	s.Failover(t)
	addr, err = s.MasterAddr()
	if err != nil || addr != s.Master.Addr {
		t.Fatalf("after failover: master %q (%v), want %q", addr, err, s.Master.Addr)
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t)
	if len(c.Addrs()) != 3 || !c.ok() {
		t.Fatal("cluster not healthy")
	}
}

func TestDurableKeepsWritesAcrossRestart(t *testing.T) {
	s := StartDurable(t)
	if _, err := Do(s.Addr, "SET", "k", "v"); err != nil {
		t.Fatalf("set: %v", err)
	}
	s.Restart(t)
	if got, err := Do(s.Addr, "GET", "k"); err != nil || got != "v" {
		t.Fatalf("after restart: %q (%v), want v", got, err)
	}
}

func TestClusterKillMasterFailsOver(t *testing.T) {
	c := StartClusterWithReplicas(t)
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Nodes))
	}
	killed := c.KillMaster(t)
	if killed.Running() || !c.ok() {
		t.Fatal("cluster not healthy after the failover")
	}
	killed.Restart(t)
	if !waitFor(30*time.Second, func() bool { return hasRole(killed, "slave") && c.ok() && c.replicasInSync() }) {
		t.Fatal("the killed master did not rejoin as a replica")
	}
}

func TestCPUAndScriptStats(t *testing.T) {
	s := Start(t)
	calls0, _, err := s.ScriptStats()
	if err != nil || calls0 != 0 {
		t.Fatalf("fresh server: %d script calls, err %v", calls0, err)
	}
	for range 3 {
		if _, err := Do(s.Addr, "EVAL", "return 1", "0"); err != nil {
			t.Fatalf("eval: %v", err)
		}
	}
	calls, _, err := s.ScriptStats()
	if err != nil || calls != 3 {
		t.Fatalf("after 3 EVALs: %d script calls, err %v", calls, err)
	}
	if cpu, err := s.CPUTime(); err != nil || cpu <= 0 {
		t.Fatalf("cpu time %v, err %v", cpu, err)
	}
}

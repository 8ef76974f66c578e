package redistest

import "testing"

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

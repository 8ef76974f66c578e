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

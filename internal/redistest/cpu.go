package redistest

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CPUTime is the CPU time (user plus system) the server has used since it
// started, from INFO cpu.
func (s *Server) CPUTime() (time.Duration, error) {
	info, err := Do(s.Addr, "INFO", "cpu")
	if err != nil {
		return 0, err
	}
	var total float64
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_user" && k != "used_cpu_sys") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("INFO cpu %s: %w", k, err)
		}
		total += f
	}
	return time.Duration(total * float64(time.Second)), nil
}

// ScriptStats is Redis's own accounting of script calls (EVALSHA and
// EVAL together), from INFO commandstats: how many ran and the time they
// took inside Redis, without I/O.
func (s *Server) ScriptStats() (calls int64, took time.Duration, err error) {
	info, err := Do(s.Addr, "INFO", "commandstats")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "cmdstat_evalsha" && k != "cmdstat_eval") {
			continue
		}
		for field := range strings.SplitSeq(v, ",") {
			name, num, _ := strings.Cut(field, "=")
			n, err := strconv.ParseInt(num, 10, 64)
			switch {
			case name != "calls" && name != "usec":
			case err != nil:
				return 0, 0, fmt.Errorf("INFO commandstats %s %s: %w", k, name, err)
			case name == "calls":
				calls += n
			default:
				took += time.Duration(n) * time.Microsecond
			}
		}
	}
	return calls, took, nil
}

// MeasureCPU starts measuring the CPU time of the benchmark's own process
// (every goroutine, GC included), of s, and of the scripts s runs; the
// returned function, called right after the benchmark loop, reports them
// with b.ReportMetric: client-µs/op, redis-µs/op and script-µs/call (time
// inside Redis per script call). Unlike ns/op they hardly move when other
// processes compete for the machine, so two builds can be compared on a
// busy one. Call it after the benchmark's set-up.
func MeasureCPU(b *testing.B, s *Server) (report func()) {
	b.Helper()
	self0, redis0 := processCPU(), mustCPU(b, s)
	calls0, took0, err := s.ScriptStats()
	if err != nil {
		b.Fatalf("redis commandstats: %v", err)
	}
	return func() {
		b.Helper()
		if b.N == 0 {
			return
		}
		n := float64(b.N)
		b.ReportMetric(float64(processCPU()-self0)/n/1e3, "client-µs/op")
		b.ReportMetric(float64(mustCPU(b, s)-redis0)/n/1e3, "redis-µs/op")
		calls, took, err := s.ScriptStats()
		if err != nil {
			b.Fatalf("redis commandstats: %v", err)
		}
		if calls > calls0 {
			b.ReportMetric(float64(took-took0)/float64(calls-calls0)/1e3, "script-µs/call")
		}
	}
}

func mustCPU(b *testing.B, s *Server) time.Duration {
	d, err := s.CPUTime()
	if err != nil {
		b.Fatalf("redis cpu time: %v", err)
	}
	return d
}

// processCPU is this process's CPU time, user plus system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

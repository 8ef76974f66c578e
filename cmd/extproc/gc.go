package main

import (
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultGCPercent is the garbage collector target the server sets for
// itself when GOGC is not in its environment: every ext_proc message
// allocates its decoded protobuf, so at Go's default of 100 the collector
// ran often on a small heap (docs/benchmarks.md, "GC settings").
const defaultGCPercent = 200

// memoryLimitShare is the part of the container's memory limit (cgroup v2
// memory.max) the server sets as its soft memory limit when GOMEMLIMIT is
// not in its environment, so that the higher GC target never costs an
// out-of-memory kill: near the limit the collector runs as often as needed.
const memoryLimitShare = 0.9

// cgroupMemoryMax is where cgroup v2 publishes the container's memory limit.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// runtimeSettings is what tuneRuntime chose, logged at start.
type runtimeSettings struct {
	// GCPercent is the GC target in force; GCPercentSource "GOGC" when the
	// environment set it, "default" when the server did.
	GCPercent       int
	GCPercentSource string
	// MemoryLimit is the soft memory limit the server set in bytes, 0 when
	// it set none (GOMEMLIMIT given, or no container limit found).
	MemoryLimit int64
}

// tuneRuntime applies the server's GC defaults where the environment left
// them unset. readFile reads the cgroup file (os.ReadFile in production).
// It returns what it chose; it changes process-wide settings, so only main
// calls it.
func tuneRuntime(getenv func(string) string, readFile func(string) ([]byte, error)) runtimeSettings {
	s := chooseRuntime(getenv, readFile)
	if s.GCPercentSource == "default" {
		debug.SetGCPercent(s.GCPercent)
	}
	if s.MemoryLimit > 0 {
		debug.SetMemoryLimit(s.MemoryLimit)
	}
	return s
}

// chooseRuntime decides tuneRuntime's settings without applying them.
func chooseRuntime(getenv func(string) string, readFile func(string) ([]byte, error)) runtimeSettings {
	s := runtimeSettings{GCPercent: defaultGCPercent, GCPercentSource: "default"}
	if v := getenv("GOGC"); v != "" {
		s.GCPercentSource = "GOGC"
		s.GCPercent = -1 // "off", or whatever the runtime parsed
		if n, err := strconv.Atoi(v); err == nil {
			s.GCPercent = n
		}
	}
	if getenv("GOMEMLIMIT") != "" {
		return s
	}
	b, err := readFile(cgroupMemoryMax)
	if err != nil {
		return s
	}
	// "max" (no limit) or a byte count.
	if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
		s.MemoryLimit = int64(float64(n) * memoryLimitShare)
	}
	return s
}

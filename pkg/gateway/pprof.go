package gateway

import (
	"net/http"
	"net/http/pprof"
)

// pprofHandlers are Go's runtime profiles (net/http/pprof) by admin path,
// served when LLM_PROXY_PPROF=1: /debug/pprof/ lists them and serves the
// named ones (heap, allocs, goroutine, mutex, block, threadcreate),
// /debug/pprof/profile?seconds=N a CPU profile, /debug/pprof/trace an
// execution trace. Off by default: a profile shows function names and
// stacks, not requests or keys, but collecting one costs CPU. Like /usage
// they require LLM_PROXY_ADMIN_TOKEN when it is set.
func pprofHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		"/debug/pprof/":        http.HandlerFunc(pprof.Index),
		"/debug/pprof/cmdline": http.HandlerFunc(pprof.Cmdline),
		"/debug/pprof/profile": http.HandlerFunc(pprof.Profile),
		"/debug/pprof/symbol":  http.HandlerFunc(pprof.Symbol),
		"/debug/pprof/trace":   http.HandlerFunc(pprof.Trace),
	}
}

// Command extproc runs the llm-proxy-extproc server: the Envoy ext_proc gRPC
// service on GRPC_ADDR and the admin HTTP listener (/health, /ready,
// /metrics) on ADMIN_ADDR.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// startRuntime is what main's tuneRuntime chose (zero in tests, which run
// the server in their own process without it).
var startRuntime runtimeSettings

func main() {
	startRuntime = tuneRuntime(os.Getenv, os.ReadFile)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			os.Exit(exit.code) // the command printed its own message
		}
		fmt.Fprintln(os.Stderr, "extproc:", err)
		os.Exit(1)
	}
}

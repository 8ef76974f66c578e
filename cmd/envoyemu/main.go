// Command envoyemu runs the envoytest Envoy emulation (HTTP connection
// manager + ext_proc filter + router, and per-attempt upstream ext_proc
// filters from cluster http_filters or router upstream_http_filters) from a
// real Envoy bootstrap file, for demos and local end-to-end runs without an
// Envoy binary.
//
//	envoyemu -bootstrap envoy/envoy-mock.yaml -listen :9002 \
//	    -cluster ext_proc=127.0.0.1:50051 -cluster openai=127.0.0.1:8080
//
// One JSON access-log line per request goes to stdout (the bootstrap's
// json_format when it has one); diagnostics go to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoytest"
)

// clusterFlags collects repeated -cluster name=addr flags.
type clusterFlags map[string]string

func (c clusterFlags) String() string {
	parts := make([]string, 0, len(c))
	for k, v := range c {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (c clusterFlags) Set(s string) error {
	name, addr, ok := strings.Cut(s, "=")
	if !ok || name == "" || addr == "" {
		return fmt.Errorf("want name=host:port, got %q", s)
	}
	c[name] = addr
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "envoyemu:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("envoyemu", flag.ContinueOnError)
	bootstrap := fs.String("bootstrap", "", "Envoy bootstrap YAML (required)")
	listen := fs.String("listen", "", "listen address (default: the bootstrap listener's address)")
	level := fs.String("log-level", "info", "stderr log level: debug, info, warn, error")
	clusters := clusterFlags{}
	fs.Var(clusters, "cluster", "override a cluster address: name=host:port (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bootstrap == "" {
		return errors.New("-bootstrap is required")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	cfg, err := envoytest.FromBootstrap(*bootstrap, clusters)
	if err != nil {
		return err
	}
	cfg.AccessLog = os.Stdout
	cfg.Logger = logger
	cfg.OnViolation = func(v envoytest.Violation) {
		logger.Warn("ext_proc protocol violation", "kind", v.Kind, "detail", v.Detail, "outcome", v.Outcome,
			"request_id", v.RequestID, "path", v.Path)
	}
	addr := *listen
	if addr == "" {
		addr = cfg.ListenAddr
	}
	front, err := envoytest.New(cfg)
	if err != nil {
		return err
	}
	defer front.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := front.Start(ctx, addr)
	if err != nil {
		return err
	}
	logger.Info("envoyemu listening", "addr", srv.Addr, "bootstrap", *bootstrap, "clusters", cfg.Clusters,
		"upstream_ext_proc", upstreamExtProc(cfg))
	<-ctx.Done()
	logger.Info("envoyemu stopping")
	return srv.Close()
}

// upstreamExtProc describes which clusters run an upstream ext_proc filter:
// cluster name -> ext_proc server address ("(router)" for clusters using the
// router's upstream_http_filters).
func upstreamExtProc(cfg envoytest.Config) map[string]string {
	out := map[string]string{}
	for name, e := range cfg.UpstreamExtProc {
		if e != nil {
			out[name] = e.Addr
		}
	}
	if e := cfg.RouterUpstreamExtProc; e != nil {
		out["(router)"] = e.Addr
	}
	return out
}

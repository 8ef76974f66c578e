package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/sethvargo/go-envconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/gateway"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

// Settings are the process settings, read from the environment.
type Settings struct {
	// GRPCAddr is the ext_proc gRPC listen address.
	GRPCAddr string `env:"GRPC_ADDR, default=:50051"`
	// AdminAddr is the admin HTTP listen address (/health, /ready, /metrics).
	AdminAddr string `env:"ADMIN_ADDR, default=:9003"`
	// ConfigFiles is a comma-separated list of YAML rule files merged in order.
	ConfigFiles string `env:"LLM_PROXY_CONFIG, default=configs/base.yml"`
	// PriceCatalog is a price catalog file (the format of
	// pkg/cost/catalog/genai-prices.json) replacing the embedded snapshot;
	// re-read on SIGHUP. Default: the embedded snapshot.
	PriceCatalog string `env:"LLM_PROXY_PRICE_CATALOG"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `env:"LOG_LEVEL, default=info"`
	// LogFormat is json or text.
	LogFormat string `env:"LOG_FORMAT, default=json"`
	// ShutdownTimeout bounds how long open streams may run after SIGTERM.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT, default=25s"`
}

// Envoy multiplexes every request of a worker over few HTTP/2 connections to
// the ext_proc cluster, so the per-connection stream cap must be far above
// gRPC's default of 100 concurrent requests per connection.
const maxConcurrentStreams = 1 << 16

// Keepalive lets dead Envoy connections be noticed while streams idle during
// long LLM responses.
var (
	keepaliveParams = keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}
	keepalivePolicy = keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}
)

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if isKeysCommand(args) {
		return runKeys(ctx, args, getenv, stdout, stderr)
	}
	fs := flag.NewFlagSet("extproc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	validate := fs.String("validate-config", "", "check comma-separated YAML rule `files`, print the result and exit 0 (valid) or 1")
	showVersion := fs.Bool("version", false, "print the version and exit")
	keyID := fs.Bool("key-id", false, "read an API key from standard input and print the id the gateway uses for it (for overrides.per_key)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, version)
		return nil
	}
	if *keyID {
		key, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			return fmt.Errorf("read key: %w", err)
		}
		fmt.Fprintln(stdout, processor.KeyID(strings.TrimSpace(string(key))))
		return nil
	}
	if *validate != "" {
		files := config.SplitPaths(*validate)
		if _, err := config.Load(files, getenv); err != nil {
			return fmt.Errorf("invalid configuration:\n%w", err)
		}
		fmt.Fprintf(stdout, "configuration valid: %s\n", strings.Join(files, ", "))
		return nil
	}
	var s Settings
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &s, Lookuper: lookuper(getenv)}); err != nil {
		return fmt.Errorf("read settings: %w", err)
	}
	a, err := start(ctx, s, stderr)
	if err != nil {
		return err
	}
	return a.wait(ctx)
}

func lookuper(getenv func(string) string) envconfig.Lookuper {
	return envconfig.LookuperFunc(func(key string) (string, bool) {
		v := getenv(key)
		return v, v != ""
	})
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("LOG_FORMAT: want json or text, got %q", format)
	}
}

// app is a started server.
type app struct {
	settings Settings
	log      *slog.Logger
	grpc     *grpc.Server
	health   *health.Server
	admin    *http.Server
	grpcLn   net.Listener
	adminLn  net.Listener
	ready    atomic.Bool
	errs     chan error
	gateway  *gateway.Gateway
	hup      chan os.Signal // SIGHUP: reopen cost-record files (logrotate), reload the rules
	reloads  *prometheus.CounterVec
}

// start loads the rules and starts both listeners. It returns once they
// accept connections.
func start(ctx context.Context, s Settings, logOut io.Writer) (*app, error) {
	log, err := newLogger(logOut, s.LogLevel, s.LogFormat)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(config.SplitPaths(s.ConfigFiles), nil)
	if err != nil {
		return nil, fmt.Errorf("load configuration %s:\n%w", s.ConfigFiles, err)
	}
	warnDeprecated(log, cfg)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a := &app{settings: s, log: log, errs: make(chan error, 2), hup: make(chan os.Signal, 1),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm_proxy_config_reload_total",
			Help: "Rule reloads on SIGHUP by result (ok, error)."}, []string{"result"})}
	reg.MustRegister(a.reloads)
	a.reloads.WithLabelValues("ok")
	a.reloads.WithLabelValues("error")
	// Registered before the server is ready, so a SIGHUP never finds the
	// process with the default (terminating) action.
	signal.Notify(a.hup, syscall.SIGHUP)
	redis.SetLogger(redisLogger{log})
	gw, err := gateway.New(ctx, cfg, gateway.Options{Logger: log, Registry: reg, Ready: a.ready.Load, Version: version,
		PriceCatalog: s.PriceCatalog})
	if err != nil {
		return nil, err
	}
	a.gateway = gw
	var lc net.ListenConfig
	if a.grpcLn, err = lc.Listen(ctx, "tcp", s.GRPCAddr); err != nil {
		_ = gw.Close()
		return nil, fmt.Errorf("listen %s: %w", s.GRPCAddr, err)
	}
	if a.adminLn, err = lc.Listen(ctx, "tcp", s.AdminAddr); err != nil {
		a.grpcLn.Close()
		_ = gw.Close()
		return nil, fmt.Errorf("listen %s: %w", s.AdminAddr, err)
	}
	a.grpc = grpc.NewServer(append(processor.GRPCServerOptions(),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.KeepaliveParams(keepaliveParams),
		grpc.KeepaliveEnforcementPolicy(keepalivePolicy),
	)...)
	extprocv3.RegisterExternalProcessorServer(a.grpc, gw.Processor)
	a.health = health.NewServer()
	healthpb.RegisterHealthServer(a.grpc, a.health)
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	a.health.SetServingStatus(extprocv3.ExternalProcessor_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	a.admin = &http.Server{Handler: gw.Admin, ReadHeaderTimeout: 5 * time.Second}
	go func() { a.errs <- a.grpc.Serve(a.grpcLn) }()
	go func() {
		if err := a.admin.Serve(a.adminLn); !errors.Is(err, http.ErrServerClosed) {
			a.errs <- err
		}
	}()
	a.ready.Store(true)
	log.Info("extproc started", "version", version, "grpc_addr", a.grpcLn.Addr().String(),
		"admin_addr", a.adminLn.Addr().String(), "config", s.ConfigFiles,
		"gc_percent", startRuntime.GCPercent, "gc_percent_source", startRuntime.GCPercentSource,
		"memory_limit_bytes", startRuntime.MemoryLimit)
	return a, nil
}

// wait serves until ctx ends or a listener fails, then shuts down: it stops
// accepting, lets open streams finish within ShutdownTimeout, and closes.
func (a *app) wait(ctx context.Context) error {
	var err error
	hup := a.hup
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case err = <-a.errs:
			err = fmt.Errorf("serve: %w", err)
			done = true
		case <-hup:
			if rerr := a.gateway.Reopen(); rerr != nil {
				a.log.Warn("reopen cost record files", "error", rerr)
			} else {
				a.log.Info("cost record files reopened")
			}
			a.reloadRules()
		}
	}
	a.shutdown()
	if a.hup != nil {
		signal.Stop(a.hup)
	}
	return err
}

// warnDeprecated logs, once per load, the keys cfg sets that are accepted
// but no longer have an effect (config.Config.Deprecated).
func warnDeprecated(log *slog.Logger, cfg config.Config) {
	if keys := cfg.Deprecated(); len(keys) > 0 {
		log.Warn("rules set keys that no longer have an effect; remove them (README: estimation)", "keys", keys)
	}
}

// reloadRules re-reads the rule files and puts their live-reloadable rules
// in force (see config.Reloadable); an invalid file keeps the running
// rules. Either outcome is logged once and counted in
// llm_proxy_config_reload_total; /health shows the last one.
func (a *app) reloadRules() {
	cfg, err := config.Load(config.SplitPaths(a.settings.ConfigFiles), nil)
	var res gateway.ReloadResult
	if err == nil {
		res, err = a.gateway.Reload(cfg)
	} else {
		a.gateway.ReloadFailed(err)
	}
	if err != nil {
		a.reloads.WithLabelValues("error").Inc()
		a.log.Error("rules not reloaded; the running rules stay in force", "config", a.settings.ConfigFiles, "error", err)
		return
	}
	a.reloads.WithLabelValues("ok").Inc()
	warnDeprecated(a.log, cfg)
	if len(res.RestartRequired) > 0 {
		a.log.Warn("rules reloaded; some changed settings need a restart and keep their running value",
			"version", res.Version, "restart_required", res.RestartRequired)
		return
	}
	a.log.Info("rules reloaded", "version", res.Version, "config", a.settings.ConfigFiles)
}

func (a *app) shutdown() {
	a.ready.Store(false)
	a.health.Shutdown()
	a.log.Info("extproc shutting down", "timeout", a.settings.ShutdownTimeout.String())
	done := make(chan struct{})
	go func() {
		a.grpc.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(a.settings.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		a.log.Warn("open streams did not finish in time; closing them")
		a.grpc.Stop()
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.admin.Shutdown(ctx)
	_ = a.gateway.Close()
	a.log.Info("extproc stopped")
}

// redisLogger sends go-redis's internal messages (dial failures, pool
// events) to slog at debug level: the limiter reports backend state itself,
// once per transition.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

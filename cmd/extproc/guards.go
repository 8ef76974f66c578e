package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/ratelimit"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/telemetry"
)

// guards builds the admission guards the rules enable, and the /health
// sections that report them.
func (a *app) guards(ctx context.Context, cfg config.Config, reg prometheus.Registerer,
	provs providers.Registry,
) ([]processor.Guard, map[string]func(context.Context) any, error) {
	var guards []processor.Guard
	sections := map[string]func(context.Context) any{}

	rl := cfg.Features.RateLimiting.Config
	if rl.Enabled {
		m := telemetry.NewRateLimitMetrics(reg)
		lim, err := ratelimit.New(ctx, rl, ratelimit.Hooks{OnStateChange: func(st ratelimit.BackendStatus) {
			// Logged once per transition, not per request.
			m.SetBackendHealthy(st.Healthy)
			if st.Healthy {
				a.log.Info("rate limiter backend recovered", "backend", st.Backend)
				return
			}
			a.log.Warn("rate limiter backend unavailable", "backend", st.Backend, "error", st.LastError,
				"fail_mode", rl.FailMode)
		}})
		if err != nil {
			return nil, nil, fmt.Errorf("rate limiter: %w", err)
		}
		a.closers = append(a.closers, lim)
		guards = append(guards, processor.NewRateLimit(processor.RateLimitOptions{
			Limiter: lim, Config: rl, Providers: provs, Hooks: m.Hooks(),
			Corrector: ratelimit.NewCorrector(ratelimit.CorrectorConfig{}),
		}))
		sections["rate_limiting"] = func(ctx context.Context) any {
			st := lim.Status(ctx)
			return map[string]any{"enabled": true, "backend": st.Backend, "healthy": st.Healthy,
				"last_error": st.LastError, "fail_mode": rl.FailMode}
		}
	} else {
		sections["rate_limiting"] = func(context.Context) any { return map[string]any{"enabled": false} }
	}
	return guards, sections, nil
}

func (a *app) closeAll() {
	for _, c := range a.closers {
		_ = c.Close()
	}
	a.closers = nil
}

// redisLogger sends go-redis's internal messages (dial failures, pool
// events) to slog at debug level: the limiter reports backend state itself,
// once per transition.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

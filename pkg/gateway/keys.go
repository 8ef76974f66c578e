package gateway

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/adminauth"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/credentials"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/gatewayauth"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys/keysapi"
)

// gatewayKeys is the assembled gateway-key machinery: the admission the
// processor calls, the admin API, and the /health section.
type gatewayKeys struct {
	admission *gatewayauth.Admission
	auth      *keys.Authenticator
	api       http.Handler // nil without LLM_PROXY_ADMIN_TOKEN
	providers []string
	store     string
}

// newGatewayKeys opens the key store of features.gateway_keys, loads the
// vendor keys of every gateway_keys provider, and starts the key-index
// sync and the key-file reloads (stopped by g.Close). It returns nil when
// no store is configured. An unreachable store is not an error: the index
// starts empty (every key refused) and the sync keeps trying.
func (g *Gateway) newGatewayKeys(ctx context.Context, cfg config.Config, o Options) (*gatewayKeys, error) {
	gk := cfg.Features.GatewayKeys
	if gk == nil {
		return nil, nil
	}
	store, err := keys.OpenStore(*gk)
	if err != nil {
		return nil, fmt.Errorf("gateway keys: %w", err)
	}
	g.closers = append(g.closers, store)
	log := o.Logger.With("component", "gateway_keys")
	auth := keys.NewAuthenticator(store, gk.AuthenticatorOptions(o.Now, log))
	if err := auth.Sync(ctx); err != nil {
		log.Warn("gateway key store not reachable at start; every key is refused until it is", "error", err)
	}
	if !cfg.Features.RateLimiting.Enabled {
		log.Warn("features.rate_limiting is off: the request and token limits of gateway keys and teams are not enforced")
	}
	if !cfg.Features.CostTracking.Budgets.Enabled {
		log.Warn("features.cost_tracking.budgets is off: the budgets of gateway keys and teams are not enforced")
	}
	out := &gatewayKeys{auth: auth, store: gk.Store}
	pools := map[string]*credentials.Pool{}
	for name, pc := range cfg.Providers {
		if !pc.IsEnabled() || !pc.GatewayKeys() {
			continue
		}
		pool, err := credentials.New(name, *pc.Credentials)
		if err != nil {
			return nil, err
		}
		pools[name] = pool
		out.providers = append(out.providers, name)
	}
	sort.Strings(out.providers)
	out.admission = gatewayauth.New(auth, pools)

	runCtx, stop := context.WithCancel(context.Background())
	g.closers = append(g.closers, closerFunc(func() error { stop(); return nil }))
	syncTicker := time.NewTicker(gk.SyncInterval())
	go func() { defer syncTicker.Stop(); auth.Run(runCtx, syncTicker.C) }()
	for _, pool := range pools {
		reload := time.NewTicker(credentials.DefaultReloadInterval)
		go func() { defer reload.Stop(); pool.Watch(runCtx, reload.C, log) }()
	}

	guard := adminauth.FromEnv(o.Getenv)
	if guard.Enabled() {
		m := &keys.Manager{Store: store, Now: o.Now, RotationGrace: time.Duration(gk.RotationGraceSeconds) * time.Second}
		out.api = keysapi.New(m, guard, keysapi.Options{
			// This instance sees its own change at once; the others within
			// one sync interval.
			OnChange: func(ctx context.Context) { _ = auth.Sync(ctx) },
			Log:      log,
		})
	} else {
		log.Info("admin API for gateway keys is off: set " + adminauth.EnvVar + " to enable it")
	}
	return out, nil
}

// section is the gateway_keys entry of /health.
func (k *gatewayKeys) section(context.Context) any {
	if k == nil {
		return map[string]any{"enabled": false}
	}
	version, n := k.auth.Loaded()
	return map[string]any{"enabled": true, "store": k.store, "providers": k.providers, "admin_api": k.api != nil,
		"store_version": version, "keys_loaded": n}
}

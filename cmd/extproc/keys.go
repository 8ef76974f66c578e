package main

import (
	"context"
	"fmt"
	"io"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/config"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys/keyscli"
)

// exitError ends the program with a given status and no further message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// isKeysCommand reports whether args name the keys or teams commands.
func isKeysCommand(args []string) bool {
	return len(args) > 0 && (args[0] == "keys" || args[0] == "teams")
}

// runKeys runs `extproc keys ...` and `extproc teams ...`. The store is
// the one the rules name (features.gateway_keys of LLM_PROXY_CONFIG) when
// they name one and no --store flag is given; otherwise the command's own
// store flags and LLM_PROXY_KEYS_* variables choose it.
func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	code := 0
	if store, ok := rulesStore(args, getenv, stderr); ok {
		defer func() { _ = store.Close() }()
		code = keyscli.RunWithStore(ctx, store, args, stdout, stderr)
	} else {
		code = keyscli.Run(ctx, args, stdout, stderr)
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// rulesStore opens the gateway's key store from the rule files, when
// LLM_PROXY_CONFIG is set, loads, configures features.gateway_keys, and the
// command line does not choose a store itself.
func rulesStore(args []string, getenv func(string) string, stderr io.Writer) (keys.Store, bool) {
	for _, a := range args {
		if a == "--store" || a == "-store" || len(a) > 8 && (a[:8] == "--store=" || a[:7] == "-store=") {
			return nil, false
		}
	}
	files := getenv("LLM_PROXY_CONFIG")
	if files == "" {
		return nil, false
	}
	cfg, err := config.Load(config.SplitPaths(files), getenv)
	if err != nil || cfg.Features.GatewayKeys == nil {
		return nil, false
	}
	store, err := keys.OpenStore(*cfg.Features.GatewayKeys)
	if err != nil {
		fmt.Fprintln(stderr, "extproc: gateway key store of", files+":", err)
		return nil, false
	}
	return store, true
}

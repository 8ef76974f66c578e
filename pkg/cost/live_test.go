package cost

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "prices.json")
	write := func(models string) {
		require.NoError(t, os.WriteFile(path, testCatalog(t, models), 0o600))
	}
	write(`{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":1,"output_mtok":2}}`)
	var logs bytes.Buffer
	configured := map[string]map[string]Model{"openai": {"mine": {Pricing: Price{Input: 9, Output: 9}}}}
	live, err := NewLive(configured, path, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	first := live.Table()
	input := func(model string) float64 {
		p, _, ok := live.Table().Lookup("openai", model)
		require.True(t, ok, model)
		return p.Input
	}
	require.Equal(t, 1.0, input("m"))
	require.Equal(t, 9.0, input("mine"), "configured prices win")
	require.Equal(t, "0.0.0", live.Table().Catalog().Version)

	ctx := context.Background()
	require.NoError(t, live.Reload(ctx))
	require.Same(t, first, live.Table(), "an unchanged file is a no-op")
	require.Zero(t, live.Reloads())

	write(`{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":3,"output_mtok":2}}`)
	require.NoError(t, live.Reload(ctx))
	require.Equal(t, 3.0, input("m"))
	require.Equal(t, int64(1), live.Reloads())
	require.Contains(t, logs.String(), "price catalog reloaded")

	// A bad catalog keeps the current prices, logs why and counts it.
	good := live.Table()
	write(`{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":-3}}`)
	err = live.Reload(ctx)
	require.ErrorContains(t, err, "input must be a finite non-negative")
	require.Same(t, good, live.Table())
	require.Equal(t, int64(1), live.Failures())
	require.NoError(t, os.Remove(path))
	require.Error(t, live.Reload(ctx), "a missing file keeps the prices too")
	require.Same(t, good, live.Table())
	require.Equal(t, int64(2), live.Failures())
	require.Contains(t, logs.String(), "keeping the current prices")

	// Run reloads on every tick until the channel closes.
	write(`{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":5,"output_mtok":2}}`)
	ticks := make(chan time.Time)
	done := make(chan struct{})
	go func() { live.Run(ctx, ticks); close(done) }()
	ticks <- time.Time{}
	close(ticks)
	<-done
	require.Equal(t, 5.0, input("m"))
}

func TestNewLive(t *testing.T) {
	live, err := NewLive(nil, "", nil)
	require.NoError(t, err)
	require.Same(t, DefaultCatalog(), live.Table().Catalog())
	require.NoError(t, live.Reload(context.Background()), "no file: nothing to reload")

	_, err = NewLive(nil, filepath.Join(t.TempDir(), "missing.json"), nil)
	require.ErrorContains(t, err, "price catalog")
	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"version":`), 0o600))
	_, err = NewLive(nil, bad, nil)
	require.True(t, strings.Contains(err.Error(), "parse catalog"), err.Error())
	_, err = NewLive(map[string]map[string]Model{"openai": {"x": {Pricing: Price{Input: -1}}}}, "", nil)
	require.Error(t, err)
}

package cost

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Live is the gateway's current price [Table], rebuilt when a catalog file
// (the format of catalog/genai-prices.json, for example written by `make
// update-prices` or fetched by a sidecar) changes, without a restart.
//
// A reload reads the file, validates all of it ([ParseCatalog]) and swaps
// the new Table in atomically; a missing, unreadable or invalid file keeps
// the current Table, is logged and counted ([Live.Failures]). Table, Reload
// and Run are safe for concurrent use; readers never block.
type Live struct {
	configured map[string]map[string]Model
	path       string
	log        *slog.Logger

	cur      atomic.Pointer[Table]
	failures atomic.Int64
	reloads  atomic.Int64

	mu   sync.Mutex // serialises reloads
	last []byte     // the file content the current Table was built from
}

// NewLive builds the Table from configured (see [NewTableWithCatalog]) and
// the catalog file at path, or the embedded catalog when path is empty. An
// invalid configuration or file at start is an error. log receives one
// line per reload outcome; nil discards them.
func NewLive(configured map[string]map[string]Model, path string, log *slog.Logger) (*Live, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Live{configured: configured, path: path, log: log}
	if path == "" {
		t, err := NewTableWithDefaults(configured)
		if err != nil {
			return nil, err
		}
		l.cur.Store(t)
		return l, nil
	}
	data, t, err := l.load()
	if err != nil {
		return nil, err
	}
	l.last = data
	l.cur.Store(t)
	return l, nil
}

// Table returns the current Table.
func (l *Live) Table() *Table { return l.cur.Load() }

// Failures counts the reloads that kept the previous Table because the
// file could not be read or was invalid.
func (l *Live) Failures() int64 { return l.failures.Load() }

// Reloads counts the reloads that swapped in a new Table.
func (l *Live) Reloads() int64 { return l.reloads.Load() }

// Reload re-reads the catalog file. An unchanged file is a no-op; a bad
// one keeps the current Table and returns why. Without a file (path "")
// Reload does nothing.
func (l *Live) Reload(ctx context.Context) error {
	if l.path == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	data, err := os.ReadFile(l.path)
	if err == nil && bytes.Equal(data, l.last) {
		return nil
	}
	var t *Table
	if err == nil {
		t, err = l.build(data)
	}
	if err != nil {
		l.failures.Add(1)
		err = fmt.Errorf("price catalog %s: %w", l.path, err)
		l.log.LogAttrs(ctx, slog.LevelError, "price catalog reload failed; keeping the current prices",
			slog.String("path", l.path), slog.String("error", err.Error()))
		return err
	}
	l.last = data
	l.cur.Store(t)
	l.reloads.Add(1)
	l.log.LogAttrs(ctx, slog.LevelInfo, "price catalog reloaded", slog.String("path", l.path),
		slog.String("version", t.Catalog().Version), slog.String("snapshot_date", t.Catalog().SnapshotDate))
	return nil
}

// Run calls Reload on every tick (for example a time.Ticker's channel, or
// one fed on SIGHUP) until ctx is done or ticks is closed. Errors are
// logged and counted by Reload.
func (l *Live) Run(ctx context.Context, ticks <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ticks:
			if !ok {
				return
			}
			_ = l.Reload(ctx)
		}
	}
}

func (l *Live) load() ([]byte, *Table, error) {
	data, err := os.ReadFile(l.path)
	if err != nil {
		return nil, nil, fmt.Errorf("price catalog: %w", err)
	}
	t, err := l.build(data)
	if err != nil {
		return nil, nil, fmt.Errorf("price catalog %s: %w", l.path, err)
	}
	return data, t, nil
}

func (l *Live) build(data []byte) (*Table, error) {
	c, err := ParseCatalog(data)
	if err != nil {
		return nil, err
	}
	return NewTableWithCatalog(l.configured, c)
}

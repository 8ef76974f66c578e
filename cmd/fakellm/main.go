// Command fakellm serves the fake LLM vendor of package fakevendor: OpenAI,
// Anthropic and Gemini on one listener, picked by Host header or by a
// leading /openai, /anthropic, /gemini path segment. It logs one slog line
// per request and shuts down gracefully on SIGTERM or SIGINT.
//
// Flags (environment in parentheses):
//
//	-addr       listen address (FAKELLM_ADDR), default ":8080"
//	-vendor     serve only this vendor: openai, anthropic or gemini (FAKELLM_VENDOR)
//	-seed       seed for write splits and ids, 0 = random (FAKELLM_SEED)
//	-max-calls  recorded calls kept for GET /__fake/calls (FAKELLM_MAX_CALLS), default 10000
//	-log-format text or json (LOG_FORMAT), default text
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
	"strconv"
	"syscall"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "fakellm:", err)
		os.Exit(1)
	}
}

// shutdownGrace bounds how long in-flight requests may run after a signal.
const shutdownGrace = 10 * time.Second

// run serves until ctx is done. ready, when not nil, is called with the
// bound address once the listener is open.
func run(ctx context.Context, args []string, getenv func(string) string, logOut io.Writer, ready func(net.Addr)) error {
	fs := flag.NewFlagSet("fakellm", flag.ContinueOnError)
	fs.SetOutput(logOut)
	addr := fs.String("addr", envOr(getenv, "FAKELLM_ADDR", ":8080"), "listen address")
	vendor := fs.String("vendor", getenv("FAKELLM_VENDOR"), "serve only this vendor (openai, anthropic, gemini)")
	seed := fs.Uint64("seed", 0, "seed for write splits and ids; 0 picks a random one")
	maxCalls := fs.Int("max-calls", 10000, "recorded calls kept")
	logFormat := fs.String("log-format", envOr(getenv, "LOG_FORMAT", "text"), "log format: text or json")
	gzipAccepted := fs.Bool("gzip-when-accepted", getenv("FAKELLM_GZIP_WHEN_ACCEPTED") == "1",
		"gzip every body the client accepts gzip for, like the real vendors (env FAKELLM_GZIP_WHEN_ACCEPTED=1)")
	chunkedJSON := fs.Bool("chunked-json", getenv("FAKELLM_CHUNKED_JSON") == "1",
		"send JSON bodies without content-length (env FAKELLM_CHUNKED_JSON=1)")
	if v := getenv("FAKELLM_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("parse FAKELLM_SEED: %w", err)
		}
		*seed = n
	}
	if v := getenv("FAKELLM_MAX_CALLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("parse FAKELLM_MAX_CALLS: %w", err)
		}
		*maxCalls = n
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch fakevendor.Vendor(*vendor) {
	case "", fakevendor.VendorOpenAI, fakevendor.VendorAnthropic, fakevendor.VendorGemini:
	default:
		return fmt.Errorf("unknown vendor %q", *vendor)
	}

	var handler slog.Handler = slog.NewTextHandler(logOut, nil)
	if *logFormat == "json" {
		handler = slog.NewJSONHandler(logOut, nil)
	}
	log := slog.New(handler)

	srv := fakevendor.New(fakevendor.Options{
		Vendor:   fakevendor.Vendor(*vendor),
		Seed:     *seed,
		MaxCalls: *maxCalls,
		OnCall:   func(c fakevendor.Call) { logCall(log, c) },

		GzipWhenAccepted: *gzipAccepted,
		ChunkedJSON:      *chunkedJSON,
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		Protocols:         protocols,
		ErrorLog:          slog.NewLogLogger(handler, slog.LevelWarn),
	}
	log.Info("fakellm listening", "addr", ln.Addr().String(), "vendor", *vendor)
	if ready != nil {
		ready(ln.Addr())
	}

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("fakellm shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// logCall writes the one log line of a served request.
func logCall(log *slog.Logger, c fakevendor.Call) {
	attrs := []any{
		"seq", c.Seq, "vendor", string(c.Vendor), "endpoint", c.Endpoint,
		"method", c.Method, "host", c.Host, "path", c.OriginalPath,
		"model", c.Model, "stream", c.Stream, "status", c.Status,
		"request_id", c.RequestID, "body_bytes", c.BodyBytes, "completed", c.Completed,
	}
	if c.Usage != nil {
		attrs = append(attrs, "input_tokens", c.Usage.InputTokens, "output_tokens", c.Usage.OutputTokens,
			"cache_read_tokens", c.Usage.CacheReadTokens, "cache_write_tokens", c.Usage.CacheWriteTokens,
			"reasoning_tokens", c.Usage.ReasoningTokens)
	}
	if c.Fault != "" {
		attrs = append(attrs, "fault", c.Fault)
	}
	if c.Err != "" {
		attrs = append(attrs, "error", c.Err)
	}
	log.Info("request", attrs...)
}

package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestRunServesLogsAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-seed", "5"}, env(map[string]string{"FAKELLM_ADDR": "127.0.0.1:0", "LOG_FORMAT": "json"}), logs,
			func(a net.Addr) { addrc <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	}

	req, err := http.NewRequest(http.MethodPost, "http://"+addr.String()+"/v1/messages",
		strings.NewReader(`{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	req.Host = "api.anthropic.com"
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Request-Id"))

	require.Eventually(t, func() bool { return strings.Contains(logs.String(), `"endpoint":"messages"`) }, 30*time.Second, 5*time.Millisecond)
	require.Contains(t, logs.String(), `"output_tokens":5`)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
	require.Contains(t, logs.String(), "shutting down")
}

func TestRunRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "vendor", args: []string{"-vendor", "mistral"}, want: "unknown vendor"},
		{name: "seed env", env: map[string]string{"FAKELLM_SEED": "x"}, want: "FAKELLM_SEED"},
		{name: "max calls env", env: map[string]string{"FAKELLM_MAX_CALLS": "x"}, want: "FAKELLM_MAX_CALLS"},
		{name: "flag", args: []string{"-nope"}, want: "nope"},
		{name: "address", args: []string{"-addr", "256.0.0.1:1"}, want: "listen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, env(tc.env), io.Discard, nil)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

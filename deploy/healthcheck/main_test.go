package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRun(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ready":
			_, _ = w.Write([]byte("ok"))
		case "/slow":
			select {
			case <-block:
			case <-r.Context().Done():
			}
		default:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(func() { close(block); srv.Close() })

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{name: "ready", args: []string{srv.URL + "/ready"}, code: 0},
		{name: "not ready", args: []string{srv.URL + "/other"}, code: 1, stderr: "status 503"},
		{name: "timeout", args: []string{"-timeout", "50ms", srv.URL + "/slow"}, code: 1, stderr: "deadline exceeded"},
		{name: "refused", args: []string{"http://127.0.0.1:1/ready"}, code: 1, stderr: "get http://127.0.0.1:1/ready"},
		{name: "bad url", args: []string{"::"}, code: 1, stderr: "build request"},
		{name: "two urls", args: []string{"a", "b"}, code: 2, stderr: "at most one URL"},
		{name: "bad flag", args: []string{"-nope"}, code: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.Equal(t, tt.code, run(ctx, tt.args, &stderr))
			require.Contains(t, stderr.String(), tt.stderr)
		})
	}
}

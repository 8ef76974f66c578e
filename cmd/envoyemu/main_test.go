package main

import (
	"testing"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/envoytest"
	"github.com/stretchr/testify/require"
)

func TestRunRejectsBadArguments(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no bootstrap", args: nil, wantErr: "-bootstrap is required"},
		{name: "bad cluster flag", args: []string{"-bootstrap", "x.yaml", "-cluster", "noequals"}, wantErr: "want name=host:port"},
		{name: "bad log level", args: []string{"-bootstrap", "x.yaml", "-log-level", "loud"}, wantErr: "-log-level"},
		{name: "missing bootstrap file", args: []string{"-bootstrap", "/nonexistent/envoy.yaml"}, wantErr: "read bootstrap"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.args)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestClusterFlags(t *testing.T) {
	c := clusterFlags{}
	require.NoError(t, c.Set("ext_proc=127.0.0.1:50051"))
	require.NoError(t, c.Set("openai=127.0.0.1:8080"))
	require.Equal(t, clusterFlags{"ext_proc": "127.0.0.1:50051", "openai": "127.0.0.1:8080"}, c)
	require.Error(t, c.Set("=x"))
}

func TestUpstreamExtProcSummary(t *testing.T) {
	cfg := envoytest.Config{
		UpstreamExtProc:       map[string]*envoytest.ExtProcConfig{"openai": {Addr: "127.0.0.1:1"}, "plain": nil},
		RouterUpstreamExtProc: &envoytest.ExtProcConfig{Addr: "127.0.0.1:2"},
	}
	require.Equal(t, map[string]string{"openai": "127.0.0.1:1", "(router)": "127.0.0.1:2"}, upstreamExtProc(cfg))
	require.Empty(t, upstreamExtProc(envoytest.Config{}))
}

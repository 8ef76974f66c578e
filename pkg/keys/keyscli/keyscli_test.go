package keyscli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
)

type runner struct {
	t   *testing.T
	env map[string]string
}

// run executes a command line and returns the exit status, stdout decoded
// as JSON (nil when empty) and stderr.
func (r runner) run(line ...string) (int, map[string]any, string) {
	r.t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), line, &out, &errb, func(k string) string { return r.env[k] }, nil)
	var v map[string]any
	if out.Len() > 0 {
		require.NoError(r.t, json.Unmarshal(out.Bytes(), &v), out.String())
	}
	return code, v, errb.String()
}

func fileRunner(t *testing.T) runner {
	return runner{t: t, env: map[string]string{"LLM_PROXY_KEYS_STORE": "file", "LLM_PROXY_KEYS_FILE": filepath.Join(t.TempDir(), "keys.json")}}
}

func TestKeysAndTeamsCommands(t *testing.T) {
	r := fileRunner(t)
	code, team, _ := r.run("teams", "create", "search", "--description", "search team", "--monthly-usd", "100", "--tpm", "50000", "--label", "cost-center=42")
	require.Equal(t, 0, code)
	require.Equal(t, "search", team["id"])
	require.Equal(t, map[string]any{"monthly_usd": 100.0}, team["budget"])

	code, created, stderr := r.run("keys", "create", "--owner", "alice", "--team", "search", "--models", "gpt-4o*, o3", "--providers", "openai",
		"--rpm", "60", "--daily-usd", "5", "--expires", "720h", "--label", "env=dev")
	require.Equal(t, 0, code, stderr)
	id, secret := created["id"].(string), created["key"].(string)
	require.True(t, keys.LooksLikeSecret(secret))
	require.Contains(t, stderr, "not shown again")
	require.NotContains(t, stderr, secret)
	require.Equal(t, []any{"gpt-4o*", "o3"}, created["models"])
	require.NotEmpty(t, created["expires_at"])

	code, list, _ := r.run("keys", "list", "--team", "search")
	require.Equal(t, 0, code)
	require.Len(t, list["keys"], 1)
	js, _ := json.Marshal(list)
	require.NotContains(t, string(js), secret)
	require.NotContains(t, string(js), keys.HashSecret(secret))
	code, list, _ = r.run("keys", "list", "--owner", "bob")
	require.Equal(t, 0, code)
	require.Empty(t, list["keys"])

	// Flags after or before the id.
	code, up, _ := r.run("keys", "update", id, "--tpm", "1000", "--expires", "never")
	require.Equal(t, 0, code)
	require.Equal(t, map[string]any{"requests_per_minute": 60.0, "tokens_per_minute": 1000.0}, up["limits"], "one limit changes, the others stay")
	require.NotContains(t, up, "expires_at")
	require.Equal(t, "alice", up["owner"])
	code, up, _ = r.run("keys", "update", "--owner", "carol", id)
	require.Equal(t, 0, code)
	require.Equal(t, "carol", up["owner"])

	code, shown, _ := r.run("keys", "show", id)
	require.Equal(t, 0, code)
	require.Equal(t, "carol", shown["owner"])
	require.NotContains(t, shown, "key")

	code, rotated, stderr := r.run("keys", "rotate", id, "--grace", "10m")
	require.Equal(t, 0, code, stderr)
	require.NotEqual(t, secret, rotated["key"])
	require.NotEmpty(t, rotated["previous_valid_until"])

	code, _, stderr = r.run("teams", "delete", "search")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "active keys")

	code, revoked, _ := r.run("keys", "revoke", id)
	require.Equal(t, 0, code)
	require.NotEmpty(t, revoked["revoked_at"])

	code, tu, _ := r.run("teams", "update", "search", "--daily-usd", "3")
	require.Equal(t, 0, code)
	require.Equal(t, map[string]any{"daily_usd": 3.0, "monthly_usd": 100.0}, tu["budget"])
	code, teams, _ := r.run("teams", "list")
	require.Equal(t, 0, code)
	require.Len(t, teams["teams"], 1)
	code, _, _ = r.run("teams", "show", "search")
	require.Equal(t, 0, code)
	code, _, _ = r.run("teams", "delete", "search")
	require.Equal(t, 0, code)
}

func TestUsageAndFailures(t *testing.T) {
	r := fileRunner(t)
	tests := []struct {
		name   string
		line   []string
		code   int
		stderr string
	}{
		{"no command", []string{"keys"}, 2, "usage"},
		{"unknown command", []string{"keys", "explode"}, 2, "unknown command"},
		{"show without id", []string{"keys", "show"}, 2, "exactly one id"},
		{"bad flag", []string{"keys", "list", "--bogus"}, 2, "bogus"},
		{"bad label", []string{"keys", "create", "--label", "novalue"}, 2, "key=value"},
		{"create with argument", []string{"keys", "create", "extra"}, 2, "unexpected argument"},
		{"missing key", []string{"keys", "show", "key_000000000000"}, 1, "not found"},
		{"unknown team", []string{"keys", "create", "--team", "nope"}, 1, "does not exist"},
		{"bad expiry", []string{"keys", "create", "--expires", "soon"}, 1, "RFC 3339"},
		{"secret as id is not echoed", []string{"keys", "revoke", "llmp-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, 1, "redacted"},
		{"no store", []string{"keys", "list", "--store", ""}, 2, "no store"},
		{"bad store", []string{"keys", "list", "--store", "s3"}, 2, "file or redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := r.run(tt.line...)
			require.Equal(t, tt.code, code, stderr)
			require.Contains(t, stderr, tt.stderr)
			require.NotContains(t, stderr, "AAAAAAAAAAAA")
		})
	}
}

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	r := runner{t: t, env: map[string]string{}}
	code, created, stderr := r.run("keys", "create", "--store", "redis", "--redis-address", srv.Addr, "--owner", "alice")
	require.Equal(t, 0, code, stderr)
	code, list, _ := r.run("keys", "list", "--store", "redis", "--redis-url", "redis://"+srv.Addr+"/0")
	require.Equal(t, 0, code)
	require.Len(t, list["keys"], 1)
	require.Equal(t, created["id"], list["keys"].([]any)[0].(map[string]any)["id"])

	srv.Stop()
	code, _, stderr = r.run("keys", "list", "--store", "redis", "--redis-address", srv.Addr)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "unavailable")
}

func TestRunWithStore(t *testing.T) {
	s, err := keys.OpenFileStore(filepath.Join(t.TempDir(), "k.json"))
	require.NoError(t, err)
	var out, errb bytes.Buffer
	code := RunWithStore(context.Background(), s, []string{"teams", "create", "ops"}, &out, &errb)
	require.Equal(t, 0, code, errb.String())
	ts, err := s.ListTeams(context.Background())
	require.NoError(t, err)
	require.Len(t, ts, 1)
	require.True(t, strings.Contains(out.String(), `"ops"`))
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The keys and teams commands use the store the rules name, so an
// operator manages the very keys the gateway checks.
func TestKeysCommandUsesTheRulesStore(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "keys.json")
	rules := filepath.Join(dir, "rules.yml")
	require.NoError(t, os.WriteFile(rules, []byte("features:\n  gateway_keys: {store: file, file: {path: "+store+"}}\n"), 0o600))
	env := func(k string) string {
		if k == "LLM_PROXY_CONFIG" {
			return rules
		}
		return ""
	}
	var out, errOut bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"teams", "create", "ml", "--daily-usd", "5"}, env, nil, &out, &errOut), errOut.String())
	out.Reset()
	require.NoError(t, run(t.Context(), []string{"keys", "create", "--team", "ml", "--owner", "ann"}, env, nil, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), `"key": "llmp-`, "the secret is shown once, at creation")
	secret := out.String()[strings.Index(out.String(), "llmp-"):]
	secret = secret[:strings.IndexByte(secret, '"')]

	out.Reset()
	require.NoError(t, run(t.Context(), []string{"keys", "list"}, env, nil, &out, &errOut))
	require.Contains(t, out.String(), `"owner": "ann"`)
	require.NotContains(t, out.String(), secret, "list never shows a secret")
	onDisk, err := os.ReadFile(store)
	require.NoError(t, err)
	require.NotContains(t, string(onDisk), secret, "the store holds hashes only")

	err = run(t.Context(), []string{"keys", "frobnicate"}, env, nil, &out, &errOut)
	require.Equal(t, exitError{2}, err, "usage errors exit 2")
}

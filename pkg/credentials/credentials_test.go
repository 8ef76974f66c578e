package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const vendorKey = "sk-proj-THISISTHEVENDORKEY0123456789"

func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret(vendorKey)
	type wrapper struct {
		Key Secret
		Ptr *Secret
	}
	w := wrapper{Key: s, Ptr: &s}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("x", "key", s, "wrapper", w)
	js, err := json.Marshal(w)
	require.NoError(t, err)
	outputs := []string{
		s.String(), fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x %X %d", s, s, s, s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v", w, w, w), string(js), logs.String(),
	}
	for _, out := range outputs {
		require.NotContains(t, out, vendorKey)
		require.NotContains(t, out, "VENDORKEY")
		require.Contains(t, out, "[REDACTED]")
	}
	require.Equal(t, vendorKey, s.Reveal())

	var back Secret
	require.NoError(t, json.Unmarshal([]byte(`"`+vendorKey+`"`), &back))
	require.Equal(t, vendorKey, back.Reveal())
	err = json.Unmarshal([]byte(`{"x":1}`), &back)
	require.Error(t, err)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want string // substring of the error; "" for valid
	}{
		{"inline key", Config{APIKey: NewSecret(vendorKey)}, ""},
		{"file", Config{APIKeyFile: "/run/secrets/openai"}, ""},
		{"several", Config{Keys: []Source{{APIKey: NewSecret("a")}, {APIKeyFile: "/f"}}, Selection: PolicyLeastRecentlyLimited}, ""},
		{"nothing", Config{}, "exactly one of api_key, api_key_file and keys"},
		{"two kinds", Config{APIKey: NewSecret(vendorKey), APIKeyFile: "/f"}, "exactly one of api_key, api_key_file and keys"},
		{"bad policy", Config{APIKey: NewSecret("a"), Selection: "random"}, "p.selection: must be"},
		{"source with both", Config{Keys: []Source{{APIKey: NewSecret(vendorKey), APIKeyFile: "/f"}}}, "p.keys[0]: set exactly one"},
		{"source with none", Config{Keys: []Source{{Name: "a"}}}, "p.keys[0]: set exactly one"},
		{"duplicate names", Config{Keys: []Source{{Name: "a", APIKey: NewSecret("x")}, {Name: "a", APIKey: NewSecret("y")}}}, "p.keys[1].name: duplicate"},
		{"name is the key", Config{Keys: []Source{{Name: vendorKey, APIKey: NewSecret(vendorKey)}}}, "must not be the key itself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate("p")
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), vendorKey)
		})
	}
}

func TestConfigFromJSON(t *testing.T) {
	var c Config
	require.NoError(t, json.Unmarshal([]byte(`{"keys":[{"name":"a","api_key":"k1"},{"api_key_file":"/f"}],"selection":"round_robin"}`), &c))
	require.NoError(t, c.Validate("p"))
	require.Equal(t, "k1", c.Keys[0].APIKey.Reveal())
	out, err := json.Marshal(c)
	require.NoError(t, err)
	require.NotContains(t, string(out), "k1")
}

func TestRoundRobin(t *testing.T) {
	p, err := New("openai", Config{Keys: []Source{{APIKey: NewSecret("k0")}, {APIKey: NewSecret("k1")}, {Name: "third", APIKey: NewSecret("k2")}}})
	require.NoError(t, err)
	var got []string
	for range 6 {
		c, err := p.Pick()
		require.NoError(t, err)
		got = append(got, c.Name+"="+c.Secret.Reveal())
	}
	require.Equal(t, []string{"key0=k0", "key1=k1", "third=k2", "key0=k0", "key1=k1", "third=k2"}, got)
	// Round robin ignores 429 reports.
	p.Report("key0", 429, time.Unix(100, 0))
	c, _ := p.Pick()
	require.Equal(t, "key0", c.Name)
}

func TestLeastRecentlyLimited(t *testing.T) {
	p, err := New("anthropic", Config{
		Selection: PolicyLeastRecentlyLimited,
		Keys:      []Source{{Name: "a", APIKey: NewSecret("ka")}, {Name: "b", APIKey: NewSecret("kb")}, {Name: "c", APIKey: NewSecret("kc")}},
	})
	require.NoError(t, err)
	pick := func() string {
		c, err := p.Pick()
		require.NoError(t, err)
		return c.Name
	}
	// Nothing limited: round robin.
	require.Equal(t, []string{"a", "b", "c", "a"}, []string{pick(), pick(), pick(), pick()})

	t0 := time.Unix(1_000, 0)
	p.Report("a", 429, t0)
	p.Report("b", 500, t0)      // not a rate limit
	p.Report("nobody", 429, t0) // unknown names are ignored
	for range 4 {
		require.NotEqual(t, "a", pick(), "a was limited and b, c never were")
	}
	p.Report("b", 429, t0.Add(time.Second))
	p.Report("c", 429, t0.Add(2*time.Second))
	// All limited: the oldest 429 (a) wins every time.
	for range 3 {
		require.Equal(t, "a", pick())
	}
	p.Report("a", 429, t0.Add(3*time.Second))
	for range 3 {
		require.Equal(t, "b", pick())
	}
}

func TestPickNilPool(t *testing.T) {
	var p *Pool
	_, err := p.Pick()
	require.ErrorIs(t, err, ErrNoCredential)
	p.Report("x", 429, time.Now()) // no panic
}

func TestNewFileErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := New("openai", Config{APIKeyFile: filepath.Join(dir, "missing")})
	require.ErrorContains(t, err, "missing")
	require.ErrorIs(t, err, os.ErrNotExist)

	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte(" \n"), 0o600))
	_, err = New("openai", Config{APIKeyFile: empty})
	require.ErrorContains(t, err, "empty")

	_, err = New("openai", Config{})
	require.Error(t, err)
}

func TestFileReloadPlainRewrite(t *testing.T) {
	f := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(f, []byte(vendorKey+"\n"), 0o600))
	p, err := New("openai", Config{APIKeyFile: f})
	require.NoError(t, err)
	c, _ := p.Pick()
	require.Equal(t, vendorKey, c.Secret.Reveal(), "trailing newline trimmed")

	changed, err := p.Reload()
	require.NoError(t, err)
	require.False(t, changed)

	require.NoError(t, os.WriteFile(f, []byte("sk-new"), 0o600))
	changed, err = p.Reload()
	require.NoError(t, err)
	require.True(t, changed)
	c, _ = p.Pick()
	require.Equal(t, "sk-new", c.Secret.Reveal())

	// A truncated or removed file keeps the last good key.
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	_, err = p.Reload()
	require.ErrorContains(t, err, "empty")
	require.NoError(t, os.Remove(f))
	_, err = p.Reload()
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NotContains(t, err.Error(), "sk-new")
	c, _ = p.Pick()
	require.Equal(t, "sk-new", c.Secret.Reveal())
}

// kubeMount lays out a secret volume the way the kubelet's atomic writer
// does: <dir>/<file> -> ..data/<file>, ..data -> ..<timestamp>, and an
// update writes a new timestamped directory, then renames a fresh symlink
// over ..data.
type kubeMount struct {
	t   *testing.T
	dir string
	gen int
}

func (m *kubeMount) write(file, content string) {
	m.t.Helper()
	m.gen++
	ts := fmt.Sprintf("..2026_12_02_17_00_%02d.%d", m.gen, m.gen)
	require.NoError(m.t, os.Mkdir(filepath.Join(m.dir, ts), 0o755))
	require.NoError(m.t, os.WriteFile(filepath.Join(m.dir, ts, file), []byte(content), 0o600))
	tmp := filepath.Join(m.dir, "..data_tmp")
	require.NoError(m.t, os.Symlink(ts, tmp))
	require.NoError(m.t, os.Rename(tmp, filepath.Join(m.dir, "..data")))
	link := filepath.Join(m.dir, file)
	if _, err := os.Lstat(link); os.IsNotExist(err) {
		require.NoError(m.t, os.Symlink(filepath.Join("..data", file), link))
	}
	if m.gen > 1 {
		old := fmt.Sprintf("..2026_12_02_17_00_%02d.%d", m.gen-1, m.gen-1)
		require.NoError(m.t, os.RemoveAll(filepath.Join(m.dir, old)))
	}
}

func TestFileReloadKubernetesSymlinkSwap(t *testing.T) {
	m := &kubeMount{t: t, dir: t.TempDir()}
	m.write("api-key", "sk-first")
	p, err := New("gemini", Config{APIKeyFile: filepath.Join(m.dir, "api-key")})
	require.NoError(t, err)
	c, _ := p.Pick()
	require.Equal(t, "sk-first", c.Secret.Reveal())

	m.write("api-key", "sk-second\n")
	changed, err := p.Reload()
	require.NoError(t, err)
	require.True(t, changed)
	c, _ = p.Pick()
	require.Equal(t, "sk-second", c.Secret.Reveal())
}

func TestWatchReloadsOnTick(t *testing.T) {
	f := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(f, []byte("sk-one"), 0o600))
	p, err := New("openai", Config{APIKeyFile: f})
	require.NoError(t, err)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Watch(ctx, ticks, log); close(done) }()

	// Watch takes a tick only after finishing the previous reload, so a
	// second send waits for the first reload.
	require.NoError(t, os.WriteFile(f, []byte("sk-two"), 0o600))
	ticks <- time.Now()
	ticks <- time.Now()
	require.NoError(t, os.Remove(f))
	ticks <- time.Now()
	ticks <- time.Now()
	cancel()
	<-done
	c, _ := p.Pick()
	require.Equal(t, "sk-two", c.Secret.Reveal())
	out := logs.String()
	require.Contains(t, out, "vendor key reloaded from file")
	require.Contains(t, out, "keeping the previous key")
	require.NotContains(t, out, "sk-one")
	require.NotContains(t, out, "sk-two")
}

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

func TestMutation(t *testing.T) {
	key := NewSecret(vendorKey)
	tests := []struct {
		name     string
		provider string
		compat   bool
		path     string
		set      string
		value    string
		newPath  string
	}{
		{"openai", "openai", false, "/v1/chat/completions", "authorization", "Bearer " + vendorKey, ""},
		{"anthropic", "anthropic", false, "/v1/messages", "x-api-key", vendorKey, ""},
		{"anthropic openai-compatible", "anthropic", true, "/v1/chat/completions", "authorization", "Bearer " + vendorKey, ""},
		{"gemini header", "gemini", false, "/v1beta/models/gemini-2.5-flash:generateContent", "x-goog-api-key", vendorKey, ""},
		{"gemini key param removed", "gemini", false, "/v1beta/models/m:streamGenerateContent?alt=sse&key=llmp-abc", "x-goog-api-key", vendorKey, "/v1beta/models/m:streamGenerateContent?alt=sse"},
		{"gemini only key param", "gemini", false, "/v1beta/models/m:generateContent?key=llmp-abc", "x-goog-api-key", vendorKey, "/v1beta/models/m:generateContent"},
		{"gemini openai-compatible", "gemini", true, "/v1beta/openai/chat/completions", "authorization", "Bearer " + vendorKey, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Mutation(StyleFor(tt.provider, tt.compat), key, tt.path)
			require.Len(t, m.Set, 1)
			require.Equal(t, tt.set, m.Set[0].Name)
			require.Equal(t, tt.value, m.Set[0].Value.Reveal())
			require.Len(t, m.Remove, 2)
			require.NotContains(t, m.Remove, tt.set)
			for _, h := range credentialHeaders {
				require.True(t, h == tt.set || contains(m.Remove, h), "%s neither set nor removed", h)
			}
			require.Equal(t, tt.newPath, m.Path)
			require.NotContains(t, fmt.Sprintf("%v %+v", m, m), vendorKey)
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestStripKeyParam(t *testing.T) {
	tests := []struct {
		in, out string
		changed bool
	}{
		{"/p", "/p", false},
		{"/p?", "/p?", false},
		{"/p?alt=sse", "/p?alt=sse", false},
		{"/p?key=a", "/p", true},
		{"/p?key", "/p", true},
		{"/p?key=a&key=b", "/p", true},
		{"/p?a=1&key=x&b=%2F", "/p?a=1&b=%2F", true},
		{"/p?k%65y=x&keys=1", "/p?keys=1", true},
		{"/p?apikey=1&mykey=2", "/p?apikey=1&mykey=2", false},
		{"/p?%zz=1&key=2", "/p?%zz=1", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			out, changed := StripKeyParam(tt.in)
			require.Equal(t, tt.out, out)
			require.Equal(t, tt.changed, changed)
			require.False(t, strings.Contains(out, "key=") && tt.changed && !strings.Contains(tt.out, "key="))
		})
	}
}

func BenchmarkPickAndMutate(b *testing.B) {
	p, err := New("openai", Config{Selection: PolicyLeastRecentlyLimited, Keys: []Source{{APIKey: NewSecret("a")}, {APIKey: NewSecret("b")}, {APIKey: NewSecret("c")}}})
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		c, _ := p.Pick()
		_ = Mutation(StyleBearer, c.Secret, "/v1/chat/completions")
	}
}

func TestProviderAuthValidate(t *testing.T) {
	creds := &Config{APIKey: NewSecret(vendorKey)}
	tests := []struct {
		name string
		p    ProviderAuth
		want string
	}{
		{"default passthrough", ProviderAuth{}, ""},
		{"explicit passthrough", ProviderAuth{Auth: ModePassthrough}, ""},
		{"gateway keys", ProviderAuth{Auth: ModeGatewayKeys, Credentials: creds}, ""},
		{"gateway keys without credentials", ProviderAuth{Auth: ModeGatewayKeys}, "providers.openai.credentials: required"},
		{"gateway keys with empty credentials", ProviderAuth{Auth: ModeGatewayKeys, Credentials: &Config{}}, "required"},
		{"passthrough with credentials", ProviderAuth{Credentials: creds}, "only used with auth: gateway_keys"},
		{"bad mode", ProviderAuth{Auth: "oauth"}, "providers.openai.auth"},
		{"bad credentials", ProviderAuth{Auth: ModeGatewayKeys, Credentials: &Config{APIKey: NewSecret("x"), Selection: "random"}}, "providers.openai.credentials.selection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate("openai")
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), vendorKey)
		})
	}
	require.True(t, ProviderAuth{Auth: ModeGatewayKeys}.GatewayKeys())
}

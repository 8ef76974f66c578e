package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSecretShape(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s, err := newSecret(rand.Reader)
		require.NoError(t, err)
		require.True(t, LooksLikeSecret(s), s)
		require.Len(t, s, 48)
		require.False(t, seen[s])
		seen[s] = true
	}
	require.False(t, LooksLikeSecret("sk-proj-abc"))
	require.False(t, LooksLikeSecret("llmp-short"))
	_, err := newSecret(bytes.NewReader(make([]byte, 5)))
	require.Error(t, err, "a short entropy source is an error, never a weak key")
	require.Equal(t, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", HashSecret(""))
}

func TestExtract(t *testing.T) {
	const k = "llmp-abc"
	tests := []struct {
		name    string
		headers map[string]string
		path    string
		want    presented
	}{
		{"openai bearer", map[string]string{"authorization": "Bearer " + k}, "/v1/chat/completions", presented{k, SourceAuthorization}},
		{"bearer any case", map[string]string{"authorization": "bearer  " + k + " "}, "/", presented{k, SourceAuthorization}},
		{"anthropic", map[string]string{"x-api-key": k}, "/v1/messages", presented{k, SourceXAPIKey}},
		{"gemini header", map[string]string{"x-goog-api-key": k}, "/v1beta/models/m:generateContent", presented{k, SourceGoogAPIKey}},
		{"gemini query", nil, "/v1beta/models/m:generateContent?alt=sse&key=" + k, presented{k, SourceQuery}},
		{"query escaped", nil, "/p?k%65y=llmp-a%2Bb", presented{"llmp-a+b", SourceQuery}},
		{"bearer first", map[string]string{"authorization": "Bearer a", "x-api-key": "b"}, "/?key=c", presented{"a", SourceAuthorization}},
		{"x-api-key before goog", map[string]string{"x-api-key": "b", "x-goog-api-key": "c"}, "/", presented{"b", SourceXAPIKey}},
		{"basic auth is not a key", map[string]string{"authorization": "Basic dXNlcjpwdw=="}, "/", presented{}},
		{"basic auth falls through", map[string]string{"authorization": "Basic x", "x-api-key": "b"}, "/", presented{"b", SourceXAPIKey}},
		{"empty bearer", map[string]string{"authorization": "Bearer "}, "/", presented{}},
		{"empty query key", nil, "/p?key=", presented{}},
		{"bad escape skipped", nil, "/p?key=%zz&key=ok", presented{"ok", SourceQuery}},
		{"nothing", nil, "/v1/models", presented{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Extract(func(n string) string { return tt.headers[n] }, tt.path)
			require.Equal(t, tt.want, presented{got.Secret.Reveal(), got.Source})
			if len(got.Secret.Reveal()) > 4 {
				require.NotContains(t, fmt.Sprintf("%v %+v", got, got), got.Secret.Reveal())
			}
		})
	}
}

// presented is Presented with the secret revealed, for comparisons.
type presented struct {
	Secret, Source string
}

func TestFailureLimiter(t *testing.T) {
	l := NewFailureLimiter(2, 10*time.Second, 3)
	now := t0
	require.True(t, l.Allow("a", now))
	l.Fail("a", now)
	require.True(t, l.Allow("a", now))
	l.Fail("a", now)
	require.False(t, l.Allow("a", now))
	require.False(t, l.Allow("a", now.Add(9*time.Second)))
	require.True(t, l.Allow("a", now.Add(10*time.Second)))
	l.Fail("a", now.Add(10*time.Second))
	require.False(t, l.Allow("a", now.Add(10*time.Second)))
	// Refill is capped at burst.
	require.True(t, l.Allow("a", now.Add(time.Hour)))
	l.Fail("a", now.Add(time.Hour))
	l.Fail("a", now.Add(time.Hour))
	require.False(t, l.Allow("a", now.Add(time.Hour)))

	// Bounded memory: refilled buckets go first, then arbitrary ones.
	l.Fail("b", now)
	l.Fail("c", now)
	require.Equal(t, 3, l.Tracked())
	later := now.Add(time.Minute) // b and c have refilled; a has not
	l.Fail("d", later)
	require.Equal(t, 2, l.Tracked())
	require.False(t, l.Allow("a", now.Add(time.Hour)), "a still limited")
	for _, ip := range []string{"e", "f", "g"} {
		l.Fail(ip, now.Add(time.Hour))
		require.LessOrEqual(t, l.Tracked(), 3)
	}
}

func newManager(t *testing.T) (*Manager, *clock) {
	clk := newClock(t0)
	return &Manager{Store: newFileStore(t), Now: clk.Now}, clk
}

func TestManagerCreateValidates(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t)
	_, err := m.CreateTeam(ctx, TeamSpec{ID: "search"})
	require.NoError(t, err)
	tests := []struct {
		name string
		spec KeySpec
	}{
		{"unknown team", KeySpec{Team: "nope"}},
		{"bad team id", KeySpec{Team: "Bad Team"}},
		{"negative limit", KeySpec{Limits: Limits{RequestsPerMinute: -1}}},
		{"negative budget", KeySpec{Budget: Budget{DailyUSD: -1}}},
		{"empty pattern", KeySpec{Models: []string{""}}},
		{"past expiry", KeySpec{ExpiresAt: t0.Add(-time.Second)}},
		{"long owner", KeySpec{Owner: strings.Repeat("x", 300)}},
		{"empty label name", KeySpec{Labels: map[string]string{"": "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := m.CreateKey(ctx, tt.spec)
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
	keys, err := m.ListKeys(ctx)
	require.NoError(t, err)
	require.Empty(t, keys)

	for _, bad := range []string{"", "UPPER", "-lead", strings.Repeat("a", 65)} {
		_, err := m.CreateTeam(ctx, TeamSpec{ID: bad})
		require.ErrorIs(t, err, ErrInvalid, bad)
	}
	_, err = m.CreateTeam(ctx, TeamSpec{ID: "search"})
	require.ErrorIs(t, err, ErrExists)
}

func TestManagerUpdateRotateRevoke(t *testing.T) {
	ctx := context.Background()
	m, clk := newManager(t)
	_, err := m.CreateTeam(ctx, TeamSpec{ID: "search"})
	require.NoError(t, err)
	k, _, err := m.CreateKey(ctx, KeySpec{Owner: "alice", Models: []string{"gpt-4o"}, Labels: map[string]string{"a": "1"}})
	require.NoError(t, err)
	require.Regexp(t, `^key_[0-9a-f]{12}$`, k.ID)
	require.Equal(t, t0, k.CreatedAt)

	team := "search"
	models := []string{"gpt-4o*", "o3"}
	exp := Expiry{Time: t0.Add(time.Hour)}
	up, err := m.UpdateKey(ctx, k.ID, KeyPatch{Team: &team, Models: &models, ExpiresAt: &exp, Limits: &Limits{TokensPerMinute: 10}})
	require.NoError(t, err)
	require.Equal(t, "search", up.Team)
	require.Equal(t, models, up.Models)
	require.Equal(t, t0.Add(time.Hour), up.ExpiresAt)
	require.Equal(t, "alice", up.Owner, "fields not in the patch are kept")
	require.Equal(t, map[string]string{"a": "1"}, up.Labels)

	never := Expiry{}
	up, err = m.UpdateKey(ctx, k.ID, KeyPatch{ExpiresAt: &never})
	require.NoError(t, err)
	require.True(t, up.ExpiresAt.IsZero())

	nope := "nope"
	_, err = m.UpdateKey(ctx, k.ID, KeyPatch{Team: &nope})
	require.ErrorIs(t, err, ErrInvalid)
	_, err = m.UpdateKey(ctx, "key_000000000000", KeyPatch{})
	require.ErrorIs(t, err, ErrNotFound)
	_, err = m.UpdateKey(ctx, "llmp-pasted-secret", KeyPatch{})
	require.ErrorIs(t, err, ErrNotFound)
	require.NotContains(t, err.Error(), "pasted")

	require.ErrorIs(t, m.DeleteTeam(ctx, "search"), ErrConflict, "an active key is in the team")

	// Rotate: default grace when negative, replaced-earlier secrets drop.
	m.RotationGrace = 2 * time.Hour
	rk, s1, err := m.Rotate(ctx, k.ID, -1)
	require.NoError(t, err)
	require.Equal(t, t0.Add(2*time.Hour), rk.PreviousValidUntil)
	clk.Add(time.Minute)
	rk, s2, err := m.Rotate(ctx, k.ID, 0)
	require.NoError(t, err)
	require.NotEqual(t, s1, s2)
	require.True(t, rk.PreviousValidUntil.IsZero(), "grace 0: the old secret stops at once")
	rec, err := m.Store.GetKey(ctx, k.ID)
	require.NoError(t, err)
	require.Equal(t, HashSecret(s2), rec.SecretHash)
	require.Empty(t, rec.PreviousSecretHash)
	_, _, err = m.Rotate(ctx, k.ID, MaxRotationGrace+time.Second)
	require.ErrorIs(t, err, ErrInvalid)

	rev, err := m.Revoke(ctx, k.ID)
	require.NoError(t, err)
	require.Equal(t, t0.Add(time.Minute), rev.RevokedAt)
	clk.Add(time.Minute)
	rev, err = m.Revoke(ctx, k.ID)
	require.NoError(t, err)
	require.Equal(t, t0.Add(time.Minute), rev.RevokedAt, "revoking twice keeps the first time")
	_, _, err = m.Rotate(ctx, k.ID, time.Hour)
	require.ErrorIs(t, err, ErrConflict)
	_, err = m.UpdateKey(ctx, k.ID, KeyPatch{Owner: &nope})
	require.ErrorIs(t, err, ErrConflict)

	require.NoError(t, m.DeleteTeam(ctx, "search"), "only revoked keys remain")
	require.ErrorIs(t, m.DeleteTeam(ctx, "search"), ErrNotFound)
}

func TestManagerIDCollisionRetries(t *testing.T) {
	// The entropy source repeats the same id bytes, then moves on: creation
	// retries after ErrExists.
	ctx := context.Background()
	s := newFileStore(t)
	secretA := bytes.Repeat([]byte{1}, 32)
	id := []byte{0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa}
	id2 := []byte{0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb}
	var stream []byte
	stream = append(stream, secretA...)
	stream = append(stream, id...)
	stream = append(stream, bytes.Repeat([]byte{2}, 32)...)
	stream = append(stream, id...)
	stream = append(stream, id2...)
	m := &Manager{Store: s, Random: bytes.NewReader(stream)}
	k1, _, err := m.CreateKey(ctx, KeySpec{})
	require.NoError(t, err)
	require.Equal(t, "key_aaaaaaaaaaaa", k1.ID)
	k2, _, err := m.CreateKey(ctx, KeySpec{})
	require.NoError(t, err)
	require.Equal(t, "key_bbbbbbbbbbbb", k2.ID)
	_, _, err = m.CreateKey(ctx, KeySpec{})
	require.Error(t, err, "entropy exhausted")
	require.False(t, errors.Is(err, ErrExists))
}

func TestParseExpiry(t *testing.T) {
	e, err := ParseExpiry("720h", t0)
	require.NoError(t, err)
	require.Equal(t, t0.Add(720*time.Hour), e.Time)
	e, err = ParseExpiry("2027-01-01T00:00:00Z", t0)
	require.NoError(t, err)
	require.Equal(t, 2027, e.Time.Year())
	e, err = ParseExpiry("never", t0)
	require.NoError(t, err)
	require.True(t, e.Time.IsZero())
	_, err = ParseExpiry("-1h", t0)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = ParseExpiry("tomorrow", t0)
	require.ErrorIs(t, err, ErrInvalid)
}

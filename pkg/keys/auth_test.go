package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

// clock is a manually advanced clock.
type clock struct{ t atomic.Int64 }

func newClock(t time.Time) *clock    { c := &clock{}; c.t.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time      { return time.Unix(0, c.t.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.t.Add(int64(d)) }

// flakyStore fails every call while down is set.
type flakyStore struct {
	Store
	down atomic.Bool
}

func (f *flakyStore) Version(ctx context.Context) (uint64, error) {
	if f.down.Load() {
		return 0, ErrStoreUnavailable
	}
	return f.Store.Version(ctx)
}

func (f *flakyStore) Snapshot(ctx context.Context) (Snapshot, error) {
	if f.down.Load() {
		return Snapshot{}, ErrStoreUnavailable
	}
	return f.Store.Snapshot(ctx)
}

// countingStore counts Snapshot calls.
type countingStore struct {
	Store
	snapshots atomic.Int64
}

func (c *countingStore) Snapshot(ctx context.Context) (Snapshot, error) {
	c.snapshots.Add(1)
	return c.Store.Snapshot(ctx)
}

type authFixture struct {
	clk  *clock
	m    *Manager
	auth *Authenticator
}

func newAuthFixture(t *testing.T, s Store, o AuthenticatorOptions) *authFixture {
	clk := newClock(t0)
	o.Now = clk.Now
	return &authFixture{clk: clk, m: &Manager{Store: s, Now: clk.Now}, auth: NewAuthenticator(s, o)}
}

func (f *authFixture) sync(t *testing.T) {
	t.Helper()
	require.NoError(t, f.auth.Sync(context.Background()))
}

func TestAuthenticateLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		f := newAuthFixture(t, s, AuthenticatorOptions{})
		_, err := f.auth.Authenticate(ctx, "llmp-x")
		require.ErrorIs(t, err, ErrStoreUnavailable, "nothing loaded yet: fail closed")

		_, err = f.m.CreateTeam(ctx, TeamSpec{ID: "search", Budget: Budget{MonthlyUSD: 50}})
		require.NoError(t, err)
		k, secret, err := f.m.CreateKey(ctx, KeySpec{Owner: "alice", Team: "search", ExpiresAt: t0.Add(48 * time.Hour)})
		require.NoError(t, err)
		require.True(t, LooksLikeSecret(secret))

		_, err = f.auth.Authenticate(ctx, secret)
		require.ErrorIs(t, err, ErrStoreUnavailable)
		f.sync(t)

		id, err := f.auth.Authenticate(ctx, secret)
		require.NoError(t, err)
		require.Equal(t, k.ID, id.Key.ID)
		require.Equal(t, "alice", id.Key.Owner)
		require.NotNil(t, id.Team)
		require.Equal(t, 50.0, id.Team.Budget.MonthlyUSD)
		require.Same(t, id, f.auth.Lookup(k.ID))
		require.Same(t, id.Team, f.auth.Team("search"))
		require.Nil(t, f.auth.Team("nope"))

		_, err = f.auth.Authenticate(ctx, "")
		require.ErrorIs(t, err, ErrMissingKey)
		_, err = f.auth.Authenticate(ctx, secret+"x")
		require.ErrorIs(t, err, ErrUnknownKey)

		// Rotation: both secrets work during the grace period.
		_, newSecret, err := f.m.Rotate(ctx, k.ID, time.Hour)
		require.NoError(t, err)
		f.sync(t)
		for _, s := range []string{secret, newSecret} {
			_, err = f.auth.Authenticate(ctx, s)
			require.NoError(t, err)
		}
		f.clk.Add(time.Hour)
		f.sync(t)
		_, err = f.auth.Authenticate(ctx, secret)
		require.ErrorIs(t, err, ErrExpiredKey, "old secret past the grace period")
		_, err = f.auth.Authenticate(ctx, newSecret)
		require.NoError(t, err)

		// Expiry.
		f.clk.Add(47 * time.Hour)
		f.sync(t)
		_, err = f.auth.Authenticate(ctx, newSecret)
		require.ErrorIs(t, err, ErrExpiredKey)
		require.ErrorContains(t, err, k.ID)
		require.NotContains(t, err.Error(), newSecret)

		// Revocation of a second key.
		k2, secret2, err := f.m.CreateKey(ctx, KeySpec{Owner: "bob"})
		require.NoError(t, err)
		f.sync(t)
		id2, err := f.auth.Authenticate(ctx, secret2)
		require.NoError(t, err)
		require.Nil(t, id2.Team)
		_, err = f.m.Revoke(ctx, k2.ID)
		require.NoError(t, err)
		f.sync(t)
		_, err = f.auth.Authenticate(ctx, secret2)
		require.ErrorIs(t, err, ErrRevokedKey)
		require.NotContains(t, err.Error(), secret2)
	})
}

// TestRevocationSeenByOtherInstance: two authenticators over one Redis (two
// gateway instances); a revocation through one is seen by the other at its
// next poll, which runs every DefaultSyncInterval (< 1 s).
func TestRevocationSeenByOtherInstance(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	f1 := newAuthFixture(t, newRedisStore(t, srv.Addr), AuthenticatorOptions{})
	f2 := newAuthFixture(t, newRedisStore(t, srv.Addr), AuthenticatorOptions{})
	k, secret, err := f1.m.CreateKey(ctx, KeySpec{Owner: "alice"})
	require.NoError(t, err)
	f1.sync(t)
	f2.sync(t)
	_, err = f2.auth.Authenticate(ctx, secret)
	require.NoError(t, err)

	_, err = f1.m.Revoke(ctx, k.ID)
	require.NoError(t, err)
	_, err = f2.auth.Authenticate(ctx, secret)
	require.NoError(t, err, "no poll yet: the cache still serves")

	ticks := make(chan time.Time)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f2.auth.Run(runCtx, ticks); close(done) }()
	ticks <- time.Now()
	ticks <- time.Now() // taken only once the first Sync returned
	cancel()
	<-done
	_, err = f2.auth.Authenticate(ctx, secret)
	require.ErrorIs(t, err, ErrRevokedKey)
	require.Less(t, DefaultSyncInterval, time.Second)
}

func TestSyncReloadsOnlyOnVersionChange(t *testing.T) {
	cs := &countingStore{Store: newFileStore(t)}
	f := newAuthFixture(t, cs, AuthenticatorOptions{})
	f.sync(t)
	f.sync(t)
	f.sync(t)
	require.EqualValues(t, 1, cs.snapshots.Load())
	_, _, err := f.m.CreateKey(context.Background(), KeySpec{})
	require.NoError(t, err)
	f.sync(t)
	require.EqualValues(t, 2, cs.snapshots.Load())
	f.clk.Add(FullReloadInterval)
	f.sync(t)
	require.EqualValues(t, 3, cs.snapshots.Load(), "a full reload every FullReloadInterval, version or not")
}

func TestStoreOutage(t *testing.T) {
	ctx := context.Background()
	fs := &flakyStore{Store: newFileStore(t)}
	var logs bytes.Buffer
	f := newAuthFixture(t, fs, AuthenticatorOptions{MaxStale: time.Minute, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	_, secret, err := f.m.CreateKey(ctx, KeySpec{Owner: "alice"})
	require.NoError(t, err)
	f.sync(t)

	fs.down.Store(true)
	require.ErrorIs(t, f.auth.Sync(ctx), ErrStoreUnavailable)
	require.ErrorIs(t, f.auth.Sync(ctx), ErrStoreUnavailable)
	require.Equal(t, 1, bytes.Count(logs.Bytes(), []byte("unreachable")), "an outage is logged once")

	f.clk.Add(time.Minute)
	_, err = f.auth.Authenticate(ctx, secret)
	require.NoError(t, err, "cached key works up to MaxStale")
	_, err = f.auth.Authenticate(ctx, "llmp-unknown")
	require.ErrorIs(t, err, ErrUnknownKey, "unknown keys are refused during an outage")

	f.clk.Add(time.Nanosecond)
	_, err = f.auth.Authenticate(ctx, secret)
	require.ErrorIs(t, err, ErrStoreUnavailable, "past MaxStale everything is refused")

	fs.down.Store(false)
	f.sync(t)
	_, err = f.auth.Authenticate(ctx, secret)
	require.NoError(t, err)
	require.Contains(t, logs.String(), "reachable again")
	require.NotContains(t, logs.String(), secret)
}

func TestRedisOutageServesCache(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	f := newAuthFixture(t, newRedisStore(t, srv.Addr), AuthenticatorOptions{MaxStale: time.Minute})
	_, secret, err := f.m.CreateKey(ctx, KeySpec{})
	require.NoError(t, err)
	f.sync(t)
	srv.Stop()
	require.ErrorIs(t, f.auth.Sync(ctx), ErrStoreUnavailable)
	_, err = f.auth.Authenticate(ctx, secret)
	require.NoError(t, err)
	f.clk.Add(2 * time.Minute)
	_, err = f.auth.Authenticate(ctx, secret)
	require.ErrorIs(t, err, ErrStoreUnavailable)
}

func TestCorruptHashFailsSync(t *testing.T) {
	s := newFileStore(t)
	require.NoError(t, s.CreateKey(context.Background(), Record{Key: Key{ID: "key_000000000001"}, SecretHash: "zz"}))
	a := NewAuthenticator(s, AuthenticatorOptions{})
	require.ErrorIs(t, a.Sync(context.Background()), ErrStoreUnavailable)
}

func TestAuthenticateFromLimitsFailures(t *testing.T) {
	ctx := context.Background()
	lim := NewFailureLimiter(3, time.Minute, 0)
	f := newAuthFixture(t, newFileStore(t), AuthenticatorOptions{Limiter: lim})
	_, secret, err := f.m.CreateKey(ctx, KeySpec{})
	require.NoError(t, err)
	f.sync(t)

	for range 3 {
		_, err = f.auth.AuthenticateFrom(ctx, "10.0.0.1", "llmp-guess")
		require.ErrorIs(t, err, ErrUnknownKey)
	}
	_, err = f.auth.AuthenticateFrom(ctx, "10.0.0.1", secret)
	require.ErrorIs(t, err, ErrTooManyFailures, "a correct guess is not revealed once limited")
	_, err = f.auth.AuthenticateFrom(ctx, "10.0.0.2", secret)
	require.NoError(t, err, "other clients are unaffected")
	_, err = f.auth.AuthenticateFrom(ctx, "10.0.0.2", "")
	require.ErrorIs(t, err, ErrMissingKey)
	require.Equal(t, 1, lim.Tracked(), "successes and missing keys cost no state")

	f.clk.Add(time.Minute)
	_, err = f.auth.AuthenticateFrom(ctx, "10.0.0.1", secret)
	require.NoError(t, err, "one token back after the refill interval")
}

func TestAuthorize(t *testing.T) {
	open := &Identity{}
	restricted := &Identity{Key: Key{Providers: []string{"openai", "gemini"}, Models: []string{"gpt-4o*", "*-flash", "models/gemini-?.5-pro"}}}
	tests := []struct {
		name            string
		id              *Identity
		provider, model string
		ok              bool
	}{
		{"unrestricted", open, "anthropic", "claude-sonnet-4-5", true},
		{"unrestricted no model", open, "openai", "", true},
		{"prefix glob", restricted, "openai", "gpt-4o-mini", true},
		{"exact by glob", restricted, "openai", "gpt-4o", true},
		{"suffix glob", restricted, "gemini", "gemini-2.5-flash", true},
		{"glob across slash", restricted, "gemini", "models/gemini-2.5-pro", true},
		{"model not allowed", restricted, "openai", "gpt-5", false},
		{"provider not allowed", restricted, "anthropic", "gpt-4o", false},
		{"unknown model refused when restricted", restricted, "openai", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Authorize(tt.id, tt.provider, tt.model)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			var pe *PermissionError
			require.True(t, errors.As(err, &pe))
			require.Equal(t, tt.model, pe.Model)
			if tt.model != "" {
				require.Contains(t, err.Error(), tt.model)
			}
		})
	}
}

// snapshotStore serves a fixed snapshot; the Authenticator needs nothing
// else.
type snapshotStore struct {
	Store
	snap Snapshot
}

func (s snapshotStore) Version(context.Context) (uint64, error)    { return s.snap.Version, nil }
func (s snapshotStore) Snapshot(context.Context) (Snapshot, error) { return s.snap, nil }

// benchAuthenticator returns an Authenticator (with a failure limiter)
// over n keys restricted to gpt-4o*, and the secret of one of them.
func benchAuthenticator(b *testing.B, n int) (*Authenticator, string) {
	snap := Snapshot{Version: 1}
	var secret string
	for i := range n {
		sec, err := newSecret(rand.Reader)
		require.NoError(b, err)
		snap.Keys = append(snap.Keys, Record{Key: Key{ID: fmt.Sprintf("key_%012x", i), Models: []string{"gpt-4o*"}}, SecretHash: HashSecret(sec)})
		if i == n/2 {
			secret = sec
		}
	}
	a := NewAuthenticator(snapshotStore{snap: snap}, AuthenticatorOptions{Limiter: NewFailureLimiter(0, 0, 0)})
	require.NoError(b, a.Sync(context.Background()))
	runtime.GC()
	return a, secret
}

// BenchmarkAuthenticateHit is the admission cost of a gateway key on a
// cache hit: SHA-256, one map read, constant-time compare, time checks; no
// I/O. Budget: < 1 µs, 0 allocations.
func BenchmarkAuthenticateHit(b *testing.B) {
	ctx := context.Background()
	a, secret := benchAuthenticator(b, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		id, err := a.AuthenticateFrom(ctx, "10.1.2.3", secret)
		if err != nil {
			b.Fatal(err)
		}
		if err := Authorize(id, "openai", "gpt-4o-mini"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateAtHit is BenchmarkAuthenticateHit with the time
// passed in, as the processor does (it has the request's start time): the
// cost of the lookup itself, without a clock read (about 200 ns on some
// virtual machines).
func BenchmarkAuthenticateAtHit(b *testing.B) {
	ctx := context.Background()
	a, secret := benchAuthenticator(b, 1000)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		id, err := a.AuthenticateAt(ctx, now, "10.1.2.3", secret)
		if err != nil {
			b.Fatal(err)
		}
		if err := Authorize(id, "openai", "gpt-4o-mini"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuthenticateUnknown(b *testing.B) {
	s, err := OpenFileStore(b.TempDir() + "/keys.json")
	require.NoError(b, err)
	a := NewAuthenticator(s, AuthenticatorOptions{})
	require.NoError(b, a.Sync(context.Background()))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = a.Authenticate(context.Background(), "llmp-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	}
}

func BenchmarkAuthenticateHitNoLimiter(b *testing.B) {
	s, err := OpenFileStore(b.TempDir() + "/keys.json")
	require.NoError(b, err)
	_, secret, err := (&Manager{Store: s}).CreateKey(context.Background(), KeySpec{})
	require.NoError(b, err)
	a := NewAuthenticator(s, AuthenticatorOptions{})
	require.NoError(b, a.Sync(context.Background()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(context.Background(), secret); err != nil {
			b.Fatal(err)
		}
	}
}

// recordingStore fails the test on any call while armed.
type recordingStore struct {
	Store
	armed atomic.Bool
	calls atomic.Int64
}

func (r *recordingStore) Version(ctx context.Context) (uint64, error) {
	if r.armed.Load() {
		r.calls.Add(1)
	}
	return r.Store.Version(ctx)
}

func (r *recordingStore) Snapshot(ctx context.Context) (Snapshot, error) {
	if r.armed.Load() {
		r.calls.Add(1)
	}
	return r.Store.Snapshot(ctx)
}

func (r *recordingStore) GetKey(ctx context.Context, id string) (Record, error) {
	if r.armed.Load() {
		r.calls.Add(1)
	}
	return r.Store.GetKey(ctx, id)
}

// TestAuthenticateTouchesNoStore: hits and misses are answered from the
// index alone (no round trip to Redis), on every backend.
func TestAuthenticateTouchesNoStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		rs := &recordingStore{Store: s}
		f := newAuthFixture(t, rs, AuthenticatorOptions{Limiter: NewFailureLimiter(0, 0, 0)})
		_, secret, err := f.m.CreateKey(context.Background(), KeySpec{})
		require.NoError(t, err)
		f.sync(t)
		rs.armed.Store(true)
		for range 100 {
			_, err := f.auth.AuthenticateFrom(context.Background(), "10.0.0.1", secret)
			require.NoError(t, err)
			_, err = f.auth.AuthenticateFrom(context.Background(), "10.0.0.9", "llmp-nope")
			require.Error(t, err)
		}
		require.Zero(t, rs.calls.Load())
	})
}

// TestConcurrentSyncEndsAtLatest: Syncs racing each other and the writers
// are free of data races, and the index ends at the latest version.
func TestConcurrentSyncEndsAtLatest(t *testing.T) {
	ctx := context.Background()
	f := newAuthFixture(t, newFileStore(t), AuthenticatorOptions{})
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
					_ = f.auth.Sync(ctx)
				}
			}
		}()
	}
	var secrets []string
	for range 10 {
		_, s, err := f.m.CreateKey(ctx, KeySpec{})
		require.NoError(t, err)
		secrets = append(secrets, s)
	}
	close(done)
	wg.Wait()
	f.sync(t)
	for _, s := range secrets {
		_, err := f.auth.Authenticate(ctx, s)
		require.NoError(t, err)
	}
}

// TestRedisWipedToSameVersion: a Redis restarted empty and refilled to the
// version this instance last saw is caught by the periodic full reload.
func TestRedisWipedToSameVersion(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	f := newAuthFixture(t, newRedisStore(t, srv.Addr), AuthenticatorOptions{})
	_, old, err := f.m.CreateKey(ctx, KeySpec{})
	require.NoError(t, err)
	f.sync(t)

	srv.Restart(t)
	_, fresh, err := f.m.CreateKey(ctx, KeySpec{}) // version 1 again
	require.NoError(t, err)
	f.sync(t)
	_, err = f.auth.Authenticate(ctx, fresh)
	require.ErrorIs(t, err, ErrUnknownKey, "same version: not reloaded yet")

	f.clk.Add(FullReloadInterval)
	f.sync(t)
	_, err = f.auth.Authenticate(ctx, fresh)
	require.NoError(t, err)
	_, err = f.auth.Authenticate(ctx, old)
	require.ErrorIs(t, err, ErrUnknownKey, "the wiped key is gone")
}

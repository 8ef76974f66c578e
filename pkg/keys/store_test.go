package keys

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
)

// backends lists every Store implementation; each test of the shared suite
// runs against all of them.
var backends = []struct {
	name string
	open func(t *testing.T) Store
}{
	{"file", func(t *testing.T) Store { return newFileStore(t) }},
	{"redis", func(t *testing.T) Store { return newRedisStore(t, redistest.Start(t).Addr) }},
}

func newFileStore(t *testing.T) *FileStore {
	t.Helper()
	s, err := OpenFileStore(filepath.Join(t.TempDir(), "keys.json"))
	require.NoError(t, err)
	return s
}

func newRedisStore(t *testing.T, addr string) *RedisStore {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	s := NewRedisStore(rdb, "", true)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func forEachBackend(t *testing.T, test func(t *testing.T, s Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b.open(t)) })
	}
}

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func record(id string) Record {
	return Record{
		Key: Key{ID: id, Owner: "alice", Team: "search", CreatedAt: t0, Models: []string{"gpt-4o*"},
			Limits: Limits{RequestsPerMinute: 60}, Budget: Budget{DailyUSD: 5}, Labels: map[string]string{"env": "prod"}},
		SecretHash: HashSecret("llmp-" + id),
	}
}

func TestStoreKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		v0, err := s.Version(ctx)
		require.NoError(t, err)

		_, err = s.GetKey(ctx, "key_000000000001")
		require.ErrorIs(t, err, ErrNotFound)
		_, err = s.UpdateKey(ctx, "key_000000000001", func(*Record) error { return nil })
		require.ErrorIs(t, err, ErrNotFound)

		require.NoError(t, s.CreateKey(ctx, record("key_000000000002")))
		require.NoError(t, s.CreateKey(ctx, record("key_000000000001")))
		require.ErrorIs(t, s.CreateKey(ctx, record("key_000000000001")), ErrExists)
		v1, err := s.Version(ctx)
		require.NoError(t, err)
		require.Greater(t, v1, v0)

		got, err := s.GetKey(ctx, "key_000000000001")
		require.NoError(t, err)
		require.Equal(t, record("key_000000000001"), got)

		list, err := s.ListKeys(ctx)
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.Equal(t, "key_000000000001", list[0].ID, "sorted by id")

		updated, err := s.UpdateKey(ctx, "key_000000000001", func(r *Record) error {
			r.Description = "changed"
			r.ID = "key_ffffffffffff" // ignored: the id is fixed
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, "changed", updated.Description)
		require.Equal(t, "key_000000000001", updated.ID)
		v2, _ := s.Version(ctx)
		require.Greater(t, v2, v1)

		boom := errors.New("boom")
		_, err = s.UpdateKey(ctx, "key_000000000001", func(r *Record) error { r.Owner = "mallory"; return boom })
		require.ErrorIs(t, err, boom)
		got, _ = s.GetKey(ctx, "key_000000000001")
		require.Equal(t, "alice", got.Owner, "a failed update changes nothing")
		v3, _ := s.Version(ctx)
		require.Equal(t, v2, v3, "a failed update leaves the version")

		// Returned values are copies.
		got.Labels["env"] = "mutated"
		again, _ := s.GetKey(ctx, "key_000000000001")
		require.Equal(t, "prod", again.Labels["env"])
	})
}

func TestStoreTeams(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		team := Team{ID: "search", CreatedAt: t0, Budget: Budget{MonthlyUSD: 100}, Limits: Limits{TokensPerMinute: 1000}}
		require.NoError(t, s.CreateTeam(ctx, team))
		require.ErrorIs(t, s.CreateTeam(ctx, team), ErrExists)
		require.NoError(t, s.CreateTeam(ctx, Team{ID: "ads", CreatedAt: t0}))
		got, err := s.GetTeam(ctx, "search")
		require.NoError(t, err)
		require.Equal(t, team, got)
		list, err := s.ListTeams(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"ads", "search"}, []string{list[0].ID, list[1].ID})

		up, err := s.UpdateTeam(ctx, "search", func(t *Team) error { t.Budget.DailyUSD = 10; return nil })
		require.NoError(t, err)
		require.Equal(t, Budget{DailyUSD: 10, MonthlyUSD: 100}, up.Budget)
		_, err = s.UpdateTeam(ctx, "nope", func(*Team) error { return nil })
		require.ErrorIs(t, err, ErrNotFound)

		v, _ := s.Version(ctx)
		require.NoError(t, s.DeleteTeam(ctx, "ads"))
		require.ErrorIs(t, s.DeleteTeam(ctx, "ads"), ErrNotFound)
		v2, _ := s.Version(ctx)
		require.Greater(t, v2, v)
		_, err = s.GetTeam(ctx, "ads")
		require.ErrorIs(t, err, ErrNotFound)
	})
}

func TestStoreSnapshot(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		snap, err := s.Snapshot(ctx)
		require.NoError(t, err)
		require.Empty(t, snap.Keys)
		require.Empty(t, snap.Teams)

		require.NoError(t, s.CreateTeam(ctx, Team{ID: "search", CreatedAt: t0}))
		require.NoError(t, s.CreateKey(ctx, record("key_000000000001")))
		snap, err = s.Snapshot(ctx)
		require.NoError(t, err)
		v, _ := s.Version(ctx)
		require.Equal(t, v, snap.Version)
		require.Equal(t, []Record{record("key_000000000001")}, snap.Keys)
		require.Len(t, snap.Teams, 1)
	})
}

// TestStoreConcurrentUpdates: concurrent read-modify-writes never lose a
// change (file: locks; redis: compare-and-set).
func TestStoreConcurrentUpdates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		require.NoError(t, s.CreateKey(ctx, record("key_000000000001")))
		const writers, each = 4, 10
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					_, err := s.UpdateKey(ctx, "key_000000000001", func(r *Record) error {
						r.Labels[fmt.Sprintf("w%d-%d", w, i)] = "x"
						return nil
					})
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		got, err := s.GetKey(ctx, "key_000000000001")
		require.NoError(t, err)
		require.Len(t, got.Labels, 1+writers*each)
	})
}

// TestStoreHoldsNoSecret: what the stores write holds hashes, never the
// secret, through the whole life of a key.
func TestStoreHoldsNoSecret(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, dump func() string, s Store) {
		m := &Manager{Store: s, Now: func() time.Time { return t0 }}
		_, err := m.CreateTeam(ctx, TeamSpec{ID: "search"})
		require.NoError(t, err)
		k, secret1, err := m.CreateKey(ctx, KeySpec{Owner: "alice", Team: "search"})
		require.NoError(t, err)
		_, secret2, err := m.Rotate(ctx, k.ID, time.Hour)
		require.NoError(t, err)
		out := dump()
		require.Contains(t, out, HashSecret(secret2))
		require.Contains(t, out, HashSecret(secret1), "the previous hash is kept during the grace period")
		for _, secret := range []string{secret1, secret2} {
			require.NotContains(t, out, secret)
			require.NotContains(t, out, strings.TrimPrefix(secret, SecretPrefix))
		}
	}
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "keys.json")
		s, err := OpenFileStore(path)
		require.NoError(t, err)
		check(t, func() string { return readFile(t, path) }, s)
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		s := newRedisStore(t, srv.Addr)
		dump := func() string {
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
			defer rdb.Close()
			var b strings.Builder
			names, err := rdb.Keys(ctx, "*").Result()
			require.NoError(t, err)
			require.NotEmpty(t, names)
			for _, n := range names {
				b.WriteString(n + "\n")
				typ, _ := rdb.Type(ctx, n).Result()
				switch typ {
				case "hash":
					m, err := rdb.HGetAll(ctx, n).Result()
					require.NoError(t, err)
					for f, v := range m {
						b.WriteString(f + "=" + v + "\n")
					}
				case "string":
					v, err := rdb.Get(ctx, n).Result()
					require.NoError(t, err)
					b.WriteString(v + "\n")
				default:
					t.Fatalf("unexpected redis type %s for %s", typ, n)
				}
			}
			return b.String()
		}
		check(t, dump, s)
	})
}

func TestFileStoreSharedBetweenProcesses(t *testing.T) {
	// Two FileStores on one path (the gateway and a CLI run) see each
	// other's changes and never lose one.
	path := filepath.Join(t.TempDir(), "keys.json")
	a, err := OpenFileStore(path)
	require.NoError(t, err)
	b, err := OpenFileStore(path)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, a.CreateKey(ctx, record("key_000000000001")))
	va, _ := a.Version(ctx)
	vb, _ := b.Version(ctx)
	require.Equal(t, va, vb)
	require.NoError(t, b.CreateKey(ctx, record("key_000000000002")))
	list, err := a.ListKeys(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	va2, _ := a.Version(ctx)
	require.Greater(t, va2, va, "the stat cache notices the other writer")
}

func TestFileStoreErrors(t *testing.T) {
	_, err := OpenFileStore("")
	require.ErrorIs(t, err, ErrInvalid)
	_, err = OpenFileStore(filepath.Join(t.TempDir(), "missing-dir", "keys.json"))
	require.Error(t, err)

	path := filepath.Join(t.TempDir(), "keys.json")
	writeFile(t, path, "not json")
	_, err = OpenFileStore(path)
	require.ErrorIs(t, err, ErrStoreUnavailable)
}

func TestRedisStoreUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	s := newRedisStore(t, srv.Addr)
	srv.Stop()
	ctx := context.Background()
	_, err := s.Version(ctx)
	require.ErrorIs(t, err, ErrStoreUnavailable)
	_, err = s.Snapshot(ctx)
	require.ErrorIs(t, err, ErrStoreUnavailable)
	require.ErrorIs(t, s.CreateKey(ctx, record("key_000000000001")), ErrStoreUnavailable)
}

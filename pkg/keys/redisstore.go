package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisKeyPrefix prefixes the store's Redis keys. The braces are a
// Redis Cluster hash tag: all three keys live in one slot, so each script
// touches a single node.
const DefaultRedisKeyPrefix = "llmproxy:{gk}:"

// RedisStore keeps keys and teams in Redis, shared by every gateway
// instance: a hash "<prefix>keys" (id -> JSON record, secret hashes only),
// a hash "<prefix>teams" (id -> JSON team) and a counter "<prefix>version"
// incremented by every change in the same script that makes it. Updates are
// compare-and-set on the stored JSON, retried on contention. Safe for
// concurrent use.
type RedisStore struct {
	rdb                  redis.UniversalClient
	keys, teams, version string
	closeClient          bool
}

// maxCASAttempts bounds the retries of an update that keeps losing races.
// After the first loss each retry waits a random time below casBackoff
// times the losses so far, so that writers racing for one record spread
// out instead of colliding again (under load, 4 writers without a wait
// could lose 16 rounds in a row).
const (
	maxCASAttempts = 16
	casBackoff     = 500 * time.Microsecond
)

// NewRedisStore uses rdb with prefix (DefaultRedisKeyPrefix when empty).
// When ownClient is true, Close closes rdb.
func NewRedisStore(rdb redis.UniversalClient, prefix string, ownClient bool) *RedisStore {
	if prefix == "" {
		prefix = DefaultRedisKeyPrefix
	}
	return &RedisStore{rdb: rdb, keys: prefix + "keys", teams: prefix + "teams", version: prefix + "version", closeClient: ownClient}
}

// createScript sets field ARGV[1] of hash KEYS[1] to ARGV[2] unless it
// exists, and bumps the version KEYS[2]. Returns 1 when created.
var createScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1`)

// casScript replaces field ARGV[1] of KEYS[1] with ARGV[3] if it still
// holds ARGV[2], and bumps the version. Returns 1 on success, 0 when the
// value changed, -1 when the field is gone.
var casScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return -1 end
if cur ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('INCR', KEYS[2])
return 1`)

// deleteScript removes field ARGV[1] of KEYS[1] and bumps the version.
// Returns the number of fields removed.
var deleteScript = redis.NewScript(`
local n = redis.call('HDEL', KEYS[1], ARGV[1])
if n == 1 then redis.call('INCR', KEYS[2]) end
return n`)

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: redis %s: %w", ErrStoreUnavailable, op, err)
}

func (s *RedisStore) create(ctx context.Context, hash, kind, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", kind, err)
	}
	n, err := createScript.Run(ctx, s.rdb, []string{hash, s.version}, id, b).Int()
	if err != nil {
		return unavailable("create "+kind, err)
	}
	if n == 0 {
		return fmt.Errorf("%s %s: %w", kind, id, ErrExists)
	}
	return nil
}

// update is the compare-and-set loop shared by keys and teams: read, decode
// into a fresh value, apply fn, write back if unchanged.
func update[T any](ctx context.Context, s *RedisStore, hash, kind, id string, fn func(*T) error) (T, error) {
	var zero T
	for attempt := range maxCASAttempts {
		if attempt > 0 {
			wait := time.NewTimer(rand.N(time.Duration(attempt) * casBackoff))
			select {
			case <-ctx.Done():
				wait.Stop()
				return zero, unavailable("update "+kind, ctx.Err())
			case <-wait.C:
			}
		}
		cur, err := s.rdb.HGet(ctx, hash, id).Result()
		if errors.Is(err, redis.Nil) {
			return zero, fmt.Errorf("%s %s: %w", kind, id, ErrNotFound)
		}
		if err != nil {
			return zero, unavailable("read "+kind, err)
		}
		var v T
		if err := json.Unmarshal([]byte(cur), &v); err != nil {
			return zero, fmt.Errorf("%w: stored %s %s is not valid JSON", ErrStoreUnavailable, kind, id)
		}
		if err := fn(&v); err != nil {
			return zero, err
		}
		next, err := json.Marshal(v)
		if err != nil {
			return zero, fmt.Errorf("encode %s: %w", kind, err)
		}
		n, err := casScript.Run(ctx, s.rdb, []string{hash, s.version}, id, cur, next).Int()
		if err != nil {
			return zero, unavailable("update "+kind, err)
		}
		switch n {
		case 1:
			return v, nil
		case -1:
			return zero, fmt.Errorf("%s %s: %w", kind, id, ErrNotFound)
		}
	}
	return zero, fmt.Errorf("%s %s: %w: too many concurrent updates", kind, id, ErrConflict)
}

func get[T any](ctx context.Context, s *RedisStore, hash, kind, id string) (T, error) {
	var v T
	cur, err := s.rdb.HGet(ctx, hash, id).Result()
	if errors.Is(err, redis.Nil) {
		return v, fmt.Errorf("%s %s: %w", kind, id, ErrNotFound)
	}
	if err != nil {
		return v, unavailable("read "+kind, err)
	}
	if err := json.Unmarshal([]byte(cur), &v); err != nil {
		return v, fmt.Errorf("%w: stored %s %s is not valid JSON", ErrStoreUnavailable, kind, id)
	}
	return v, nil
}

func decodeAll[T any](kind string, m map[string]string) ([]T, error) {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]T, 0, len(ids))
	for _, id := range ids {
		var v T
		if err := json.Unmarshal([]byte(m[id]), &v); err != nil {
			return nil, fmt.Errorf("%w: stored %s %s is not valid JSON", ErrStoreUnavailable, kind, id)
		}
		out = append(out, v)
	}
	return out, nil
}

// CreateKey implements [Store].
func (s *RedisStore) CreateKey(ctx context.Context, r Record) error {
	return s.create(ctx, s.keys, "key", r.ID, r)
}

// UpdateKey implements [Store].
func (s *RedisStore) UpdateKey(ctx context.Context, id string, fn func(*Record) error) (Record, error) {
	return update(ctx, s, s.keys, "key", id, func(r *Record) error {
		if err := fn(r); err != nil {
			return err
		}
		r.ID = id
		return nil
	})
}

// GetKey implements [Store].
func (s *RedisStore) GetKey(ctx context.Context, id string) (Record, error) {
	return get[Record](ctx, s, s.keys, "key", id)
}

// ListKeys implements [Store].
func (s *RedisStore) ListKeys(ctx context.Context) ([]Record, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys).Result()
	if err != nil {
		return nil, unavailable("list keys", err)
	}
	return decodeAll[Record]("key", m)
}

// CreateTeam implements [Store].
func (s *RedisStore) CreateTeam(ctx context.Context, t Team) error {
	return s.create(ctx, s.teams, "team", t.ID, t)
}

// UpdateTeam implements [Store].
func (s *RedisStore) UpdateTeam(ctx context.Context, id string, fn func(*Team) error) (Team, error) {
	return update(ctx, s, s.teams, "team", id, func(t *Team) error {
		if err := fn(t); err != nil {
			return err
		}
		t.ID = id
		return nil
	})
}

// GetTeam implements [Store].
func (s *RedisStore) GetTeam(ctx context.Context, id string) (Team, error) {
	return get[Team](ctx, s, s.teams, "team", id)
}

// ListTeams implements [Store].
func (s *RedisStore) ListTeams(ctx context.Context) ([]Team, error) {
	m, err := s.rdb.HGetAll(ctx, s.teams).Result()
	if err != nil {
		return nil, unavailable("list teams", err)
	}
	return decodeAll[Team]("team", m)
}

// DeleteTeam implements [Store].
func (s *RedisStore) DeleteTeam(ctx context.Context, id string) error {
	n, err := deleteScript.Run(ctx, s.rdb, []string{s.teams, s.version}, id).Int()
	if err != nil {
		return unavailable("delete team", err)
	}
	if n == 0 {
		return fmt.Errorf("team %s: %w", id, ErrNotFound)
	}
	return nil
}

// Version implements [Store]: one GET.
func (s *RedisStore) Version(ctx context.Context) (uint64, error) {
	v, err := s.rdb.Get(ctx, s.version).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable("read version", err)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: version counter is not a number", ErrStoreUnavailable)
	}
	return n, nil
}

// Snapshot implements [Store]: version, keys and teams read in one
// MULTI/EXEC, so they belong together.
func (s *RedisStore) Snapshot(ctx context.Context) (Snapshot, error) {
	var ver *redis.StringCmd
	var keys, teams *redis.MapStringStringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		ver = p.Get(ctx, s.version)
		keys = p.HGetAll(ctx, s.keys)
		teams = p.HGetAll(ctx, s.teams)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Snapshot{}, unavailable("snapshot", err)
	}
	var snap Snapshot
	if v, err := ver.Result(); err == nil {
		if snap.Version, err = strconv.ParseUint(v, 10, 64); err != nil {
			return Snapshot{}, fmt.Errorf("%w: version counter is not a number", ErrStoreUnavailable)
		}
	} else if !errors.Is(err, redis.Nil) {
		return Snapshot{}, unavailable("snapshot", err)
	}
	if snap.Keys, err = decodeAll[Record]("key", keys.Val()); err != nil {
		return Snapshot{}, err
	}
	if snap.Teams, err = decodeAll[Team]("team", teams.Val()); err != nil {
		return Snapshot{}, err
	}
	return snap, nil
}

// Close implements [Store].
func (s *RedisStore) Close() error {
	if s.closeClient {
		return s.rdb.Close()
	}
	return nil
}

package keys

import (
	"context"
	"errors"
)

// ErrStoreUnavailable wraps a failure to reach the backing store.
var ErrStoreUnavailable = errors.New("key store unavailable")

// Snapshot is the whole content of a store at one version.
type Snapshot struct {
	// Version increases with every change (by at least one).
	Version uint64
	Keys    []Record
	Teams   []Team
}

// Store persists keys and teams. Every change increments the store's
// version, which [Authenticator] polls to know when to reload. Lists are
// sorted by id. Returned values are copies the caller may modify.
//
// Implementations are safe for concurrent use; [FileStore] and
// [RedisStore] make every update atomic (a read-modify-write under a lock
// or a compare-and-set), so concurrent writers never lose a change.
type Store interface {
	// CreateKey stores a new record; ErrExists if the id is taken.
	CreateKey(ctx context.Context, r Record) error
	// UpdateKey applies fn to the stored record atomically and returns
	// the result; ErrNotFound if absent. An error from fn aborts the
	// update and is returned as is. fn may be called more than once.
	UpdateKey(ctx context.Context, id string, fn func(*Record) error) (Record, error)
	// GetKey returns one record; ErrNotFound if absent.
	GetKey(ctx context.Context, id string) (Record, error)
	// ListKeys returns every record, revoked ones included.
	ListKeys(ctx context.Context) ([]Record, error)

	// CreateTeam stores a new team; ErrExists if the id is taken.
	CreateTeam(ctx context.Context, t Team) error
	// UpdateTeam is UpdateKey for teams.
	UpdateTeam(ctx context.Context, id string, fn func(*Team) error) (Team, error)
	// GetTeam returns one team; ErrNotFound if absent.
	GetTeam(ctx context.Context, id string) (Team, error)
	// ListTeams returns every team.
	ListTeams(ctx context.Context) ([]Team, error)
	// DeleteTeam removes a team; ErrNotFound if absent.
	DeleteTeam(ctx context.Context, id string) error

	// Version returns the current version, cheaply (one round trip or one
	// stat).
	Version(ctx context.Context) (uint64, error)
	// Snapshot returns every key and team at one consistent version.
	Snapshot(ctx context.Context) (Snapshot, error)
	// Close releases the store's resources.
	Close() error
}

package keys

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/glob"
)

// Authentication errors, matched with errors.Is. All of them answer 401
// except ErrStoreUnavailable (503) and ErrTooManyFailures (429). None
// carries the presented secret; the revoked and expired ones name the key
// id.
var (
	ErrMissingKey      = errors.New("no gateway key presented")
	ErrUnknownKey      = errors.New("unknown gateway key")
	ErrExpiredKey      = errors.New("gateway key expired")
	ErrRevokedKey      = errors.New("gateway key revoked")
	ErrTooManyFailures = errors.New("too many failed key lookups from this client")
)

// Defaults of [AuthenticatorOptions].
const (
	// DefaultSyncInterval is how often the store version is polled: a
	// change anywhere is seen within this interval plus one round trip.
	DefaultSyncInterval = 500 * time.Millisecond
	// DefaultMaxStale is how long cached keys keep working after the
	// store stopped answering.
	DefaultMaxStale = 5 * time.Minute
	// FullReloadInterval is how often Sync reloads the snapshot even
	// though the version did not change: a store wiped and refilled (a
	// Redis without persistence restarted, a file restored from backup)
	// can come back to the version this instance last saw with other
	// content.
	FullReloadInterval = time.Minute
)

// Identity is an authenticated key and its team. It is shared and
// immutable: callers must not modify it.
type Identity struct {
	Key Key
	// Team is the key's team, nil when it has none or the team no longer
	// exists.
	Team *Team
}

// PermissionError refuses a key the provider or model it asked for. Its
// message names the provider and model, never the key.
type PermissionError struct {
	Provider, Model string
}

func (e *PermissionError) Error() string {
	if e.Model == "" {
		return fmt.Sprintf("this key may not use provider %q, or the request names no model this key may use", e.Provider)
	}
	return fmt.Sprintf("this key may not use model %q of provider %q", e.Model, e.Provider)
}

// AuthenticatorOptions tune an [Authenticator]; zero fields take defaults.
type AuthenticatorOptions struct {
	// MaxStale: see DefaultMaxStale.
	MaxStale time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Limiter, when set, refuses clients with too many failed lookups
	// (AuthenticateFrom).
	Limiter *FailureLimiter
	// Log receives sync failures and recoveries (no secrets); discarded
	// when nil.
	Log *slog.Logger
}

// Authenticator checks presented secrets against an in-process index of
// every key in the store, so a lookup costs a SHA-256 and a map read,
// never a network round trip. Sync (run by Run on a ticker) keeps the
// index in step: it polls the store version and reloads the snapshot when
// it changed, so creation, rotation and revocation anywhere are seen within
// one poll interval.
//
// Outage: while the store does not answer, the last index keeps serving
// for MaxStale after the last successful poll; after that every lookup
// fails with ErrStoreUnavailable. A key the index does not hold is refused
// (fail closed). Safe for concurrent use.
type Authenticator struct {
	store    Store
	now      func() time.Time
	maxStale time.Duration
	limiter  *FailureLimiter
	log      *slog.Logger

	// syncMu serialises Sync, so a slow snapshot never replaces a newer
	// one loaded meanwhile (Run and an admin change may sync at once).
	syncMu sync.Mutex
	// loadedAt is when the index was last loaded; guarded by syncMu.
	loadedAt time.Time
	idx      atomic.Pointer[index]
	// lastOK is the Unix nanosecond time of the last successful poll.
	lastOK  atomic.Int64
	failing atomic.Bool
}

type index struct {
	version uint64
	byHash  map[[sha256.Size]byte]*entry
	byID    map[string]*Identity
	teams   map[string]*Team
}

type entry struct {
	hash [sha256.Size]byte
	id   *Identity
	// previousUntil is set for a rotated-away secret: when it stops.
	previousUntil time.Time
}

// NewAuthenticator returns an Authenticator over store with an empty
// index; call Sync (or Run) before serving.
func NewAuthenticator(store Store, o AuthenticatorOptions) *Authenticator {
	a := &Authenticator{store: store, now: o.Now, maxStale: o.MaxStale, limiter: o.Limiter, log: o.Log}
	if a.now == nil {
		a.now = time.Now
	}
	if a.maxStale <= 0 {
		a.maxStale = DefaultMaxStale
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	return a
}

// Sync polls the store version and reloads the index when it changed. It
// is safe to call concurrently (calls are serialised).
func (a *Authenticator) Sync(ctx context.Context) error {
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	v, err := a.store.Version(ctx)
	if err != nil {
		return a.syncFailed(err)
	}
	now := a.now()
	if cur := a.idx.Load(); cur == nil || cur.version != v || now.Sub(a.loadedAt) >= FullReloadInterval {
		snap, err := a.store.Snapshot(ctx)
		if err != nil {
			return a.syncFailed(err)
		}
		idx, err := buildIndex(snap)
		if err != nil {
			return a.syncFailed(err)
		}
		a.idx.Store(idx)
		a.loadedAt = now
	}
	a.lastOK.Store(now.UnixNano())
	if a.failing.Swap(false) {
		a.log.Info("gateway key store reachable again")
	}
	return nil
}

func (a *Authenticator) syncFailed(err error) error {
	if !a.failing.Swap(true) {
		a.log.Warn("gateway key store unreachable; serving cached keys", "max_stale", a.maxStale, "error", err)
	}
	return err
}

// Run calls Sync on every tick until ctx ends. Pass
// time.NewTicker(DefaultSyncInterval).C in production.
func (a *Authenticator) Run(ctx context.Context, ticks <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			_ = a.Sync(ctx)
		}
	}
}

func buildIndex(s Snapshot) (*index, error) {
	idx := &index{version: s.Version, byHash: make(map[[sha256.Size]byte]*entry, len(s.Keys)), byID: make(map[string]*Identity, len(s.Keys))}
	teams := make(map[string]*Team, len(s.Teams))
	for _, t := range s.Teams {
		t := t.clone()
		teams[t.ID] = &t
	}
	idx.teams = teams
	for _, r := range s.Keys {
		r = r.clone()
		id := &Identity{Key: r.Key, Team: teams[r.Team]}
		idx.byID[r.ID] = id
		if err := idx.add(r.SecretHash, id, time.Time{}); err != nil {
			return nil, fmt.Errorf("%w: key %s: %w", ErrStoreUnavailable, r.ID, err)
		}
		if r.PreviousSecretHash != "" && !r.PreviousValidUntil.IsZero() {
			if err := idx.add(r.PreviousSecretHash, id, r.PreviousValidUntil); err != nil {
				return nil, fmt.Errorf("%w: key %s: %w", ErrStoreUnavailable, r.ID, err)
			}
		}
	}
	return idx, nil
}

func (idx *index) add(hexHash string, id *Identity, until time.Time) error {
	var h [sha256.Size]byte
	if n, err := hex.Decode(h[:], []byte(hexHash)); err != nil || n != sha256.Size {
		return errors.New("stored secret hash is not hex SHA-256")
	}
	idx.byHash[h] = &entry{hash: h, id: id, previousUntil: until}
	return nil
}

// Authenticate returns the identity of a presented secret, or an error
// wrapping ErrMissingKey, ErrUnknownKey, ErrExpiredKey, ErrRevokedKey or
// ErrStoreUnavailable. On a hit it does no I/O and no allocation.
func (a *Authenticator) Authenticate(ctx context.Context, secret string) (*Identity, error) {
	return a.authenticate(secret, a.now())
}

func (a *Authenticator) authenticate(secret string, now time.Time) (*Identity, error) {
	if secret == "" {
		return nil, ErrMissingKey
	}
	idx := a.idx.Load()
	if idx == nil {
		return nil, fmt.Errorf("%w: not loaded yet", ErrStoreUnavailable)
	}
	if now.UnixNano()-a.lastOK.Load() > int64(a.maxStale) {
		return nil, fmt.Errorf("%w: no answer for longer than %s", ErrStoreUnavailable, a.maxStale)
	}
	// Hash from a stack buffer: a plain []byte(secret) of a 48-byte
	// secret would allocate.
	var buf [64]byte
	h := sha256.Sum256(append(buf[:0], secret...))
	e := idx.byHash[h]
	// The map finds the candidate by hash; the comparison that decides is
	// constant-time. (A map probe on a SHA-256 leaks nothing an attacker
	// can steer: they cannot choose hashes without preimages.)
	if e == nil || subtle.ConstantTimeCompare(e.hash[:], h[:]) != 1 {
		return nil, ErrUnknownKey
	}
	k := &e.id.Key
	switch {
	case !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt):
		return nil, fmt.Errorf("%w: %s", ErrRevokedKey, k.ID)
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return nil, fmt.Errorf("%w: %s", ErrExpiredKey, k.ID)
	case !e.previousUntil.IsZero() && !now.Before(e.previousUntil):
		return nil, fmt.Errorf("%w: %s: secret replaced by a rotation and past its grace period", ErrExpiredKey, k.ID)
	}
	return e.id, nil
}

// AuthenticateFrom is Authenticate for a request from clientIP, through
// the failure limiter: a client over its failure allowance gets
// ErrTooManyFailures without a lookup (so a correct guess is not revealed
// either), and every unknown, expired or revoked key counts as a failure.
// Without a limiter it is Authenticate.
func (a *Authenticator) AuthenticateFrom(ctx context.Context, clientIP, secret string) (*Identity, error) {
	return a.AuthenticateAt(ctx, a.now(), clientIP, secret)
}

// AuthenticateAt is AuthenticateFrom at a time the caller already has (the
// request's start), saving a clock read on the request path.
func (a *Authenticator) AuthenticateAt(ctx context.Context, now time.Time, clientIP, secret string) (*Identity, error) {
	if a.limiter == nil {
		return a.authenticate(secret, now)
	}
	if !a.limiter.Allow(clientIP, now) {
		return nil, ErrTooManyFailures
	}
	id, err := a.authenticate(secret, now)
	if errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrExpiredKey) || errors.Is(err, ErrRevokedKey) {
		a.limiter.Fail(clientIP, now)
	}
	return id, err
}

// Loaded reports the store version the index was built from and how many
// keys it holds (revoked and expired ones included), for /health. Both are
// 0 before the first successful Sync.
func (a *Authenticator) Loaded() (version uint64, keys int) {
	idx := a.idx.Load()
	if idx == nil {
		return 0, 0
	}
	return idx.version, len(idx.byID)
}

// Lookup returns the cached identity of a key id (for attribution of a
// request already authenticated), or nil.
func (a *Authenticator) Lookup(id string) *Identity {
	idx := a.idx.Load()
	if idx == nil {
		return nil
	}
	return idx.byID[id]
}

// Team returns the cached team of id, or nil. The caller must not modify
// it.
func (a *Authenticator) Team(id string) *Team {
	idx := a.idx.Load()
	if idx == nil {
		return nil
	}
	return idx.teams[id]
}

// Authorize reports whether id may call model of provider: nil, or a
// *PermissionError. A key restricted to some models refuses a request
// whose model the gateway could not read (model ""), failing closed.
func Authorize(id *Identity, provider, model string) error {
	k := &id.Key
	if !glob.MatchAny(k.Providers, provider) {
		return &PermissionError{Provider: provider, Model: model}
	}
	if len(k.Models) > 0 && (model == "" || !glob.MatchAny(k.Models, model)) {
		return &PermissionError{Provider: provider, Model: model}
	}
	return nil
}

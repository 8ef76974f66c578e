package keys

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// DefaultRotationGrace is how long a rotated-away secret keeps working
// when the caller names no grace period.
const DefaultRotationGrace = time.Hour

// MaxRotationGrace bounds the grace period of a rotation.
const MaxRotationGrace = 30 * 24 * time.Hour

// Manager performs the administrative operations on a [Store]: it draws
// secrets, hashes them, validates fields and keeps team references
// consistent. The admin API and the CLI are thin layers over it. Safe for
// concurrent use if its fields are not changed after first use.
type Manager struct {
	Store Store
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Random is the entropy source for secrets and ids; crypto/rand.Reader
	// when nil.
	Random io.Reader
	// RotationGrace is the default grace period of Rotate;
	// DefaultRotationGrace when 0.
	RotationGrace time.Duration
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now().UTC()
	}
	return time.Now().UTC()
}

func (m *Manager) random() io.Reader {
	if m.Random != nil {
		return m.Random
	}
	return rand.Reader
}

// KeySpec is what an administrator sets when creating a key.
type KeySpec struct {
	Owner       string `json:"owner,omitempty"`
	Team        string `json:"team,omitempty"`
	Description string `json:"description,omitempty"`
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time         `json:"expires_at,omitzero"`
	Providers []string          `json:"providers,omitempty"`
	Models    []string          `json:"models,omitempty"`
	Limits    Limits            `json:"limits,omitzero"`
	Budget    Budget            `json:"budget,omitzero"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Expiry is an optional expiry time in a patch: an RFC 3339 time, or
// "never" (or "") to clear it.
type Expiry struct{ Time time.Time }

// UnmarshalJSON reads an RFC 3339 string or "never".
func (e *Expiry) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: expires_at: must be an RFC 3339 time or \"never\"", ErrInvalid)
	}
	return e.parse(s)
}

// MarshalJSON writes the RFC 3339 time or "never".
func (e Expiry) MarshalJSON() ([]byte, error) {
	if e.Time.IsZero() {
		return []byte(`"never"`), nil
	}
	return json.Marshal(e.Time)
}

func (e *Expiry) parse(s string) error {
	if s == "" || s == "never" {
		e.Time = time.Time{}
		return nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("%w: expires_at: must be an RFC 3339 time or \"never\"", ErrInvalid)
	}
	e.Time = t
	return nil
}

// ParseExpiry reads an expiry as the CLI and API accept it: "never", an
// RFC 3339 time, or a duration from now ("720h").
func ParseExpiry(s string, now time.Time) (Expiry, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return Expiry{}, fmt.Errorf("%w: expiry duration must be positive", ErrInvalid)
		}
		return Expiry{Time: now.Add(d)}, nil
	}
	var e Expiry
	err := e.parse(s)
	return e, err
}

// KeyPatch changes some attributes of a key; nil fields are left alone.
// Slices and the label map replace the stored ones whole.
type KeyPatch struct {
	Owner       *string            `json:"owner,omitempty"`
	Team        *string            `json:"team,omitempty"`
	Description *string            `json:"description,omitempty"`
	ExpiresAt   *Expiry            `json:"expires_at,omitempty"`
	Providers   *[]string          `json:"providers,omitempty"`
	Models      *[]string          `json:"models,omitempty"`
	Limits      *Limits            `json:"limits,omitempty"`
	Budget      *Budget            `json:"budget,omitempty"`
	Labels      *map[string]string `json:"labels,omitempty"`
}

func (p KeyPatch) apply(k *Key) {
	set(&k.Owner, p.Owner)
	set(&k.Team, p.Team)
	set(&k.Description, p.Description)
	if p.ExpiresAt != nil {
		k.ExpiresAt = p.ExpiresAt.Time.UTC()
	}
	set(&k.Providers, p.Providers)
	set(&k.Models, p.Models)
	set(&k.Limits, p.Limits)
	set(&k.Budget, p.Budget)
	set(&k.Labels, p.Labels)
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// TeamSpec is what an administrator sets when creating a team.
type TeamSpec struct {
	ID          string            `json:"id"`
	Description string            `json:"description,omitempty"`
	Limits      Limits            `json:"limits,omitzero"`
	Budget      Budget            `json:"budget,omitzero"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// TeamPatch changes some attributes of a team; nil fields are left alone.
type TeamPatch struct {
	Description *string            `json:"description,omitempty"`
	Limits      *Limits            `json:"limits,omitempty"`
	Budget      *Budget            `json:"budget,omitempty"`
	Labels      *map[string]string `json:"labels,omitempty"`
}

// maxIDAttempts bounds retries on a key id collision (48-bit ids).
const maxIDAttempts = 4

// CreateKey creates a key from spec and returns it with its secret, the
// only time the secret exists outside the client. The team, if named,
// must exist.
func (m *Manager) CreateKey(ctx context.Context, spec KeySpec) (Key, string, error) {
	now := m.now()
	k := Key{
		Owner: spec.Owner, Team: spec.Team, Description: spec.Description,
		CreatedAt: now, ExpiresAt: spec.ExpiresAt.UTC(),
		Providers: slices.Clone(spec.Providers), Models: slices.Clone(spec.Models),
		Limits: spec.Limits, Budget: spec.Budget, Labels: spec.Labels,
	}
	if spec.ExpiresAt.IsZero() {
		k.ExpiresAt = time.Time{}
	}
	if err := k.validate(); err != nil {
		return Key{}, "", err
	}
	if !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
		return Key{}, "", fmt.Errorf("%w: expires_at is in the past", ErrInvalid)
	}
	if err := m.checkTeam(ctx, k.Team); err != nil {
		return Key{}, "", err
	}
	secret, err := newSecret(m.random())
	if err != nil {
		return Key{}, "", err
	}
	r := Record{Key: k, SecretHash: HashSecret(secret)}
	for attempt := 0; ; attempt++ {
		if r.ID, err = newKeyID(m.random()); err != nil {
			return Key{}, "", err
		}
		err = m.Store.CreateKey(ctx, r)
		if !errors.Is(err, ErrExists) || attempt+1 == maxIDAttempts {
			break
		}
	}
	if err != nil {
		return Key{}, "", err
	}
	return r.Key, secret, nil
}

func (m *Manager) checkTeam(ctx context.Context, team string) error {
	if team == "" {
		return nil
	}
	if _, err := m.Store.GetTeam(ctx, team); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: team %s does not exist", ErrInvalid, team)
		}
		return err
	}
	return nil
}

// GetKey returns one key.
func (m *Manager) GetKey(ctx context.Context, id string) (Key, error) {
	if !keyIDPattern.MatchString(id) {
		return Key{}, fmt.Errorf("key %s: %w", safeID(id), ErrNotFound)
	}
	r, err := m.Store.GetKey(ctx, id)
	return r.Key, err
}

// ListKeys returns every key, revoked ones included, sorted by id.
func (m *Manager) ListKeys(ctx context.Context) ([]Key, error) {
	rs, err := m.Store.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Key, len(rs))
	for i, r := range rs {
		out[i] = r.Key
	}
	return out, nil
}

// UpdateKey applies p to a key. A revoked key cannot be changed.
func (m *Manager) UpdateKey(ctx context.Context, id string, p KeyPatch) (Key, error) {
	if !keyIDPattern.MatchString(id) {
		return Key{}, fmt.Errorf("key %s: %w", safeID(id), ErrNotFound)
	}
	if p.Team != nil {
		if err := validateTeamRef(*p.Team); err != nil {
			return Key{}, err
		}
		if err := m.checkTeam(ctx, *p.Team); err != nil {
			return Key{}, err
		}
	}
	r, err := m.Store.UpdateKey(ctx, id, func(r *Record) error {
		if !r.RevokedAt.IsZero() {
			return fmt.Errorf("key %s is revoked: %w", id, ErrConflict)
		}
		p.apply(&r.Key)
		return r.Key.validate()
	})
	return r.Key, err
}

// Rotate gives a key a new secret and returns it. The old secret keeps
// working for grace (RotationGrace when negative, none when 0, at most
// MaxRotationGrace); a secret replaced earlier stops at once. A revoked or
// expired key cannot be rotated.
func (m *Manager) Rotate(ctx context.Context, id string, grace time.Duration) (Key, string, error) {
	if !keyIDPattern.MatchString(id) {
		return Key{}, "", fmt.Errorf("key %s: %w", safeID(id), ErrNotFound)
	}
	if grace < 0 {
		grace = m.RotationGrace
		if grace == 0 {
			grace = DefaultRotationGrace
		}
	}
	if grace > MaxRotationGrace {
		return Key{}, "", fmt.Errorf("%w: grace period longer than %s", ErrInvalid, MaxRotationGrace)
	}
	secret, err := newSecret(m.random())
	if err != nil {
		return Key{}, "", err
	}
	now := m.now()
	r, err := m.Store.UpdateKey(ctx, id, func(r *Record) error {
		if !r.Active(now) {
			return fmt.Errorf("key %s is revoked or expired: %w", id, ErrConflict)
		}
		r.PreviousSecretHash, r.PreviousValidUntil = "", time.Time{}
		if grace > 0 {
			r.PreviousSecretHash, r.PreviousValidUntil = r.SecretHash, now.Add(grace)
		}
		r.SecretHash = HashSecret(secret)
		r.RotatedAt = now
		return nil
	})
	if err != nil {
		return Key{}, "", err
	}
	return r.Key, secret, nil
}

// Revoke revokes a key now; both its secrets stop working. Revoking a
// revoked key changes nothing. The record is kept for attribution.
func (m *Manager) Revoke(ctx context.Context, id string) (Key, error) {
	if !keyIDPattern.MatchString(id) {
		return Key{}, fmt.Errorf("key %s: %w", safeID(id), ErrNotFound)
	}
	now := m.now()
	r, err := m.Store.UpdateKey(ctx, id, func(r *Record) error {
		if r.RevokedAt.IsZero() {
			r.RevokedAt = now
		}
		r.PreviousSecretHash, r.PreviousValidUntil = "", time.Time{}
		return nil
	})
	return r.Key, err
}

// CreateTeam creates a team.
func (m *Manager) CreateTeam(ctx context.Context, spec TeamSpec) (Team, error) {
	t := Team{ID: spec.ID, Description: spec.Description, CreatedAt: m.now(), Limits: spec.Limits, Budget: spec.Budget, Labels: spec.Labels}
	if err := t.validate(); err != nil {
		return Team{}, err
	}
	if err := m.Store.CreateTeam(ctx, t); err != nil {
		return Team{}, err
	}
	return t, nil
}

// GetTeam returns one team.
func (m *Manager) GetTeam(ctx context.Context, id string) (Team, error) {
	if !teamIDPattern.MatchString(id) {
		return Team{}, fmt.Errorf("team %s: %w", safeID(id), ErrNotFound)
	}
	return m.Store.GetTeam(ctx, id)
}

// ListTeams returns every team sorted by id.
func (m *Manager) ListTeams(ctx context.Context) ([]Team, error) { return m.Store.ListTeams(ctx) }

// UpdateTeam applies p to a team.
func (m *Manager) UpdateTeam(ctx context.Context, id string, p TeamPatch) (Team, error) {
	if !teamIDPattern.MatchString(id) {
		return Team{}, fmt.Errorf("team %s: %w", safeID(id), ErrNotFound)
	}
	return m.Store.UpdateTeam(ctx, id, func(t *Team) error {
		set(&t.Description, p.Description)
		set(&t.Limits, p.Limits)
		set(&t.Budget, p.Budget)
		set(&t.Labels, p.Labels)
		return t.validate()
	})
}

// DeleteTeam deletes a team that no active key belongs to (ErrConflict
// otherwise; revoke or move the keys first). Revoked and expired keys keep
// the team id for attribution.
func (m *Manager) DeleteTeam(ctx context.Context, id string) error {
	if !teamIDPattern.MatchString(id) {
		return fmt.Errorf("team %s: %w", safeID(id), ErrNotFound)
	}
	keys, err := m.Store.ListKeys(ctx)
	if err != nil {
		return err
	}
	now := m.now()
	var active []string
	for _, k := range keys {
		if k.Team == id && k.Active(now) {
			active = append(active, k.ID)
		}
	}
	if len(active) > 0 {
		return fmt.Errorf("team %s has %d active keys (%s): %w", id, len(active), strings.Join(active, ", "), ErrConflict)
	}
	return m.Store.DeleteTeam(ctx, id)
}

// safeID quotes an id from a request for an error message. A caller may
// paste a secret where an id belongs; a string that looks like one is
// never echoed.
func safeID(id string) string {
	if strings.HasPrefix(id, SecretPrefix) || len(id) > 64 {
		return "(redacted)"
	}
	return fmt.Sprintf("%q", id)
}

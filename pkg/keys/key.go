package keys

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"
)

// Errors of the management operations, matched with errors.Is. Messages
// name ids and fields, never secrets.
var (
	// ErrNotFound: no key or team with that id.
	ErrNotFound = errors.New("not found")
	// ErrExists: a key or team with that id already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict: the operation contradicts the current state (rotating
	// a revoked key, deleting a team that still has active keys).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: a field has a bad value.
	ErrInvalid = errors.New("invalid")
)

// Limits are request and token rate limits of a key or team, in the same
// units and JSON names as the quota engine's limits (pkg/ratelimit). 0
// means no limit.
type Limits struct {
	RequestsPerMinute int64 `json:"requests_per_minute,omitempty"`
	TokensPerMinute   int64 `json:"tokens_per_minute,omitempty"`
	RequestsPerDay    int64 `json:"requests_per_day,omitempty"`
	TokensPerDay      int64 `json:"tokens_per_day,omitempty"`
}

// IsZero reports whether l sets no limit.
func (l Limits) IsZero() bool { return l == Limits{} }

func (l Limits) validate(path string) error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"requests_per_minute", l.RequestsPerMinute}, {"tokens_per_minute", l.TokensPerMinute},
		{"requests_per_day", l.RequestsPerDay}, {"tokens_per_day", l.TokensPerDay},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%w: %s.%s must not be negative", ErrInvalid, path, f.name))
		}
	}
	return errors.Join(errs...)
}

// Budget is a spend cap in US dollars per UTC day and month, as the quota
// engine's budgets (pkg/budget) count them. 0 means no cap.
type Budget struct {
	DailyUSD   float64 `json:"daily_usd,omitempty"`
	MonthlyUSD float64 `json:"monthly_usd,omitempty"`
}

// IsZero reports whether b sets no cap.
func (b Budget) IsZero() bool { return b == Budget{} }

func (b Budget) validate(path string) error {
	if !(b.DailyUSD >= 0) || !(b.MonthlyUSD >= 0) || b.DailyUSD > 1e12 || b.MonthlyUSD > 1e12 {
		return fmt.Errorf("%w: %s: daily_usd and monthly_usd must be between 0 and 1e12", ErrInvalid, path)
	}
	return nil
}

// Key is what the gateway knows about a gateway key, without its secret
// or hash: what the admin API and CLI show.
type Key struct {
	// ID is the short random display id, "key_" and 12 hex characters. It
	// is not derived from the secret.
	ID          string    `json:"id"`
	Owner       string    `json:"owner,omitempty"`
	Team        string    `json:"team,omitempty"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// RevokedAt is when the key was revoked; zero while it is active.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// RotatedAt is the last rotation; zero if never rotated.
	RotatedAt time.Time `json:"rotated_at,omitzero"`
	// PreviousValidUntil is when the secret replaced by the last rotation
	// stops working; zero when there is none.
	PreviousValidUntil time.Time `json:"previous_valid_until,omitzero"`
	// Providers are glob patterns of the providers the key may call; empty
	// means all.
	Providers []string `json:"providers,omitempty"`
	// Models are glob patterns of the models the key may use; empty means
	// all. "*" matches any run of characters (slashes too), "?" one.
	Models []string          `json:"models,omitempty"`
	Limits Limits            `json:"limits,omitzero"`
	Budget Budget            `json:"budget,omitzero"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Active reports whether the key is neither revoked nor expired at now.
func (k *Key) Active(now time.Time) bool {
	return (k.RevokedAt.IsZero() || now.Before(k.RevokedAt)) && (k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt))
}

// Record is a key as stored: its attributes and the SHA-256 (hex) of its
// current and, during a rotation's grace period, previous secret.
type Record struct {
	Key
	SecretHash         string `json:"secret_hash"`
	PreviousSecretHash string `json:"previous_secret_hash,omitempty"`
}

// Team groups keys under shared limits and a shared budget that every key
// of the team draws from in addition to its own.
type Team struct {
	// ID is chosen by the administrator: 1-64 of a-z, 0-9, '.', '_', '-',
	// starting with a letter or digit.
	ID          string            `json:"id"`
	Description string            `json:"description,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	Limits      Limits            `json:"limits,omitzero"`
	Budget      Budget            `json:"budget,omitzero"`
	Labels      map[string]string `json:"labels,omitempty"`
}

var (
	teamIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	keyIDPattern  = regexp.MustCompile(`^key_[0-9a-f]{12}$`)
)

// Bounds on free-text fields, so a record stays small.
const (
	maxTextLen     = 256
	maxPatterns    = 64
	maxPatternLen  = 128
	maxLabels      = 32
	maxLabelKeyLen = 63
)

func validateText(field, v string) error {
	if len(v) > maxTextLen {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, field, maxTextLen)
	}
	return nil
}

func validatePatterns(field string, ps []string) error {
	if len(ps) > maxPatterns {
		return fmt.Errorf("%w: %s: more than %d patterns", ErrInvalid, field, maxPatterns)
	}
	for _, p := range ps {
		if p == "" || len(p) > maxPatternLen {
			return fmt.Errorf("%w: %s: patterns must be 1-%d bytes", ErrInvalid, field, maxPatternLen)
		}
	}
	return nil
}

func validateLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return fmt.Errorf("%w: labels: more than %d", ErrInvalid, maxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if k == "" || len(k) > maxLabelKeyLen || len(labels[k]) > maxTextLen {
			return fmt.Errorf("%w: labels: names must be 1-%d bytes and values at most %d", ErrInvalid, maxLabelKeyLen, maxTextLen)
		}
	}
	return nil
}

// validate checks the attributes an administrator sets.
func (k *Key) validate() error {
	return errors.Join(
		validateText("owner", k.Owner), validateText("description", k.Description),
		validateTeamRef(k.Team),
		validatePatterns("providers", k.Providers), validatePatterns("models", k.Models),
		k.Limits.validate("limits"), k.Budget.validate("budget"), validateLabels(k.Labels),
	)
}

func validateTeamRef(id string) error {
	if id != "" && !teamIDPattern.MatchString(id) {
		return fmt.Errorf("%w: team: %q is not a valid team id", ErrInvalid, id)
	}
	return nil
}

func (t *Team) validate() error {
	var idErr error
	if !teamIDPattern.MatchString(t.ID) {
		idErr = fmt.Errorf("%w: id: must be 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", ErrInvalid)
	}
	return errors.Join(idErr, validateText("description", t.Description),
		t.Limits.validate("limits"), t.Budget.validate("budget"), validateLabels(t.Labels))
}

// clone returns a deep copy, so stored and cached values are never shared
// with callers.
func (r Record) clone() Record {
	r.Providers = slices.Clone(r.Providers)
	r.Models = slices.Clone(r.Models)
	r.Labels = maps.Clone(r.Labels)
	return r
}

func (t Team) clone() Team {
	t.Labels = maps.Clone(t.Labels)
	return t
}

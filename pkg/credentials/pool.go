package credentials

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// DefaultReloadInterval is how often [Pool.Watch] callers are expected to
// re-read key files when nothing else is configured.
const DefaultReloadInterval = 10 * time.Second

// ErrNoCredential is returned by [Pool.Pick] on a nil pool.
var ErrNoCredential = errors.New("credentials: no vendor credential configured")

// Credential is one vendor key chosen for a request. Name is safe to log;
// Secret prints as [REDACTED].
type Credential struct {
	Name   string
	Secret Secret
}

// Pool is the set of vendor keys of one provider with its selection
// policy. Pick and Report are lock-free; Reload may run concurrently with
// them. All methods are safe for concurrent use.
type Pool struct {
	provider string
	policy   Policy
	keys     []*key
	next     atomic.Uint64
}

type key struct {
	name string
	file string
	// secret is the current value; a file reload swaps it.
	secret atomic.Pointer[Secret]
	// limitedAt is the Unix time in nanoseconds of the last vendor 429, 0
	// when never limited.
	limitedAt atomic.Int64
}

// New builds the pool of provider ("openai", "anthropic", "gemini") from c,
// reading every key file once. It fails when c is invalid or a file cannot
// be read or is empty; errors name the file, never its content.
func New(provider string, c Config) (*Pool, error) {
	if err := c.Validate("providers." + provider + ".credentials"); err != nil {
		return nil, err
	}
	p := &Pool{provider: provider, policy: c.Selection}
	if p.policy == "" {
		p.policy = PolicyRoundRobin
	}
	for _, s := range c.sources() {
		k := &key{name: s.Name, file: s.APIKeyFile}
		if k.file == "" {
			v := s.APIKey
			k.secret.Store(&v)
		} else {
			v, err := readKeyFile(k.file)
			if err != nil {
				return nil, fmt.Errorf("providers.%s.credentials %s: %w", provider, k.name, err)
			}
			k.secret.Store(&v)
		}
		p.keys = append(p.keys, k)
	}
	return p, nil
}

// Provider returns the provider name the pool was built for.
func (p *Pool) Provider() string { return p.provider }

// Pick returns the key the next request uses.
func (p *Pool) Pick() (Credential, error) {
	if p == nil || len(p.keys) == 0 {
		return Credential{}, ErrNoCredential
	}
	n := uint64(len(p.keys))
	start := (p.next.Add(1) - 1) % n
	chosen := p.keys[start]
	if p.policy == PolicyLeastRecentlyLimited {
		oldest := chosen.limitedAt.Load()
		for i := uint64(1); i < n && oldest != 0; i++ {
			k := p.keys[(start+i)%n]
			if t := k.limitedAt.Load(); t < oldest {
				chosen, oldest = k, t
			}
		}
	}
	return Credential{Name: chosen.name, Secret: *chosen.secret.Load()}, nil
}

// Report tells the pool how the vendor answered a request made with the
// key named name: a 429 marks the key rate-limited at now, which the
// least_recently_limited policy uses. Other statuses and unknown names are
// ignored.
func (p *Pool) Report(name string, status int, now time.Time) {
	if p == nil || status != 429 {
		return
	}
	for _, k := range p.keys {
		if k.name == name {
			k.limitedAt.Store(now.UnixNano())
			return
		}
	}
}

// Reload re-reads every key file. A file that cannot be read or is empty
// keeps its previous key (a half-written secret mount must not take the
// provider down); the problems are returned joined. It reports whether any
// key changed.
func (p *Pool) Reload() (changed bool, err error) {
	var errs []error
	for _, k := range p.keys {
		if k.file == "" {
			continue
		}
		v, err := readKeyFile(k.file)
		if err != nil {
			errs = append(errs, fmt.Errorf("providers.%s.credentials %s: %w", p.provider, k.name, err))
			continue
		}
		if old := k.secret.Load(); old.v != v.v {
			k.secret.Store(&v)
			changed = true
		}
	}
	return changed, errors.Join(errs...)
}

// Watch calls Reload on every tick until ctx ends, logging changes and
// failures (never values). Pass time.NewTicker(DefaultReloadInterval).C in
// production and a channel in tests.
func (p *Pool) Watch(ctx context.Context, ticks <-chan time.Time, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			changed, err := p.Reload()
			if err != nil {
				log.Warn("vendor key file reload failed; keeping the previous key", "provider", p.provider, "error", err)
			}
			if changed {
				log.Info("vendor key reloaded from file", "provider", p.provider)
			}
		}
	}
}

// maxKeyFileBytes bounds a key file; vendor keys are well under 1 KiB.
const maxKeyFileBytes = 64 << 10

// readKeyFile reads a key file, following symlinks (Kubernetes mounts a
// secret as key -> ..data/key with ..data a symlink swapped atomically on
// update, so every read sees a complete old or new file).
func readKeyFile(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return Secret{}, fmt.Errorf("read key file %s: %w", path, pe.Err)
		}
		return Secret{}, fmt.Errorf("read key file %s: %w", path, err)
	}
	if len(b) > maxKeyFileBytes {
		return Secret{}, fmt.Errorf("key file %s: larger than %d bytes", path, maxKeyFileBytes)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return Secret{}, fmt.Errorf("key file %s: empty", path)
	}
	return NewSecret(string(b)), nil
}

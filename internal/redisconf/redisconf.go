// Package redisconf turns the YAML description of a Redis server shared by
// the rate limiter and the budgets into go-redis options tuned for the
// request path: short dial and I/O timeouts and one dial attempt, so an
// outage fails fast and the caller's fail mode applies instead of holding
// requests.
package redisconf

import (
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config locates a Redis server: URL first, else Address with Password and
// DB. The zero value is invalid.
type Config struct {
	// URL is redis://[user:password@]host:port/db or rediss:// for TLS.
	URL string `json:"url"`
	// Address is host:port, used when URL is empty.
	Address string `json:"address"`
	// Password authenticates with Address.
	Password string `json:"password"`
	// DB is the database number used with Address. Default 0.
	DB int `json:"db"`
}

// Timeouts applied when the URL sets none.
const (
	DialTimeout = 2 * time.Second
	IOTimeout   = time.Second
)

// Options returns the client options for c. maxRetries is go-redis's
// command retry count (-1: never retry, for scripts that must not run
// twice). Errors never quote the URL, which may hold a password.
func (c Config) Options(maxRetries int) (*redis.Options, error) {
	var opts *redis.Options
	if c.URL != "" {
		o, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, errors.New("redis url: not a valid redis:// or rediss:// URL")
		}
		opts = o
	} else {
		if c.Address == "" {
			return nil, errors.New("redis: url or address is required")
		}
		opts = &redis.Options{Addr: c.Address, Password: c.Password, DB: c.DB}
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = DialTimeout
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = IOTimeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = IOTimeout
	}
	opts.MaxRetries = maxRetries
	if opts.DialerRetries == 0 {
		opts.DialerRetries = 1
	}
	opts.DisableIdentity = true
	return opts, nil
}

// Client returns a new client for c that never retries a command itself
// (callers retry what is idempotent).
func (c Config) Client() (redis.UniversalClient, error) {
	opts, err := c.Options(-1)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opts), nil
}

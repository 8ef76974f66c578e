// Package redisconf turns the YAML description of a Redis deployment (a
// single server, a Sentinel-watched master, or a Cluster), shared by every
// feature that keeps state in Redis (rate limits, budgets and the usage
// ledger, the circuit breaker, the cost-record stream), into go-redis
// clients tuned for the request path: short dial and I/O timeouts and one
// dial attempt, so an outage fails fast and the feature's fail mode applies
// instead of holding requests. [Shared] hands out one client per distinct
// configuration.
package redisconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Modes accepted in [Config.Mode].
const (
	ModeSingle   = "single"
	ModeSentinel = "sentinel"
	ModeCluster  = "cluster"
)

// Config locates a Redis deployment. It is the YAML block "redis" of every
// feature that uses Redis. The zero value is invalid (no address).
//
// URL and Address are the older single-server keys, kept as aliases: the
// URL is parsed first, then Address (appended to Addresses), Username,
// Password and DB override what it set.
type Config struct {
	// Mode is "single" (default), "sentinel" or "cluster".
	Mode string `json:"mode,omitempty"`
	// Addresses are host:port pairs: the server (single, one address), the
	// Sentinels (sentinel) or seed nodes (cluster).
	Addresses []string `json:"addresses,omitempty"`
	// MasterName is the name the Sentinels monitor; required with mode
	// sentinel.
	MasterName string `json:"master_name,omitempty"`
	// Username and Password authenticate with the data servers (ACL user,
	// or only a password for requirepass).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// SentinelPassword authenticates with the Sentinels, when they require
	// one.
	SentinelPassword string `json:"sentinel_password,omitempty"`
	// DB is the database number (single and sentinel; a cluster has only
	// 0). Nil keeps the URL's, else 0.
	DB *int `json:"db,omitempty"`
	// TLS encrypts connections when Enabled (or with a rediss:// URL).
	TLS TLS `json:"tls,omitzero"`

	// URL is redis://[user:password@]host:port/db, or rediss:// for TLS
	// (alias for a single server).
	URL string `json:"url,omitempty"`
	// Address is host:port (alias for Addresses: [Address]).
	Address string `json:"address,omitempty"`
}

// TLS configures encrypted connections.
type TLS struct {
	// Enabled turns TLS on. Default false (true with a rediss:// URL).
	Enabled bool `json:"enabled,omitempty"`
	// CAFile is a PEM bundle of the CAs to trust; empty: the system pool.
	CAFile string `json:"ca_file,omitempty"`
	// CertFile and KeyFile are a PEM client certificate and key, for
	// mutual TLS; both or neither.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// ServerName overrides the name verified in the server's certificate.
	ServerName string `json:"server_name,omitempty"`
	// InsecureSkipVerify disables certificate verification (tests only).
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// Timeouts applied unless a [Profile] sets others.
const (
	DialTimeout = 2 * time.Second
	IOTimeout   = time.Second
)

// Profile is how a feature wants its client to behave.
type Profile struct {
	// DialTimeout and IOTimeout bound connecting and each command; zero
	// takes [DialTimeout] and [IOTimeout].
	DialTimeout, IOTimeout time.Duration
	// MaxRetries is go-redis's command retry count (-1: never retry, for
	// scripts that must not run twice).
	MaxRetries int
}

// Validate reports every problem of c, each prefixed with path (the
// block's place in the YAML, like "features.rate_limiting.redis"). Errors
// never quote a URL or a password.
func (c Config) Validate(path string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		p := path
		if field != "" {
			p += "." + field
		}
		errs = append(errs, fmt.Errorf("%s: %s", p, fmt.Sprintf(format, args...)))
	}
	switch c.Mode {
	case "", ModeSingle, ModeSentinel, ModeCluster:
	default:
		bad("mode", "must be %q, %q or %q, got %q", ModeSingle, ModeSentinel, ModeCluster, c.Mode)
	}
	if c.URL != "" {
		if _, err := redis.ParseURL(c.URL); err != nil {
			// The parser's message may quote the URL, password included.
			bad("url", "not a valid redis:// or rediss:// URL")
		}
	}
	addrs := c.addresses()
	switch {
	case len(addrs) == 0 && c.URL == "":
		bad("", "url, address or addresses is required")
	case c.mode() == ModeSingle && len(addrs) > 1:
		bad("addresses", "mode %q takes one address, got %d", ModeSingle, len(addrs))
	}
	if c.mode() == ModeSentinel && c.MasterName == "" {
		bad("master_name", "is required with mode %q", ModeSentinel)
	}
	if c.DB != nil && *c.DB < 0 {
		bad("db", "must not be negative, got %d", *c.DB)
	}
	if c.mode() == ModeCluster && c.DB != nil && *c.DB != 0 {
		bad("db", "must be 0 with mode %q (a cluster has one database)", ModeCluster)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	return errors.Join(errs...)
}

func (c Config) mode() string {
	if c.Mode == "" {
		return ModeSingle
	}
	return c.Mode
}

// addresses merges Addresses, the URL's host and Address.
func (c Config) addresses() []string {
	out := slices.Clone(c.Addresses)
	if c.URL != "" {
		if o, err := redis.ParseURL(c.URL); err == nil && !slices.Contains(out, o.Addr) && c.Address == "" && len(c.Addresses) == 0 {
			out = append(out, o.Addr)
		}
	}
	if c.Address != "" && !slices.Contains(out, c.Address) {
		out = append(out, c.Address)
	}
	return out
}

// universal resolves c to go-redis universal options with p applied.
func (c Config) universal(p Profile) (*redis.UniversalOptions, error) {
	if err := c.Validate("redis"); err != nil {
		return nil, err
	}
	o := &redis.UniversalOptions{}
	if c.URL != "" {
		u, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, errors.New("redis url: not a valid redis:// or rediss:// URL")
		}
		o.Username, o.Password, o.DB, o.TLSConfig = u.Username, u.Password, u.DB, u.TLSConfig
	}
	o.Addrs = c.addresses()
	o.MasterName = c.MasterName
	if c.Username != "" {
		o.Username = c.Username
	}
	if c.Password != "" {
		o.Password = c.Password
	}
	o.SentinelPassword = c.SentinelPassword
	if c.DB != nil {
		o.DB = *c.DB
	}
	if c.TLS.Enabled || c.TLS.CAFile != "" || c.TLS.CertFile != "" {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		o.TLSConfig = tc
	}
	o.DialTimeout = cmpOr(p.DialTimeout, DialTimeout)
	o.ReadTimeout = cmpOr(p.IOTimeout, IOTimeout)
	o.WriteTimeout = o.ReadTimeout
	o.MaxRetries = p.MaxRetries
	o.DisableIdentity = true
	return o, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (t TLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in, documented for tests only
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("redis tls ca_file: no PEM certificate found")
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// NewClient returns a new client for c and p: a *redis.Client for single,
// a Sentinel failover *redis.Client for sentinel, a *redis.ClusterClient
// for cluster. It dials lazily.
func (c Config) NewClient(p Profile) (redis.UniversalClient, error) {
	o, err := c.universal(p)
	if err != nil {
		return nil, err
	}
	switch c.mode() {
	case ModeCluster:
		co := o.Cluster()
		co.DialerRetries = 1
		return redis.NewClusterClient(co), nil
	case ModeSentinel:
		fo := o.Failover()
		fo.DialerRetries = 1
		return redis.NewFailoverClient(fo), nil
	default:
		so := o.Simple()
		so.DialerRetries = 1
		return redis.NewClient(so), nil
	}
}

// IsCluster reports whether c describes a Redis Cluster.
func (c Config) IsCluster() bool { return c.mode() == ModeCluster }

// Describe names the deployment for logs, without secrets:
// "single 127.0.0.1:6379", "sentinel mymaster via a:26379,b:26379".
func (c Config) Describe() string {
	addrs := strings.Join(c.addresses(), ",")
	if c.mode() == ModeSentinel {
		return ModeSentinel + " " + c.MasterName + " via " + addrs
	}
	return c.mode() + " " + addrs
}

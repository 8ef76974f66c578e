package redisconf

import (
	"encoding/json"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Shared hands out one client per distinct (configuration, profile), so
// features pointed at the same Redis share its connection pool. Clients are
// reference counted: each [Shared.Client] must be matched by closing the
// returned client, and the underlying client closes with the last one.
// The zero value is ready; it is safe for concurrent use.
type Shared struct {
	mu      sync.Mutex
	clients map[string]*sharedEntry
}

type sharedEntry struct {
	client redis.UniversalClient
	refs   int
}

// Default is the process-wide registry the features use.
var Default = &Shared{}

// Client returns the shared client of c and p, creating it on first use.
// Close the returned value when done (it closes the client only when no
// other holder remains); Unwrap gives the go-redis client.
func (s *Shared) Client(c Config, p Profile) (*Client, error) {
	key, err := json.Marshal(struct {
		C Config
		P Profile
	}{c, p})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.clients[string(key)]
	if e == nil {
		cl, err := c.NewClient(p)
		if err != nil {
			return nil, err
		}
		if s.clients == nil {
			s.clients = make(map[string]*sharedEntry)
		}
		e = &sharedEntry{client: cl}
		s.clients[string(key)] = e
	}
	e.refs++
	return &Client{UniversalClient: e.client, release: func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		e.refs--
		if e.refs > 0 {
			return nil
		}
		delete(s.clients, string(key))
		return e.client.Close()
	}}, nil
}

// Len is the number of distinct clients open, for tests.
func (s *Shared) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Client is one holder's handle on a shared client.
type Client struct {
	redis.UniversalClient
	once    sync.Once
	release func() error
	err     error
}

// Close releases this holder's reference; the last one closes the client.
// A second Close does nothing.
func (c *Client) Close() error {
	c.once.Do(func() { c.err = c.release() })
	return c.err
}

// Unwrap returns the go-redis client (a *redis.Client or a
// *redis.ClusterClient).
func (c *Client) Unwrap() redis.UniversalClient { return c.UniversalClient }

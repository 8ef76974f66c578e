package keys

import (
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of [NewFailureLimiter].
const (
	// DefaultFailureBurst is how many failed lookups a client may make at
	// once.
	DefaultFailureBurst = 10
	// DefaultFailureRefill is how long a client waits to earn back one
	// failed lookup (10 per minute sustained).
	DefaultFailureRefill = 6 * time.Second
	// DefaultMaxClients bounds the clients tracked.
	DefaultMaxClients = 100_000
)

// FailureLimiter is a token bucket of failed key lookups per client IP:
// each failure takes a token, tokens come back one per refill interval up
// to burst, and a client with no token left is refused before its key is
// looked at. Clients that never failed cost no memory. When maxClients
// are tracked, buckets that have refilled are dropped, and if none has,
// an arbitrary one. Safe for concurrent use.
type FailureLimiter struct {
	burst   float64
	refill  time.Duration
	max     int
	mu      sync.Mutex
	clients map[string]*failBucket
	// tracked mirrors len(clients) so Allow skips the lock while no client
	// has failed.
	tracked atomic.Int64
}

type failBucket struct {
	tokens float64
	at     time.Time
}

// NewFailureLimiter returns a limiter; zero or negative arguments take the
// defaults.
func NewFailureLimiter(burst int, refill time.Duration, maxClients int) *FailureLimiter {
	if burst <= 0 {
		burst = DefaultFailureBurst
	}
	if refill <= 0 {
		refill = DefaultFailureRefill
	}
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	return &FailureLimiter{burst: float64(burst), refill: refill, max: maxClients, clients: map[string]*failBucket{}}
}

func (l *FailureLimiter) level(b *failBucket, now time.Time) float64 {
	t := b.tokens + float64(now.Sub(b.at))/float64(l.refill)
	return min(t, l.burst)
}

// Allow reports whether ip may attempt a lookup at now.
func (l *FailureLimiter) Allow(ip string, now time.Time) bool {
	if l.tracked.Load() == 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.clients[ip]
	return !ok || l.level(b, now) >= 1
}

// Fail records a failed lookup by ip at now.
func (l *FailureLimiter) Fail(ip string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.clients[ip]
	if !ok {
		if len(l.clients) >= l.max {
			l.evict(now)
		}
		b = &failBucket{tokens: l.burst, at: now}
		l.clients[ip] = b
		l.tracked.Store(int64(len(l.clients)))
	}
	b.tokens = max(l.level(b, now)-1, 0)
	b.at = now
}

func (l *FailureLimiter) evict(now time.Time) {
	defer func() { l.tracked.Store(int64(len(l.clients))) }()
	for ip, b := range l.clients {
		if l.level(b, now) >= l.burst {
			delete(l.clients, ip)
		}
	}
	for ip := range l.clients {
		if len(l.clients) < l.max {
			return
		}
		delete(l.clients, ip)
	}
}

// Tracked returns the number of clients with a bucket.
func (l *FailureLimiter) Tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

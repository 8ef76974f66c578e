package costlog

import "time"

// Clock supplies the timers the [Writer] uses, so tests can drive batching
// and retry backoff without sleeping. [SystemClock] is the real one.
type Clock interface {
	// Ticker returns a channel that receives every d and a function that
	// stops it.
	Ticker(d time.Duration) (c <-chan time.Time, stop func())
	// After returns a channel that receives once after d.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the [Clock] of package time.
type SystemClock struct{}

// Ticker wraps [time.NewTicker].
func (SystemClock) Ticker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// After wraps [time.After].
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

package costlog

import (
	"context"
	"fmt"
)

// Sink stores batches of records. The [Writer] calls Write from one
// goroutine at a time, in enqueue order, and retries a failed batch, so a
// sink may see a batch again after a partial failure (at-least-once
// delivery; RequestID identifies duplicates). Write must not keep batch
// after it returns, and should return promptly when ctx is done.
type Sink interface {
	// Write stores every record of batch, or returns an error. A nil error
	// acknowledges the whole batch as durably handed over.
	Write(ctx context.Context, batch []Record) error
	// Close releases the sink's resources. The Writer calls it once, after
	// its last Write.
	Close(ctx context.Context) error
}

// Reopener is implemented by sinks that reopen their output, for example
// a file after log rotation. [Writer.Reopen] calls it on every sink that
// implements it.
type Reopener interface {
	Reopen() error
}

// sinkName returns a sink's name for errors and logs: its Name method
// when it has one, else its type.
func sinkName(s Sink) string {
	if n, ok := s.(interface{ Name() string }); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", s)
}

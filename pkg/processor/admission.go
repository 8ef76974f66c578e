package processor

import (
	"context"
	"sync"
)

// answer is one guard's Admit result.
type answer struct {
	ticket Ticket
	reply  *Reply
	err    error
}

// maxBatch bounds the guards admitted at once; longer runs are split.
const maxBatch = 8

// remoteFlags appends to dst whether each guard is remote for c (asked once
// per guard and admission).
func remoteFlags(dst []bool, guards []Guard, c *Call) []bool {
	for _, g := range guards {
		rg, ok := g.(RemoteGuard)
		dst = append(dst, ok && rg.Remote(c))
	}
	return dst
}

// batchEnd returns the end of the guards to admit together from number i,
// given remoteFlags: the run of consecutive remote guards, or i+1 when
// guard i is not remote or is remote alone.
func batchEnd(remote []bool, i int) int {
	j := i
	for j < len(remote) && j-i < maxBatch && remote[j] {
		j++
	}
	return max(j, i+1)
}

// admitBatch runs Admit of every guard in gs on c and returns the answers
// in order: the first guard on this goroutine, the others at the same time
// on their own.
func admitBatch(ctx context.Context, gs []Guard, c *Call) []answer {
	out := make([]answer, len(gs))
	admit := func(k int) {
		t, r, err := gs[k].Admit(ctx, c)
		out[k] = answer{ticket: t, reply: r, err: err}
	}
	var wg sync.WaitGroup
	for k := 1; k < len(gs); k++ {
		wg.Go(func() { admit(k) })
	}
	admit(0)
	wg.Wait()
	return out
}

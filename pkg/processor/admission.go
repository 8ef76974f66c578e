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

// batchEnd returns the end of the guards to admit together from guards[i]:
// the run of consecutive guards remote for c, or i+1 when guards[i] is not
// remote or is remote alone.
func batchEnd(guards []Guard, i int, c *Call) int {
	j := i
	for j < len(guards) && j-i < maxBatch {
		rg, ok := guards[j].(RemoteGuard)
		if !ok || !rg.Remote(c) {
			break
		}
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

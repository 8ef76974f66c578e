package e2e

import (
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redistest"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/quota"
)

// Found by the fault campaign (make soak, single deployment, about one run
// in four): a reservation whose script ran in Redis but whose reply never
// reached the server, and whose one retry failed too (Redis killed right
// after executing it; an I/O timeout on a slow server is not retried at
// all), stays charged, with its marker, until its window ends: the caller
// got an error, fell back to its fail mode and holds no reservation to
// settle or release. The reservation id is known before the call, so a
// release queued for it on an error (a no-op when the script never ran:
// the marker decides) would leave nothing behind.
//
// It belongs in pkg/quota (owned by another change); it is skipped until
// the fix lands there. Set LLM_PROXY_KNOWN_BUGS=1 to run it.
func TestReserveWithLostReplyLeavesNoCharge(t *testing.T) {
	if os.Getenv("LLM_PROXY_KNOWN_BUGS") == "" {
		t.Skip("known bug (docs/soak.md, findings): a Reserve whose reply is lost stays charged; LLM_PROXY_KNOWN_BUGS=1 runs it")
	}
	s := redistest.Start(t)
	p := startLossyProxy(t, s.Addr)
	metrics := []quota.Metric{{Field: "r"}}
	store := quota.NewRedis(redis.NewClient(&redis.Options{Addr: p.addr, MaxRetries: -1}), metrics,
		quota.RedisOptions{Prefix: "lost:"})
	t.Cleanup(func() { _ = store.Close() })
	now := time.Now()
	check := quota.Check{Scope: "user:lost", Window: quota.Day, Index: quota.Day.Index(now), Limits: []int64{10}}

	// One call first: the connection is open and the script loaded, so the
	// next reply is the reservation's.
	warm := check
	warm.Scope = "user:warm"
	_, err := store.Reserve(t.Context(), []quota.Check{warm}, []int64{1}, now)
	require.NoError(t, err)

	p.dropNextReply.Store(true)
	_, err = store.Reserve(t.Context(), []quota.Check{check}, []int64{1}, now)
	require.ErrorIs(t, err, quota.ErrUnavailable, "the reply was lost and the retry found Redis down")

	admin := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = admin.Close() })
	key := "lost:{user:lost}:d:" + strconv.FormatInt(check.Index, 10)
	used, err := admin.HGet(t.Context(), key, "r").Int64()
	require.NoError(t, err)
	require.EqualValues(t, 1, used, "the script ran: Redis charged the reservation")

	// Redis answers again; whatever the store queued lands.
	p.down.Store(false)
	store.RetryNow()
	require.Zero(t, store.RetryPending(t.Context()))
	markers, err := admin.Keys(t.Context(), "lost:{user:lost}:res:*").Result()
	require.NoError(t, err)
	require.Empty(t, markers, "no reservation left pending")
	used, err = admin.HGet(t.Context(), key, "r").Int64()
	require.NoError(t, err)
	require.Zero(t, used, "nothing charged for a reservation nobody holds")
}

// lossyProxy forwards TCP to Redis; armed, it lets the next command through
// and cuts the client's connection instead of delivering the reply, then
// refuses connections (Redis "down") until down is cleared.
type lossyProxy struct {
	addr          string
	dropNextReply atomic.Bool
	down          atomic.Bool
}

func startLossyProxy(t *testing.T, target string) *lossyProxy {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &lossyProxy{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.down.Load() {
				_ = c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			wg.Go(func() { _, _ = io.Copy(up, c); _ = up.Close() })
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := up.Read(buf)
					if err != nil {
						return
					}
					if p.dropNextReply.CompareAndSwap(true, false) {
						p.down.Store(true)
						return // the command ran; its reply is lost with the connection
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			})
		}
	})
	return p
}

package quota_test

import (
	"io"
	"net"
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

// TestReserveWithLostReplyLeavesNoCharge is the fault campaign's finding
// (make soak, single deployment, about one run in four): a reservation
// whose script ran in Redis but whose reply never reached the server, and
// whose one retry failed too (Redis killed right after executing it; an I/O
// timeout is not retried at all), stayed charged with its marker until its
// window ended, while the caller, given an error, held nothing to settle or
// release. Reserve now queues a release for every slot that answered with
// an error; the marker makes it a no-op where the script never ran.
func TestReserveWithLostReplyLeavesNoCharge(t *testing.T) {
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

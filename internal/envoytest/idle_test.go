package envoytest

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"github.com/stretchr/testify/require"
)

// per_try_idle_timeout keeps running after the response headers: a stream
// that stalls longer than it after its first event is cut mid-response (the
// client sees a truncated body), unlike the per-try timeout. The timeout is
// real but nothing else can end the stall, so the test does not race it.
func TestPerTryIdleTimeoutCutsAStalledStream(t *testing.T) {
	rec := &recorder{}
	_, addr := startProc(t, respond(rec, nil))
	up := startUpstream(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "data: 1\n\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // stalls until Envoy gives up
	})
	cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_NONE))
	cfg.Routes[0].Retry = &RetryPolicy{RetryOn: "5xx,reset", NumRetries: 2, PerTryTimeout: 20 * time.Millisecond, PerTryIdleTimeout: 50 * time.Millisecond}
	f, s := startFront(t, cfg)
	resp, body, err := do(t, "GET", s.URL+"/x", "", nil)
	require.NoError(t, nilIfResp(resp, err))
	require.Equal(t, 200, resp.StatusCode)
	require.Error(t, err, "the stream is cut")
	require.Equal(t, "data: 1\n\n", body)
	e := waitLog(t, f, 1)[0]
	require.Equal(t, "upstream_per_try_idle_timeout", e.Details)
	require.Equal(t, "UT", e.ResponseFlags)
	require.True(t, e.Reset)
	require.Equal(t, 1, e.Attempts, "no retry once the response started")
}

// nilIfResp hides the body error of a response that did arrive.
func nilIfResp(resp *http.Response, err error) error {
	if resp != nil {
		return nil
	}
	return err
}

// fakeTimers records per_try_idle_timeout timers; fire runs the latest one.
type fakeTimers struct {
	mu    sync.Mutex
	arms  []time.Duration
	fires []func()
}

func (ft *fakeTimers) afterFunc(d time.Duration, f func()) func() bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.arms = append(ft.arms, d)
	ft.fires = append(ft.fires, f)
	return func() bool { return true }
}

func (ft *fakeTimers) count() int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return len(ft.arms)
}

func (ft *fakeTimers) fire(i int) {
	ft.mu.Lock()
	f := ft.fires[i]
	ft.mu.Unlock()
	f()
}

// The idle timer is armed when the request completes and re-armed on the
// response headers and each body chunk; only the latest arming counts (an
// earlier expiry is stale), and the latest one cuts the stream.
func TestPerTryIdleTimeoutRearmedOnEachChunk(t *testing.T) {
	rec := &recorder{}
	_, addr := startProc(t, respond(rec, nil))
	ft := &fakeTimers{}
	chunk := make(chan struct{})
	up := startUpstream(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		for i := 0; i < 3; i++ {
			select {
			case <-chunk:
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(w, "data: x\n\n")
			http.NewResponseController(w).Flush()
		}
		<-r.Context().Done()
	})
	cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_NONE))
	cfg.Routes[0].Retry = &RetryPolicy{RetryOn: "5xx", PerTryIdleTimeout: time.Minute}
	cfg.afterFunc = ft.afterFunc
	handled := make(chan struct{}, 8)
	cfg.onEvent = func(ev any) {
		if e, ok := ev.(evUpData); ok && len(e.data) > 0 {
			handled <- struct{}{}
		}
	}
	f, s := startFront(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/x", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 2, ft.count(), "armed at request end and re-armed on the response headers")
	for i := 0; i < 3; i++ {
		chunk <- struct{}{}
		<-handled
		require.Equal(t, 3+i, ft.count(), "re-armed on body chunk %d", i+1)
	}
	require.Equal(t, []time.Duration{time.Minute}, ft.arms[:1])
	ft.fire(1) // a stale timer: ignored
	ft.fire(ft.count() - 1)
	b, err := io.ReadAll(resp.Body)
	require.Error(t, err, "the latest expiry cuts the stream")
	require.Equal(t, "data: x\n\ndata: x\n\ndata: x\n\n", string(b))
	e := waitLog(t, f, 1)[0]
	require.Equal(t, "upstream_per_try_idle_timeout", e.Details)
}

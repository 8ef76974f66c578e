package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// longOptions configure the long-streams mode: many streamed responses
// held open at once, a chunk on each every interval.
type longOptions struct {
	extproc, base string
	streams       int           // streams held open at once
	hold          time.Duration // how long each stays open once all are open
	interval      time.Duration // between two chunks of one stream
	conns         int           // gRPC connections the streams share
}

// longResult is one server's figures in the long-streams mode.
type longResult struct {
	openRSS, baseRSS, afterRSS int64   // resident bytes: all open (end of the measured window), before, after
	growth                     int64   // resident bytes gained across the measured window
	cpuPerChunk                float64 // µs of server CPU per chunk in the measured window
	chunkRate, targetRate      float64 // chunks per second achieved and asked for
	gorBase, gorOpen, gorAfter int     // server goroutines (ours only; -1 when unknown)
	failed                     int64   // streams that did not complete
}

// longStreams holds o.streams SSE responses open through the null server
// and through ours (every guard on, memory backends), one server after the
// other, and prints resident memory per open stream, CPU per chunk, the
// memory growth while chunks flow, and the goroutines left once the
// streams have ended.
func longStreams(o longOptions) error {
	dir, err := os.MkdirTemp("", "bench-long-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	overlay := filepath.Join(dir, "memory.yml")
	if err := os.WriteFile(overlay, []byte(ruleOverlay("memory", dir, "")), 0o600); err != nil {
		return err
	}
	fmt.Printf("# bench-load long streams: %d SSE responses open at once over %d connections, a chunk every %s each, held %s; measured over the middle half\n",
		o.streams, o.conns, o.interval, o.hold)
	fmt.Printf("%-15s %12s %12s %12s %11s %10s %16s %18s %7s\n",
		"server", "RSS-base-MiB", "RSS-open-MiB", "KiB/stream", "growth-KiB", "µs/chunk", "chunks/s (asked)", "goroutines b/o/a", "failed")
	var res [2]longResult
	for i, name := range []string{"null", "extproc/memory"} {
		var p *proc
		if i == 0 {
			p, err = startNull()
		} else {
			p, err = startExtproc(o.extproc, o.base, overlay, name, nil)
		}
		if err != nil {
			return err
		}
		res[i], err = holdStreams(p, o)
		p.close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r := res[i]
		fmt.Printf("%-15s %12.1f %12.1f %12.1f %11.0f %10.1f %8.0f (%5.0f) %6d/%5d/%5d %7d\n", name,
			mib(r.baseRSS), mib(r.openRSS), float64(r.openRSS-r.baseRSS)/1024/float64(o.streams), float64(r.growth)/1024,
			r.cpuPerChunk, r.chunkRate, r.targetRate, r.gorBase, r.gorOpen, r.gorAfter, r.failed)
	}
	null, ours := res[0], res[1]
	fmt.Printf("# ours/null: KiB per open stream %.2f×, CPU per chunk %.2f×\n",
		float64(ours.openRSS-ours.baseRSS)/float64(max(null.openRSS-null.baseRSS, 1)), ours.cpuPerChunk/max(null.cpuPerChunk, 1e-9))
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// holdStreams opens o.streams streams on p, lets them send chunks for
// o.hold, ends them and measures p along the way.
func holdStreams(p *proc, o longOptions) (longResult, error) {
	r := longResult{gorBase: -1, gorOpen: -1, gorAfter: -1}
	clients := make([]extprocv3.ExternalProcessorClient, o.conns)
	for i := range clients {
		conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return r, err
		}
		defer conn.Close()
		clients[i] = extprocv3.NewExternalProcessorClient(conn)
	}
	// Warm-up: connections, pools and the server's first allocations.
	sse := sseLifecycle()
	for i := range 200 {
		if _, err := lifecycle(clients[i%len(clients)], sse); err != nil {
			return r, fmt.Errorf("warm-up: %w", err)
		}
	}
	open, chunk, last := sse[:3], sse[4], sse[len(sse)-1]
	var err error
	if r.baseRSS, err = rss(p); err != nil {
		return r, err
	}
	r.gorBase = goroutines(p)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		opened, done sync.WaitGroup
		start        = make(chan struct{})
		stop         = make(chan struct{})
		chunks       atomic.Int64
		failed       atomic.Int64
		firstErr     atomic.Value
		gate         = make(chan struct{}, 256) // streams being opened at once
	)
	for i := range o.streams {
		opened.Add(1)
		done.Add(1)
		phase := o.interval * time.Duration(i) / time.Duration(o.streams) // spread the chunks evenly
		go func() {
			defer done.Done()
			err := holdOne(ctx, clients[i%len(clients)], open, chunk, last, &opened, gate, start, stop, phase, o.interval, &chunks)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	opened.Wait()
	if e, ok := firstErr.Load().(error); ok {
		cancel()
		done.Wait()
		return r, fmt.Errorf("opening the streams: %w", e)
	}
	close(start)
	time.Sleep(o.hold / 4)
	cpuA, err := p.cpu()
	if err != nil {
		return r, err
	}
	rssA, err := rss(p)
	if err != nil {
		return r, err
	}
	chunksA, tA := chunks.Load(), time.Now()
	time.Sleep(o.hold / 2)
	cpuB, err := p.cpu()
	if err != nil {
		return r, err
	}
	if r.openRSS, err = rss(p); err != nil {
		return r, err
	}
	r.gorOpen = goroutines(p)
	chunksB, el := chunks.Load(), time.Since(tA)
	time.Sleep(o.hold / 4)
	close(stop)
	done.Wait()

	n := max(chunksB-chunksA, 1)
	r.growth = r.openRSS - rssA
	r.cpuPerChunk = float64((cpuB - cpuA).Microseconds()) / float64(n)
	r.chunkRate = float64(n) / el.Seconds()
	r.targetRate = float64(o.streams) / o.interval.Seconds()
	r.failed = failed.Load()
	// Goroutines a stream started must end with it: wait (bounded) for the
	// count to come back to where it was.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r.gorAfter = goroutines(p)
		if r.gorAfter <= r.gorBase || time.Now().After(deadline) {
			break
		}
	}
	if r.afterRSS, err = rss(p); err != nil {
		return r, err
	}
	if e, ok := firstErr.Load().(error); ok {
		return r, e
	}
	return r, nil
}

// holdOne plays one streamed response: the request and the response
// headers, then a chunk every interval (after phase) until stop, then the
// last chunk with usage and end of stream.
func holdOne(ctx context.Context, c extprocv3.ExternalProcessorClient, open []*extprocv3.ProcessingRequest, chunk, last *extprocv3.ProcessingRequest,
	opened *sync.WaitGroup, gate chan struct{}, start, stop <-chan struct{}, phase, interval time.Duration, chunks *atomic.Int64) error {
	gate <- struct{}{}
	s, err := c.Process(ctx)
	if err == nil {
		for _, m := range open {
			if err = exchange(s, m); err != nil {
				break
			}
		}
	}
	<-gate
	opened.Done()
	if err != nil {
		return err
	}
	<-start
	t := time.NewTimer(phase)
	defer t.Stop()
	for {
		select {
		case <-stop:
			if err := exchange(s, last); err != nil {
				return err
			}
			_ = s.CloseSend()
			if _, err := s.Recv(); !errors.Is(err, io.EOF) {
				return fmt.Errorf("stream not ended by the server: %v", err)
			}
			return nil
		case <-t.C:
			if err := exchange(s, chunk); err != nil {
				return err
			}
			chunks.Add(1)
			t.Reset(interval)
		}
	}
}

func exchange(s extprocv3.ExternalProcessor_ProcessClient, m *extprocv3.ProcessingRequest) error {
	if err := s.Send(m); err != nil {
		return err
	}
	resp, err := s.Recv()
	if err != nil {
		return err
	}
	if resp.GetImmediateResponse() != nil {
		return fmt.Errorf("immediate response %v", resp.GetImmediateResponse().GetStatus())
	}
	return nil
}

// rss returns the child's resident set size from /proc/<pid>/status.
func rss(p *proc) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// goroutines reads go_goroutines from the server's /metrics; -1 when the
// server has none (the null server).
func goroutines(p *proc) int {
	if p.admin == "" {
		return -1
	}
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return int(n)
			}
		}
	}
	return -1
}

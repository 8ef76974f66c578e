package bench

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// kinds are the servers compared: the do-nothing baseline first.
var kinds = []string{"null", "extproc"}

const (
	// warmup is the number of lifecycles played before timing, to open the
	// connection and fill pools.
	warmup = 200
	// batch is the number of lifecycles per server before the ratio
	// benchmarks switch to the other one.
	batch = 64
	// conc is the number of lifecycles in flight in the concurrent variants.
	conc = 8
)

// play runs n lifecycles on d with at most workers in flight and stores each
// one's latency in lat (len(lat) >= n).
func play(ctx context.Context, d *driver, n, workers int, lat []time.Duration) error {
	if workers <= 1 {
		for i := range n {
			l, err := d.run(ctx)
			if err != nil {
				return err
			}
			lat[i] = l
		}
		return nil
	}
	var (
		next int64 = -1
		wg   sync.WaitGroup
		once sync.Once
		err  error
	)
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= n {
					return
				}
				l, e := d.run(ctx)
				if e != nil {
					once.Do(func() { err = e })
					return
				}
				lat[i] = l
			}
		})
	}
	wg.Wait()
	return err
}

// quantile returns the q-quantile (nearest rank) of lat, sorting it.
func quantile(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	i := int(math.Ceil(q*float64(len(lat)))) - 1
	return lat[max(0, min(i, len(lat)-1))]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func warm(b *testing.B, d *driver) {
	b.Helper()
	if err := play(context.Background(), d, warmup, 1, make([]time.Duration, warmup)); err != nil {
		b.Fatal(err)
	}
}

// benchLifecycle times b.N lifecycles against an in-process server of the
// given kind, workers at a time. It reports latency percentiles and the CPU
// time of the whole process (client and server) per lifecycle.
func benchLifecycle(b *testing.B, kind string, workers int) {
	d := startInProcess(b, kind)
	warm(b, d)
	lat := make([]time.Duration, b.N)
	cpu0 := processCPU()
	b.ResetTimer()
	if err := play(context.Background(), d, b.N, workers, lat); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu := processCPU() - cpu0
	b.ReportMetric(micros(quantile(lat, 0.50)), "p50-µs")
	b.ReportMetric(micros(quantile(lat, 0.99)), "p99-µs")
	b.ReportMetric(micros(cpu)/float64(b.N), "cpu-µs/op")
}

// BenchmarkLifecycle plays one request lifecycle at a time against the null
// server and against ours wired as in production. Server and client share
// the process: the extproc−null differences in ns/op, allocs/op, B/op and
// cpu-µs/op are our server's own cost, and -cpuprofile sees it.
func BenchmarkLifecycle(b *testing.B) {
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) { benchLifecycle(b, kind, 1) })
	}
}

// BenchmarkLifecycleConc8 is BenchmarkLifecycle with 8 lifecycles in flight
// on the one connection; ns/op is then wall time over lifecycles (inverse
// throughput) and the percentiles are per-lifecycle latencies under load.
func BenchmarkLifecycleConc8(b *testing.B) {
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) { benchLifecycle(b, kind, conc) })
	}
}

// BenchmarkLifecycleRatio compares ours to the null server in one run: both
// serve from their own child process (so each one's CPU time is measured
// alone), and batches of lifecycles alternate between them, the order
// swapping every round, so drift in machine load falls on both alike. One op
// is one lifecycle on each server. It reports median-ratio and p99-ratio
// (latency ours/null; targets <= 1.25 and <= 1.5), cpu-ratio (server CPU
// ours/null) and the underlying per-server numbers.
func BenchmarkLifecycleRatio(b *testing.B) {
	for _, c := range []struct {
		name    string
		workers int
	}{{"c1", 1}, {"c8", conc}} {
		b.Run(c.name, func(b *testing.B) { benchRatio(b, c.workers, "null", "extproc") })
	}
}

// BenchmarkCostOverhead compares our server with cost tracking on (every
// request priced, a cost record queued for the file sink, a ledger entry
// for /usage) against the same server without it, in one run, as
// BenchmarkLifecycleRatio does; the budget is at most 5 % more.
func BenchmarkCostOverhead(b *testing.B) {
	b.Run("c1", func(b *testing.B) { benchRatio(b, 1, "extproc", "extproc+cost") })
}

func benchRatio(b *testing.B, workers int, baseKind, oursKind string) {
	null, ours := startChild(b, baseKind), startChild(b, oursKind)
	warm(b, null.driver)
	warm(b, ours.driver)
	ctx := context.Background()
	latNull, latOurs := make([]time.Duration, b.N), make([]time.Duration, b.N)
	cpuNull0, err := null.cpu()
	if err != nil {
		b.Fatal(err)
	}
	cpuOurs0, err := ours.cpu()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for done, round := 0, 0; done < b.N; round++ {
		k := min(batch, b.N-done)
		runs := []struct {
			d   *driver
			lat []time.Duration
		}{{null.driver, latNull[done:]}, {ours.driver, latOurs[done:]}}
		if round%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, r := range runs {
			if err := play(ctx, r.d, k, workers, r.lat); err != nil {
				b.Fatal(err)
			}
		}
		done += k
	}
	b.StopTimer()
	cpuNull1, err := null.cpu()
	if err != nil {
		b.Fatal(err)
	}
	cpuOurs1, err := ours.cpu()
	if err != nil {
		b.Fatal(err)
	}
	n50, n99 := quantile(latNull, 0.50), quantile(latNull, 0.99)
	o50, o99 := quantile(latOurs, 0.50), quantile(latOurs, 0.99)
	cpuNull, cpuOurs := cpuNull1-cpuNull0, cpuOurs1-cpuOurs0
	b.ReportMetric(float64(o50)/float64(n50), "median-ratio")
	b.ReportMetric(float64(o99)/float64(n99), "p99-ratio")
	if cpuNull > 0 {
		b.ReportMetric(float64(cpuOurs)/float64(cpuNull), "cpu-ratio")
	}
	b.ReportMetric(micros(n50), baseKind+"-p50-µs")
	b.ReportMetric(micros(o50), oursKind+"-p50-µs")
	b.ReportMetric(micros(n99), baseKind+"-p99-µs")
	b.ReportMetric(micros(o99), oursKind+"-p99-µs")
	b.ReportMetric(micros(cpuNull)/float64(b.N), baseKind+"-srv-cpu-µs/op")
	b.ReportMetric(micros(cpuOurs)/float64(b.N), oursKind+"-srv-cpu-µs/op")
}

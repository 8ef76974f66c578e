// Command load is a load generator that compares the extproc server, built
// as cmd/extproc builds it, with the null ext_proc server (bench.Null) under
// concurrency. Both run as child processes; rounds alternate between them
// in the same run so that noise from other work on the machine hits both,
// and every figure is reported with its ratio to null (median of the
// per-round ratios).
//
// For each rule set, concurrency and lifecycle it prints the server CPU per
// lifecycle (utime+stime of the child from /proc, clock ticks), p50 and p99
// of the lifecycle latency (open stream to last reply) and throughput.
//
// Usage (see `make bench-load`):
//
//	go build -o /tmp/extproc ./cmd/extproc
//	go run ./bench/load -extproc /tmp/extproc -rounds 5 -round 2s
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/bench"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/processor"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type options struct {
	extproc    string
	rounds     int
	round      time.Duration
	conc       []int
	rules      []string
	lifecycles []string
	base       string
	redisDelay time.Duration
	profiles   string // directory for our server's CPU profiles; "" for none
}

func run(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	serveNull := fs.Bool("serve-null", false, "internal: serve bench.Null on 127.0.0.1 and print the address")
	fs.BoolVar(&nullOurCodec, "null-our-codec", false, "give the null server our codec (processor.GRPCServerOptions: Envoy's requests decoded by hand) instead of grpc-go's standard one, so that the ratios show our message handling alone")
	var o options
	fs.StringVar(&o.extproc, "extproc", "", "path of the extproc `binary` (go build ./cmd/extproc)")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds per server and case (medians are over rounds)")
	fs.DurationVar(&o.round, "round", 2*time.Second, "duration of one round")
	conc := fs.String("conc", "1,8,32", "comma-separated concurrent Process streams")
	rules := fs.String("rules", "off,memory,redis", "rule sets: off (every feature off), memory (every guard on, memory backends), redis (every guard on, Redis backends)")
	lcs := fs.String("lifecycles", "json-cl,json-nocl,sse50", "lifecycles: json-cl, json-nocl (JSON completion with and without content-length), sse50 (SSE stream of 50 chunks)")
	fs.StringVar(&o.base, "base", "configs/base.yml", "base rule `file` the rule sets are merged onto")
	fs.DurationVar(&o.redisDelay, "redis-delay", 0, "with -rules redis: hold every chunk to and from Redis this long (a Redis across a network: each round trip takes 2× longer)")
	fs.StringVar(&o.profiles, "cpuprofile", "", "write a CPU profile of our server per case to this `directory`, taken in one extra round after the measured ones (the server runs with LLM_PROXY_PPROF=1)")
	var lo longOptions
	fs.IntVar(&lo.streams, "long-streams", 0, "instead of the comparison: hold this many streamed SSE responses open at once (see long.go)")
	fs.DurationVar(&lo.hold, "long-hold", 60*time.Second, "with -long-streams: how long every stream stays open")
	fs.DurationVar(&lo.interval, "long-interval", time.Second, "with -long-streams: time between two chunks of one stream")
	fs.IntVar(&lo.conns, "long-conns", 4, "with -long-streams: gRPC connections the streams are spread over (Envoy opens one per worker)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *serveNull {
		return serveNullChild(nullOurCodec)
	}
	if o.extproc == "" {
		return errors.New("-extproc is required")
	}
	if lo.streams > 0 {
		lo.extproc, lo.base = o.extproc, o.base
		return longStreams(lo)
	}
	for _, c := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("-conc: bad value %q", c)
		}
		o.conc = append(o.conc, n)
	}
	o.rules = strings.Split(*rules, ",")
	o.lifecycles = strings.Split(*lcs, ",")
	for _, l := range o.lifecycles {
		if _, ok := lifecycles[l]; !ok {
			return fmt.Errorf("-lifecycles: unknown %q", l)
		}
	}
	return compare(o)
}

// nullOurCodec is -null-our-codec.
var nullOurCodec bool

// serveNullChild serves bench.Null until stdin closes, with cmd/extproc's
// transport options and grpc-go's standard codec (see the bench package's
// serve), or with all of cmd/extproc's options when ourCodec is set.
func serveNullChild(ourCodec bool) error {
	opts := processor.GRPCTransportOptions()
	if ourCodec {
		opts = processor.GRPCServerOptions()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	gs := grpc.NewServer(append(opts,
		grpc.MaxConcurrentStreams(1<<16),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)...)
	extprocv3.RegisterExternalProcessorServer(gs, &bench.Null{})
	go func() { _ = gs.Serve(ln) }()
	fmt.Println(ln.Addr().String())
	_, _ = io.Copy(io.Discard, os.Stdin)
	gs.Stop()
	return nil
}

// proc is a server child process and a client connection to it.
type proc struct {
	name   string
	admin  string // admin listener address; "" for the null server
	addr   string // gRPC address
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	conn   *grpc.ClientConn
	client extprocv3.ExternalProcessorClient
}

func (p *proc) close() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(os.Interrupt)
		_ = p.cmd.Wait()
	}
}

// cpu returns the child's CPU time (user + system) from /proc/<pid>/stat.
func (p *proc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc stat %q", s)
	}
	f := strings.Fields(s[i+1:])
	// Fields after ")": state is f[0]; utime is field 14, stime 15 (1-based).
	if len(f) < 13 {
		return 0, fmt.Errorf("bad /proc stat %q", s)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc stat %q", s)
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

func dialProc(p *proc, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	p.addr, p.conn = addr, conn
	p.client = extprocv3.NewExternalProcessorClient(conn)
	return nil
}

func startNull() (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p := &proc{name: "null", cmd: exec.Command(exe, "-serve-null", fmt.Sprintf("-null-our-codec=%t", nullOurCodec))}
	p.cmd.Stderr = os.Stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		p.close()
		return nil, fmt.Errorf("null child address: %w", err)
	}
	if err := dialProc(p, strings.TrimSpace(addr)); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startExtproc runs the extproc binary with base plus overlay and waits for
// /ready.
func startExtproc(bin, base, overlay, name string, extraEnv []string) (*proc, error) {
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, admin: adminAddr, cmd: exec.Command(bin)}
	p.cmd.Env = append(os.Environ(), "GRPC_ADDR="+grpcAddr, "ADMIN_ADDR="+adminAddr,
		"LLM_PROXY_CONFIG="+base+","+overlay, "LOG_LEVEL=info", "LOG_FORMAT=json")
	p.cmd.Env = append(p.cmd.Env, extraEnv...)
	// Logs go to /dev/null: the server still formats and writes them.
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + adminAddr + "/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			p.close()
			return nil, fmt.Errorf("%s not ready on %s after 30 s (run it by hand to see its log)", name, adminAddr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := dialProc(p, grpcAddr); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// ruleOverlay returns the YAML overlay for a rule set.
func ruleOverlay(rules, dir, redisAddr string) string {
	switch rules {
	case "off":
		return "features: {}\n"
	case "memory", "redis":
		backend := "memory"
		redis := ""
		if rules == "redis" {
			backend = "redis"
			redis = fmt.Sprintf("    redis: {address: %q}\n", redisAddr)
		}
		// Limits far above what a round sends: every guard runs, none denies.
		return fmt.Sprintf(`features:
  rate_limiting:
    enabled: true
    backend: %[1]s
%[2]s    limits: {requests_per_minute: 100000000, tokens_per_minute: 100000000000, requests_per_day: 1000000000}
  circuit_breaker:
    enabled: true
    mode: enforce
    backend: %[1]s
%[2]s  cost_tracking:
    enabled: true
    sinks:
    - {type: file, file: {path: %[3]q}}
    budgets:
      enabled: true
      backend: %[1]s
%[4]s      per_key: {default: {daily_usd: 100000000, monthly_usd: 1000000000}}
`, backend, redis, filepath.Join(dir, "costs-"+rules+".jsonl"), strings.ReplaceAll(redis, "    redis", "      redis"))
	}
	return ""
}

// startRedis starts redis-server on a free loopback port; it returns "" and
// no error when redis-server is not installed.
func startRedis(dir string) (string, func(), error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", func() {}, nil
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server not listening on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result is one round against one server.
type result struct {
	n          int
	cpuPer     time.Duration
	p50, p99   time.Duration
	throughput float64 // lifecycles per second
}

// round drives conc concurrent lifecycles back to back for d.
func round(p *proc, msgs []*extprocv3.ProcessingRequest, conc int, d time.Duration) (result, error) {
	cpu0, err := p.cpu()
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		mu    sync.Mutex
		lats  []time.Duration
		first atomic.Value
		wg    sync.WaitGroup
	)
	t0 := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				lat, err := lifecycle(p.client, msgs)
				if err != nil {
					first.CompareAndSwap(nil, err)
					break
				}
				local = append(local, lat)
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	cpu1, err := p.cpu()
	if err != nil {
		return result{}, err
	}
	if e, ok := first.Load().(error); ok {
		return result{}, fmt.Errorf("%s: %w", p.name, e)
	}
	if len(lats) == 0 {
		return result{}, fmt.Errorf("%s: no lifecycle completed", p.name)
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	return result{
		n:          len(lats),
		cpuPer:     (cpu1 - cpu0) / time.Duration(len(lats)),
		p50:        lats[len(lats)/2],
		p99:        lats[len(lats)*99/100],
		throughput: float64(len(lats)) / el.Seconds(),
	}, nil
}

// lifecycle plays msgs on a fresh stream the way Envoy does (each message
// after the previous reply) and returns the time from opening the stream
// to the last reply.
func lifecycle(c extprocv3.ExternalProcessorClient, msgs []*extprocv3.ProcessingRequest) (time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	s, err := c.Process(ctx)
	if err != nil {
		return 0, err
	}
	for i, m := range msgs {
		if err := s.Send(m); err != nil {
			return 0, fmt.Errorf("send %d: %w", i, err)
		}
		resp, err := s.Recv()
		if err != nil {
			return 0, fmt.Errorf("recv %d: %w", i, err)
		}
		if resp.GetImmediateResponse() != nil {
			return 0, fmt.Errorf("reply %d: immediate response %v (a guard denied: raise the limits)", i, resp.GetImmediateResponse().GetStatus())
		}
	}
	lat := time.Since(t0)
	_ = s.CloseSend()
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("stream not ended by the server: %v", err)
	}
	return lat, nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func compare(o options) error {
	dir, err := os.MkdirTemp("", "bench-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	null, err := startNull()
	if err != nil {
		return err
	}
	defer null.close()
	fmt.Printf("# bench-load: %d rounds of %s per server, alternating; medians; ratios are median of per-round ratios vs null\n", o.rounds, o.round)
	codec := "grpc-go's standard codec"
	if nullOurCodec {
		codec = "our codec (-null-our-codec)"
	}
	fmt.Printf("# null server: cmd/extproc's transport options, %s\n", codec)
	fmt.Printf("%-7s %-9s %4s  %9s %7s  %8s %7s  %8s %7s  %9s %7s\n",
		"rules", "lifecycle", "conc", "cpu-µs/lc", "×null", "p50-µs", "×null", "p99-µs", "×null", "lc/s", "×null")
	for _, rules := range o.rules {
		var env []string
		if o.profiles != "" {
			if err := os.MkdirAll(o.profiles, 0o755); err != nil {
				return err
			}
			env = append(env, "LLM_PROXY_PPROF=1")
		}
		redisAddr := ""
		if rules == "redis" {
			addr, stop, err := startRedis(dir)
			if err != nil {
				return err
			}
			if addr == "" {
				fmt.Println("# redis: SKIPPED, redis-server not found in PATH")
				continue
			}
			defer stop()
			redisAddr = addr
			if o.redisDelay > 0 {
				p, err := startDelayProxy(addr, o.redisDelay)
				if err != nil {
					return err
				}
				defer p.Close()
				redisAddr = p.Addr()
				fmt.Printf("# redis: every chunk held %s each way\n", o.redisDelay)
			}
		}
		overlay := filepath.Join(dir, rules+".yml")
		body := ruleOverlay(rules, dir, redisAddr)
		if body == "" {
			return fmt.Errorf("-rules: unknown %q", rules)
		}
		if err := os.WriteFile(overlay, []byte(body), 0o600); err != nil {
			return err
		}
		ours, err := startExtproc(o.extproc, o.base, overlay, "extproc/"+rules, env)
		if err != nil {
			return err
		}
		for _, lc := range o.lifecycles {
			msgs := lifecycles[lc]()
			for _, c := range o.conc {
				if err := compareCase(o, null, ours, rules, lc, msgs, c); err != nil {
					ours.close()
					return err
				}
			}
		}
		ours.close()
	}
	return nil
}

func compareCase(o options, null, ours *proc, rules, lc string, msgs []*extprocv3.ProcessingRequest, conc int) error {
	// Warm-up both servers (connections, JIT-free but caches and pools).
	for _, p := range []*proc{null, ours} {
		if _, err := round(p, msgs, conc, o.round/4); err != nil {
			return err
		}
	}
	var cpu, p50, p99, thr, rcpu, rp50, rp99, rthr []float64
	for range o.rounds {
		n, err := round(null, msgs, conc, o.round)
		if err != nil {
			return err
		}
		u, err := round(ours, msgs, conc, o.round)
		if err != nil {
			return err
		}
		cpu = append(cpu, float64(u.cpuPer.Nanoseconds())/1e3)
		p50 = append(p50, float64(u.p50.Nanoseconds())/1e3)
		p99 = append(p99, float64(u.p99.Nanoseconds())/1e3)
		thr = append(thr, u.throughput)
		rcpu = append(rcpu, float64(u.cpuPer)/float64(max(n.cpuPer, 1)))
		rp50 = append(rp50, float64(u.p50)/float64(n.p50))
		rp99 = append(rp99, float64(u.p99)/float64(n.p99))
		rthr = append(rthr, u.throughput/n.throughput)
	}
	fmt.Printf("%-7s %-9s %4d  %9.1f %7.2f  %8.0f %7.2f  %8.0f %7.2f  %9.0f %7.2f\n",
		rules, lc, conc, median(cpu), median(rcpu), median(p50), median(rp50), median(p99), median(rp99), median(thr), median(rthr))
	if o.profiles != "" {
		return profileRound(o, ours, filepath.Join(o.profiles, fmt.Sprintf("%s-%s-c%d.pprof", rules, lc, conc)), msgs, conc)
	}
	return nil
}

// profileRound plays one more round against ours while taking a CPU
// profile of it from /debug/pprof/profile, and writes the profile to name.
// It is not one of the measured rounds: the profiler's own cost stays out of
// the figures.
func profileRound(o options, ours *proc, name string, msgs []*extprocv3.ProcessingRequest, conc int) error {
	secs := max(1, int(o.round.Round(time.Second)/time.Second))
	type fetched struct {
		body []byte
		err  error
	}
	done := make(chan fetched, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", ours.admin, secs))
		if err != nil {
			done <- fetched{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		done <- fetched{b, err}
	}()
	if _, err := round(ours, msgs, conc, time.Duration(secs)*time.Second+200*time.Millisecond); err != nil {
		return err
	}
	f := <-done
	if f.err != nil {
		return fmt.Errorf("cpu profile of %s: %w", ours.name, f.err)
	}
	fmt.Printf("# cpu profile: %s\n", name)
	return os.WriteFile(name, f.body, 0o644)
}

// lifecycles are the message sequences Envoy sends for one request, with
// the contract's processing mode (request body BUFFERED; the response body
// mode is switched by the server's mode_override).
var lifecycles = map[string]func() []*extprocv3.ProcessingRequest{
	"json-cl":   func() []*extprocv3.ProcessingRequest { return jsonLifecycle(true) },
	"json-nocl": func() []*extprocv3.ProcessingRequest { return jsonLifecycle(false) },
	"sse50":     sseLifecycle,
}

func requestMessages(body string) []*extprocv3.ProcessingRequest {
	h := bench.HeaderMap(
		":authority", "llm-gateway.internal.example.com",
		":path", "/openai/v1/chat/completions",
		":method", "POST",
		":scheme", "https",
		"content-type", "application/json",
		"content-length", strconv.Itoa(len(body)),
		"authorization", "Bearer sk-proj-4f9Qm2XcT7vLr8JpYz3N5bKd1HsWg6EaUo0CiFtRyP",
		"accept", "application/json",
		"accept-encoding", "gzip, deflate, br",
		"user-agent", "OpenAI/Python 1.54.4",
		"x-request-id", "7b1f4c2e-9a3d-4e8b-b6f1-2c5d8e0a9f47",
		"x-forwarded-for", "10.42.7.19",
		"x-forwarded-proto", "https",
	)
	return []*extprocv3.ProcessingRequest{
		{
			Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: h}},
			ProtocolConfig: &extprocv3.ProtocolConfiguration{
				RequestBodyMode: filterv3.ProcessingMode_BUFFERED, ResponseBodyMode: filterv3.ProcessingMode_NONE},
		},
		{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}}},
	}
}

func jsonLifecycle(withLength bool) []*extprocv3.ProcessingRequest {
	kv := []string{":status", "200", "content-type", "application/json",
		"openai-processing-ms", "1874", "x-request-id", "req_5c2b1d0e7f8a49d3b6e1c0a9f8e7d6c5",
		"x-ratelimit-remaining-requests", "29999", "server", "cloudflare"}
	if withLength {
		kv = append(kv, "content-length", strconv.Itoa(len(bench.ChatResponse)))
	}
	return append(requestMessages(bench.ChatRequest),
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: bench.HeaderMap(kv...)}}},
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(bench.ChatResponse), EndOfStream: true}}},
	)
}

// SSEChunks is the number of body chunks of the sse50 lifecycle.
const sseChunks = 50

func sseLifecycle() []*extprocv3.ProcessingRequest {
	req := strings.Replace(bench.ChatRequest, `"n":1,`, `"n":1,"stream":true,"stream_options":{"include_usage":true},`, 1)
	msgs := append(requestMessages(req),
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
			Headers: bench.HeaderMap(":status", "200", "content-type", "text/event-stream; charset=utf-8", "x-request-id", "req_5c2b")}}})
	for i := range sseChunks {
		var chunk string
		eos := i == sseChunks-1
		switch {
		case eos:
			chunk = `data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":412,"completion_tokens":48,"total_tokens":460}}` + "\n\ndata: [DONE]\n\n"
		default:
			chunk = fmt.Sprintf(`data: {"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":"word%d "},"logprobs":null,"finish_reason":null}]}`+"\n\n", i)
		}
		msgs = append(msgs, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{
			Body: []byte(chunk), EndOfStream: eos}}})
	}
	return msgs
}

package envoytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// ViolationKind classifies a protocol violation by the ext_proc server.
type ViolationKind string

// Violation kinds.
const (
	// KindSpuriousReply: reply type does not match the outstanding message, or
	// no response oneof (Envoy: fail-open close or local reply 500).
	KindSpuriousReply ViolationKind = "spurious_reply"
	// KindMessageTimeout: no reply within message_timeout (continue or 504).
	KindMessageTimeout ViolationKind = "message_timeout"
	// KindGRPCError: the server ended the stream with a non-OK status.
	KindGRPCError ViolationKind = "grpc_error"
	// KindInvalidMutation: a header mutation Envoy rejects with a 500.
	KindInvalidMutation ViolationKind = "invalid_mutation"
	// KindMutationRejected: a mutation the checker silently skipped.
	KindMutationRejected ViolationKind = "mutation_rejected"
	// KindContentLength: BUFFERED body replaced with a length different from
	// content-length (local reply 500).
	KindContentLength ViolationKind = "content_length_mismatch"
	// KindFraming: the bytes on the wire disagree with content-length.
	KindFraming ViolationKind = "framing_mismatch"
	// KindIgnoredField: a field Envoy ignores in this context.
	KindIgnoredField ViolationKind = "ignored_field"
	// KindLateReply: a reply after processing completed (ignored).
	KindLateReply ViolationKind = "late_reply"
	// KindUnsupported: something Envoy supports but this harness does not.
	KindUnsupported ViolationKind = "unsupported"
)

// Violation is one observed deviation from the ext_proc protocol as Envoy
// enforces (or silently tolerates) it.
type Violation struct {
	RequestID string
	Method    string
	Path      string
	// Attempt is 0 for the downstream ext_proc filter (and the HCM/router),
	// or the 1-based upstream attempt whose upstream ext_proc filter saw it.
	Attempt int
	Kind    ViolationKind
	Detail  string
	// Outcome is what Envoy does about it ("ignored", "local reply 500", ...).
	Outcome string
}

func (v Violation) String() string {
	where := ""
	if v.Attempt > 0 {
		where = fmt.Sprintf(" (upstream ext_proc, attempt %d)", v.Attempt)
	}
	return fmt.Sprintf("%s %s [%s]%s %s: %s -> %s", v.Method, v.Path, v.RequestID, where, v.Kind, v.Detail, v.Outcome)
}

// TB is the subset of testing.TB used by Strict.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// Strict returns an OnViolation callback that fails t for every violation,
// including those Envoy would only ignore.
func Strict(t TB) func(Violation) {
	return func(v Violation) {
		t.Helper()
		t.Errorf("envoytest violation: %s", v)
	}
}

// Front is an emulated Envoy listener (HCM + ext_proc + router). It is an
// http.Handler; it is safe for concurrent use.
type Front struct {
	cfg    Config
	vhosts []compiledVHost
	// hosts are each cluster's hosts, ordered by priority (stable).
	hosts map[string][]*upHost
	// conns / procClients hold one gRPC client per ext_proc server address
	// (downstream and upstream filters share a connection when they share
	// an address).
	conns       []*grpc.ClientConn
	procClients map[string]extprocsvc.ExternalProcessorClient
	// transport speaks HTTP/1.1 to upstreams, h2transport HTTP/2 with prior
	// knowledge (clusters with ClusterProtocol.HTTP2).
	transport   *http.Transport
	h2transport *http.Transport
	// dialer connects to upstreams (connect_timeout).
	dialer *net.Dialer

	mu         sync.Mutex
	violations []Violation
	entries    []AccessLogEntry
	changed    chan struct{}
}

type compiledVHost struct {
	vh     *VirtualHost
	routes []compiledRoute
}

type compiledRoute struct {
	r  *Route
	re *regexp.Regexp
}

// New validates cfg and builds a Front. The ext_proc gRPC client connects
// lazily. Call Close when done.
func New(cfg Config) (*Front, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("envoytest config: %w", err)
	}
	cfg = cfg.withDefaults()
	f := &Front{cfg: cfg, changed: make(chan struct{}),
		procClients: map[string]extprocsvc.ExternalProcessorClient{}}
	hosts, err := clusterHosts(cfg.Clusters, cfg.ClusterEndpoints)
	if err != nil {
		return nil, err
	}
	f.hosts = hosts
	vhs := cfg.allVirtualHosts()
	for i := range vhs {
		cv := compiledVHost{vh: &vhs[i]}
		for j := range vhs[i].Routes {
			rt := &vhs[i].Routes[j]
			cr := compiledRoute{r: rt}
			if rt.Regex != "" {
				expr := "^(?:" + rt.Regex + ")$"
				if rt.CaseInsensitive {
					expr = "(?i)" + expr
				}
				cr.re = regexp.MustCompile(expr)
			}
			cv.routes = append(cv.routes, cr)
		}
		f.vhosts = append(f.vhosts, cv)
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout}
	f.dialer = dialer
	f.transport = &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	h2 := new(http.Protocols)
	h2.SetUnencryptedHTTP2(true)
	f.h2transport = &http.Transport{
		Proxy:              nil,
		DialContext:        dialer.DialContext,
		DisableCompression: true,
		IdleConnTimeout:    90 * time.Second,
		Protocols:          h2,
	}
	epcs := []*ExtProcConfig{cfg.ExtProc, cfg.RouterUpstreamExtProc}
	for _, e := range cfg.UpstreamExtProc {
		epcs = append(epcs, e)
	}
	for _, e := range epcs {
		if e == nil || f.procClients[e.Addr] != nil {
			continue
		}
		conn, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("ext_proc client %q: %w", e.Addr, err)
		}
		f.conns = append(f.conns, conn)
		f.procClients[e.Addr] = extprocsvc.NewExternalProcessorClient(conn)
	}
	return f, nil
}

// upHost is one host of a cluster as the load balancer sees it.
type upHost struct {
	url      *url.URL
	priority int
	hostname string
	metadata metadata
}

// clusterHosts builds every cluster's host list: the single address of
// clusters, or the endpoints of endpoints (which win), sorted by priority.
func clusterHosts(clusters map[string]string, endpoints map[string][]Endpoint) (map[string][]*upHost, error) {
	out := map[string][]*upHost{}
	for name, addr := range clusters {
		u, err := clusterURL(addr)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", name, err)
		}
		out[name] = []*upHost{{url: u}}
	}
	for name, eps := range endpoints {
		hs := make([]*upHost, 0, len(eps))
		for _, ep := range eps {
			u, err := clusterURL(ep.Address)
			if err != nil {
				return nil, fmt.Errorf("cluster %q: %w", name, err)
			}
			h := &upHost{url: u, priority: ep.Priority, hostname: ep.Hostname, metadata: metadata{}}
			for ns, fields := range ep.Metadata {
				st, err := structpb.NewStruct(fields)
				if err != nil {
					return nil, fmt.Errorf("cluster %q: endpoint %q metadata %q: %w", name, ep.Address, ns, err)
				}
				h.metadata[ns] = st
			}
			hs = append(hs, h)
		}
		sort.SliceStable(hs, func(i, j int) bool { return hs[i].priority < hs[j].priority })
		out[name] = hs
	}
	return out, nil
}

func clusterURL(addr string) (*url.URL, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", addr, err)
	}
	if u.Scheme == "https" {
		u.Scheme = "http" // TLS clusters are reached over plain HTTP
	}
	if u.Host == "" {
		return nil, fmt.Errorf("no host in %q", addr)
	}
	u.Path, u.RawPath, u.RawQuery = "", "", ""
	return u, nil
}

// Close releases the gRPC connections and idle upstream connections.
func (f *Front) Close() error {
	f.transport.CloseIdleConnections()
	f.h2transport.CloseIdleConnections()
	var errs []error
	for _, c := range f.conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ext_proc client %s: %w", c.Target(), err))
		}
	}
	f.conns = nil
	return errors.Join(errs...)
}

// ServeHTTP handles one downstream request like Envoy's HCM.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := f.cfg
	x := &exchange{
		f:      f,
		cfg:    &cfg,
		log:    cfg.Logger,
		w:      w,
		r:      r,
		events: make(chan any, 16),
		done:   make(chan struct{}),
		start:  time.Now(),
	}
	x.serve()
}

// match finds the virtual host and route for the request headers.
func (f *Front) match(h headerMap) (*VirtualHost, *Route) {
	authority, _ := h.get(":authority")
	path, _ := h.get(":path")
	vh := f.matchVHost(authority)
	if vh == nil {
		return nil, nil
	}
	p, _, _ := strings.Cut(path, "?")
	for _, cr := range vh.routes {
		if routeMatches(cr, path, p, h) {
			return vh.vh, cr.r
		}
	}
	return vh.vh, nil
}

func (f *Front) matchVHost(authority string) *compiledVHost {
	host := strings.ToLower(authority)
	var wildcard *compiledVHost
	best, bestLen := (*compiledVHost)(nil), -1
	for i := range f.vhosts {
		cv := &f.vhosts[i]
		for _, d := range cv.vh.Domains {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				if wildcard == nil {
					wildcard = cv
				}
			case d == host || d == hostOnly(host):
				return cv
			case strings.HasPrefix(d, "*") && strings.HasSuffix(hostOnly(host), d[1:]):
				if len(d) > bestLen {
					best, bestLen = cv, len(d)
				}
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]):
				if len(d) > bestLen {
					best, bestLen = cv, len(d)
				}
			}
		}
	}
	if best != nil {
		return best
	}
	return wildcard
}

func hostOnly(authority string) string {
	if h, _, err := net.SplitHostPort(authority); err == nil {
		return h
	}
	return authority
}

func routeMatches(cr compiledRoute, fullPath, path string, h headerMap) bool {
	r := cr.r
	eq := func(a, b string) bool {
		if r.CaseInsensitive {
			return strings.EqualFold(a, b)
		}
		return a == b
	}
	ok := true
	switch {
	case r.Prefix != "":
		ok = len(fullPath) >= len(r.Prefix) && eq(fullPath[:len(r.Prefix)], r.Prefix)
	case r.Path != "":
		ok = eq(path, r.Path)
	case cr.re != nil:
		ok = cr.re.MatchString(path)
	case r.PathSeparatedPrefix != "":
		pre := r.PathSeparatedPrefix
		ok = eq(path, pre) || (len(path) > len(pre) && eq(path[:len(pre)], pre) && path[len(pre)] == '/')
	}
	if !ok {
		return false
	}
	for _, hm := range r.Headers {
		vals := h.values(strings.ToLower(hm.Name))
		var m bool
		switch {
		case hm.Present != nil:
			m = (len(vals) > 0) == *hm.Present
		case hm.Match != nil:
			m = len(vals) > 0 && hm.Match.matches(strings.Join(vals, ","))
		default:
			m = len(vals) > 0
		}
		if m == hm.Invert {
			return false
		}
	}
	return true
}

func (f *Front) record(v Violation) {
	f.mu.Lock()
	f.violations = append(f.violations, v)
	f.mu.Unlock()
	f.cfg.Logger.Debug("envoytest violation", "violation", v.String())
	if f.cfg.OnViolation != nil {
		f.cfg.OnViolation(v)
	}
}

// Violations returns a copy of every violation recorded so far.
func (f *Front) Violations() []Violation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Violation(nil), f.violations...)
}

// AccessLog returns a copy of the access-log entries of finished requests.
func (f *Front) AccessLog() []AccessLogEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]AccessLogEntry(nil), f.entries...)
}

// WaitAccessLog blocks until at least n entries exist or ctx ends. The
// client may see the end of a response slightly before the entry exists.
func (f *Front) WaitAccessLog(ctx context.Context, n int) ([]AccessLogEntry, error) {
	for {
		f.mu.Lock()
		if len(f.entries) >= n {
			out := append([]AccessLogEntry(nil), f.entries...)
			f.mu.Unlock()
			return out, nil
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return f.AccessLog(), fmt.Errorf("wait for %d access log entries: %w", n, ctx.Err())
		}
	}
}

// Reset forgets recorded violations and access-log entries.
func (f *Front) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.violations, f.entries = nil, nil
}

func (f *Front) finishLog(x *exchange) {
	e := x.accessLogEntry()
	var line []byte
	if f.cfg.AccessLog != nil {
		var err error
		if f.cfg.AccessLogFormat != nil {
			line, err = json.Marshal(e.Format(f.cfg.AccessLogFormat))
		} else {
			line, err = json.Marshal(e)
		}
		if err != nil {
			f.cfg.Logger.Error("envoytest access log", "err", err)
			line = nil
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if line != nil {
		_, _ = f.cfg.AccessLog.Write(append(line, '\n'))
	}
	f.entries = append(f.entries, e)
	close(f.changed)
	f.changed = make(chan struct{})
}

// Server is a running Front on a loopback TCP listener.
type Server struct {
	// URL is "http://host:port" of the listener.
	URL string
	// Addr is the listener address.
	Addr string
	srv  *http.Server
}

// Start serves f on addr ("127.0.0.1:0" when empty) until Close or ctx ends.
func (f *Front) Start(ctx context.Context, addr string) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	s := &Server{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(), srv: &http.Server{Handler: f, ReadHeaderTimeout: 30 * time.Second}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.cfg.Logger.Error("envoytest server stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = s.srv.Close()
	}()
	return s, nil
}

// Close stops the listener and closes open connections.
func (s *Server) Close() error {
	if err := s.srv.Close(); err != nil {
		return fmt.Errorf("close envoytest server: %w", err)
	}
	return nil
}

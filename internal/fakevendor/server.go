package fakevendor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// maxRequestBody caps the request body the fake reads, in bytes.
const maxRequestBody = 32 << 20

// Options configures a Server. The zero value is usable.
type Options struct {
	// Vendor, when set, makes the Server emulate only that vendor whatever
	// the Host (for a dedicated listener); a leading /openai, /anthropic or
	// /gemini segment naming the same vendor is still stripped.
	Vendor Vendor
	// Seed seeds the pseudo-random choices (write split offsets, ids) of
	// request n with (Seed, n). 0 picks a random seed in New.
	Seed uint64
	// MaxWriteBytes, when > 0, caps the bytes of one body write; longer
	// pieces are split further (never on an event boundary). Default 0: one
	// cut inside every stream event only.
	MaxWriteBytes int
	// DefaultOutputTokens is the visible output tokens of an answer when
	// the request forces none; it is bounded by the request's max tokens.
	// Default 12.
	DefaultOutputTokens int64
	// MaxCalls bounds the calls kept for Calls (oldest dropped first).
	// Default 0: unbounded.
	MaxCalls int
	// Now returns the current time (created timestamps, Call.Time).
	// Default time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx is done, returning ctx's error in the
	// latter case; it implements every injected delay. Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnCall, when set, is called with a copy of each call once its
	// response is finished or aborted, from the serving goroutine.
	OnCall func(Call)
	// GzipWhenAccepted compresses every response body whose request's
	// accept-encoding admits gzip, as the real vendors do (then without
	// content-length); x-fake-gzip: auto does it for one request. Default
	// false: only x-fake-gzip: 1 compresses.
	GzipWhenAccepted bool
	// ChunkedJSON sends every JSON body without content-length (HTTP/1.1
	// chunked transfer encoding; over HTTP/2 the body ends with its last
	// DATA frame), as vendors often answer; x-fake-chunked: 1 does it for
	// one request. Default false.
	ChunkedJSON bool
}

// Server is the fake vendor upstream, an http.Handler. It is safe for
// concurrent use.
type Server struct {
	opts Options

	mu       sync.Mutex
	seq      int64
	calls    []*Call
	failures map[string]int
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	if opts.Seed == 0 {
		opts.Seed = rand.Uint64() | 1
	}
	if opts.DefaultOutputTokens <= 0 {
		opts.DefaultOutputTokens = 12
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleepTimer
	}
	return &Server{opts: opts, failures: map[string]int{}}
}

func sleepTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return s.opts.Sleep(ctx, d)
}

// Calls returns copies of the recorded calls in arrival order. A call still
// in flight is included with what is known so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		out[i] = c.clone()
	}
	return out
}

// Reset forgets all recorded calls and x-fake-fail-times counters; call
// numbering continues.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
	s.failures = map[string]int{}
}

func (s *Server) begin(c *Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	c.Seq = s.seq
	s.calls = append(s.calls, c)
	if s.opts.MaxCalls > 0 && len(s.calls) > s.opts.MaxCalls {
		s.calls = append([]*Call(nil), s.calls[len(s.calls)-s.opts.MaxCalls:]...)
	}
}

func (s *Server) update(c *Call, f func(*Call)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(c)
}

func (s *Server) snapshot(c *Call) Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.clone()
}

// failNow applies x-fake-fail-times: it reports whether the failure
// directives apply to this request, counting it against its key.
func (s *Server) failNow(d directives) bool {
	if d.failTimes < 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures[d.failKey] < d.failTimes {
		s.failures[d.failKey]++
		return true
	}
	return false
}

// defaultFailStatus is the status of x-fake-fail-times failures that name
// no failure: each vendor's "overloaded" answer.
var defaultFailStatus = map[Vendor]int{
	VendorOpenAI:    http.StatusServiceUnavailable,
	VendorAnthropic: 529,
	VendorGemini:    http.StatusServiceUnavailable,
}

// request is one request being served.
type request struct {
	r      *http.Request
	vendor Vendor
	path   string
	body   []byte
	dir    directives
	rng    *rand.Rand
	now    time.Time
	call   *Call
	opts   *Options
	model  string // the model the request names
	id     string // the vendor request id, see requestID
}

// ServeHTTP serves one request as the selected vendor would.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, adminPrefix) {
		s.serveAdmin(w, r)
		return
	}
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	vendor, path := s.pick(r)
	call := &Call{
		Time:         s.opts.Now(),
		Vendor:       vendor,
		Method:       r.Method,
		Host:         r.Host,
		Path:         path,
		OriginalPath: r.URL.Path,
		Query:        cloneValues(r.URL.Query()),
		Header:       r.Header.Clone(),
		Body:         body,
		APIKey:       apiKey(r),
		Proto:        r.Proto,
	}
	s.begin(call)
	defer func() {
		if s.opts.OnCall != nil {
			s.opts.OnCall(s.snapshot(call))
		}
	}()

	d, dirErr := parseDirectives(r.Header)
	if (d.gzipAuto || s.opts.GzipWhenAccepted) && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		d.gzip = true
	}
	d.chunked = d.chunked || s.opts.ChunkedJSON
	seed := s.opts.Seed
	stream := uint64(call.Seq)
	if d.seed != nil {
		seed, stream = uint64(*d.seed), 0
	}
	q := &request{r: r, vendor: vendor, path: path, body: body, dir: d,
		rng: rand.New(rand.NewPCG(seed, stream)), now: call.Time, call: call, opts: &s.opts}

	ep, ok := route(q)
	if q.model == "" {
		if m, isObj := decodeObject(body); isObj {
			q.model = str(m, "model")
		}
	}
	if vendor == "" {
		s.plainError(w, call, http.StatusNotFound, fmt.Sprintf("fakevendor: no vendor for host %q and path %q", r.Host, r.URL.Path))
		return
	}
	s.update(call, func(c *Call) { c.Endpoint = ep.name; c.Model = q.model })

	var apiErr *apiError
	switch {
	case readErr != nil:
		apiErr = &apiError{status: http.StatusRequestEntityTooLarge, message: "request body too large or unreadable: " + readErr.Error()}
	case dirErr != nil:
		apiErr = badRequest("fakevendor: %v", dirErr)
	case !ok:
		apiErr = ep.notFound
	}
	if apiErr != nil {
		s.deliver(r.Context(), w, call, s.errorReply(q, ep.dialect, apiErr), directives{resetAfterBytes: -1, gzip: d.gzip && dirErr == nil}, false, q.rng.IntN)
		return
	}

	if err := s.sleep(r.Context(), d.latency); err != nil {
		s.update(call, func(c *Call) { c.Err = err.Error() })
		return
	}
	failing := s.failNow(d)
	if failing && d.failTimes >= 0 && d.status == 0 && !d.resetBeforeHeaders && d.resetAfterBytes < 0 && d.streamErrorAfter < 0 {
		d.status = defaultFailStatus[vendor]
	}
	if failing && d.resetBeforeHeaders {
		s.update(call, func(c *Call) { c.Fault = "reset-before-headers" })
		panic(http.ErrAbortHandler)
	}
	var rp *reply
	if failing && d.status != 0 {
		rp = s.errorReply(q, ep.dialect, &apiError{status: d.status, variant: d.errorType})
		s.update(call, func(c *Call) { c.Fault = "status" })
	} else {
		rp, apiErr = ep.handle(q)
		switch {
		case apiErr != nil:
			rp = s.errorReply(q, ep.dialect, apiErr)
		case failing && d.streamErrorAfter >= 0 && rp.stream:
			cutStream(q, ep, rp, d.streamErrorAfter)
			s.update(call, func(c *Call) { c.Fault = "stream-error" })
		}
	}
	s.update(call, func(c *Call) { c.Model = q.model })
	s.deliver(r.Context(), w, call, rp, d, failing, q.rng.IntN)
}

// pick selects the vendor by Options.Vendor, the Host header, or a leading
// path segment, returning the vendor and the path to serve.
func (s *Server) pick(r *http.Request) (Vendor, string) {
	path := r.URL.Path
	strip := func(v Vendor) (string, bool) {
		prefix := "/" + string(v)
		if path == prefix {
			return "/", true
		}
		if strings.HasPrefix(path, prefix+"/") {
			return path[len(prefix):], true
		}
		return path, false
	}
	if s.opts.Vendor != "" {
		p, _ := strip(s.opts.Vendor)
		return s.opts.Vendor, p
	}
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	switch host {
	case "api.openai.com":
		return VendorOpenAI, path
	case "api.anthropic.com":
		return VendorAnthropic, path
	case "generativelanguage.googleapis.com":
		return VendorGemini, path
	}
	for _, v := range []Vendor{VendorOpenAI, VendorAnthropic, VendorGemini} {
		if p, ok := strip(v); ok {
			return v, p
		}
	}
	return "", path
}

// apiKey returns the credential a request carried, if any.
func apiKey(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		if tok, ok := strings.CutPrefix(a, "Bearer "); ok {
			return strings.TrimSpace(tok)
		}
		return a
	}
	for _, h := range []string{"X-Api-Key", "X-Goog-Api-Key"} {
		if v := r.Header.Get(h); v != "" {
			return v
		}
	}
	return r.URL.Query().Get("key")
}

// errorReply renders e as the vendor would, with the vendor's headers.
func (s *Server) errorReply(q *request, d dialect, e *apiError) *reply {
	id := requestID(q)
	h := baseHeaders(q, id)
	if q.vendor == VendorGemini {
		id = "" // Gemini errors carry no request id
	}
	rp := jsonReply(e.status, h, errorBody(d, e, q.model, id), nil)
	rp.requestID = id
	return rp
}

// plainError answers a request no vendor claims.
func (s *Server) plainError(w http.ResponseWriter, call *Call, status int, msg string) {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": "fakevendor_error"}})
	s.update(call, func(c *Call) {
		c.Status = status
		c.Err = msg
		c.BodyBytes = int64(len(body))
		c.Completed = true
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

const adminPrefix = "/__fake/"

// adminCall is the JSON form of a Call served by the admin endpoint, with
// the body as text.
type adminCall struct {
	Call
	Body string `json:"body"`
}

// serveAdmin serves GET /__fake/calls (recorded calls as JSON) and
// POST /__fake/reset (Reset), for tests that reach the fake over the network.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == adminPrefix+"calls" && r.Method == http.MethodGet:
		calls := s.Calls()
		out := make([]adminCall, len(calls))
		for i, c := range calls {
			out[i] = adminCall{Call: c, Body: string(c.Body)}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	case r.URL.Path == adminPrefix+"reset" && r.Method == http.MethodPost:
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "fakevendor: unknown admin endpoint", http.StatusNotFound)
	}
}

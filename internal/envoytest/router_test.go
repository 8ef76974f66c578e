package envoytest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
)

// sleepRecorder replaces back-off sleeping.
type sleepRecorder struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *sleepRecorder) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays = append(s.delays, d)
	return nil
}

func (s *sleepRecorder) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.delays...)
}

func TestRetriesFinalAttemptOnly(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name       string
		policy     RetryPolicy
		statuses   []int
		headers    []map[string]string
		wantStatus int
		wantTries  int
		wantDelays []time.Duration
		wantFlags  string
	}{
		{name: "5xx retried until success", policy: RetryPolicy{RetryOn: "5xx", NumRetries: 2, BaseInterval: 100 * time.Millisecond},
			statuses: []int{503, 529, 200}, wantStatus: 200, wantTries: 3,
			// jitter returns its max: the interval doubles, base then 2*base
			wantDelays: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, wantFlags: "-"},
		{name: "interval doubles while below max_interval/2, then stays at max_interval",
			policy:   RetryPolicy{RetryOn: "5xx", NumRetries: 4, BaseInterval: 100 * time.Millisecond, MaxInterval: 300 * time.Millisecond},
			statuses: []int{503, 503, 503, 503, 200}, wantStatus: 200, wantTries: 5,
			wantDelays: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}, wantFlags: "-"},
		{name: "rate-limited retries do not advance the exponential back-off",
			policy: RetryPolicy{RetryOn: "5xx,retriable-status-codes", RetriableStatusCodes: []int{429}, NumRetries: 3,
				RateLimitedResetHeaders: []ResetHeader{{Name: "retry-after", Format: ResetSeconds}}},
			statuses: []int{429, 503, 503, 200}, headers: []map[string]string{{"retry-after": "2"}}, wantStatus: 200, wantTries: 4,
			wantDelays: []time.Duration{3 * time.Second, 25 * time.Millisecond, 50 * time.Millisecond}, wantFlags: "-"},
		{name: "a reset interval of 1 ms or less falls back to the exponential back-off",
			policy: RetryPolicy{RetryOn: "retriable-status-codes", RetriableStatusCodes: []int{429}, NumRetries: 1,
				RateLimitedResetHeaders: []ResetHeader{{Name: "retry-after", Format: ResetSeconds}}},
			statuses: []int{429, 200}, headers: []map[string]string{{"retry-after": "0"}}, wantStatus: 200, wantTries: 2,
			wantDelays: []time.Duration{25 * time.Millisecond}, wantFlags: "-"},
		{name: "retries exhausted: last response passes with URX", policy: RetryPolicy{RetryOn: "gateway-error", NumRetries: 1},
			statuses: []int{502, 504}, wantStatus: 504, wantTries: 2, wantDelays: []time.Duration{25 * time.Millisecond}, wantFlags: "URX"},
		{name: "429 needs retriable-status-codes", policy: RetryPolicy{RetryOn: "5xx", NumRetries: 2},
			statuses: []int{429}, wantStatus: 429, wantTries: 1, wantFlags: "-"},
		{name: "retry-after seconds", policy: RetryPolicy{RetryOn: "retriable-status-codes", RetriableStatusCodes: []int{429}, NumRetries: 1,
			RateLimitedResetHeaders: []ResetHeader{{Name: "retry-after", Format: ResetSeconds}, {Name: "x-ratelimit-reset", Format: ResetUnixTimestamp}}, RateLimitedMaxInterval: 30 * time.Second},
			statuses: []int{429, 200}, headers: []map[string]string{{"retry-after": "7"}}, wantStatus: 200, wantTries: 2,
			wantDelays: []time.Duration{7*time.Second + 3500*time.Millisecond}, wantFlags: "-"},
		{name: "x-ratelimit-reset unix timestamp, retry-after too large", policy: RetryPolicy{RetryOn: "retriable-status-codes", RetriableStatusCodes: []int{429}, NumRetries: 1,
			RateLimitedResetHeaders: []ResetHeader{{Name: "retry-after", Format: ResetSeconds}, {Name: "x-ratelimit-reset", Format: ResetUnixTimestamp}}, RateLimitedMaxInterval: 30 * time.Second},
			statuses: []int{429, 200}, headers: []map[string]string{{"retry-after": "999", "x-ratelimit-reset": strconv.FormatInt(now.Unix()+4, 10)}},
			wantStatus: 200, wantTries: 2, wantDelays: []time.Duration{4*time.Second + 2*time.Second}, wantFlags: "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, func(r *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
				if r.GetRequestBody() != nil {
					return withCommon(r, &extprocsvc.CommonResponse{
						HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-length", "7")}},
						BodyMutation:   &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte("mutated")}}})
				}
				return nil
			}))
			up := startUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n < len(tc.headers) {
					for k, v := range tc.headers[n] {
						w.Header().Set(k, v)
					}
				}
				st := tc.statuses[min(n, len(tc.statuses)-1)]
				w.WriteHeader(st)
				_, _ = fmt.Fprintf(w, "attempt %d", n)
			})
			sl := &sleepRecorder{}
			cfg := basicConfig(addr, up, mode(extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_NONE))
			p := tc.policy
			cfg.Routes[0].Retry = &p
			cfg.Sleep = sl.sleep
			cfg.Jitter = func(max time.Duration) time.Duration { return max }
			cfg.Now = func() time.Time { return now }
			f, s := startFront(t, cfg)
			resp, body, err := do(t, "POST", s.URL+"/x", "original", nil)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			require.Equal(t, fmt.Sprintf("attempt %d", tc.wantTries-1), body)
			e := waitLog(t, f, 1)
			require.Equal(t, tc.wantTries, e[0].Attempts)
			require.Equal(t, tc.wantFlags, e[0].ResponseFlags)
			require.Equal(t, tc.wantDelays, sl.all())
			reqs := up.requests()
			require.Len(t, reqs, tc.wantTries)
			for _, r := range reqs {
				require.Equal(t, "mutated", r.Body, "retries resend the mutated body")
			}
			// Only the final attempt is visible to the downstream ext_proc.
			var statuses []string
			for _, m := range rec.all() {
				if h := m.GetResponseHeaders(); h != nil {
					st, _ := headerOf(h.GetHeaders(), ":status")
					statuses = append(statuses, st)
				}
			}
			require.Equal(t, []string{strconv.Itoa(tc.wantStatus)}, statuses)
		})
	}
}

func TestRouterLocalReplies(t *testing.T) {
	// A listener that accepts and immediately closes: reset before headers.
	resetLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = resetLn.Close() })
	go func() {
		for {
			c, err := resetLn.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			_, _ = c.Read(buf)
			_ = c.Close()
		}
	}()
	closedLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := closedLn.Addr().String()
	require.NoError(t, closedLn.Close())
	slow := startUpstream(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})

	tests := []struct {
		name        string
		cluster     string
		route       Route
		wantStatus  int
		wantBody    string
		wantDetails string
		wantFlags   string
		wantTries   int
	}{
		{name: "connect failure", cluster: closedAddr, wantStatus: 503,
			wantBody:    "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused",
			wantDetails: "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}", wantFlags: "UF", wantTries: 1},
		{name: "connect failure retried", cluster: closedAddr, route: Route{Retry: &RetryPolicy{RetryOn: "connect-failure", NumRetries: 2}}, wantStatus: 503,
			wantBody:    "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused",
			wantDetails: "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}", wantFlags: "URX,UF", wantTries: 3},
		{name: "reset before headers", cluster: resetLn.Addr().String(), wantStatus: 503,
			wantBody:    "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
			wantDetails: "upstream_reset_before_response_started{connection_termination}", wantFlags: "UC", wantTries: 1},
		{name: "route timeout", cluster: slow.URL, route: Route{Timeout: 50 * time.Millisecond}, wantStatus: 504,
			wantBody: "upstream request timeout", wantDetails: "upstream_response_timeout", wantFlags: "UT", wantTries: 1},
		{name: "per-try timeout retried then 504", cluster: slow.URL, route: Route{Retry: &RetryPolicy{RetryOn: "5xx", NumRetries: 1, PerTryTimeout: 40 * time.Millisecond}},
			wantStatus: 504, wantBody: "upstream request timeout", wantDetails: "upstream_per_try_timeout", wantFlags: "UT", wantTries: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			_, addr := startProc(t, respond(rec, nil))
			rt := tc.route
			rt.Name, rt.Prefix, rt.Cluster = "r", "/", "c"
			cfg := Config{
				ExtProc:  &ExtProcConfig{Addr: addr, MessageTimeout: 2 * time.Second},
				Routes:   []Route{rt},
				Clusters: map[string]string{"c": tc.cluster},
				Sleep:    (&sleepRecorder{}).sleep,
			}
			f, s := startFront(t, cfg)
			resp, body, err := do(t, "GET", s.URL+"/v1", "", nil)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			require.Equal(t, "text/plain", resp.Header.Get("Content-Type"))
			require.Equal(t, tc.wantBody, body)
			e := waitLog(t, f, 1)
			require.Equal(t, tc.wantDetails, e[0].Details)
			require.Equal(t, tc.wantFlags, e[0].ResponseFlags)
			require.Equal(t, tc.wantTries, e[0].Attempts)
			// The router's local reply travels through the ext_proc response path.
			msgs := rec.all()
			require.Len(t, msgs, 2)
			st, _ := headerOf(msgs[1].GetResponseHeaders().GetHeaders(), ":status")
			require.Equal(t, strconv.Itoa(tc.wantStatus), st)
			ct, _ := headerOf(msgs[1].GetResponseHeaders().GetHeaders(), "content-type")
			require.Equal(t, "text/plain", ct)
		})
	}
}

func TestRewritesAndRouting(t *testing.T) {
	up := startUpstream(t, okUpstream(`{}`))
	cfg := Config{
		Routes: []Route{
			{Name: "meta", Regex: `/meta/[^/]+/openai/.*`, Cluster: "up", HostRewriteLiteral: "api.openai.com",
				RegexRewrite: &RegexRewrite{Pattern: `^/meta/[^/]+/openai/`, Substitution: "/"}},
			{Name: "openai", Prefix: "/openai/", Cluster: "up", PrefixRewrite: "/", HostRewriteLiteral: "api.openai.com"},
			{Name: "hdr", Prefix: "/h", Cluster: "up", Headers: []HeaderMatcher{{Name: "x-pick", Match: &StringMatcher{Exact: "yes"}}}},
		},
		Clusters: map[string]string{"up": up.URL},
	}
	f, s := startFront(t, cfg)
	tests := []struct {
		path       string
		hdr        map[string]string
		wantStatus int
		wantPath   string
		wantHost   string
		wantRoute  string
	}{
		{path: "/openai/v1/chat/completions?a=b", wantStatus: 200, wantPath: "/v1/chat/completions?a=b", wantHost: "api.openai.com", wantRoute: "openai"},
		{path: "/meta/u42/openai/v1/models", wantStatus: 200, wantPath: "/v1/models", wantHost: "api.openai.com", wantRoute: "meta"},
		{path: "/h", hdr: map[string]string{"X-Pick": "yes"}, wantStatus: 200, wantPath: "/h", wantRoute: "hdr"},
		{path: "/h", wantStatus: 404, wantRoute: ""},
		{path: "/openaix", wantStatus: 404},
	}
	for i, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			before := len(up.requests())
			resp, _, err := do(t, "GET", s.URL+tc.path, "", tc.hdr)
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			e := waitLog(t, f, i+1)
			require.Equal(t, tc.wantRoute, e[i].RouteName)
			if tc.wantStatus != 200 {
				require.Equal(t, "route_not_found", e[i].Details)
				require.Equal(t, "NR", e[i].ResponseFlags)
				return
			}
			r := up.requests()[before]
			require.Equal(t, tc.wantPath, r.Path)
			if tc.wantHost != "" {
				require.Equal(t, tc.wantHost, r.Host)
				require.Equal(t, strings.SplitN(tc.path, "?", 2)[0], strings.SplitN(r.Header.Get("X-Envoy-Original-Path"), "?", 2)[0])
			}
		})
	}
}

func TestStreamingIsNotBuffered(t *testing.T) {
	for _, respMode := range []extprocv3.ProcessingMode_BodySendMode{extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_STREAMED} {
		t.Run(respMode.String(), func(t *testing.T) {
			next := make(chan struct{})
			up := startUpstream(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = fmt.Fprint(w, "data: first\n\n")
				w.(http.Flusher).Flush()
				<-next // the client must see the first event before the upstream continues
				_, _ = fmt.Fprint(w, "data: second\n\n")
			})
			_, addr := startProc(t, respond(&recorder{}, nil))
			f, s := startFront(t, basicConfig(addr, up, mode(extprocv3.ProcessingMode_NONE, respMode)))
			resp, err := http.Get(s.URL + "/sse")
			require.NoError(t, err)
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, "data: first\n", line)
			close(next)
			_, _ = br.ReadString('\n')
			line, err = br.ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, "data: second\n", line)
			waitLog(t, f, 1)
		})
	}
}

func TestUpstreamResetMidBodyResetsDownstream(t *testing.T) {
	up := startUpstream(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	_, addr := startProc(t, respond(&recorder{}, nil))
	f, s := startFront(t, basicConfig(addr, up, nil))
	_, _, err := do(t, "GET", s.URL+"/x", "", nil)
	require.Error(t, err)
	e := waitLog(t, f, 1)
	require.True(t, e[0].Reset)
	require.Equal(t, "UR", e[0].ResponseFlags)
}

package envoytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
)

// Defaults applied by New when the corresponding Config field is zero.
const (
	// DefaultBufferLimit is Envoy's default per_connection_buffer_limit_bytes (1 MiB).
	DefaultBufferLimit = 1 << 20
	// DefaultMessageTimeout is ext_proc's default message_timeout.
	DefaultMessageTimeout = 200 * time.Millisecond
	// DefaultFilterName is the canonical ext_proc filter name, the key of
	// typed_per_filter_config entries.
	DefaultFilterName = "envoy.filters.http.ext_proc"
	// DefaultRetryBaseInterval is Envoy's default retry back-off base interval.
	DefaultRetryBaseInterval = 25 * time.Millisecond
	// DefaultRateLimitedMaxInterval is the default max_interval of
	// rate_limited_retry_back_off.
	DefaultRateLimitedMaxInterval = 300 * time.Second
	// DefaultRemoteCloseTimeout bounds a graceful ext_proc stream close.
	DefaultRemoteCloseTimeout = time.Second
)

// Config describes one emulated Envoy listener: its HTTP connection manager,
// its ext_proc filter and the router behind it. The zero value of every
// optional field means "Envoy's default".
type Config struct {
	// ExtProc configures the downstream (HCM) ext_proc filter; nil means the
	// filter chain has no ext_proc filter.
	ExtProc *ExtProcConfig
	// UpstreamExtProc maps a cluster name to the ext_proc filter of that
	// cluster's upstream HTTP filter chain
	// (typed_extension_protocol_options HttpProtocolOptions.http_filters).
	// A present key with a nil value means the cluster has its own upstream
	// chain without ext_proc: like in Envoy it still replaces
	// RouterUpstreamExtProc for that cluster. Each upstream attempt gets a
	// new filter instance and its own Process stream.
	UpstreamExtProc map[string]*ExtProcConfig
	// RouterUpstreamExtProc is the ext_proc filter of the router's
	// upstream_http_filters, used for clusters without an UpstreamExtProc
	// entry; nil means none.
	RouterUpstreamExtProc *ExtProcConfig
	// CORS places Envoy's CORS filter in the downstream chain (before
	// ext_proc unless AfterExtProc); nil means no CORS filter, and then
	// VirtualHost.CORS / Route.CORS have no effect.
	CORS *CORSFilter
	// VirtualHosts are matched by :authority like Envoy's route table.
	VirtualHosts []VirtualHost
	// Routes is a shortcut for a single catch-all virtual host ("*"); it is
	// appended after VirtualHosts.
	Routes []Route
	// Clusters maps a cluster name to its upstream address: "host:port" or a
	// base URL "http://host:port". Upstreams are reached over plain HTTP
	// (HTTP/1.1 unless ClusterProtocols says HTTP/2), even when the real
	// cluster uses TLS.
	Clusters map[string]string
	// ClusterEndpoints lists the hosts of clusters that have more than the
	// one address of Clusters (load_assignment with several endpoints,
	// priorities, hostnames or endpoint metadata). A cluster listed here
	// ignores its Clusters entry for routing. Hosts are always healthy (no
	// health checking or outlier detection is emulated), so the router's
	// load balancer picks the first host of the lowest priority that has
	// hosts, unless a retry priority (RetryPolicy.PreviousPriorities)
	// excludes priorities already attempted.
	ClusterEndpoints map[string][]Endpoint
	// ClusterProtocols holds the upstream HTTP protocol options of a cluster
	// (typed_extension_protocol_options HttpProtocolOptions
	// explicit_http_config); a cluster without an entry speaks HTTP/1.1
	// with Envoy's defaults.
	ClusterProtocols map[string]ClusterProtocol
	// BufferLimit is the per-stream buffer limit in bytes (Envoy
	// per_connection_buffer_limit_bytes); 0 means DefaultBufferLimit.
	BufferLimit int
	// UseRemoteAddress mirrors the HCM field: when true the client IP is
	// appended to x-forwarded-for (and x-envoy-internal is set for loopback
	// and private clients). Envoy's default is false: x-forwarded-for is left
	// untouched.
	UseRemoteAddress bool
	// EnableTrailers is the HCM's http_protocol_options.enable_trailers:
	// Envoy's HTTP/1 codec drops request trailers from and response
	// trailers to an HTTP/1.1 client unless it is set (default false).
	EnableTrailers bool
	// SuppressEnvoyHeaders mirrors the router field: when true the router
	// does not add x-envoy-upstream-service-time / x-envoy-original-path.
	SuppressEnvoyHeaders bool
	// ServerName is the value of the server header on downstream responses;
	// empty means "envoy".
	ServerName string
	// ListenAddr is informational: the bootstrap listener address
	// (FromBootstrap fills it); Start takes its own address.
	ListenAddr string
	// ConnectTimeout bounds upstream TCP connects; 0 means 5 s.
	ConnectTimeout time.Duration

	// Sleep waits for a retry back-off interval; nil means a real timer that
	// honours ctx. Tests inject a recorder that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter returns a uniformly random duration in [0, max); nil uses
	// math/rand/v2.
	Jitter func(max time.Duration) time.Duration
	// Now is the clock used for x-ratelimit-reset timestamps; nil means time.Now.
	Now func() time.Time

	// OnViolation, when set, is called for every recorded violation (see
	// Strict). It may be called from many goroutines at once.
	OnViolation func(Violation)
	// onEvent, for this package's tests, is called on the exchange's loop
	// after each event was handled, so a test can order what the network
	// would leave to chance (a body arriving before or after a reply).
	onEvent func(ev any)
	// afterFunc, for this package's tests, replaces time.AfterFunc for the
	// per_try_idle_timeout timer; it returns the timer's stop function.
	afterFunc func(d time.Duration, f func()) func() bool
	// AccessLog, when set, receives one JSON line per finished request:
	// either AccessLogFormat rendered, or the AccessLogEntry itself.
	AccessLog io.Writer
	// AccessLogFormat is an Envoy json_format map (values may use
	// %RESPONSE_CODE%, %DYNAMIC_METADATA(ns:key)%, %REQ(x)% ...).
	AccessLogFormat map[string]any
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// ClusterProtocol is the HTTP protocol a cluster's upstream connections use.
type ClusterProtocol struct {
	// HTTP2 is explicit_http_config.http2_protocol_options: requests go out
	// as HTTP/2 with prior knowledge (h2c, the emulation uses no TLS), and
	// response trailers always reach the filter chain.
	HTTP2 bool
	// EnableTrailers is http_protocol_options.enable_trailers for HTTP/1.1:
	// without it Envoy's HTTP/1 codec drops the response trailers (the body
	// then ends with end_of_stream on its last data).
	EnableTrailers bool
}

// Endpoint is one lb_endpoint of a cluster's load_assignment.
type Endpoint struct {
	// Address is "host:port" or a base URL (plain HTTP, like Clusters).
	Address string
	// Priority is the LocalityLbEndpoints priority (0 is the highest).
	Priority int
	// Hostname is endpoint.hostname: with the route's auto_host_rewrite it
	// becomes the attempt's :authority.
	Hostname string
	// Metadata is the endpoint's metadata.filter_metadata, by namespace:
	// what xds.upstream_host_metadata exposes to the attempt's filters.
	Metadata map[string]map[string]any
}

// ExtProcConfig mirrors the fields of
// envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor that the
// emulation honours.
type ExtProcConfig struct {
	// Name is the filter name (key for per-route config); empty means
	// DefaultFilterName.
	Name string
	// Addr is the gRPC target of the ext_proc server ("127.0.0.1:50051").
	Addr string
	// ProcessingMode is the filter-level processing mode; nil means Envoy's
	// default (headers SEND, bodies NONE, trailers SKIP). FULL_DUPLEX_STREAMED
	// and GRPC body modes are rejected by New as unsupported by the harness.
	ProcessingMode *extprocv3.ProcessingMode
	// FailureModeAllow is failure_mode_allow (fail open).
	FailureModeAllow bool
	// MessageTimeout is message_timeout; 0 means DefaultMessageTimeout.
	MessageTimeout time.Duration
	// MaxMessageTimeout enables override_message_timeout; 0 disables it.
	MaxMessageTimeout time.Duration
	// MaxReceiveMessageLength is grpc_service.envoy_grpc.max_receive_message_length:
	// the largest ProcessingResponse accepted, in bytes; 0 means unlimited
	// (Envoy's default; a larger reply ends the stream with
	// RESOURCE_EXHAUSTED). Requests are never capped: like Envoy's gRPC
	// client, a BUFFERED body up to the buffer limit goes out as one message.
	MaxReceiveMessageLength int
	// AllowModeOverride is allow_mode_override.
	AllowModeOverride bool
	// AllowedOverrideModes is allowed_override_modes.
	AllowedOverrideModes []*extprocv3.ProcessingMode
	// SendBodyWithoutWaitingForHeaderResponse is the STREAMED-only flag of
	// the same name; it disables mode_override.
	SendBodyWithoutWaitingForHeaderResponse bool
	// DisableImmediateResponse turns ImmediateResponse into a spurious reply.
	DisableImmediateResponse bool
	// StatusOnError is the status of error local replies; 0 means 500.
	StatusOnError int
	// MutationRules is the header mutation checker configuration.
	MutationRules MutationRules
	// ReceivingNamespaces lists metadata_options.receiving_namespaces.untyped;
	// dynamic_metadata outside these namespaces is ignored.
	ReceivingNamespaces []string
	// ForwardingNamespaces lists metadata_options.forwarding_namespaces.untyped.
	ForwardingNamespaces []string
	// RequestAttributes and ResponseAttributes are CEL attribute names.
	RequestAttributes  []string
	ResponseAttributes []string
	// AllowedHeaders / DisallowedHeaders are forward_rules: when set, only
	// matching headers are sent to the server (mutations are not affected).
	AllowedHeaders    []StringMatcher
	DisallowedHeaders []StringMatcher
	// RouteCacheAction is route_cache_action: "" or "DEFAULT", "CLEAR", "RETAIN".
	RouteCacheAction string
	// DisableClearRouteCache is disable_clear_route_cache (same as RETAIN).
	DisableClearRouteCache bool
	// GracefulClose makes the filter half-close the stream and wait up to
	// RemoteCloseTimeout for the server to return (runtime
	// ext_proc_graceful_grpc_close); otherwise the stream is reset (the server
	// sees a cancelled context), Envoy's default.
	GracefulClose bool
	// RemoteCloseTimeout bounds GracefulClose; 0 means 1 s.
	RemoteCloseTimeout time.Duration
	// KeepStreamUntilEnd disables the 1.37 stream close optimisation: the
	// stream then stays open until the HTTP stream ends.
	KeepStreamUntilEnd bool
	// ObservabilityMode is not emulated; New rejects true.
	ObservabilityMode bool
}

// MutationRules mirrors envoy.config.common.mutation_rules.v3.HeaderMutationRules.
type MutationRules struct {
	AllowAllRouting    bool
	AllowEnvoy         bool
	DisallowSystem     bool
	DisallowAll        bool
	DisallowIsError    bool
	AllowExpression    *regexp.Regexp
	DisallowExpression *regexp.Regexp
}

// VirtualHost is a route_config virtual host.
type VirtualHost struct {
	Name    string
	Domains []string // "*", "example.com", "*.example.com", "example.*"
	Routes  []Route
	// IncludeRequestAttemptCount is include_request_attempt_count: the
	// router sets x-envoy-attempt-count (1, 2, ...) on every upstream
	// request, before the upstream filters see it.
	IncludeRequestAttemptCount bool
	// IncludeAttemptCountInResponse is include_attempt_count_in_response:
	// the router sets x-envoy-attempt-count on the response it passes
	// downstream (upstream responses and its own 503/504 local replies), so
	// the downstream ext_proc and the client see it. Neither flag is affected
	// by SuppressEnvoyHeaders.
	IncludeAttemptCountInResponse bool
	// CORS is the virtual host's CORS policy (typed_per_filter_config of
	// the CORS filter); nil means none.
	CORS *CORSPolicy
}

// Route is one route entry: a match, then either a cluster action or a
// direct response.
type Route struct {
	Name string
	// Match (exactly one of Prefix, Path, Regex, PathSeparatedPrefix; all
	// empty matches everything like prefix "/").
	Prefix              string
	Path                string
	Regex               string // RE2, must match the whole path (without query)
	PathSeparatedPrefix string
	CaseInsensitive     bool
	Headers             []HeaderMatcher

	// Cluster is the upstream cluster name (see Config.Clusters).
	Cluster string
	// PrefixRewrite replaces the matched prefix.
	PrefixRewrite string
	// RegexRewrite rewrites the path (query kept) with RE2 substitution.
	RegexRewrite *RegexRewrite
	// HostRewriteLiteral replaces :authority upstream.
	HostRewriteLiteral string
	// AutoHostRewrite is auto_host_rewrite: each attempt's :authority
	// becomes the hostname of the host it goes to (when the host has one),
	// written into the router's shared request header map before the
	// attempt's upstream filters run. Exclusive with HostRewriteLiteral.
	AutoHostRewrite bool
	// Timeout is the route timeout; 0 means none. (Envoy's default when the
	// field is absent is 15 s; FromBootstrap applies it.)
	Timeout time.Duration
	// Retry is the retry policy; nil disables retries.
	Retry *RetryPolicy

	// DirectResponse answers without an upstream.
	DirectResponse *DirectResponse

	// ExtProc is the route's typed_per_filter_config for the ext_proc filter.
	ExtProc *ExtProcPerRoute
	// CORS is the route's CORS policy; its non-empty fields win over the
	// virtual host's. nil means none.
	CORS *CORSPolicy
}

// RegexRewrite mirrors envoy.type.matcher.v3.RegexMatchAndSubstitute.
type RegexRewrite struct {
	Pattern      string
	Substitution string // RE2 style \1 group references
}

// DirectResponse mirrors route.DirectResponseAction.
type DirectResponse struct {
	Status int
	Body   string
}

// ExtProcPerRoute mirrors envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute.
type ExtProcPerRoute struct {
	Disabled bool
	// ProcessingMode replaces the whole filter-level mode for this route.
	ProcessingMode *extprocv3.ProcessingMode
	// FailureModeAllow overrides failure_mode_allow when non-nil.
	FailureModeAllow *bool
	// ReceivingNamespaces / ForwardingNamespaces replace the filter lists when non-nil.
	ReceivingNamespaces  []string
	ForwardingNamespaces []string
	// OverrideMetadataOptions reports whether the two lists above are set.
	OverrideMetadataOptions bool
}

// RetryPolicy mirrors route.RetryPolicy.
type RetryPolicy struct {
	// RetryOn is the comma-separated retry_on list: 5xx, gateway-error,
	// reset, connect-failure, retriable-status-codes, retriable-4xx.
	RetryOn string
	// NumRetries is num_retries; 0 means 1 (Envoy's default).
	NumRetries int
	// RetriableStatusCodes is retriable_status_codes.
	RetriableStatusCodes []int
	// PerTryTimeout bounds each attempt from the end of the request; once
	// the response started downstream it is ignored (Envoy's
	// UpstreamRequest::onPerTryTimeout). 0 = none.
	PerTryTimeout time.Duration
	// PerTryIdleTimeout is per_try_idle_timeout: armed with the per-try
	// timeout and re-armed on the attempt's response headers and every
	// response body chunk, it keeps running during the response: a gap
	// longer than it cuts a streaming response mid-way (downstream reset,
	// details upstream_per_try_idle_timeout, flag UT); before the response
	// it is a per-try timeout (retried like one, else 504). 0 = none.
	PerTryIdleTimeout time.Duration
	// BaseInterval / MaxInterval are retry_back_off; 0 means 25 ms / 10×base.
	BaseInterval time.Duration
	MaxInterval  time.Duration
	// PreviousPriorities is the update_frequency of the retry_priority
	// envoy.retry_priorities.previous_priorities; 0 means no retry
	// priority (every attempt uses the cluster's own priority load). Every
	// update_frequency attempts the priorities of the hosts attempted so far
	// are excluded from the load of the next ones; when none is left the
	// original load applies again.
	PreviousPriorities int
	// RateLimitedResetHeaders / RateLimitedMaxInterval are
	// rate_limited_retry_back_off.
	RateLimitedResetHeaders []ResetHeader
	RateLimitedMaxInterval  time.Duration
}

// ResetHeaderFormat is the format of a rate-limit reset header.
type ResetHeaderFormat int

// Reset header formats of rate_limited_retry_back_off.
const (
	ResetSeconds ResetHeaderFormat = iota
	ResetUnixTimestamp
)

// ResetHeader is one rate_limited_retry_back_off.reset_headers entry.
type ResetHeader struct {
	Name   string
	Format ResetHeaderFormat
}

// HeaderMatcher is a route header matcher.
type HeaderMatcher struct {
	Name    string
	Present *bool
	Match   *StringMatcher
	Invert  bool
}

// StringMatcher mirrors envoy.type.matcher.v3.StringMatcher.
type StringMatcher struct {
	Exact      string
	Prefix     string
	Suffix     string
	Contains   string
	Regex      string
	IgnoreCase bool
}

// matches reports whether s satisfies m.
func (m StringMatcher) matches(s string) bool {
	cmp := func(a, b string) (string, string) {
		if m.IgnoreCase {
			return strings.ToLower(a), strings.ToLower(b)
		}
		return a, b
	}
	switch {
	case m.Exact != "":
		a, b := cmp(s, m.Exact)
		return a == b
	case m.Prefix != "":
		a, b := cmp(s, m.Prefix)
		return strings.HasPrefix(a, b)
	case m.Suffix != "":
		a, b := cmp(s, m.Suffix)
		return strings.HasSuffix(a, b)
	case m.Contains != "":
		a, b := cmp(s, m.Contains)
		return strings.Contains(a, b)
	case m.Regex != "":
		re, err := regexp.Compile("^(?:" + m.Regex + ")$")
		return err == nil && re.MatchString(s)
	}
	return s == ""
}

// errUnsupported marks configurations the harness refuses to emulate.
var errUnsupported = errors.New("unsupported by envoytest")

// validate checks the configuration like Envoy's load-time checks plus the
// harness' own limits.
func (c *Config) validate() error {
	if err := c.ExtProc.validate(); err != nil {
		return err
	}
	if err := c.RouterUpstreamExtProc.validate(); err != nil {
		return fmt.Errorf("router upstream_http_filters: %w", err)
	}
	for name, e := range c.UpstreamExtProc {
		if err := e.validate(); err != nil {
			return fmt.Errorf("cluster %q http_filters: %w", name, err)
		}
	}
	for name, eps := range c.ClusterEndpoints {
		if len(eps) == 0 {
			return fmt.Errorf("cluster %q: no endpoints", name)
		}
		for _, ep := range eps {
			if ep.Priority < 0 {
				return fmt.Errorf("cluster %q: endpoint %q: negative priority", name, ep.Address)
			}
			if _, err := clusterURL(ep.Address); err != nil {
				return fmt.Errorf("cluster %q: %w", name, err)
			}
		}
	}
	for _, vh := range c.allVirtualHosts() {
		if err := vh.CORS.validate(); err != nil {
			return fmt.Errorf("virtual host %q: %w", vh.Name, err)
		}
		for _, r := range vh.Routes {
			if err := r.CORS.validate(); err != nil {
				return fmt.Errorf("route %q: %w", r.Name, err)
			}
			if r.Regex != "" {
				if _, err := regexp.Compile(r.Regex); err != nil {
					return fmt.Errorf("route %q: regex: %w", r.Name, err)
				}
			}
			if r.RegexRewrite != nil {
				if _, err := regexp.Compile(r.RegexRewrite.Pattern); err != nil {
					return fmt.Errorf("route %q: regex_rewrite: %w", r.Name, err)
				}
			}
			if r.AutoHostRewrite && r.HostRewriteLiteral != "" {
				return fmt.Errorf("route %q: auto_host_rewrite and host_rewrite_literal are one host_rewrite_specifier", r.Name)
			}
			if r.Retry != nil && r.Retry.PreviousPriorities < 0 {
				return fmt.Errorf("route %q: previous_priorities update_frequency must be greater than 0", r.Name)
			}
			if r.DirectResponse == nil && r.Cluster == "" {
				return fmt.Errorf("route %q: neither cluster nor direct_response", r.Name)
			}
			if r.ExtProc != nil {
				if err := checkMode(r.ExtProc.ProcessingMode); err != nil {
					return fmt.Errorf("route %q: %w", r.Name, err)
				}
			}
		}
	}
	return nil
}

// validate checks one ext_proc filter configuration; nil is valid (no filter).
func (e *ExtProcConfig) validate() error {
	if e == nil {
		return nil
	}
	if e.Addr == "" {
		return errors.New("ext_proc: empty server address")
	}
	if e.ObservabilityMode {
		return fmt.Errorf("ext_proc observability_mode: %w", errUnsupported)
	}
	if err := checkMode(e.ProcessingMode); err != nil {
		return err
	}
	for _, m := range e.AllowedOverrideModes {
		if err := checkMode(m); err != nil {
			return fmt.Errorf("allowed_override_modes: %w", err)
		}
	}
	if e.DisableClearRouteCache && e.RouteCacheAction != "" && e.RouteCacheAction != "DEFAULT" {
		return errors.New("ext_proc: disable_clear_route_cache with non-default route_cache_action")
	}
	return nil
}

// upstreamExtProc returns the ext_proc filter of cluster's upstream filter
// chain: the cluster's own chain wins over the router's (Envoy tries the
// cluster chain first). nil means no upstream ext_proc.
func (c *Config) upstreamExtProc(cluster string) *ExtProcConfig {
	if e, ok := c.UpstreamExtProc[cluster]; ok {
		return e
	}
	return c.RouterUpstreamExtProc
}

func checkMode(m *extprocv3.ProcessingMode) error {
	for _, b := range []extprocv3.ProcessingMode_BodySendMode{m.GetRequestBodyMode(), m.GetResponseBodyMode()} {
		switch b {
		case extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_STREAMED,
			extprocv3.ProcessingMode_BUFFERED, extprocv3.ProcessingMode_BUFFERED_PARTIAL:
		default:
			return fmt.Errorf("body mode %s: %w", b, errUnsupported)
		}
	}
	return nil
}

// allVirtualHosts returns VirtualHosts plus the Routes shortcut.
func (c *Config) allVirtualHosts() []VirtualHost {
	vhs := append([]VirtualHost(nil), c.VirtualHosts...)
	if len(c.Routes) > 0 {
		vhs = append(vhs, VirtualHost{Name: "default", Domains: []string{"*"}, Routes: c.Routes})
	}
	return vhs
}

// withDefaults returns a copy of c with zero fields replaced by defaults.
func (c Config) withDefaults() Config {
	if c.BufferLimit <= 0 {
		c.BufferLimit = DefaultBufferLimit
	}
	if c.ServerName == "" {
		c.ServerName = "envoy"
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.Sleep == nil {
		c.Sleep = realSleep
	}
	if c.Jitter == nil {
		c.Jitter = func(max time.Duration) time.Duration {
			if max <= 0 {
				return 0
			}
			return time.Duration(rand.Int64N(int64(max)))
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.ExtProc = c.ExtProc.withDefaults()
	c.RouterUpstreamExtProc = c.RouterUpstreamExtProc.withDefaults()
	if c.UpstreamExtProc != nil {
		up := make(map[string]*ExtProcConfig, len(c.UpstreamExtProc))
		for name, e := range c.UpstreamExtProc {
			up[name] = e.withDefaults()
		}
		c.UpstreamExtProc = up
	}
	return c
}

// withDefaults returns a copy of e with zero fields replaced by defaults;
// nil stays nil.
func (e *ExtProcConfig) withDefaults() *ExtProcConfig {
	if e == nil {
		return nil
	}
	d := *e
	if d.Name == "" {
		d.Name = DefaultFilterName
	}
	if d.MessageTimeout <= 0 {
		d.MessageTimeout = DefaultMessageTimeout
	}
	if d.StatusOnError == 0 {
		d.StatusOnError = 500
	}
	if d.RemoteCloseTimeout <= 0 {
		d.RemoteCloseTimeout = DefaultRemoteCloseTimeout
	}
	return &d
}

func realSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

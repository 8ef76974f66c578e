package envoytest

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// AccessLogEntry is what an Envoy access log would know about one finished
// downstream request.
type AccessLogEntry struct {
	StartTime time.Time `json:"start_time"`
	Method    string    `json:"method"`
	// Path is the original downstream :path.
	Path      string `json:"path"`
	Authority string `json:"authority"`
	Protocol  string `json:"protocol"`
	RequestID string `json:"request_id"`
	RouteName string `json:"route_name,omitempty"`
	Cluster   string `json:"upstream_cluster,omitempty"`
	// UpstreamHost is host:port of the last upstream attempt.
	UpstreamHost string `json:"upstream_host,omitempty"`
	// Status is %RESPONSE_CODE%: the status sent downstream (0 on reset
	// before headers).
	Status int `json:"response_code"`
	// ResponseFlags is %RESPONSE_FLAGS% (comma separated: UF, UC, UT, URX,
	// NR, NC, UR, DC, LR) or "-".
	ResponseFlags string `json:"response_flags"`
	// Details is %RESPONSE_CODE_DETAILS% (via_upstream, direct_response,
	// an ImmediateResponse's details, ext_proc_error_..., ...).
	Details string `json:"response_code_details"`
	// Attempts is %UPSTREAM_REQUEST_ATTEMPT_COUNT%.
	Attempts      int           `json:"upstream_request_attempt_count"`
	Duration      time.Duration `json:"duration_ns"`
	BytesReceived int64         `json:"bytes_received"`
	BytesSent     int64         `json:"bytes_sent"`
	// Reset is true when the downstream stream was reset.
	Reset bool `json:"reset"`
	// DynamicMetadata holds the accepted ext_proc dynamic metadata by namespace.
	DynamicMetadata map[string]map[string]any `json:"dynamic_metadata,omitempty"`
	// ExtProcStreams is the number of streams the downstream ext_proc filter
	// opened (0 or 1).
	ExtProcStreams int `json:"ext_proc_streams"`
	// ExtProcSent / ExtProcReceived are the messages exchanged with the
	// ext_proc server by the downstream filter, in order.
	ExtProcSent     []*extprocsvc.ProcessingRequest  `json:"-"`
	ExtProcReceived []*extprocsvc.ProcessingResponse `json:"-"`
	// UpstreamAttempts describes every upstream attempt in order, including
	// those that were retried; empty when no upstream was tried.
	UpstreamAttempts []UpstreamAttempt `json:"upstream_attempts,omitempty"`
	// RequestHeaders are the downstream request headers after HCM processing
	// (before ext_proc); ResponseHeaders those sent downstream.
	RequestHeaders  http.Header `json:"-"`
	ResponseHeaders http.Header `json:"-"`
}

func (x *exchange) accessLogEntry() AccessLogEntry {
	path, _ := x.origHeaders.get(":path")
	authority, _ := x.origHeaders.get(":authority")
	e := AccessLogEntry{
		StartTime:       x.start,
		Method:          x.r.Method,
		Path:            path,
		Authority:       authority,
		Protocol:        x.r.Proto,
		RequestID:       x.requestID,
		Status:          x.status,
		ResponseFlags:   strings.Join(x.flags, ","),
		Details:         x.details,
		Attempts:        x.rt.attempts,
		Duration:        time.Since(x.start),
		BytesReceived:   x.bytesRecv,
		BytesSent:       x.down.written,
		Reset:           x.resetDown,
		ExtProcStreams:  x.ep.streams,
		ExtProcSent:     x.ep.sent,
		ExtProcReceived: x.ep.received,
		RequestHeaders:  x.origHeaders.httpHeader(),
		ResponseHeaders: x.down.respHeaders,
	}
	if e.ResponseFlags == "" {
		e.ResponseFlags = "-"
	}
	if x.route != nil {
		e.RouteName = x.route.Name
	}
	if x.rt.route != nil {
		e.RouteName = x.rt.route.Name
	}
	e.Cluster = x.rt.cluster
	e.UpstreamHost = x.rt.host
	e.DynamicMetadata = x.dynMeta.asMap()
	for _, a := range x.rt.all {
		e.UpstreamAttempts = append(e.UpstreamAttempts, a.logEntry())
	}
	return e
}

var logCommand = regexp.MustCompile(`%([A-Z_]+)(\(([^)]*)\))?(:[0-9]+)?%`)

// Format renders an Envoy json_format map for this entry. A value that is
// exactly one command keeps its type (numbers stay numbers, missing values
// become null); mixed text renders missing values as "-".
func (e AccessLogEntry) Format(format map[string]any) map[string]any {
	out := make(map[string]any, len(format))
	for k, v := range format {
		switch tv := v.(type) {
		case string:
			out[k] = e.render(tv)
		case map[string]any:
			out[k] = e.Format(tv)
		default:
			out[k] = v
		}
	}
	return out
}

func (e AccessLogEntry) render(s string) any {
	if m := logCommand.FindStringSubmatch(s); m != nil && m[0] == s {
		return e.command(m[1], m[3])
	}
	return logCommand.ReplaceAllStringFunc(s, func(c string) string {
		m := logCommand.FindStringSubmatch(c)
		v := e.command(m[1], m[3])
		if v == nil {
			return "-"
		}
		switch tv := v.(type) {
		case string:
			return tv
		case int:
			return strconv.Itoa(tv)
		case int64:
			return strconv.FormatInt(tv, 10)
		case float64:
			return strconv.FormatFloat(tv, 'f', -1, 64)
		case bool:
			return strconv.FormatBool(tv)
		}
		return "-"
	})
}

func (e AccessLogEntry) command(name, arg string) any {
	switch name {
	case "START_TIME":
		return e.StartTime.UTC().Format("2006-01-02T15:04:05.000Z")
	case "REQ":
		return headerArg(e.RequestHeaders, arg, e)
	case "RESP":
		return headerArg(e.ResponseHeaders, arg, e)
	case "RESPONSE_CODE":
		return e.Status
	case "RESPONSE_CODE_DETAILS":
		return nilIfEmpty(e.Details)
	case "RESPONSE_FLAGS":
		return e.ResponseFlags
	case "ROUTE_NAME":
		return nilIfEmpty(e.RouteName)
	case "UPSTREAM_CLUSTER":
		return nilIfEmpty(e.Cluster)
	case "UPSTREAM_HOST":
		return nilIfEmpty(e.UpstreamHost)
	case "UPSTREAM_REQUEST_ATTEMPT_COUNT":
		return e.Attempts
	case "DURATION":
		return e.Duration.Milliseconds()
	case "BYTES_RECEIVED":
		return e.BytesReceived
	case "BYTES_SENT":
		return e.BytesSent
	case "PROTOCOL":
		return e.Protocol
	case "DYNAMIC_METADATA":
		parts := strings.Split(arg, ":")
		if len(parts) == 0 {
			return nil
		}
		ns, ok := e.DynamicMetadata[parts[0]]
		if !ok {
			return nil
		}
		var cur any = ns
		for _, p := range parts[1:] {
			m, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			if cur, ok = m[p]; !ok {
				return nil
			}
		}
		return cur
	}
	return nil
}

func headerArg(h http.Header, arg string, e AccessLogEntry) any {
	for _, name := range strings.Split(arg, "?") {
		// Pseudo-headers are not in the header map; Envoy reads them from
		// the request. :path is the path as received, before any rewrite.
		var v string
		switch strings.ToLower(name) {
		case ":method":
			v = e.Method
		case ":path":
			v = e.Path
		case ":authority":
			v = e.Authority
		default:
			v = h.Get(name)
		}
		if v != "" {
			return v
		}
	}
	return nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// attributes evaluates the configured CEL attribute names the way Envoy's
// ext_proc expression manager reports them.
// fl is the filter instance asking: request/response attributes come from
// the headers it sees (an upstream filter sees the rewritten request).
func (x *exchange) attributes(fl *filter, names []string) map[string]*structpb.Struct {
	fields := map[string]*structpb.Value{}
	for _, n := range names {
		if v, ok := x.attribute(fl, n); ok {
			fields[n] = v
		}
	}
	return map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: fields}}
}

func (x *exchange) attribute(fl *filter, name string) (*structpb.Value, bool) {
	h := fl.dec.headers
	if h == nil {
		h = x.origHeaders
	}
	str := func(s string) (*structpb.Value, bool) { return structpb.NewStringValue(s), true }
	num := func(n int64) (*structpb.Value, bool) { return structpb.NewNumberValue(float64(n)), true }
	hdr := func(k string) (*structpb.Value, bool) {
		v, ok := h.get(k)
		if !ok {
			return nil, false
		}
		return str(v)
	}
	switch name {
	case "request.path":
		return hdr(":path")
	case "request.url_path":
		p, _ := h.get(":path")
		p, _, _ = strings.Cut(p, "?")
		return str(p)
	case "request.host":
		return hdr(":authority")
	case "request.scheme":
		return hdr(":scheme")
	case "request.method":
		return hdr(":method")
	case "request.referer":
		return hdr("referer")
	case "request.useragent":
		return hdr("user-agent")
	case "request.id":
		return hdr("x-request-id")
	case "request.protocol":
		return str(x.r.Proto)
	case "request.time":
		return str(x.start.UTC().Format(time.RFC3339Nano))
	case "request.size":
		if v, ok := h.get("content-length"); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return num(n)
			}
		}
		return nil, false
	case "response.code":
		if v, ok := fl.enc.headers.get(":status"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return num(int64(n))
			}
		}
		return nil, false
	case "response.code_details":
		if x.details == "" {
			return nil, false
		}
		return str(x.details)
	case "source.address":
		return str(x.r.RemoteAddr)
	case "source.port":
		_, p, ok := strings.Cut(x.r.RemoteAddr, ":")
		if n, err := strconv.Atoi(p); ok && err == nil {
			return num(int64(n))
		}
		return nil, false
	case "destination.address":
		if a, ok := x.r.Context().Value(http.LocalAddrContextKey).(interface{ String() string }); ok {
			return str(a.String())
		}
		return nil, false
	case "connection.mtls":
		return structpb.NewBoolValue(false), true
	case "upstream.address":
		if h := x.attrHost(fl); h != nil {
			return str(h.url.Host)
		}
		return nil, false
	case "xds.route_name":
		if x.route == nil {
			return nil, false
		}
		return str(x.route.Name)
	case "xds.cluster_name":
		if x.route == nil || x.route.Cluster == "" {
			return nil, false
		}
		return str(x.route.Cluster)
	case "xds.virtual_host_name":
		if x.vhost == nil {
			return nil, false
		}
		return str(x.vhost.Name)
	}
	if ns, key, ok := hostMetadataPath(name); ok {
		h := x.attrHost(fl)
		if h == nil {
			return nil, false
		}
		v, ok := h.metadata[ns].GetFields()[key]
		return v, ok
	}
	return nil, false
}

// attrHost is the upstream host the filter's attributes describe: an
// upstream filter's own attempt (the host is chosen before the attempt's
// filter chain exists and stored in the StreamInfo it shares,
// UpstreamRequest's constructor calls setUpstreamHost), for the downstream
// filter the latest attempt's; nil before any.
func (x *exchange) attrHost(fl *filter) *upHost {
	if fl.up != nil {
		return fl.up.host
	}
	if a := x.rt.cur; a != nil {
		return a.host
	}
	if n := len(x.rt.all); n > 0 {
		return x.rt.all[n-1].host
	}
	return nil
}

// hostMetadataPath parses the CEL attribute
// xds.upstream_host_metadata.filter_metadata['ns']['key'] (single or
// double quotes), the one form of the host metadata attribute emulated: a
// field of the host's filter_metadata (XDSWrapper's UpstreamHostMetadata in
// source/extensions/filters/common/expr/context.cc). A missing namespace or
// key is an evaluation error, and the attribute is left out.
func hostMetadataPath(name string) (ns, key string, ok bool) {
	rest, ok := strings.CutPrefix(name, "xds.upstream_host_metadata.filter_metadata")
	if !ok {
		return "", "", false
	}
	var parts []string
	for len(rest) > 0 {
		if len(rest) < 4 || rest[0] != '[' || (rest[1] != '\'' && rest[1] != '"') {
			return "", "", false
		}
		q := rest[1]
		end := strings.IndexByte(rest[2:], q)
		if end < 0 || len(rest) < end+4 || rest[end+3] != ']' {
			return "", "", false
		}
		parts = append(parts, rest[2:2+end])
		rest = rest[end+4:]
	}
	if len(parts) != 2 {
		return "", "", false
	}
	return parts[0], parts[1], true
}

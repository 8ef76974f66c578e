package fakevendor

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Request headers that steer the fake; see the package documentation.
const (
	HeaderStatus             = "x-fake-status"
	HeaderErrorType          = "x-fake-error-type"
	HeaderHeader             = "x-fake-header"
	HeaderLatencyMS          = "x-fake-latency-ms"
	HeaderTTFBMS             = "x-fake-ttfb-ms"
	HeaderChunkDelayMS       = "x-fake-chunk-delay-ms"
	HeaderResetAfterBytes    = "x-fake-reset-after-bytes"
	HeaderResetBeforeHeaders = "x-fake-reset-before-headers"
	HeaderFailTimes          = "x-fake-fail-times"
	HeaderFailKey            = "x-fake-fail-key"
	HeaderInputTokens        = "x-fake-input-tokens"
	HeaderOutputTokens       = "x-fake-output-tokens"
	HeaderCachedTokens       = "x-fake-cached-tokens"
	HeaderCacheWriteTokens   = "x-fake-cache-write-tokens"
	HeaderReasoningTokens    = "x-fake-reasoning-tokens"
	HeaderGzip               = "x-fake-gzip"
	HeaderRateLimitHeaders   = "x-fake-ratelimit-headers"
	HeaderSeed               = "x-fake-seed"
	HeaderMaxWriteBytes      = "x-fake-max-write-bytes"
	HeaderStreamErrorAfter   = "x-fake-stream-error-after"
	HeaderChunked            = "x-fake-chunked"
	HeaderTrailer            = "x-fake-trailer"
)

// maxDelay caps every injected delay so a typo cannot hang a test run.
const maxDelay = 10 * time.Minute

// directives are the parsed x-fake-* request headers.
type directives struct {
	status             int
	errorType          string
	headers            [][2]string
	latency            time.Duration
	ttfb               time.Duration
	chunkDelay         time.Duration
	resetAfterBytes    int64 // -1 when unset
	resetBeforeHeaders bool
	failTimes          int // -1 when unset
	failKey            string
	inputTokens        int64 // -1 when unset, as for the other token counts
	outputTokens       int64
	cachedTokens       int64
	cacheWriteTokens   int64
	reasoningTokens    int64
	gzip               bool // compress the body (decided with the request's accept-encoding)
	gzipAuto           bool // x-fake-gzip: auto
	chunked            bool // no content-length on a JSON body
	trailers           [][2]string
	rateLimitHeaders   bool
	seed               *int64
	maxWriteBytes      int // 0 when unset
	streamErrorAfter   int // -1 when unset
}

// headerLine matches the start of one "name: value" item of x-fake-header.
var headerLine = regexp.MustCompile(`^\s*([A-Za-z0-9!#$%&'*+.^_|~-]+)\s*:(.*)$`)

// parseDirectives reads the x-fake-* headers of h. It returns an error
// naming the header when a value is malformed; it never panics.
func parseDirectives(h http.Header) (directives, error) {
	d := directives{resetAfterBytes: -1, failTimes: -1, inputTokens: -1, outputTokens: -1,
		cachedTokens: -1, cacheWriteTokens: -1, reasoningTokens: -1, streamErrorAfter: -1}
	var err error
	if v := h.Get(HeaderStatus); v != "" {
		n, perr := strconv.Atoi(strings.TrimSpace(v))
		if perr != nil || n < 400 || n > 599 {
			return d, fmt.Errorf("%s: want an HTTP status 400-599, got %q", HeaderStatus, v)
		}
		d.status = n
	}
	d.errorType = strings.TrimSpace(h.Get(HeaderErrorType))
	for _, v := range h.Values(HeaderHeader) {
		items, perr := splitHeaderItems(v)
		if perr != nil {
			return d, fmt.Errorf("%s: %w", HeaderHeader, perr)
		}
		d.headers = append(d.headers, items...)
	}
	durations := []struct {
		name string
		dst  *time.Duration
	}{{HeaderLatencyMS, &d.latency}, {HeaderTTFBMS, &d.ttfb}, {HeaderChunkDelayMS, &d.chunkDelay}}
	for _, f := range durations {
		ms, perr := intHeader(h, f.name, 0, int64(maxDelay/time.Millisecond))
		if perr != nil {
			return d, perr
		}
		if ms > 0 {
			*f.dst = time.Duration(ms) * time.Millisecond
		}
	}
	counts := []struct {
		name string
		dst  *int64
	}{
		{HeaderResetAfterBytes, &d.resetAfterBytes},
		{HeaderInputTokens, &d.inputTokens},
		{HeaderOutputTokens, &d.outputTokens},
		{HeaderCachedTokens, &d.cachedTokens},
		{HeaderCacheWriteTokens, &d.cacheWriteTokens},
		{HeaderReasoningTokens, &d.reasoningTokens},
	}
	for _, f := range counts {
		n, perr := intHeader(h, f.name, -1, 1<<40)
		if perr != nil {
			return d, perr
		}
		*f.dst = n
	}
	if d.resetBeforeHeaders, err = boolHeader(h, HeaderResetBeforeHeaders); err != nil {
		return d, err
	}
	if strings.EqualFold(strings.TrimSpace(h.Get(HeaderGzip)), "auto") {
		d.gzipAuto = true
	} else if d.gzip, err = boolHeader(h, HeaderGzip); err != nil {
		return d, err
	}
	if d.chunked, err = boolHeader(h, HeaderChunked); err != nil {
		return d, err
	}
	for _, v := range h.Values(HeaderTrailer) {
		items, perr := splitHeaderItems(v)
		if perr != nil {
			return d, fmt.Errorf("%s: %w", HeaderTrailer, perr)
		}
		for _, kv := range items {
			if forbiddenTrailer(kv[0]) {
				return d, fmt.Errorf("%s: %q may not be a trailer", HeaderTrailer, kv[0])
			}
		}
		d.trailers = append(d.trailers, items...)
	}
	if d.rateLimitHeaders, err = boolHeader(h, HeaderRateLimitHeaders); err != nil {
		return d, err
	}
	n, err := intHeader(h, HeaderFailTimes, -1, 1<<30)
	if err != nil {
		return d, err
	}
	d.failTimes = int(n)
	d.failKey = strings.TrimSpace(h.Get(HeaderFailKey))
	if v := h.Get(HeaderSeed); v != "" {
		s, perr := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if perr != nil {
			return d, fmt.Errorf("%s: want an integer, got %q", HeaderSeed, v)
		}
		d.seed = &s
	}
	if n, err = intHeader(h, HeaderMaxWriteBytes, 0, 1<<30); err != nil {
		return d, err
	}
	d.maxWriteBytes = int(n)
	if n, err = intHeader(h, HeaderStreamErrorAfter, -1, 1<<30); err != nil {
		return d, err
	}
	d.streamErrorAfter = int(n)
	return d, nil
}

// forbiddenTrailer reports header fields RFC 9110 section 6.5.1 forbids in
// trailers (framing, routing, authentication, content handling).
func forbiddenTrailer(name string) bool {
	switch strings.ToLower(name) {
	case "content-length", "content-encoding", "content-type", "content-range", "transfer-encoding",
		"trailer", "host", "connection", "te", "authorization", "set-cookie", "cache-control", "expires", "date":
		return true
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding value admits gzip (a
// "gzip" or "*" coding whose q is not 0).
func acceptsGzip(v string) bool {
	for _, part := range strings.Split(v, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "x-gzip" && coding != "*" {
			continue
		}
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
					q = f
				}
			}
		}
		if q > 0 {
			return true
		}
	}
	return false
}

// intHeader parses a non-negative integer header no larger than limit,
// returning unset when the header is absent.
func intHeader(h http.Header, name string, unset, limit int64) (int64, error) {
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return unset, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > limit {
		return unset, fmt.Errorf("%s: want an integer 0-%d, got %q", name, limit, v)
	}
	return n, nil
}

func boolHeader(h http.Header, name string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(h.Get(name))) {
	case "", "0", "false", "no", "off":
		return false, nil
	case "1", "true", "yes", "on":
		return true, nil
	default:
		return false, fmt.Errorf("%s: want 1 or 0, got %q", name, h.Get(name))
	}
}

// splitHeaderItems parses one x-fake-header value. A proxy may have joined
// repeated headers with commas, so the value is split at each comma that is
// followed by another "name:" item; commas inside values (dates) survive.
func splitHeaderItems(v string) ([][2]string, error) {
	var items [][2]string
	parts := strings.Split(v, ",")
	cur := ""
	flush := func() error {
		m := headerLine.FindStringSubmatch(cur)
		if m == nil {
			return fmt.Errorf("want \"name: value\", got %q", cur)
		}
		items = append(items, [2]string{m[1], strings.TrimSpace(m[2])})
		return nil
	}
	for i, p := range parts {
		if i > 0 && headerLine.MatchString(p) {
			if err := flush(); err != nil {
				return nil, err
			}
			cur = p
			continue
		}
		if i > 0 {
			cur += "," + p
		} else {
			cur = p
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return items, nil
}

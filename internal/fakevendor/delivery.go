package fakevendor

import (
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// segment is one unit of a response body: a whole JSON body, one SSE event
// or one element of a streamed JSON array. usage is the usage the segment
// carries, nil when it carries none.
type segment struct {
	data  []byte
	usage *Usage
}

// reply is a fully rendered response, written by deliver.
type reply struct {
	status    int
	header    http.Header
	segments  []segment
	stream    bool
	usage     *Usage // the final usage the response carries
	requestID string
}

// jsonReply builds a non-streaming reply with a single body segment.
func jsonReply(status int, header http.Header, body []byte, usage *Usage) *reply {
	if header.Get("Content-Type") == "" {
		header.Set("Content-Type", "application/json")
	}
	return &reply{status: status, header: header, segments: []segment{{data: body, usage: usage}}, usage: usage}
}

// ends returns the cumulative end offset of every segment.
func (rp *reply) ends() []int {
	out := make([]int, len(rp.segments))
	n := 0
	for i, sg := range rp.segments {
		n += len(sg.data)
		out[i] = n
	}
	return out
}

// deliveredUsage returns the usage of the last usage-bearing segment that
// lies entirely within the first n body bytes.
func (rp *reply) deliveredUsage(n int64) *Usage {
	var got *Usage
	var end int64
	for _, sg := range rp.segments {
		end += int64(len(sg.data))
		if end > n {
			break
		}
		if sg.usage != nil {
			got = sg.usage
		}
	}
	if got == nil {
		return nil
	}
	u := *got
	return &u
}

// writeCuts returns the offsets (exclusive of 0 and total) at which the body
// is split into separate writes. Every segment of a stream longer than one
// byte is cut once at a random inner offset, so writes straddle event
// boundaries; with maxWrite > 0 longer pieces are cut further (a piece
// exceeds maxWrite only where that is needed to step over a boundary). No
// cut ever falls on a segment boundary.
func writeCuts(ends []int, stream bool, maxWrite int, intn func(int) int) []int {
	if len(ends) == 0 {
		return nil
	}
	total := ends[len(ends)-1]
	boundary := make(map[int]bool, len(ends))
	for _, e := range ends {
		boundary[e] = true
	}
	var cuts []int
	if stream {
		start := 0
		for _, end := range ends {
			if end-start >= 2 {
				cuts = append(cuts, start+1+intn(end-start-1))
			}
			start = end
		}
	}
	if maxWrite > 0 {
		var more []int
		prev := 0
		for _, c := range append(slices.Clone(cuts), total) {
			for pos := prev; c-pos > maxWrite; {
				next := pos + 1 + intn(maxWrite)
				for boundary[next] && next < c {
					next++
				}
				if next >= c {
					break
				}
				more = append(more, next)
				pos = next
			}
			prev = c
		}
		cuts = append(cuts, more...)
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
	}
	return cuts
}

// flushWriter writes body bytes to the client, optionally through gzip, and
// flushes after every write.
type flushWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	gz *gzip.Writer
}

func (fw *flushWriter) write(p []byte) error {
	if fw.gz != nil {
		if _, err := fw.gz.Write(p); err != nil {
			return err
		}
		if err := fw.gz.Flush(); err != nil {
			return err
		}
	} else if _, err := fw.w.Write(p); err != nil {
		return err
	}
	return fw.flush()
}

func (fw *flushWriter) flush() error {
	if err := fw.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// deliver writes rp to w honouring the delivery directives of d, keeping
// call up to date. The record is completed before the last body bytes are
// written, so a client that has read the whole body always finds its call
// recorded. When reset is true the connection is aborted after the
// x-fake-reset-after-bytes budget by panicking with http.ErrAbortHandler.
func (s *Server) deliver(ctx context.Context, w http.ResponseWriter, call *Call, rp *reply, d directives, reset bool, intn func(int) int) {
	h := w.Header()
	for k, vs := range rp.header {
		h[k] = vs
	}
	if rp.stream {
		h.Del("Content-Length")
	}
	set := map[string]bool{}
	for _, kv := range d.headers {
		if set[strings.ToLower(kv[0])] {
			h.Add(kv[0], kv[1])
		} else {
			h.Set(kv[0], kv[1])
			set[strings.ToLower(kv[0])] = true
		}
	}

	var body []byte
	for _, sg := range rp.segments {
		body = append(body, sg.data...)
	}
	total := int64(len(body))
	limit := total
	fault := ""
	if reset && d.resetAfterBytes >= 0 {
		limit = min(d.resetAfterBytes, total)
		fault = "reset-after-bytes"
	}
	withLength := false
	switch {
	case d.gzip:
		h.Set("Content-Encoding", "gzip")
		h.Add("Vary", "Accept-Encoding")
		h.Del("Content-Length")
	case rp.stream || d.chunked || len(d.trailers) > 0:
		// HTTP/1.1 trailers need the chunked coding.
		h.Del("Content-Length")
	default:
		h.Set("Content-Length", strconv.FormatInt(total, 10))
		withLength = true
	}
	var trailerNames []string
	for _, kv := range d.trailers {
		if !slices.Contains(trailerNames, http.CanonicalHeaderKey(kv[0])) {
			trailerNames = append(trailerNames, http.CanonicalHeaderKey(kv[0]))
		}
	}
	if len(trailerNames) > 0 {
		h.Set("Trailer", strings.Join(trailerNames, ", "))
	}

	maxWrite := s.opts.MaxWriteBytes
	if d.maxWriteBytes > 0 {
		maxWrite = d.maxWriteBytes
	}
	cuts := writeCuts(rp.ends(), rp.stream, maxWrite, intn)

	s.update(call, func(c *Call) {
		c.Status = rp.status
		c.Stream = rp.stream
		c.RequestID = rp.requestID
		if rp.usage != nil {
			u := *rp.usage
			c.Usage = &u
		}
		if fault != "" {
			c.Fault = fault
		}
		c.BodyBytes = limit
		c.DeliveredUsage = rp.deliveredUsage(limit)
		c.Completed = fault == ""
		c.ContentEncoding = h.Get("Content-Encoding")
		c.ContentLength = withLength
		if len(d.trailers) > 0 && fault == "" {
			c.Trailers = http.Header{}
			for _, kv := range d.trailers {
				c.Trailers.Add(kv[0], kv[1])
			}
		}
	})
	fail := func(written int64, err error) {
		s.update(call, func(c *Call) {
			c.BodyBytes = written
			c.DeliveredUsage = rp.deliveredUsage(written)
			c.Completed = false
			c.Err = err.Error()
		})
	}

	fw := &flushWriter{w: w, rc: http.NewResponseController(w)}
	if d.gzip {
		fw.gz = gzip.NewWriter(w)
	}
	w.WriteHeader(rp.status)
	if err := fw.flush(); err != nil {
		fail(0, err)
		return
	}
	if d.ttfb > 0 {
		if err := s.sleep(ctx, d.ttfb); err != nil {
			fail(0, err)
			return
		}
	}
	start := int64(0)
	for i, c := range append(cuts, int(total)) {
		end := min(int64(c), limit)
		if end <= start {
			if end >= limit {
				break
			}
			continue
		}
		if i > 0 && d.chunkDelay > 0 {
			if err := s.sleep(ctx, d.chunkDelay); err != nil {
				fail(start, err)
				return
			}
		}
		if err := fw.write(body[start:end]); err != nil {
			fail(start, err)
			return
		}
		start = end
	}
	if fault != "" {
		panic(http.ErrAbortHandler)
	}
	if fw.gz != nil {
		if err := fw.gz.Close(); err != nil {
			fail(total, err)
			return
		}
		if err := fw.flush(); err != nil {
			fail(total, err)
			return
		}
	}
	// Declared trailers are sent once the handler returns.
	for _, kv := range d.trailers {
		h.Add(kv[0], kv[1])
	}
}

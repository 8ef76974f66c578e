package processor

import (
	"compress/gzip"
	"io"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// gunzipParser feeds a gzip-encoded response body, delivered in chunks, to a
// UsageParser as decoded bytes. Memory is bounded by gzip's window and one
// read buffer. Write and Close must be called from one goroutine; the parser
// is only touched by the decoding goroutine until Close returns.
type gunzipParser struct {
	pw   *io.PipeWriter
	done chan struct{}
}

func newGunzipParser(p providers.UsageParser) *gunzipParser {
	pr, pw := io.Pipe()
	g := &gunzipParser{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		defer pr.Close()
		zr, err := gzip.NewReader(pr)
		if err != nil {
			_, _ = io.Copy(io.Discard, pr)
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := zr.Read(buf)
			if n > 0 {
				p.Write(buf[:n])
			}
			if err != nil {
				// Drain so the writer never blocks on a broken stream.
				_, _ = io.Copy(io.Discard, pr)
				return
			}
		}
	}()
	return g
}

// Write passes the next compressed chunk to the decoder.
func (g *gunzipParser) Write(chunk []byte) { _, _ = g.pw.Write(chunk) }

// Close ends the input and waits until every decoded byte reached the parser.
func (g *gunzipParser) Close() {
	_ = g.pw.Close()
	<-g.done
}

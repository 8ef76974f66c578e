package processor

import (
	"bytes"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/providers"
)

// OpenAI streams carry usage only when the client asks for it with
// stream_options.include_usage. Without usage a streamed call cannot be
// priced or reconciled, so the server asks on the client's behalf and
// removes the extra final chunk from the stream before the client sees it:
// the client receives exactly the stream it asked for.

// includeUsageField is inserted first in the request object.
var includeUsageField = []byte(`"stream_options":{"include_usage":true},`)

// wantsUsageInjection reports whether a request body should get
// stream_options.include_usage: an OpenAI chat completion that streams and
// names no stream_options of its own. A body that mentions
// "stream_options" anywhere (even inside a message) is left alone: the
// scanner does not rewrite what it has not fully parsed.
func wantsUsageInjection(provider string, info providers.RequestInfo, body []byte) bool {
	return provider == "openai" && !info.OpenAICompatible && info.Stream && !info.Malformed &&
		info.Endpoint == providers.EndpointChatCompletions && len(body) > 0 &&
		!bytes.Contains(body, []byte(`"stream_options"`))
}

// injectIncludeUsage returns body with include_usage set, or nil when the
// body is not a non-empty JSON object.
func injectIncludeUsage(body []byte) []byte {
	i := 0
	for i < len(body) && isSpace(body[i]) {
		i++
	}
	if i >= len(body) || body[i] != '{' {
		return nil
	}
	j := i + 1
	for j < len(body) && isSpace(body[j]) {
		j++
	}
	if j >= len(body) || body[j] == '}' {
		return nil
	}
	out := make([]byte, 0, len(body)+len(includeUsageField))
	out = append(out, body[:i+1]...)
	out = append(out, includeUsageField...)
	out = append(out, body[i+1:]...)
	return out
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// usageChunkFilter removes OpenAI's usage-only chunk (empty choices plus a
// usage object) from an event stream delivered in arbitrary pieces. It
// holds back at most one incomplete event (bounded by maxHeld; a larger
// event passes through untouched, since a usage chunk is small).
type usageChunkFilter struct {
	held    []byte
	passing bool // the current event is over maxHeld: pass it through
}

const maxHeld = 64 << 10

// Write consumes the next piece and returns the bytes to forward now.
func (f *usageChunkFilter) Write(p []byte) []byte {
	var out []byte
	for len(p) > 0 {
		if f.passing {
			// Forward until the end of this oversized event.
			end := eventEnd(p)
			if end < 0 {
				out = append(out, p...)
				return out
			}
			out = append(out, p[:end]...)
			p = p[end:]
			f.passing = false
			continue
		}
		f.held = append(f.held, p...)
		p = nil
		for {
			end := eventEnd(f.held)
			if end < 0 {
				break
			}
			ev := f.held[:end]
			if !isUsageOnlyChunk(ev) {
				out = append(out, ev...)
			}
			f.held = f.held[end:]
		}
		if len(f.held) > maxHeld {
			out = append(out, f.held...)
			f.held = f.held[:0]
			f.passing = true
		}
	}
	if len(f.held) == 0 {
		f.held = nil
	}
	return out
}

// Flush returns what is held at the end of the stream.
func (f *usageChunkFilter) Flush() []byte {
	out := f.held
	f.held = nil
	if isUsageOnlyChunk(out) {
		return nil
	}
	return out
}

// eventEnd returns the index just past the blank line ending the first
// event in b, or -1.
func eventEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		// "\n\n" or "\n\r\n"
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return -1
}

// isUsageOnlyChunk reports whether an SSE event is OpenAI's final usage
// chunk: a chat.completion.chunk with an empty choices array and a usage
// object.
func isUsageOnlyChunk(ev []byte) bool {
	return bytes.Contains(ev, []byte(`"usage":{`)) && (bytes.Contains(ev, []byte(`"choices":[]`)) ||
		bytes.Contains(ev, []byte(`"choices": []`)))
}

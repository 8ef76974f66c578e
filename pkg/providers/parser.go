package providers

import "sync"

// bodyMode is how a response body is framed.
type bodyMode uint8

const (
	modeUnknown bodyMode = iota // no significant byte seen yet
	modeJSON                    // a JSON value, or several in a row
	modeSSE                     // a text/event-stream
)

// lineState is the SSE framer's position within a line.
type lineState uint8

const (
	lsStart  lineState = iota // at the start of a line
	lsField                   // reading the field name
	lsSpace                   // after "data:", before an optional space
	lsData                    // inside a data value
	lsIgnore                  // inside a comment or another field
)

// usageParser is the [UsageParser] shared by every provider; the provider
// chooses the JSON paths usage is read from.
//
// The framing is decided by the first byte that is not white space, not by
// the Content-Type, so a JSON error body sent as text/event-stream is still
// read: '{' or '[' starts JSON (one object, a Gemini array of objects, or
// several objects in a row), anything else is an event stream.
type usageParser struct {
	t            tracker
	v            values
	requestModel string
	mode         bodyMode

	ls        lineState
	name      [maxFieldName]byte
	nameLen   int
	dataLines int  // data lines in the current event
	cr        bool // the previous byte was a CR that ended a line
}

var _ UsageParser = (*usageParser)(nil)

// newUsageParser returns a parser reading the fields of paths. The content
// type is not needed to read the body (see usageParser) and is accepted for
// the Provider contract.
func newUsageParser(paths *pathNode, info RequestInfo, _ string) *usageParser {
	p := parserPool.Get().(*usageParser)
	*p = usageParser{requestModel: info.Model}
	p.t.root = paths
	p.t.sink = &p.v
	p.t.reset()
	return p
}

// parserPool recycles parsers (about 1 KiB each, one per response).
var parserPool = sync.Pool{New: func() any { return new(usageParser) }}

// Release hands the parser back for another response; the caller must not
// use it afterwards, nor release it twice. Calling it is optional: a parser
// never released is garbage collected as usual.
func (p *usageParser) Release() { parserPool.Put(p) }

// Write implements [UsageParser.Write].
func (p *usageParser) Write(chunk []byte) {
	if p.mode == modeUnknown {
		i := 0
		for i < len(chunk) && isSpace(chunk[i]) {
			i++
		}
		if i == len(chunk) {
			return
		}
		chunk = chunk[i:]
		if chunk[0] == '{' || chunk[0] == '[' {
			p.mode = modeJSON
		} else {
			p.mode = modeSSE
		}
	}
	if p.mode == modeJSON {
		p.t.write(chunk)
		return
	}
	p.sse(chunk)
}

// Usage implements [UsageParser.Usage].
func (p *usageParser) Usage() Usage { return p.v.usage(p.requestModel) }

// Held implements [UsageParser.Held]. It counts the partial key, scalar and
// SSE field name being read; it never exceeds a few hundred bytes.
func (p *usageParser) Held() int { return p.t.held() + p.nameLen }

// sse frames an event stream: "data:" values go to the JSON reader as they
// arrive (joined by "\n" within an event), a blank line ends the event and
// resets the reader. Lines end in LF, CRLF or CR.
func (p *usageParser) sse(b []byte) {
	i := 0
	for i < len(b) {
		c := b[i]
		if p.cr {
			p.cr = false
			if c == '\n' {
				i++
				continue
			}
		}
		switch p.ls {
		case lsStart:
			switch c {
			case '\n', '\r':
				p.endLine(c)
				p.endEvent()
			case ':':
				p.ls = lsIgnore
			default:
				p.ls, p.nameLen = lsField, 0
				continue // lsField reads c
			}
			i++
		case lsField:
			switch c {
			case ':':
				if p.isData() {
					p.ls = lsSpace
				} else {
					p.ls = lsIgnore
				}
				p.nameLen = 0
			case '\n', '\r':
				if p.isData() { // "data" alone: an empty data line
					p.dataLine()
				}
				p.nameLen = 0
				p.endLine(c)
			default:
				if p.nameLen == maxFieldName {
					// Not "data": the rest of the line does not matter.
					p.ls, p.nameLen = lsIgnore, 0
					break
				}
				p.name[p.nameLen] = c
				p.nameLen++
			}
			i++
		case lsSpace:
			p.dataLine()
			p.ls = lsData
			if c == ' ' {
				i++
			}
		case lsData:
			j := i
			for j < len(b) && b[j] != '\n' && b[j] != '\r' {
				j++
			}
			p.t.write(b[i:j])
			if j < len(b) {
				p.endLine(b[j])
				j++
			}
			i = j
		case lsIgnore:
			for i < len(b) && b[i] != '\n' && b[i] != '\r' {
				i++
			}
			if i < len(b) {
				p.endLine(b[i])
				i++
			}
		}
	}
}

var newline = []byte{'\n'}

func (p *usageParser) isData() bool {
	return p.nameLen == 4 && string(p.name[:4]) == "data"
}

// dataLine starts the value of a data line; values after the first of an
// event are joined with "\n" (white space to the JSON reader).
func (p *usageParser) dataLine() {
	if p.dataLines > 0 {
		p.t.write(newline)
	}
	p.dataLines++
}

func (p *usageParser) endLine(c byte) {
	p.ls = lsStart
	p.cr = c == '\r'
}

func (p *usageParser) endEvent() {
	if p.dataLines > 0 {
		p.t.reset()
		p.dataLines = 0
	}
}

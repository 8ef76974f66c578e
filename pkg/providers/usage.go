package providers

import (
	"encoding/json"
	"strings"
)

// This file holds the response-side reader. It never buffers a body, a line
// or an event: a byte-at-a-time JSON state machine follows the document and
// keeps only the path from the root to the current value while that path can
// still lead to a field of interest, plus the bytes of the key or scalar being
// read (capped). An SSE framer in front of it feeds it the payload of "data:"
// lines as they arrive. Memory is therefore constant whatever the body size
// and however the body is split into chunks.

// field names a value the usage reader keeps.
type field uint8

const (
	fieldNone field = iota
	fieldInput
	fieldOutput
	fieldTotal
	fieldCacheRead
	fieldCacheWrite
	// fieldCacheWrite1h is Anthropic's
	// cache_creation.ephemeral_1h_input_tokens: the part of the cache
	// writes made with the 1-hour TTL.
	fieldCacheWrite1h
	fieldReasoning
	// fieldThoughts is Gemini's thoughtsTokenCount: reasoning tokens that
	// candidatesTokenCount leaves out, so they are added to the output.
	fieldThoughts
	// fieldToolPrompt is Gemini's toolUsePromptTokenCount: input tokens that
	// promptTokenCount leaves out.
	fieldToolPrompt
	// fieldInputAudio and fieldOutputAudio are OpenAI's audio_tokens of the
	// prompt and of the completion.
	fieldInputAudio
	fieldOutputAudio
	// fieldPromptModalityCount, fieldCacheModalityCount and
	// fieldOutputModalityCount are the tokenCount of one element of
	// Gemini's promptTokensDetails, cacheTokensDetails and
	// candidatesTokensDetails; each is attributed to the modality read just
	// before it in the same element (see values.setModality).
	fieldPromptModalityCount
	fieldCacheModalityCount
	fieldOutputModalityCount
	fieldModel
	fieldID
	fieldFinish
	fieldStatus
	fieldIncomplete
	fieldBlockReason
	// fieldServiceTier is OpenAI's top-level service_tier of a response.
	fieldServiceTier
	// fieldPromptModality, fieldCacheModality and fieldOutputModality are
	// the modality of one element of those Gemini lists.
	fieldPromptModality
	fieldCacheModality
	fieldOutputModality
	// fieldPromptModalityElem, fieldCacheModalityElem and
	// fieldOutputModalityElem mark an element of those lists: entering one
	// forgets the modality of the element before.
	fieldPromptModalityElem
	fieldCacheModalityElem
	fieldOutputModalityElem
	// fieldUsageBlock marks an object that states a vendor's whole usage so
	// far (Gemini's usageMetadata in each stream chunk): entering it clears
	// the counts read before, so the last block is taken as the vendor
	// states it and a count it leaves out is zero, not an earlier block's.
	fieldUsageBlock
	numFields
)

// lastCount is the last field that holds a count.
const lastCount = fieldOutputModalityCount

func (f field) isCount() bool { return f >= fieldInput && f <= lastCount }

const (
	// maxFrames bounds the containers tracked on the path to a field of
	// interest; deeper containers are skipped by counting brackets.
	maxFrames = 8
	// maxKey is the longest key compared against the paths; longer keys
	// never match.
	maxKey = 64
	// maxScalar is the longest scalar kept (ids, model names, reasons);
	// longer values are dropped.
	maxScalar = 256
	// maxFieldName is the longest SSE field name buffered; only "data"
	// matters.
	maxFieldName = 8
)

// pathNode is a node of the tree of JSON paths a vendor's usage lives at.
type pathNode struct {
	keys  []pathEdge
	first *pathNode // element 0 of an array
	each  *pathNode // any element of an array
	leaf  field
}

type pathEdge struct {
	key  string
	next *pathNode
}

// newPaths builds the path tree from "a.b.[0].c" specs ("[]" is any
// element of an array). The root also
// accepts an array whose elements are documents, the shape of a Gemini
// stream without alt=sse.
func newPaths(specs map[string]field) *pathNode {
	root := &pathNode{}
	root.each = root
	for spec, f := range specs {
		n := root
		for _, part := range strings.Split(spec, ".") {
			if part == "[]" {
				if n.each == nil {
					n.each = &pathNode{}
				}
				n = n.each
				continue
			}
			if part == "[0]" {
				if n.first == nil {
					n.first = &pathNode{}
				}
				n = n.first
				continue
			}
			var next *pathNode
			for _, e := range n.keys {
				if e.key == part {
					next = e.next
				}
			}
			if next == nil {
				next = &pathNode{}
				n.keys = append(n.keys, pathEdge{key: part, next: next})
			}
			n = next
		}
		n.leaf = f
	}
	return root
}

func mergePaths(a, b map[string]field) map[string]field {
	m := make(map[string]field, len(a)+len(b))
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func (n *pathNode) child(k []byte) *pathNode {
	if n == nil {
		return nil
	}
	for _, e := range n.keys {
		if e.key == string(k) {
			return e.next
		}
	}
	return nil
}

func (n *pathNode) leafOrNone() field {
	if n == nil {
		return fieldNone
	}
	return n.leaf
}

func (n *pathNode) elem(i int) *pathNode {
	if n == nil {
		return nil
	}
	if i == 0 && n.first != nil {
		return n.first
	}
	return n.each
}

// values are the fields read so far; later values overwrite earlier ones,
// which gives "cumulative counts overwrite" and "last usage block wins".
type values struct {
	num [lastCount + 1]int64
	has [numFields]bool
	// str holds the string fields, fieldModel to fieldServiceTier, at
	// f - fieldModel.
	str [fieldServiceTier - fieldModel + 1]string
	// modal sums Gemini's per-modality token counts of the current usage
	// block, by list (prompt, cache, output) and priced modality; pending
	// is the modality last read in each list, awaiting its tokenCount.
	modal   [numModalLists][numModalities]int64
	pending [numModalLists]modality
}

// text returns the string field f (fieldModel to fieldServiceTier).
func (v *values) text(f field) string { return v.str[f-fieldModel] }

// modality is a kind of token the price catalog rates apart (Gemini's
// modality enum); every other modality (TEXT, VIDEO, DOCUMENT, ...) is
// billed as text.
type modality uint8

const (
	modalityOther modality = iota
	modalityAudio
	modalityImage
	numModalities
)

// modalList is one of Gemini's ModalityTokenCount lists.
type modalList uint8

const (
	modalPrompt modalList = iota
	modalCache
	modalOutput
	numModalLists
)

// modalListOf returns the list a modality or modality-count field belongs
// to; ok is false for other fields.
func modalListOf(f field) (modalList, bool) {
	switch f {
	case fieldPromptModality, fieldPromptModalityCount, fieldPromptModalityElem:
		return modalPrompt, true
	case fieldCacheModality, fieldCacheModalityCount, fieldCacheModalityElem:
		return modalCache, true
	case fieldOutputModality, fieldOutputModalityCount, fieldOutputModalityElem:
		return modalOutput, true
	}
	return 0, false
}

// enterElement starts a new element of list l.
func (v *values) enterElement(l modalList) { v.pending[l] = modalityOther }

// setModality records the modality of the list element being read. Gemini
// writes an element's modality before its tokenCount (proto field order)
// and leaves out a zero tokenCount, so a modality is attributed to a count
// of its own element only (entering an element clears it, see
// enterElement); a count without a modality is text.
func (v *values) setModality(l modalList, raw []byte) {
	switch string(raw) {
	case "AUDIO":
		v.pending[l] = modalityAudio
	case "IMAGE":
		v.pending[l] = modalityImage
	default:
		v.pending[l] = modalityOther
	}
}

func (v *values) setNum(f field, raw []byte) {
	n, ok := parseCount(raw)
	if !ok {
		return
	}
	if l, ok := modalListOf(f); ok {
		v.modal[l][v.pending[l]] += n
		v.pending[l] = modalityOther
	}
	v.num[f] = n
	v.has[f] = true
}

func (v *values) setStr(f field, raw []byte, escaped bool) {
	if l, ok := modalListOf(f); ok {
		v.setModality(l, raw)
		return
	}
	if f < fieldModel || f > fieldServiceTier {
		return
	}
	i := f - fieldModel
	if !escaped {
		if f == fieldServiceTier {
			if tier, ok := knownServiceTier(raw); ok {
				v.str[i], v.has[f] = tier, true
				return
			}
		}
		if string(raw) != v.str[i] {
			// Values end up in protobuf strings, which must be UTF-8.
			v.str[i] = strings.ToValidUTF8(string(raw), "\uFFFD")
		}
		v.has[f] = true
		return
	}
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	var s string
	if json.Unmarshal(q, &s) == nil {
		v.str[i] = s
		v.has[f] = true
	}
}

// knownServiceTier returns OpenAI's service tiers as constants, so that
// reading one (every chunk of a stream states it) does not allocate.
func knownServiceTier(raw []byte) (string, bool) {
	for _, t := range [...]string{"default", "flex", "priority", "scale", "auto", "standard"} {
		if string(raw) == t {
			return t, true
		}
	}
	return "", false
}

// clearCounts forgets every count read so far (a new usage block starts).
func (v *values) clearCounts() {
	for f := fieldInput; f <= lastCount; f++ {
		v.num[f], v.has[f] = 0, false
	}
	v.modal = [numModalLists][numModalities]int64{}
	v.pending = [numModalLists]modality{}
}

// parseCount parses a non-negative JSON integer without allocating.
func parseCount(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// usage turns the values into a Usage. See [Usage] for the meaning of
// each count per vendor.
func (v *values) usage(requestModel string) Usage {
	u := Usage{
		InputTokens:      v.num[fieldInput] + v.num[fieldToolPrompt],
		OutputTokens:     v.num[fieldOutput] + v.num[fieldThoughts],
		CacheReadTokens:  v.num[fieldCacheRead],
		CacheWriteTokens: v.num[fieldCacheWrite],
		ReasoningTokens:  v.num[fieldReasoning] + v.num[fieldThoughts],

		CacheWrite1hTokens:   v.num[fieldCacheWrite1h],
		InputAudioTokens:     v.num[fieldInputAudio] + v.modal[modalPrompt][modalityAudio],
		InputImageTokens:     v.modal[modalPrompt][modalityImage],
		CacheReadAudioTokens: v.modal[modalCache][modalityAudio],
		CacheReadImageTokens: v.modal[modalCache][modalityImage],
		OutputAudioTokens:    v.num[fieldOutputAudio] + v.modal[modalOutput][modalityAudio],
		OutputImageTokens:    v.modal[modalOutput][modalityImage],
		ServiceTier:          v.text(fieldServiceTier),

		Model:     strings.TrimPrefix(v.text(fieldModel), "models/"),
		RequestID: v.text(fieldID),
	}
	for f := fieldInput; f <= lastCount; f++ {
		u.Found = u.Found || v.has[f]
	}
	// The total always agrees with its parts (every vendor's total is
	// input + output in this normalisation); the vendor's own total is
	// used only when it states no part.
	u.TotalTokens = u.InputTokens + u.OutputTokens
	if u.TotalTokens == 0 && v.has[fieldTotal] {
		u.TotalTokens = v.num[fieldTotal]
	}
	if u.Model == "" {
		u.Model = requestModel
	}
	switch status := v.text(fieldStatus); {
	case v.text(fieldFinish) != "":
		u.FinishReason = v.text(fieldFinish)
	case v.text(fieldIncomplete) != "":
		u.FinishReason = v.text(fieldIncomplete)
	case status != "" && status != "in_progress" && status != "queued":
		u.FinishReason = status
	default:
		u.FinishReason = v.text(fieldBlockReason)
	}
	return u
}

// tstate is the state of the streaming JSON reader.
type tstate uint8

const (
	tsValue   tstate = iota // before a value
	tsObjOpen               // after '{': a key or '}'
	tsKey                   // after ',' in an object: a key
	tsKeyStr                // inside a key
	tsColon                 // after a key
	tsAfter                 // after a value: ',' or a closing bracket
	tsStr                   // inside a string value
	tsBare                  // inside a number or literal
	tsSkip                  // inside a container no path leads through
	tsBad                   // syntax error: ignore the rest of the document
)

type frame struct {
	node *pathNode
	arr  bool
	idx  int
}

// tracker follows one JSON document (or a sequence of them) fed in pieces
// and stores the fields its path tree names into sink.
type tracker struct {
	root   *pathNode
	sink   *values
	frames [maxFrames]frame
	depth  int
	st     tstate
	cur    *pathNode // node of the value about to be or being read
	skip   int       // open brackets inside a skipped container
	inStr  bool      // inside a string while skipping
	esc    bool      // the previous string byte was a backslash
	hasEsc bool      // the current key or scalar has escapes

	key     [maxKey]byte
	keyLen  int
	keyLong bool
	val     [maxScalar]byte
	valLen  int
	valLong bool
}

func (t *tracker) reset() {
	t.depth, t.skip = 0, 0
	t.st, t.cur = tsValue, t.root
	t.inStr, t.esc, t.hasEsc = false, false, false
	t.keyLen, t.valLen = 0, 0
	t.keyLong, t.valLong = false, false
}

// held is the number of input bytes buffered.
func (t *tracker) held() int { return t.keyLen + t.valLen }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// write feeds the next piece of the document.
func (t *tracker) write(b []byte) {
	i := 0
	for i < len(b) {
		if t.st != tsKeyStr && t.st < tsStr && isSpace(b[i]) {
			// Between tokens: pass a run of whitespace at once (vendors
			// pretty-print JSON bodies).
			for i++; i < len(b) && isSpace(b[i]); i++ {
			}
			continue
		}
		switch t.st {
		case tsBad:
			return
		case tsValue:
			i = t.valueStart(b, i)
		case tsObjOpen, tsKey:
			c := b[i]
			i++
			switch {
			case isSpace(c):
			case c == '"':
				t.st, t.keyLen, t.keyLong, t.hasEsc, t.esc = tsKeyStr, 0, false, false, false
			case c == '}' && t.st == tsObjOpen:
				t.pop()
			default:
				t.st = tsBad
			}
		case tsKeyStr:
			i = t.keyBytes(b, i)
		case tsColon:
			c := b[i]
			i++
			switch {
			case isSpace(c):
			case c == ':':
				t.st = tsValue
				t.cur = nil
				if !t.keyLong {
					k := t.key[:t.keyLen]
					if t.hasEsc {
						k = keyBytes(k)
					}
					t.cur = t.frames[t.depth-1].node.child(k)
				}
				t.keyLen = 0
			default:
				t.st = tsBad
			}
		case tsAfter:
			i = t.after(b, i)
		case tsStr:
			i = t.strBytes(b, i)
		case tsBare:
			i = t.bareBytes(b, i)
		case tsSkip:
			i = t.skipBytes(b, i)
		}
	}
}

// valueStart handles the first byte of a value.
func (t *tracker) valueStart(b []byte, i int) int {
	c := b[i]
	n := t.cur
	switch {
	case isSpace(c):
		return i + 1
	case c == '{':
		if n != nil && n.leaf == fieldUsageBlock {
			t.sink.clearCounts()
		} else if l, ok := modalListOf(n.leafOrNone()); ok {
			t.sink.enterElement(l)
		}
		if n != nil && len(n.keys) > 0 && t.depth < maxFrames {
			t.frames[t.depth] = frame{node: n}
			t.depth++
			t.st = tsObjOpen
		} else {
			t.st, t.skip, t.inStr = tsSkip, 1, false
		}
	case c == '[':
		if n != nil && (n.first != nil || n.each != nil) && t.depth < maxFrames {
			t.frames[t.depth] = frame{node: n, arr: true}
			t.depth++
			t.cur = n.elem(0)
			t.st = tsValue
		} else {
			t.st, t.skip, t.inStr = tsSkip, 1, false
		}
	case c == ']' && t.depth > 0 && t.frames[t.depth-1].arr && t.frames[t.depth-1].idx == 0:
		t.pop() // empty array
	case c == '"':
		t.st, t.valLen, t.valLong, t.hasEsc, t.esc = tsStr, 0, false, false, false
	case c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n':
		t.st, t.valLen, t.valLong = tsBare, 0, false
		return i // bareBytes reads it
	default:
		t.st = tsBad
	}
	return i + 1
}

// pop closes the innermost tracked container.
func (t *tracker) pop() {
	t.depth--
	t.st = tsAfter
}

// after handles the bytes between a value and the next one.
func (t *tracker) after(b []byte, i int) int {
	c := b[i]
	if isSpace(c) {
		return i + 1
	}
	if t.depth == 0 {
		// Another top-level value: concatenated documents.
		t.cur = t.root
		t.st = tsValue
		return i
	}
	f := &t.frames[t.depth-1]
	switch {
	case c == ',' && f.arr:
		f.idx++
		t.cur = f.node.elem(f.idx)
		t.st = tsValue
	case c == ',':
		t.st = tsKey
	case c == ']' && f.arr, c == '}' && !f.arr:
		t.pop()
	default:
		t.st = tsBad
	}
	return i + 1
}

// keyBytes reads key bytes up to the closing quote.
func (t *tracker) keyBytes(b []byte, i int) int {
	for ; i < len(b); i++ {
		c := b[i]
		if t.esc {
			t.esc = false
		} else if c == '\\' {
			t.esc, t.hasEsc = true, true
		} else if c == '"' {
			t.st = tsColon
			return i + 1
		}
		if t.keyLen < maxKey {
			t.key[t.keyLen] = c
			t.keyLen++
		} else {
			t.keyLong = true
		}
	}
	return i
}

// strBytes reads string value bytes up to the closing quote, keeping them
// when the value is a field of interest.
func (t *tracker) strBytes(b []byte, i int) int {
	keep := t.cur != nil && t.cur.leaf != fieldNone && !t.cur.leaf.isCount()
	for i < len(b) {
		if t.esc {
			t.esc = false
		} else {
			// Fast path: run to the next quote or backslash.
			j := i
			for j < len(b) && b[j] != '"' && b[j] != '\\' {
				j++
			}
			if keep {
				t.keep(b[i:j])
			}
			i = j
			if i == len(b) {
				return i
			}
			if b[i] == '"' {
				if keep && !t.valLong {
					t.sink.setStr(t.cur.leaf, t.val[:t.valLen], t.hasEsc)
				}
				t.valLen = 0
				t.st = tsAfter
				return i + 1
			}
			t.esc, t.hasEsc = true, true
		}
		if keep {
			t.keep(b[i : i+1])
		}
		i++
	}
	return i
}

func (t *tracker) keep(p []byte) {
	if t.valLong {
		return
	}
	if t.valLen+len(p) > maxScalar {
		t.valLong, t.valLen = true, 0
		return
	}
	t.valLen += copy(t.val[t.valLen:], p)
}

// bareBytes reads a number or literal up to the byte after it.
func (t *tracker) bareBytes(b []byte, i int) int {
	keep := t.cur != nil && t.cur.leaf.isCount()
	for ; i < len(b); i++ {
		c := b[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' || c == '+' || c == '.' || c == 'E') {
			if keep && !t.valLong {
				t.sink.setNum(t.cur.leaf, t.val[:t.valLen])
			}
			t.valLen = 0
			t.st = tsAfter
			return i
		}
		if keep {
			t.keep(b[i : i+1])
		}
	}
	return i
}

// skipBytes passes over a container no path leads through, counting
// brackets outside strings.
func (t *tracker) skipBytes(b []byte, i int) int {
	for i < len(b) {
		c := b[i]
		i++
		if t.inStr {
			switch {
			case t.esc:
				t.esc = false
			case c == '\\':
				t.esc = true
			case c == '"':
				t.inStr = false
			default:
				for i < len(b) && b[i] != '"' && b[i] != '\\' {
					i++
				}
			}
			continue
		}
		switch c {
		case '"':
			t.inStr = true
		case '{', '[':
			t.skip++
		case '}', ']':
			if t.skip--; t.skip == 0 {
				t.st = tsAfter
				return i
			}
		}
	}
	return i
}

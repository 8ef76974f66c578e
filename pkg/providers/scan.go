package providers

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// This file holds the request-side JSON reader: a validating skip-scanner that
// walks a complete body in place. It never builds a tree and never allocates
// for the text it counts; only the few strings it keeps (model, user) are
// copied out.

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
	// maxNesting bounds recursion on hostile input, the same limit
	// encoding/json applies.
	maxNesting = 10000
)

// jscan walks one JSON document held in memory.
//
// Positions are byte offsets into b. A method that meets a syntax error sets
// bad and returns len(b), so every loop of the caller ends; a value of the
// wrong shape for its field sets bad and is skipped, so reading goes on.
type jscan struct {
	b []byte
	// valid is true when b is valid UTF-8; rune counting then only has to
	// discount UTF-8 continuation bytes.
	valid bool
	bad   bool
	depth int
	// wide counts the code points of the counted text that are CJK, kana,
	// hangul or four-byte (see pieces), and ASCII digits when digitsWide
	// is set.
	wide int64
	// digitsWide counts ASCII digits among wide: for tokenizers that split
	// every digit into a token of its own (Gemini's; see Gemini).
	digitsWide bool
	// tok prices the counted text's pieces (see pieces.go): the vendor's
	// tokenizer family.
	tok *tokenizer
}

// textCount is counted text: its code points and its estimated tokens,
// in thousandths of a token.
type textCount struct {
	runes, milli int64
}

func (t *textCount) add(u textCount) {
	t.runes += u.runes
	t.milli += u.milli
}

// tokens returns the estimated tokens, rounded up.
func (t textCount) tokens() int64 {
	return (t.milli + 999) / 1000
}

func newScan(b []byte) *jscan {
	return &jscan{b: b, valid: utf8.Valid(b), tok: &o200kTokenizer}
}

// fail records a syntax error and returns the end of input.
func (s *jscan) fail() int {
	s.bad = true
	return len(s.b)
}

// ws returns the offset of the first non-blank byte at or after i.
func (s *jscan) ws(i int) int {
	for i < len(s.b) {
		switch s.b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// at returns the byte at i, or 0 past the end.
func (s *jscan) at(i int) byte {
	if i < len(s.b) {
		return s.b[i]
	}
	return 0
}

// document checks that the body is a single JSON object and hands the offset
// of its opening brace to fn, which returns the offset after the object.
func (s *jscan) document(fn func(i int) int) {
	i := s.ws(0)
	if s.at(i) != '{' {
		s.bad = true
		return
	}
	i = fn(i)
	if i = s.ws(i); i != len(s.b) {
		s.bad = true
	}
}

// skip returns the offset after the value starting at i, validating it.
func (s *jscan) skip(i int) int {
	switch c := s.at(i); c {
	case '{':
		return s.object(i, func(_ []byte, v int) int { return s.skip(v) })
	case '[':
		return s.array(i, s.skip)
	case '"':
		_, end := s.str(i)
		return end
	case 't':
		return s.literal(i, "true")
	case 'f':
		return s.literal(i, "false")
	case 'n':
		return s.literal(i, "null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return s.number(i)
		}
		return s.fail()
	}
}

func (s *jscan) literal(i int, lit string) int {
	if len(s.b)-i < len(lit) || string(s.b[i:i+len(lit)]) != lit {
		return s.fail()
	}
	return i + len(lit)
}

// number returns the offset after the number at i, checking the JSON grammar.
func (s *jscan) number(i int) int {
	b := s.b
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	default:
		return s.fail()
	}
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
		if i == start {
			return s.fail()
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
		if i == start {
			return s.fail()
		}
	}
	return i
}

// object walks the object at i, calling fn with each raw (still escaped) key
// and the offset of its value; fn returns the offset after the value. A
// non-object value is a shape error and is skipped.
func (s *jscan) object(i int, fn func(key []byte, v int) int) int {
	if s.at(i) != '{' {
		s.bad = true
		return s.skip(i)
	}
	if s.depth++; s.depth > maxNesting {
		return s.fail()
	}
	defer func() { s.depth-- }()
	i = s.ws(i + 1)
	if s.at(i) == '}' {
		return i + 1
	}
	for i < len(s.b) {
		if s.b[i] != '"' {
			return s.fail()
		}
		key, end := s.str(i)
		i = s.ws(end)
		if s.at(i) != ':' {
			return s.fail()
		}
		i = s.ws(i + 1)
		i = s.ws(fn(key, i))
		switch s.at(i) {
		case ',':
			i = s.ws(i + 1)
		case '}':
			return i + 1
		default:
			return s.fail()
		}
	}
	return s.fail()
}

// array walks the array at i, calling fn with the offset of each element; fn
// returns the offset after the element. A non-array value is a shape error
// and is skipped.
func (s *jscan) array(i int, fn func(v int) int) int {
	if s.at(i) != '[' {
		s.bad = true
		return s.skip(i)
	}
	if s.depth++; s.depth > maxNesting {
		return s.fail()
	}
	defer func() { s.depth-- }()
	i = s.ws(i + 1)
	if s.at(i) == ']' {
		return i + 1
	}
	for i < len(s.b) {
		i = s.ws(fn(i))
		switch s.at(i) {
		case ',':
			i = s.ws(i + 1)
		case ']':
			return i + 1
		default:
			return s.fail()
		}
	}
	return s.fail()
}

// span scans string content from i and stops at the first quote, backslash
// or control byte (or the end). It returns that offset and the number of
// UTF-8 continuation bytes passed, eight bytes at a time where it can.
func span(b []byte, i int) (end, cont int) {
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		q := w ^ (lsb * '"')
		e := w ^ (lsb * '\\')
		stop := ((q - lsb) &^ q) | ((e - lsb) &^ e) | ((w - lsb*0x20) &^ w)
		if stop&msb != 0 {
			break
		}
		cont += bits.OnesCount64(w &^ (w << 1) & msb)
	}
	for ; i < len(b); i++ {
		c := b[i]
		if c == '"' || c == '\\' || c < 0x20 {
			return i, cont
		}
		if c&0xC0 == 0x80 {
			cont++
		}
	}
	return i, cont
}

// str returns the raw content of the string at i (without quotes, escapes
// kept) and the offset after its closing quote. Escapes and control bytes
// are validated.
func (s *jscan) str(i int) (raw []byte, end int) {
	if s.at(i) != '"' {
		s.bad = true
		return nil, s.skip(i)
	}
	start := i + 1
	j := start
	for {
		j, _ = span(s.b, j)
		if j >= len(s.b) {
			return nil, s.fail()
		}
		switch s.b[j] {
		case '"':
			return s.b[start:j], j + 1
		case '\\':
			n, _ := s.escape(j)
			if n == 0 {
				return nil, s.fail()
			}
			j += n
		default:
			return nil, s.fail()
		}
	}
}

// escape reads the escape sequence at i (a backslash). It returns its length
// in bytes and the number of code points it decodes to (always 1), or 0, 0 for
// an invalid escape. A valid UTF-16 surrogate pair is one 12-byte escape,
// matching encoding/json, which also turns a lone surrogate into one U+FFFD.
func (s *jscan) escape(i int) (n, runes int) {
	switch s.at(i + 1) {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, 1
	case 'u':
		r := hex4(s.b, i+2)
		if r < 0 {
			return 0, 0
		}
		if r >= 0xD800 && r < 0xDC00 && s.at(i+6) == '\\' && s.at(i+7) == 'u' {
			if r2 := hex4(s.b, i+8); r2 >= 0xDC00 && r2 < 0xE000 {
				return 12, 1
			}
		}
		return 6, 1
	}
	return 0, 0
}

func hex4(b []byte, i int) rune {
	if i+4 > len(b) {
		return -1
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// optStr is str that also accepts null, giving nil.
func (s *jscan) optStr(i int) (raw []byte, end int) {
	if s.at(i) == 'n' {
		return nil, s.literal(i, "null")
	}
	return s.str(i)
}

// runes returns the code points of the string at i once unescaped and
// the tokens of its pieces, and the offset after it, without building the
// string.
func (s *jscan) runes(i int) (t textCount, end int) {
	if s.at(i) != '"' {
		s.bad = true
		return t, s.skip(i)
	}
	var (
		p pieces
		c carry
		n int64
	)
	j := i + 1
	for {
		k := j
		if s.valid {
			cont := p.cont
			k = p.count(s.b, j, true, &c)
			n += int64(k-j) - (p.cont - cont)
		} else {
			for k < len(s.b) {
				c := s.b[k]
				if c == '"' || c == '\\' || c < 0x20 {
					break
				}
				_, size := utf8.DecodeRune(s.b[k:])
				k += size
				n++
			}
			p.text(s.b[j:k], &c)
		}
		if k >= len(s.b) {
			return s.counted(n, &p), s.fail()
		}
		switch s.b[k] {
		case '"':
			return s.counted(n, &p), k + 1
		case '\\':
			size, r := s.escape(k)
			if size == 0 {
				return s.counted(n, &p), s.fail()
			}
			n += int64(r)
			p.char(escapeByte(s.b, k, size), &c)
			j = k + size
		default:
			return s.counted(n, &p), s.fail()
		}
	}
}

// counted prices text of n code points and pieces p, and adds its wide
// code points (and its digits, when they weigh as wide) to s.wide.
func (s *jscan) counted(n int64, p *pieces) textCount {
	s.wide += p.wide
	if s.digitsWide {
		s.wide += p.digits
	}
	return textCount{runes: n, milli: s.tok.milli(p)}
}

// escapeByte returns the byte that stands for the valid escape of size
// bytes at i when counting pieces: the character itself when it is ASCII
// (a line break for \n and \r, a control byte for \t, \b and \f), else
// the UTF-8 lead byte of the code point's length and range, so that
// wideLeads' ranges hold (0xC3; 0xE2 below U+3000, 0xE3 up to U+D7FF,
// 0xEF for a lone surrogate, which decodes to U+FFFD, 0xEE above; 0xF0 for
// a surrogate pair).
func escapeByte(b []byte, i, size int) byte {
	switch c := b[i+1]; c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b', 'f':
		return 0x08
	case 'u':
	default:
		return c
	}
	if size == 12 {
		return 0xF0
	}
	switch r := hex4(b, i+2); {
	case r < 0x80:
		return byte(r)
	case r < 0x800:
		return 0xC3
	case r < 0x3000:
		return 0xE2
	case r < 0xD800:
		return 0xE3
	case r < 0xE000:
		return 0xEF
	default:
		return 0xEE
	}
}

// rawRunes skips the value at i and returns the code points and pieces of
// its JSON text as sent; null counts nothing.
func (s *jscan) rawRunes(i int) (t textCount, end int) {
	if s.at(i) == 'n' {
		return t, s.literal(i, "null")
	}
	end = s.skip(i)
	if s.bad && end == len(s.b) {
		return t, end
	}
	seg := s.b[i:end]
	var (
		p pieces
		c carry
	)
	p.text(seg, &c)
	n := int64(len(seg)) - p.cont
	if !s.valid {
		n = int64(utf8.RuneCount(seg))
	}
	return s.counted(n, &p), end
}

// keyText counts a raw object key (escapes kept) as text: its code points
// (an escape counts one) and pieces.
func (s *jscan) keyText(raw []byte) textCount {
	var (
		p pieces
		c carry
	)
	p.text(raw, &c)
	return textCount{runes: rawKeyRunes(raw), milli: s.tok.milli(&p)}
}

// text adds the string at i to *n. null is accepted and counts nothing;
// any other kind is a shape error.
func (s *jscan) text(i int, n *textCount) int {
	if s.at(i) == 'n' {
		return s.literal(i, "null")
	}
	r, end := s.runes(i)
	n.add(r)
	return end
}

// strValue decodes the string at i. null gives "". Other kinds are a shape
// error.
func (s *jscan) strValue(i int) (string, int) {
	if s.at(i) == 'n' {
		return "", s.literal(i, "null")
	}
	raw, end := s.str(i)
	if raw == nil {
		return "", end
	}
	if !s.valid || containsByte(raw, '\\') || !utf8.Valid(raw) {
		var v string
		if err := json.Unmarshal(s.b[i:end], &v); err != nil {
			s.bad = true
			return "", end
		}
		return v, end
	}
	return string(raw), end
}

func containsByte(b []byte, c byte) bool { return bytes.IndexByte(b, c) >= 0 }

// integer reads the integer at i. ok is false (and the value skipped) for
// null, fractions, exponents, out-of-range numbers and other kinds; only the
// other kinds are a shape error.
func (s *jscan) integer(i int) (v int64, ok bool, end int) {
	c := s.at(i)
	if c != '-' && (c < '0' || c > '9') {
		if c != 'n' {
			s.bad = true
		}
		return 0, false, s.skip(i)
	}
	end = s.number(i)
	if s.bad && end == len(s.b) {
		return 0, false, end
	}
	v, err := strconv.ParseInt(string(s.b[i:end]), 10, 64)
	return v, err == nil, end
}

// boolean reads the value at i; ok is true when it is the literal true.
func (s *jscan) boolean(i int) (isTrue bool, end int) {
	switch s.at(i) {
	case 't':
		end = s.literal(i, "true")
		return !s.bad, end
	case 'f', 'n':
		return false, s.skip(i)
	}
	s.bad = true
	return false, s.skip(i)
}

// keyBytes returns the raw key unescaped. Keys without escapes (all real
// ones) are returned as they are, so `switch string(keyBytes(raw))` does not
// allocate.
func keyBytes(raw []byte) []byte {
	if !containsByte(raw, '\\') {
		return raw
	}
	var k string
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	if json.Unmarshal(q, &k) != nil {
		return nil
	}
	return []byte(k)
}

// keyIs reports whether the raw key equals lit once unescaped.
func keyIs(raw []byte, lit string) bool {
	return string(keyBytes(raw)) == lit
}

package providers

import (
	"encoding/binary"
	"math/bits"
)

// This file estimates the tokens of counted text without a tokenizer. BPE
// tokenizers first split text into pieces by a pre-tokenizer (o200k's
// splits runs of letters, with a lower-to-upper case change starting a new
// piece, groups of up to three digits, runs of punctuation, runs of
// whitespace and line breaks), then merge each piece into one or more
// vocabulary tokens. Counting those pieces, and the letters whose length
// makes a piece cost more than one token, tells JSON, digits and code
// (dense: many short pieces) from prose (about one token a word), which
// a fixed number of characters per token cannot.
//
// The counts are taken eight bytes at a time (SWAR masks, as in span), in
// the same walk that counts code points, with no allocation.

// pieces counts the pre-tokenizer features of a text.
type pieces struct {
	// runs counts the pieces: runs of letters (ASCII letters and every
	// non-ASCII code point; a lower-case letter followed by an upper-case
	// one starts a new run), runs of ASCII digits and runs of ASCII
	// punctuation and symbols.
	runs int64
	// letters counts the ASCII letters and non-ASCII code points: long
	// words cost more than one token.
	letters int64
	// digits counts ASCII digits.
	digits int64
	// spaceRuns counts runs of two or more spaces (indentation).
	spaceRuns int64
	// high counts non-ASCII code points; wide those of them that are CJK,
	// kana, hangul or four-byte (led by 0xE3-0xED or 0xF0-0xF4): scripts
	// tokenizers split into about one token per one or two characters.
	high, wide int64
	// cont counts UTF-8 continuation bytes (not a feature: code points are
	// the bytes less these).
	cont int64
}

// carry holds the class masks of the last word a pieces count has seen,
// aligned so that its last byte is byte 7, so that runs continue across
// chunks.
type carry struct {
	letter, lower, digit, punct, space uint64
}

// textWeights turns pieces into tokens: the cost of each feature, in
// thousandths of a token.
type textWeights struct {
	runs, letters, digits, spaceRuns, high, wide int64
}

// o200kWeights is the cost of each feature for OpenAI's o200k_base
// encoding (the gpt-4o, gpt-4.1, o-series and gpt-5 families). Digits:
// the encoding's pre-tokenizer splits numbers into groups of up to three
// digits (\p{N}{1,3}), a third of a token a digit on top of the run. The
// rest is measured on train: a least-squares fit (weighted by 1/tokens) to
// the exact o200k count of 6,500 texts, the synthetic corpus of
// bench/estimation and the string values and tool definitions of the real
// corpus's training split.
var o200kWeights = textWeights{
	runs:      827,
	letters:   58,
	digits:    333,
	spaceRuns: 1372,
	high:      114,
	wide:      551,
}

// claudeWeights prices pieces for Anthropic's tokenizer, which is not
// published: o200k's weights scaled by claudeScale, measured on train (the
// real corpus's training split, text and image calls).
var claudeWeights = o200kWeights.scaled(claudeScale)

// geminiWeights prices pieces for Gemini's tokenizer (shared with Gemma):
// o200k's weights scaled by geminiScale, measured on train, except digits,
// which Gemini splits one token each (the Gemma report).
var geminiWeights = func() textWeights {
	w := o200kWeights.scaled(geminiScale)
	w.digits = 1000
	return w
}()

// Tokenizer scales, measured on train (the scale in 0.90-1.30, step 0.02,
// with the lowest MAPE on the real corpus's training split, text and image
// calls): Anthropic's tokenizer makes about a fifth more tokens of the
// same text than o200k; Gemini's as many.
const (
	claudeScale = 1.20
	geminiScale = 1.00
)

// scaled returns w with every weight multiplied by f.
func (w textWeights) scaled(f float64) textWeights {
	m := func(v int64) int64 { return int64(float64(v)*f + 0.5) }
	return textWeights{
		runs: m(w.runs), letters: m(w.letters), digits: m(w.digits),
		spaceRuns: m(w.spaceRuns), high: m(w.high), wide: m(w.wide),
	}
}

// milli returns the tokens of p in thousandths of a token.
func (w *textWeights) milli(p *pieces) int64 {
	return w.runs*p.runs + w.letters*p.letters + w.digits*p.digits +
		w.spaceRuns*p.spaceRuns + w.high*p.high + w.wide*p.wide
}

// topBits counts the bytes of m whose top bit is set; m has no other bits
// set. A multiply sums the eight 0/1 bytes into the top byte (at most 8,
// so no byte carries), without math/bits.OnesCount64's CPU-feature branch,
// whose fallback call makes the compiler spill every register around it.
func topBits(m uint64) int {
	return int((m >> 7) * lsb >> 56)
}

// count counts the pieces of b from i, eight bytes at a time, and returns
// the offset where it stopped: the end of b, or with stop set the first
// quote, backslash or control byte (the end of a JSON string's unescaped
// run, as span finds it). c carries the classes of the last bytes counted
// from one call to the next, so that runs continue across escapes.
func (p *pieces) count(b []byte, i int, stop bool, c *carry) int {
	var (
		runs, letters, digits, spaceRuns, high, wide, cont int
		cLetter, cLower, cDigit, cPunct, cSpace            = c.letter, c.lower, c.digit, c.punct, c.space
	)
	for i < len(b) {
		var w uint64
		n := 8
		if i+8 <= len(b) {
			w = binary.LittleEndian.Uint64(b[i:])
		} else {
			n = len(b) - i
			for k := len(b) - 1; k >= i; k-- {
				w = w<<8 | uint64(b[k])
			}
		}
		end := false
		if stop {
			q := w ^ (lsb * '"')
			e := w ^ (lsb * '\\')
			// The lowest flagged byte is exact (borrows only run upward).
			if st := (((q - lsb) &^ q) | ((e - lsb) &^ e) | ((w - lsb*0x20) &^ w)) & msb; st != 0 {
				if k := bits.TrailingZeros64(st) / 8; k < n {
					n, end = k, true
				}
			}
		}
		if n == 0 {
			break
		}
		valid := uint64(msb) >> (8 * uint(8-n))
		// Class masks, the top bit of each byte.
		hi := w & valid
		low := w &^ msb
		ascii := ^w & valid
		fold := low | 0x2020202020202020
		letterA := (fold + (0x80-'a')*lsb) &^ (fold + (0x80-'z'-1)*lsb) & ascii
		upper := letterA &^ (low << 2) // 'A'-'Z' have bit 5 clear; b<<2 moves bit 5 to bit 7
		lower := letterA &^ upper
		digit := (low + (0x80-'0')*lsb) &^ (low + (0x80-'9'-1)*lsb) & ascii
		x := low ^ ' '*lsb
		space := ^((x + 0x7F7F7F7F7F7F7F7F) | x) & ascii
		punct := (low + (0x80-'!')*lsb) & ascii &^ (letterA | digit)
		letter := letterA | hi
		if hi != 0 {
			lead := hi & (w << 1) // 11xxxxxx: a non-ASCII code point starts
			wideLead := lead & ((low+(0x80-0x63)*lsb)&^(low+(0x80-0x6E)*lsb) | (low+(0x80-0x70)*lsb)&^(low+(0x80-0x75)*lsb))
			nLead := topBits(lead)
			letters += nLead
			high += nLead
			cont += topBits(hi &^ lead)
			wide += topBits(wideLead)
		}

		runs += topBits(letter&^(letter<<8|cLetter>>56) |
			upper&(lower<<8|cLower>>56) |
			digit&^(digit<<8|cDigit>>56) |
			punct&^(punct<<8|cPunct>>56))
		letters += topBits(letterA)
		digits += topBits(digit)
		spaceRuns += topBits(space & (space<<8 | cSpace>>56) &^ (space<<16 | cSpace>>48))

		// Carry the classes with the last byte counted as byte 7.
		align := 8 * uint(8-n)
		cLetter, cLower, cDigit, cPunct = letter<<align, lower<<align, digit<<align, punct<<align
		if n == 1 {
			cSpace = cSpace>>8 | space<<56
		} else {
			cSpace = space << align
		}
		i += n
		if end {
			break
		}
	}
	p.runs += int64(runs)
	p.letters += int64(letters)
	p.digits += int64(digits)
	p.spaceRuns += int64(spaceRuns)
	p.high += int64(high)
	p.wide += int64(wide)
	p.cont += int64(cont)
	c.letter, c.lower, c.digit, c.punct, c.space = cLetter, cLower, cDigit, cPunct, cSpace
	return i
}

// text counts b whole (JSON text as sent; escapes are not decoded here,
// see char).
func (p *pieces) text(b []byte, c *carry) {
	p.count(b, 0, false, c)
}

// char counts one byte standing for a decoded escape: the ASCII character
// itself, or a UTF-8 lead byte standing for a non-ASCII code point.
func (p *pieces) char(b byte, c *carry) {
	one := [1]byte{b}
	p.count(one[:], 0, false, c)
}

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

// pieces is what a count found in a text: its o200k price and the counts
// other tokenizers price differently or the scanner reports.
type pieces struct {
	// milli is the text's price for o200k, in thousandths of a token:
	// o200kRun a piece (a run of letters, that is ASCII letters and every
	// non-ASCII code point, a lower-case letter followed by an upper-case
	// one starting a new run; a run of ASCII digits; a run of ASCII
	// punctuation and symbols), o200kLetter an ASCII letter or non-ASCII
	// code point (long words cost more than one token), o200kDigit a
	// digit, o200kSpaceRun a run of two or more spaces (indentation),
	// o200kHigh more a non-ASCII code point, o200kWide more a wide one.
	milli int64
	// digits counts ASCII digits.
	digits int64
	// wide counts the non-ASCII code points of scripts tokenizers split
	// into about one token per one or two characters: CJK, kana, hangul
	// and four-byte ones (led by 0xE3-0xED or 0xF0-0xF4).
	wide int64
	// cont counts UTF-8 continuation bytes (code points are the bytes
	// less these).
	cont int64
	// priced and skipped count the bytes that were priced and the bytes
	// past the first pricedPrefix of a text, which are only scanned:
	// milli, digits and wide stand for the priced bytes.
	priced, skipped int64
}

// pricedPrefix is how many bytes of one text (one JSON string or value)
// are priced piece by piece; the rest is priced at the prefix's rate per
// byte, so that pricing costs what scanning does on long texts.
const pricedPrefix = 256

// carry holds the class masks of the last word a count has seen, aligned
// so that its last byte is byte 7, so that runs continue across escapes.
type carry struct {
	letter, lower, digit, punct, space uint64
}

// The price of each feature of pieces.milli for OpenAI's o200k_base
// encoding (the gpt-4o, gpt-4.1, o-series and gpt-5 families), in
// thousandths of a token. Digits: the encoding's pre-tokenizer splits
// numbers into groups of up to three digits (\p{N}{1,3}), a third of a
// token a digit on top of the run. The rest is measured on train: a
// least-squares fit (weighted by 1/tokens) to the exact o200k count of
// 6,500 texts, the training half of bench/estimation's synthetic corpus
// and the string values and tool definitions of the real corpus's
// training split.
const (
	o200kRun      = 827
	o200kLetter   = 58
	o200kDigit    = 333
	o200kSpaceRun = 1372
	o200kHigh     = 114
	o200kWide     = 551
)

// tokenizer prices pieces for one vendor's tokenizer family.
type tokenizer struct {
	// scale multiplies the o200k price, in thousandths.
	scale int64
	// digit is the price of a digit, in thousandths of a token, instead
	// of o200kDigit.
	digit int64
}

// Tokenizer families. Anthropic's and Gemini's tokenizers are not
// published; their scales are measured on train (the scale with the lowest
// MAPE on the real corpus's training split, text and image calls, fitted
// together with the vendor's measured overheads): Anthropic's makes about
// a tenth more tokens of the same text than o200k (1.10, re-measured on
// 2026-12-07 with the per-message and tool-block framing; 1.20 when those
// were left at their former values), Gemini's as many. Gemini's tokenizer (shared
// with Gemma, whose report documents it) splits every digit into a token
// of its own.
var (
	o200kTokenizer  = tokenizer{scale: 1000, digit: o200kDigit}
	claudeTokenizer = tokenizer{scale: 1100, digit: o200kDigit}
	geminiTokenizer = tokenizer{scale: 1000, digit: 1000}
)

// milli returns the tokens of p in thousandths of a token.
func (t *tokenizer) milli(p *pieces) int64 {
	m := (p.milli + (t.digit-o200kDigit)*p.digits) * t.scale / 1000
	if p.skipped > 0 && p.priced > 0 {
		m += m * p.skipped / p.priced
	}
	return m
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
		milli, digits, wide, cont, pricedLocal, skippedLocal int
		cLetter, cLower, cDigit, cPunct, cSpace              = c.letter, c.lower, c.digit, c.punct, c.space
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
		if p.priced+int64(pricedLocal) >= pricedPrefix {
			// Past the priced prefix: scan the rest as span does.
			end := len(b)
			nc := 0
			if stop {
				end, nc = span(b, i)
			} else {
				nc = contBytes(b[i:])
			}
			cont += nc
			skippedLocal += end - i
			i = end
			break
		}
		pricedLocal += n
		valid := uint64(msb)
		if n < 8 {
			valid >>= 8 * uint(8-n)
		}
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
			nWide := topBits(wideLead)
			milli += (o200kLetter+o200kHigh)*topBits(lead) + o200kWide*nWide
			cont += topBits(hi &^ lead)
			wide += nWide
		}
		nDigit := topBits(digit)
		digits += nDigit
		milli += o200kRun*topBits(letter&^(letter<<8|cLetter>>56)|
			upper&(lower<<8|cLower>>56)|
			digit&^(digit<<8|cDigit>>56)|
			punct&^(punct<<8|cPunct>>56)) +
			o200kLetter*topBits(letterA) + o200kDigit*nDigit +
			o200kSpaceRun*topBits(space&(space<<8|cSpace>>56)&^(space<<16|cSpace>>48))

		// Carry the classes with the last byte counted as byte 7.
		switch {
		case n == 8:
			cLetter, cLower, cDigit, cPunct, cSpace = letter, lower, digit, punct, space
		case n == 1:
			cLetter, cLower, cDigit, cPunct, cSpace = letter<<56, lower<<56, digit<<56, punct<<56, cSpace>>8|space<<56
		default:
			align := 8 * uint(8-n)
			cLetter, cLower, cDigit, cPunct, cSpace = letter<<align, lower<<align, digit<<align, punct<<align, space<<align
		}
		i += n
		if end {
			break
		}
	}
	p.milli += int64(milli)
	p.priced += int64(pricedLocal)
	p.skipped += int64(skippedLocal)
	p.digits += int64(digits)
	p.wide += int64(wide)
	p.cont += int64(cont)
	c.letter, c.lower, c.digit, c.punct, c.space = cLetter, cLower, cDigit, cPunct, cSpace
	return i
}

// contBytes counts the UTF-8 continuation bytes of b, eight bytes at a
// time.
func contBytes(b []byte) int {
	n, i := 0, 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		n += topBits(w &^ (w << 1) & msb)
	}
	for ; i < len(b); i++ {
		if b[i]&0xC0 == 0x80 {
			n++
		}
	}
	return n
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

package providers

import "math"

// This file reads the pixel size of base64 images in place, without
// decoding them, and holds each vendor's documented rule for what an image
// of a given size costs in input tokens.

// b64 decodes standard and URL-safe base64 text at random offsets. It never
// allocates: byte k of the decoded data is read from the four characters at
// 4*(k/3).
type b64 []byte

func b64val(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '+' || c == '-':
		return 62
	case c == '/' || c == '_':
		return 63
	}
	return -1
}

// at returns decoded byte k; ok is false past the end or on a character
// that is not base64.
func (s b64) at(k int) (byte, bool) {
	if k < 0 {
		return 0, false
	}
	q := 4 * (k / 3)
	if q+4 > len(s) {
		return 0, false
	}
	var v [4]int
	for i := range v {
		if s[q+i] == '=' {
			v[i] = 0
			if i < 2 || k%3 >= i-1 {
				return 0, false
			}
			continue
		}
		if v[i] = b64val(s[q+i]); v[i] < 0 {
			return 0, false
		}
	}
	n := v[0]<<18 | v[1]<<12 | v[2]<<6 | v[3]
	return byte(n >> (16 - 8*(k%3))), true
}

func (s b64) be16(k int) (int, bool) {
	a, ok1 := s.at(k)
	b, ok2 := s.at(k + 1)
	return int(a)<<8 | int(b), ok1 && ok2
}

func (s b64) be32(k int) (int, bool) {
	a, ok1 := s.be16(k)
	b, ok2 := s.be16(k + 2)
	return a<<16 | b, ok1 && ok2
}

func (s b64) le16(k int) (int, bool) {
	a, ok1 := s.at(k)
	b, ok2 := s.at(k + 1)
	return int(b)<<8 | int(a), ok1 && ok2
}

func (s b64) le24(k int) (int, bool) {
	a, ok1 := s.le16(k)
	c, ok2 := s.at(k + 2)
	return a | int(c)<<16, ok1 && ok2
}

func (s b64) is(k int, lit string) bool {
	for i := 0; i < len(lit); i++ {
		if c, ok := s.at(k + i); !ok || c != lit[i] {
			return false
		}
	}
	return true
}

// maxJPEGSegments bounds the marker walk of a JPEG header.
const maxJPEGSegments = 64

// imageSize returns the pixel size of a PNG, JPEG, GIF or WebP image given
// as base64 text (without a data: prefix); ok is false for any other data.
func imageSize(data []byte) (w, h int, ok bool) {
	s := b64(data)
	switch {
	case s.is(0, "\x89PNG\r\n\x1a\n"):
		w, ok1 := s.be32(16)
		h, ok2 := s.be32(20)
		return w, h, ok1 && ok2 && w > 0 && h > 0
	case s.is(0, "GIF8"):
		w, ok1 := s.le16(6)
		h, ok2 := s.le16(8)
		return w, h, ok1 && ok2 && w > 0 && h > 0
	case s.is(0, "RIFF") && s.is(8, "WEBP"):
		return webpSize(s)
	case s.is(0, "\xff\xd8"):
		return jpegSize(s)
	}
	return 0, 0, false
}

func webpSize(s b64) (w, h int, ok bool) {
	switch {
	case s.is(12, "VP8 "):
		a, ok1 := s.le16(26)
		b, ok2 := s.le16(28)
		return a & 0x3fff, b & 0x3fff, ok1 && ok2 && a&0x3fff > 0 && b&0x3fff > 0
	case s.is(12, "VP8L"):
		b0, ok0 := s.at(21)
		b1, ok1 := s.at(22)
		b2, ok2 := s.at(23)
		b3, ok3 := s.at(24)
		if !(ok0 && ok1 && ok2 && ok3) {
			return 0, 0, false
		}
		w = 1 + (int(b0) | int(b1&0x3f)<<8)
		h = 1 + (int(b1)>>6 | int(b2)<<2 | int(b3&0x0f)<<10)
		return w, h, true
	case s.is(12, "VP8X"):
		a, ok1 := s.le24(24)
		b, ok2 := s.le24(27)
		return a + 1, b + 1, ok1 && ok2
	}
	return 0, 0, false
}

// jpegSize walks the JPEG markers to the first start-of-frame segment.
func jpegSize(s b64) (w, h int, ok bool) {
	k := 2
	for range maxJPEGSegments {
		m0, ok0 := s.at(k)
		m1, ok1 := s.at(k + 1)
		if !ok0 || !ok1 || m0 != 0xff {
			return 0, 0, false
		}
		if m1 == 0xff { // fill byte
			k++
			continue
		}
		if m1 == 0xd8 || m1 == 0x01 || m1 >= 0xd0 && m1 <= 0xd7 {
			k += 2
			continue
		}
		n, okn := s.be16(k + 2)
		if !okn || n < 2 {
			return 0, 0, false
		}
		if m1 >= 0xc0 && m1 <= 0xcf && m1 != 0xc4 && m1 != 0xc8 && m1 != 0xcc {
			hh, ok1 := s.be16(k + 5)
			ww, ok2 := s.be16(k + 7)
			return ww, hh, ok1 && ok2 && ww > 0 && hh > 0
		}
		k += 2 + n
	}
	return 0, 0, false
}

// base64Payload returns the base64 text of a data: URL ("data:image/png;
// base64,...") and whether the URL is one.
func base64Payload(url []byte) ([]byte, bool) {
	const scheme = "data:"
	if len(url) < len(scheme) || string(url[:len(scheme)]) != scheme {
		return nil, false
	}
	const marker = ";base64"
	for i := len(scheme); i < len(url) && i < 256; i++ {
		if url[i] == ',' {
			if i >= len(scheme)+len(marker) && string(url[i-len(marker):i]) == marker {
				return url[i+1:], true
			}
			return nil, false
		}
	}
	return nil, false
}

// fitWithin scales w x h down (never up) to fit within maxW x maxH,
// keeping the aspect ratio.
func fitWithin(w, h, maxW, maxH float64) (float64, float64) {
	if r := math.Min(maxW/w, maxH/h); r < 1 {
		return w * r, h * r
	}
	return w, h
}

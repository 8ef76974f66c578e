package credentials

import (
	"net/url"
	"strings"
)

// Style is how a vendor expects its API key on a request.
type Style int

// Styles.
const (
	// StyleBearer is "authorization: Bearer <key>" (OpenAI, and the
	// OpenAI-compatible endpoints of Anthropic and Gemini).
	StyleBearer Style = iota
	// StyleXAPIKey is "x-api-key: <key>" (Anthropic).
	StyleXAPIKey
	// StyleGoogAPIKey is "x-goog-api-key: <key>" (Gemini).
	StyleGoogAPIKey
)

// StyleFor returns the style of provider; openAICompatible requests (the
// vendor's OpenAI-compatible endpoints, which OpenAI SDKs call) use
// StyleBearer whatever the vendor.
func StyleFor(provider string, openAICompatible bool) Style {
	if openAICompatible {
		return StyleBearer
	}
	switch provider {
	case "anthropic":
		return StyleXAPIKey
	case "gemini":
		return StyleGoogAPIKey
	default:
		return StyleBearer
	}
}

// Header is one header to set. Value prints as [REDACTED].
type Header struct {
	Name  string
	Value Secret
}

// HeaderMutation is the change to a request's headers that replaces
// whatever credential the client sent with the vendor key.
type HeaderMutation struct {
	// Set holds the vendor's credential header (lower-case name), to
	// overwrite any client value.
	Set []Header
	// Remove lists the other credential headers, which may carry the
	// client's gateway key and must not reach the vendor. It is shared
	// between mutations: do not modify it.
	Remove []string
	// Path is the new :path when the original carried a key query
	// parameter, else "" (leave :path alone).
	Path string
}

// credentialHeaders are every header a vendor SDK sends its key in.
var credentialHeaders = [...]string{"authorization", "x-api-key", "x-goog-api-key"}

// removeFor holds, per style, the credential headers other than the
// style's own, built once: Mutation shares them (read-only).
var removeFor = func() (out [len(credentialHeaders)][]string) {
	for s, name := range credentialHeaders {
		for _, h := range credentialHeaders {
			if h != name {
				out[s] = append(out[s], h)
			}
		}
	}
	return out
}()

// Mutation returns the header mutation that puts key on a request in
// style, given the request's :path (with query). Any key= query parameter
// is removed from the path. Mutation is a pure function.
func Mutation(style Style, key Secret, path string) HeaderMutation {
	var m HeaderMutation
	name := credentialHeaders[style]
	value := key.Reveal()
	if style == StyleBearer {
		value = "Bearer " + value
	}
	m.Set = []Header{{Name: name, Value: NewSecret(value)}}
	m.Remove = removeFor[style]
	if p, ok := StripKeyParam(path); ok {
		m.Path = p
	}
	return m
}

// StripKeyParam removes every "key" query parameter (Gemini's ?key=, which
// may carry the client's gateway key) from path, keeping the other
// parameters byte for byte and in order. It reports whether the path
// changed. A parameter name is compared after percent-decoding, so k%65y
// is removed too.
func StripKeyParam(path string) (string, bool) {
	base, query, ok := strings.Cut(path, "?")
	if !ok {
		return path, false
	}
	var kept []string
	removed := false
	for part := range strings.SplitSeq(query, "&") {
		name, _, _ := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err == nil && n == "key" {
			removed = true
			continue
		}
		kept = append(kept, part)
	}
	if !removed {
		return path, false
	}
	if len(kept) == 0 {
		return base, true
	}
	return base + "?" + strings.Join(kept, "&"), true
}

package keys

import (
	"net/url"
	"strings"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/credentials"
)

// Where a presented key came from.
const (
	SourceNone          = ""
	SourceAuthorization = "authorization"
	SourceXAPIKey       = "x-api-key"
	SourceGoogAPIKey    = "x-goog-api-key"
	SourceQuery         = "query"
)

// Presented is the key a request carried and where. Secret prints as
// [REDACTED]; Reveal it only to authenticate.
type Presented struct {
	Secret credentials.Secret
	// Source is one of the Source constants.
	Source string
}

// Extract finds the key a request presents where each vendor SDK sends
// it, in this order: "authorization: Bearer <key>" (OpenAI SDKs, and the
// OpenAI-compatible endpoints), x-api-key (Anthropic), x-goog-api-key
// (Gemini), the key query parameter of path (Gemini's ?key=). header
// returns the value of a lower-case header name, "" when absent. An
// authorization header with another scheme (Basic ...) presents nothing.
// Extract is a pure function.
func Extract(header func(name string) string, path string) Presented {
	if v := strings.TrimSpace(header("authorization")); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		if tok := strings.TrimSpace(v[7:]); tok != "" {
			return Presented{Secret: credentials.NewSecret(tok), Source: SourceAuthorization}
		}
	}
	if v := strings.TrimSpace(header("x-api-key")); v != "" {
		return Presented{Secret: credentials.NewSecret(v), Source: SourceXAPIKey}
	}
	if v := strings.TrimSpace(header("x-goog-api-key")); v != "" {
		return Presented{Secret: credentials.NewSecret(v), Source: SourceGoogAPIKey}
	}
	if _, q, ok := strings.Cut(path, "?"); ok {
		for part := range strings.SplitSeq(q, "&") {
			name, value, _ := strings.Cut(part, "=")
			if n, err := url.QueryUnescape(name); err != nil || n != "key" {
				continue
			}
			if v, err := url.QueryUnescape(value); err == nil && v != "" {
				return Presented{Secret: credentials.NewSecret(v), Source: SourceQuery}
			}
		}
	}
	return Presented{}
}

package breaker

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// retryLater ends every degraded message.
const retryLater = " Please try again later."

// degradedBody is the JSON body of the degraded signal.
type degradedBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Type    string `json:"type"`
	} `json:"error"`
}

// encodeDegraded renders the body for message, compact, strings
// JSON-escaped without HTML escaping.
func encodeDegraded(message string) []byte {
	var b degradedBody
	b.Error.Code, b.Error.Message, b.Error.Type = ErrorClassValue, message, ErrorClassValue
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// Encoding a struct of strings cannot fail; invalid UTF-8 becomes U+FFFD.
	_ = enc.Encode(b)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// NoteDegraded returns body, a body of [DegradedResponse], with note added
// as a sentence of its message before "Please try again later." (the
// signal's marker is unchanged); any other body is returned as it is.
func NoteDegraded(body []byte, note string) []byte {
	var b degradedBody
	if note == "" || json.Unmarshal(body, &b) != nil || b.Error.Code != ErrorClassValue {
		return body
	}
	msg, ok := strings.CutSuffix(b.Error.Message, retryLater)
	if !ok {
		return body
	}
	return encodeDegraded(msg + " " + note + "." + retryLater)
}

// Source says who decided a degraded answer.
type Source int

const (
	// SourceProxy marks local decisions: open circuit, probe slot taken,
	// test mode. The message starts with "[PROXY]".
	SourceProxy Source = iota
	// SourceUpstream marks observed terminal failures: the final attempt
	// was degraded, the probe failed, or a global rate limit escalated. The
	// message starts with "[UPSTREAM]".
	SourceUpstream
)

// String returns "proxy" or "upstream", the X-Llm-Proxy-Error-Source value.
func (s Source) String() string {
	if s == SourceUpstream {
		return "upstream"
	}
	return "proxy"
}

// Header names and values of the degraded signal.
const (
	HeaderErrorClass  = "X-Llm-Proxy-Error-Class"
	HeaderErrorSource = "X-Llm-Proxy-Error-Source"
	ErrorClassValue   = "provider_degraded"
)

// DegradedResponse builds the degraded signal: HTTP 503, headers Content-Type
// application/json, X-Llm-Proxy-Error-Class provider_degraded and
// X-Llm-Proxy-Error-Source proxy|upstream, and the compact JSON body
//
//	{"error":{"code":"provider_degraded","message":"[PROXY] <signal> Provider <p> is currently degraded or unavailable. Please try again later.","type":"provider_degraded"}}
//
// with "[UPSTREAM]" instead of "[PROXY]" for [SourceUpstream]. An empty
// signal means [DefaultSignal]; an empty provider reads "unknown". Strings
// are JSON-escaped without HTML escaping, so a marker such as "<DOWN>"
// appears verbatim in the raw body for clients that search bytes.
func DegradedResponse(provider, signal string, source Source) (status int, headers [][2]string, body []byte) {
	if signal == "" {
		signal = DefaultSignal
	}
	if provider == "" {
		provider = "unknown"
	}
	tag := "[PROXY] "
	if source == SourceUpstream {
		tag = "[UPSTREAM] "
	}
	body = encodeDegraded(tag + signal + " Provider " + provider + " is currently degraded or unavailable." + retryLater)
	headers = [][2]string{
		{"Content-Type", "application/json"},
		{HeaderErrorClass, ErrorClassValue},
		{HeaderErrorSource, source.String()},
	}
	return http.StatusServiceUnavailable, headers, body
}

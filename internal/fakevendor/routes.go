package fakevendor

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// endpoint is one emulated operation.
type endpoint struct {
	name     string
	dialect  dialect
	handle   func(q *request) (*reply, *apiError)
	notFound *apiError // set when route found no operation
}

// route maps the request to its operation. It reports false, with the
// vendor's error dialect and a 404, when the path names none.
func route(q *request) (endpoint, bool) {
	m, p := q.r.Method, q.path
	post := m == http.MethodPost
	switch q.vendor {
	case VendorOpenAI:
		switch {
		case post && p == "/v1/chat/completions":
			return endpoint{name: "chat.completions", dialect: dialectOpenAI, handle: handleChat}, true
		case post && p == "/v1/responses":
			return endpoint{name: "responses", dialect: dialectOpenAI, handle: handleResponses}, true
		case post && p == "/v1/embeddings":
			return endpoint{name: "embeddings", dialect: dialectOpenAI, handle: handleEmbeddings}, true
		case m == http.MethodGet && p == "/v1/models":
			return endpoint{name: "models.list", dialect: dialectOpenAI, handle: handleOpenAIModels}, true
		}
		return endpoint{dialect: dialectOpenAI, notFound: notFound("Invalid URL (%s %s)", m, p)}, false
	case VendorAnthropic:
		switch {
		case post && p == "/v1/messages":
			return endpoint{name: "messages", dialect: dialectAnthropic, handle: handleMessages}, true
		case post && p == "/v1/messages/count_tokens":
			return endpoint{name: "messages.count_tokens", dialect: dialectAnthropic, handle: handleCountTokens}, true
		case post && p == "/v1/chat/completions":
			return endpoint{name: "chat.completions", dialect: dialectAnthropic, handle: handleChat}, true
		case m == http.MethodGet && p == "/v1/models":
			return endpoint{name: "models.list", dialect: dialectAnthropic, handle: handleAnthropicModels}, true
		}
		return endpoint{dialect: dialectAnthropic, notFound: notFound("Not Found")}, false
	case VendorGemini:
		if post && (p == "/v1beta/openai/chat/completions" || p == "/v1/openai/chat/completions") {
			return endpoint{name: "chat.completions", dialect: dialectGeminiList, handle: handleChat}, true
		}
		rest, ok := strings.CutPrefix(p, "/v1beta/models/")
		if !ok {
			rest, ok = strings.CutPrefix(p, "/v1/models/")
		}
		model, action, hasAction := strings.Cut(rest, ":")
		if ok && hasAction && post && model != "" && !strings.Contains(model, "/") {
			q.model = model
			switch action {
			case "generateContent":
				return endpoint{name: "generateContent", dialect: dialectGemini, handle: handleGenerate}, true
			case "streamGenerateContent":
				d := dialectGemini
				if q.r.URL.Query().Get("alt") != "sse" {
					d = dialectGeminiList
				}
				return endpoint{name: "streamGenerateContent", dialect: d, handle: handleGenerate}, true
			case "countTokens":
				return endpoint{name: "countTokens", dialect: dialectGemini, handle: handleGeminiCountTokens}, true
			}
		}
		return endpoint{dialect: dialectGemini, notFound: notFound("Method not found.")}, false
	}
	return endpoint{}, false
}

const (
	base58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	hexdig = "0123456789abcdef"
	alnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// randString returns n characters of alphabet drawn from q's generator.
func (q *request) randString(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[q.rng.IntN(len(alphabet))]
	}
	return string(b)
}

// requestID returns the request id in the vendor's format, the same for
// every call on q.
func requestID(q *request) string {
	if q.id == "" {
		switch q.vendor {
		case VendorAnthropic:
			q.id = "req_011C" + q.randString(base58, 20)
		case VendorGemini:
			q.id = q.randString(alnum, 23)
		default:
			q.id = "req_" + q.randString(hexdig, 32)
		}
	}
	return q.id
}

// baseHeaders returns the response headers the vendor sends on every
// answer, plus rate-limit headers when x-fake-ratelimit-headers is set.
func baseHeaders(q *request, id string) http.Header {
	h := http.Header{}
	elapsed := max(1, q.opts.Now().Sub(q.now).Milliseconds())
	switch q.vendor {
	case VendorOpenAI:
		h.Set("X-Request-Id", id)
		h.Set("Openai-Processing-Ms", strconv.FormatInt(elapsed, 10))
		h.Set("Openai-Version", "2020-10-01")
		h.Set("Openai-Organization", "fakevendor-org")
		h.Set("Openai-Project", "proj_fakevendor")
		h.Set("Server", "cloudflare")
		h.Set("Cf-Ray", q.randString(hexdig, 16)+"-FRA")
		if q.dir.rateLimitHeaders {
			h.Set("X-Ratelimit-Limit-Requests", "10000")
			h.Set("X-Ratelimit-Limit-Tokens", "30000000")
			h.Set("X-Ratelimit-Remaining-Requests", "9999")
			h.Set("X-Ratelimit-Remaining-Tokens", "29999000")
			h.Set("X-Ratelimit-Reset-Requests", "6ms")
			h.Set("X-Ratelimit-Reset-Tokens", "2ms")
		}
	case VendorAnthropic:
		h.Set("Request-Id", id)
		h.Set("Anthropic-Organization-Id", "00000000-0000-4000-8000-000000fa4e00")
		h.Set("Server", "cloudflare")
		h.Set("Cf-Ray", q.randString(hexdig, 16)+"-FRA")
		if q.dir.rateLimitHeaders {
			reset := q.now.Add(time.Minute).UTC().Format(time.RFC3339)
			for _, kind := range []struct{ name, limit, remaining string }{
				{"requests", "4000", "3999"},
				{"tokens", "2000000", "1999000"},
				{"input-tokens", "2000000", "1999500"},
				{"output-tokens", "400000", "399500"},
			} {
				h.Set("Anthropic-Ratelimit-"+kind.name+"-Limit", kind.limit)
				h.Set("Anthropic-Ratelimit-"+kind.name+"-Remaining", kind.remaining)
				h.Set("Anthropic-Ratelimit-"+kind.name+"-Reset", reset)
			}
		}
	case VendorGemini:
		h.Set("Content-Type", "application/json; charset=UTF-8")
		h.Set("Server", "scaffolding on HTTPServer2")
		h.Set("Server-Timing", fmt.Sprintf("gfet4t7; dur=%d", elapsed))
		h.Set("Vary", "Origin")
		h.Add("Vary", "X-Origin")
		h.Add("Vary", "Referer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "SAMEORIGIN")
		h.Set("X-Xss-Protection", "0")
	}
	return h
}

// sseHeaders turns h into the headers of an event stream.
func sseHeaders(h http.Header, contentType string) http.Header {
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	return h
}

// sseEvent renders one server-sent event; name may be empty.
func sseEvent(name string, data []byte) []byte {
	var b []byte
	if name != "" {
		b = append(b, "event: "+name+"\n"...)
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

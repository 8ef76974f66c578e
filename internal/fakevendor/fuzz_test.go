package fakevendor_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/fakevendor"
)

// FuzzServe checks that no request shape makes the fake panic (the reset
// directives, whose abort is deliberate, are not fuzzed).
func FuzzServe(f *testing.F) {
	paths := []string{
		"/openai/v1/chat/completions", "/openai/v1/responses", "/openai/v1/embeddings",
		"/anthropic/v1/messages", "/anthropic/v1/messages/count_tokens", "/anthropic/v1/chat/completions",
		"/gemini/v1beta/models/g:generateContent", "/gemini/v1beta/models/g:streamGenerateContent?alt=sse",
		"/gemini/v1beta/models/g:streamGenerateContent", "/gemini/v1beta/models/g:countTokens",
		"/gemini/v1beta/openai/chat/completions",
	}
	f.Add(uint8(0), `{"model":"m","stream":true,"messages":[{"content":[{"type":"text","text":"hi"}]}]}`, "x-fake-output-tokens", "3")
	f.Add(uint8(3), `{"model":"m","max_tokens":2,"stream":true,"system":[{"text":"s"}],"messages":[{"content":"x"}]}`, "x-fake-stream-error-after", "0")
	f.Add(uint8(8), `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"maxOutputTokens":-4}}`, "x-fake-max-write-bytes", "1")
	f.Add(uint8(2), `{"model":"m","input":[[1,2],[3]],"dimensions":-1}`, "x-fake-header", "a: b, c")
	f.Add(uint8(1), `{"model":"m","input":[{"content":[{"text":null}]}],"stream":true}`, "x-fake-status", "418")
	f.Fuzz(func(t *testing.T, pathIdx uint8, body, header, value string) {
		if strings.Contains(strings.ToLower(header), "reset") || strings.Contains(strings.ToLower(header), "latency") ||
			strings.Contains(strings.ToLower(header), "delay") || strings.Contains(strings.ToLower(header), "ttfb") {
			return
		}
		fake := fakevendor.New(fakevendor.Options{Seed: 1})
		req := httptest.NewRequest(http.MethodPost, paths[int(pathIdx)%len(paths)], strings.NewReader(body))
		if header != "" {
			req.Header[http.CanonicalHeaderKey(header)] = []string{value}
		}
		rec := httptest.NewRecorder()
		fake.ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("status %d", rec.Code)
		}
	})
}

package providers

import (
	"testing"
)

func FuzzParseRequest(f *testing.F) {
	for _, tc := range requestCases {
		f.Add(tc.req.Path, tc.req.Body)
	}
	f.Add("/v1/chat/completions", []byte(`{"messages":[{"content":"\ud83d\ude00"}]}`))
	f.Add("/v1/messages", []byte(`{"system":[{"type":"text","text":"x"}],"messages":[{"content":[{"type":"tool_result","content":[{"type":"image"}]}]}]}`))
	f.Add("/v1beta/models/g:countTokens", []byte(`{"generateContentRequest":{"contents":[{"parts":[{"text":"a"}]}]}}`))
	f.Add("/v1/responses", []byte("{\"input\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		for _, p := range Default() {
			info := p.ParseRequest(Request{Path: path, Body: body, Accept: "text/event-stream", RawQuery: "alt=sse"})
			if info.TextRunes < 0 || info.ImageTokens < 0 || info.Images < 0 || info.MaxOutputTokens < 0 {
				t.Fatalf("%s: negative count in %+v", p.Name(), info)
			}
			if info.TextRunes > int64(len(body)) {
				t.Fatalf("%s: %d runes from %d bytes", p.Name(), info.TextRunes, len(body))
			}
		}
	})
}

func FuzzUsageParser(f *testing.F) {
	for _, tc := range usageCases {
		f.Add(readFixture(f, tc.file), uint8(7))
	}
	f.Add([]byte("data: {\"usage\":{\"input_tokens\":1}}\r\n\r\n"), uint8(1))
	f.Add([]byte("[{\"usageMetadata\":{\"promptTokenCount\":1}},{\"usageMetadata\":{\"promptTokenCount\":2}}]"), uint8(3))
	f.Fuzz(func(t *testing.T, body []byte, step uint8) {
		n := int(step) + 1
		for _, p := range Default() {
			whole := p.NewUsageParser(Request{}, RequestInfo{}, "")
			whole.Write(body)
			split := p.NewUsageParser(Request{}, RequestInfo{}, "")
			for i := 0; i < len(body); i += n {
				split.Write(body[i:min(i+n, len(body))])
				if split.Held() > maxKey+maxScalar+maxFieldName {
					t.Fatalf("%s: held %d bytes", p.Name(), split.Held())
				}
			}
			if whole.Usage() != split.Usage() {
				t.Fatalf("%s: whole %+v != split %+v", p.Name(), whole.Usage(), split.Usage())
			}
		}
	})
}

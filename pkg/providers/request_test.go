package providers

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func runes(parts ...string) int64 {
	var n int
	for _, p := range parts {
		n += utf8.RuneCountInString(p)
	}
	return int64(n)
}

const (
	oaToolCalls = `[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Zürich\"}"}}]`
	oaTools     = `[{"type":"function","function":{"name":"get_weather","description":"Current weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`
	anTools     = `[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]`
	anInput     = `{"city": "Zürich"}`
	geTools     = `[{"functionDeclarations":[{"name":"get_weather","parameters":{"type":"OBJECT"}}]}]`
	geCall      = `{"name":"get_weather","args":{"city":"Zürich"}}`
)

type requestCase struct {
	name     string
	provider Provider
	req      Request
	want     RequestInfo
}

var requestCases = []requestCase{
	{
		name:     "openai chat with parts, images, tool calls and tools",
		provider: OpenAI{},
		req: Request{Method: "POST", Path: "/v1/chat/completions", Body: []byte(`{
			"model": "gpt-4o", "user": "user-1", "stream": true,
			"max_tokens": 100, "max_completion_tokens": 500,
			"messages": [
				{"role": "system", "content": "Be brief."},
				{"role": "user", "content": [
					{"type": "text", "text": "héllo"},
					{"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
					{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
				]},
				{"role": "assistant", "content": null, "tool_calls": ` + oaToolCalls + `},
				{"role": "tool", "tool_call_id": "call_1", "content": "\u00e9\ud83d\ude00\n"},
				{"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}
			],
			"tools": ` + oaTools + `,
			"stream_options": {"include_usage": true}
		}`)},
		want: RequestInfo{
			Endpoint: EndpointChatCompletions, Model: "gpt-4o", Stream: true, User: "user-1",
			// Tools in OpenAI's layout: name, description, property
			// names and types, not the JSON.
			// A replayed tool call: its name and arguments, not its
			// id or JSON.
			TextRunes: runes("Be brief.", "héllo", "get_weather", `{"city":"Zürich"}`, "é😀\n", "no", "get_weather", "Current weather", "city", "string"),
			WideRunes: 1, // 😀
			// 5 messages framed, the reply primer, one replayed call,
			// one function with one property, the function list's end.
			OverheadTokens: 5*openAIMessageTokens + openAIReplyTokens + openAIToolCallTokens + layoutFuncInit + layoutPropInit + layoutPropKey + layoutFuncEnd,
			// gpt-4o: low detail 85; an image of unknown size as 1024x1024
			// at high detail, 4 tiles of 170 over the base 85.
			Images: 2, ImageTokens: 85 + 85 + 4*170, MaxOutputTokens: 500,
		},
	},
	{
		name:     "openai chat stream via accept, stream null",
		provider: OpenAI{},
		req: Request{Path: "/v1/chat/completions", Accept: "application/json, Text/Event-Stream",
			Body: []byte(`{"model":"gpt-4o-mini","stream":null,"messages":[{"role":"user","content":"hi"}],"max_tokens":12}`)},
		want: RequestInfo{Endpoint: EndpointChatCompletions, Model: "gpt-4o-mini", Stream: true, TextRunes: 2, MaxOutputTokens: 12,
			OverheadTokens: openAIMessageTokens + openAIReplyTokens},
	},
	{
		name:     "openai chat stream false",
		provider: OpenAI{},
		req:      Request{Path: "/v1/chat/completions/", Body: []byte(`{"model":"gpt-4o","stream":false,"messages":[]}`)},
		want:     RequestInfo{Endpoint: EndpointChatCompletions, Model: "gpt-4o", OverheadTokens: openAIReplyTokens},
	},
	{
		name:     "openai responses nested input",
		provider: OpenAI{},
		req: Request{Path: "/v1/responses", Body: []byte(`{
			"model": "gpt-5", "instructions": "Sys ✓", "safety_identifier": "sid-9",
			"input": [
				{"role": "user", "content": [
					{"type": "input_text", "text": "abc"},
					{"type": "input_image", "image_url": "https://example.com/b.jpg", "detail": "high"},
					{"type": "input_file", "file_id": "file-1"}
				]},
				{"role": "assistant", "content": "prior answer"},
				{"type": "function_call", "call_id": "c", "name": "n", "arguments": "{\"a\":1}"},
				{"type": "function_call_output", "call_id": "c", "output": "ok"},
				{"type": "input_text", "text": "loose"}
			],
			"tools": [{"type": "web_search"}],
			"max_output_tokens": 256, "stream": true
		}`)},
		want: RequestInfo{
			Endpoint: EndpointResponses, Model: "gpt-5", Stream: true, User: "sid-9",
			TextRunes: runes("Sys ✓", "abc", "prior answer", "n", `{"a":1}`, "ok", "loose"),
			// instructions and two messages framed, a replayed call and
			// its output as messages of their own; the hosted web search
			// tool's definition; the reply primer.
			OverheadTokens: openAIInstructionsTokens + 3*openAIMessageTokens + openAIResponsesCallTokens + 300 + openAIResponsesReplyTokens,
			// gpt-5: unknown size as 1024x1024, 4 tiles of 140 over 70.
			Images: 1, ImageTokens: 70 + 4*140, MaxOutputTokens: 256,
		},
	},
	{
		name:     "openai responses string input and prompt template",
		provider: OpenAI{},
		req:      Request{Path: "/v1/responses", Body: []byte(`{"model":"gpt-5","input":"hello","prompt":{"id":"pmpt_1","variables":{"x":"y"}}}`)},
		want:     RequestInfo{Endpoint: EndpointResponses, Model: "gpt-5", TextRunes: 5, OverheadTokens: openAIResponsesReplyTokens},
	},
	{
		name:     "openai completions prompt list",
		provider: OpenAI{},
		req:      Request{Path: "/v1/completions", Body: []byte(`{"model":"gpt-3.5-turbo-instruct","prompt":["ab","cd",[1,2]],"max_tokens":7,"stream":true}`)},
		want:     RequestInfo{Endpoint: EndpointCompletions, Model: "gpt-3.5-turbo-instruct", Stream: true, TextRunes: 4, MaxOutputTokens: 7},
	},
	{
		name:     "openai embeddings never stream",
		provider: OpenAI{},
		req:      Request{Path: "/v1/embeddings", Accept: "text/event-stream", Body: []byte(`{"model":"text-embedding-3-small","input":["a b","c",[1,2,3]],"stream":true}`)},
		want:     RequestInfo{Endpoint: EndpointEmbeddings, Model: "text-embedding-3-small", TextRunes: 4},
	},
	{
		name:     "openai other endpoint reads model loosely",
		provider: OpenAI{},
		req:      Request{Path: "/v1/images/generations", Body: []byte(`{"model":"dall-e-3","prompt":"a cat","user":"u"}`)},
		want:     RequestInfo{Endpoint: EndpointOther, Model: "dall-e-3", User: "u"},
	},
	{
		name:     "openai other endpoint non-json body",
		provider: OpenAI{},
		req:      Request{Path: "/v1/audio/transcriptions", Body: []byte("--boundary\r\nContent-Disposition: form-data")},
		want:     RequestInfo{Endpoint: EndpointOther},
	},
	{
		name:     "openai no body",
		provider: OpenAI{},
		req:      Request{Method: "GET", Path: "/v1/models"},
		want:     RequestInfo{Endpoint: EndpointOther},
	},
	{
		name:     "anthropic messages",
		provider: Anthropic{},
		req: Request{Path: "/v1/messages", Body: []byte(`{
			"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": true,
			"metadata": {"user_id": "user-42"},
			"system": [{"type": "text", "text": "You are kind.", "cache_control": {"type": "ephemeral"}}],
			"messages": [
				{"role": "user", "content": "Hi"},
				{"role": "assistant", "content": [
					{"type": "thinking", "thinking": "hmm", "signature": "sig"},
					{"type": "text", "text": "Yo"},
					{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": ` + anInput + `}
				]},
				{"role": "user", "content": [
					{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
						{"type": "text", "text": "sun"},
						{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
					]},
					{"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"},
					{"type": "image", "source": {"type": "url", "url": "https://example.com/c.jpg"}}
				]}
			],
			"tools": ` + anTools + `
		}`)},
		want: RequestInfo{
			Endpoint: EndpointMessages, Model: "claude-sonnet-4-5", Stream: true, User: "user-42",
			TextRunes: runes("You are kind.", "Hi", "hmm", "Yo", "get_weather", anInput, "sun", "rain",
				"get_weather", "Weather now", `{"type":"object","properties":{"city":{"type":"string"}}}`),
			// 3 messages, a tool_use and two tool_result blocks, the
			// tool-use system prompt (auto) of Claude 4.
			OverheadTokens: 3*anthropicMessageTokens + 3*anthropicToolBlockTokens + anthropicToolPromptDefault.auto,
			// neither image's size can be read: the ceiling each
			Images: 2, ImageTokens: 2 * anthropicImageTokens, MaxOutputTokens: 1024,
		},
	},
	{
		name:     "anthropic system string, count_tokens never streams",
		provider: Anthropic{},
		req:      Request{Path: "/v1/messages/count_tokens", Accept: "text/event-stream", Body: []byte(`{"model":"claude-opus-4-1","stream":true,"system":"Sé breve","messages":[{"role":"user","content":"¿Hola?"}]}`)},
		want:     RequestInfo{Endpoint: EndpointCountTokens, Model: "claude-opus-4-1", TextRunes: runes("Sé breve", "¿Hola?"), OverheadTokens: anthropicMessageTokens},
	},
	{
		name:     "anthropic openai-compatible chat",
		provider: Anthropic{},
		req:      Request{Path: "/v1/chat/completions", Body: []byte(`{"model":"claude-3-7-sonnet","messages":[{"role":"user","content":"hey"}],"stream":true,"max_tokens":9}`)},
		want: RequestInfo{Endpoint: EndpointChatCompletions, Model: "claude-3-7-sonnet", Stream: true, TextRunes: 3, MaxOutputTokens: 9, OpenAICompatible: true,
			OverheadTokens: openAIMessageTokens + openAIReplyTokens},
	},
	{
		name:     "gemini stream generate content",
		provider: Gemini{},
		req: Request{Path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent", RawQuery: "alt=sse", Body: []byte(`{
			"contents": [
				{"role": "user", "parts": [
					{"text": "Hello"},
					{"inline_data": {"mime_type": "image/jpeg", "data": "/9j/4AAQ"}},
					{"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/x.pdf"}},
					{"fileData": {"mimeType": "image/png", "fileUri": "gs://b/x.png"}}
				]},
				{"role": "model", "parts": [{"functionCall": ` + geCall + `}]}
			],
			"systemInstruction": {"parts": [{"text": "Be nice"}]},
			"tools": ` + geTools + `,
			"generationConfig": {"temperature": 0.2, "maxOutputTokens": 2048}
		}`)},
		want: RequestInfo{
			Endpoint: EndpointStreamGenerateContent, Model: "gemini-2.5-flash", Stream: true,
			TextRunes:      runes("Hello", "get_weather", `{"city":"Zürich"}`, "Be nice", "get_weather", `{"type":"OBJECT"}`),
			OverheadTokens: geminiFunctionTokens,
			// sizes unknown (a truncated JPEG, a file URI): one tile each
			Images: 2, ImageTokens: 2 * geminiImageTokens, MaxOutputTokens: 2048,
		},
	},
	{
		name:     "gemini 2.0 counts function declarations compactly",
		provider: Gemini{},
		req: Request{Path: "/v1beta/models/gemini-2.0-flash:generateContent", Body: []byte(`{
			"contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
			"tools": [{"functionDeclarations": [
				{"name": "bar", "description": "", "parameters": {"type": "OBJECT", "properties": {}}},
				{"name": "final_result", "description": "Ends it", "parameters": {"type": "OBJECT", "properties": {"bar": {"type": "STRING"}}, "required": ["bar"]}}
			]}]
		}`)},
		want: RequestInfo{
			Endpoint: EndpointGenerateContent, Model: "gemini-2.0-flash",
			// names, descriptions, property names and types; no JSON,
			// no fixed cost per declaration
			TextRunes: runes("Hello", "bar", "final_result", "Ends it", "bar", "STRING"),
		},
	},
	{
		name:     "gemini generate content snake case, never streams",
		provider: Gemini{},
		req: Request{Path: "/v1/models/gemini-2.0-flash:generateContent", Accept: "text/event-stream", RawQuery: "key=x&alt=sse",
			Body: []byte(`{"contents":[{"parts":[{"text":"abc"}]}],"system_instruction":{"parts":[{"text":"de"}]},"generation_config":{"max_output_tokens":64}}`)},
		want: RequestInfo{Endpoint: EndpointGenerateContent, Model: "gemini-2.0-flash", TextRunes: 5, MaxOutputTokens: 64},
	},
	{
		name:     "gemini count tokens with generateContentRequest",
		provider: Gemini{},
		req:      Request{Path: "/v1beta/models/gemini-2.0-flash:countTokens", Body: []byte(`{"generateContentRequest":{"model":"models/gemini-2.0-flash","contents":[{"parts":[{"text":"abc"}]}]}}`)},
		want:     RequestInfo{Endpoint: EndpointCountTokens, Model: "gemini-2.0-flash", TextRunes: 3},
	},
	{
		name:     "gemini embed content",
		provider: Gemini{},
		req:      Request{Path: "/v1beta/models/text-embedding-004:embedContent", Body: []byte(`{"model":"models/text-embedding-004","content":{"parts":[{"text":"emb"}]}}`)},
		want:     RequestInfo{Endpoint: EndpointEmbeddings, Model: "text-embedding-004", TextRunes: 3},
	},
	{
		name:     "gemini tuned model",
		provider: Gemini{},
		req:      Request{Path: "/v1beta/tunedModels/my-model-1:generateContent", Body: []byte(`{"contents":[]}`)},
		want:     RequestInfo{Endpoint: EndpointGenerateContent, Model: "my-model-1"},
	},
	{
		name:     "gemini openai-compatible chat",
		provider: Gemini{},
		req:      Request{Path: "/v1beta/openai/chat/completions", Body: []byte(`{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hey"}],"stream":true,"max_tokens":9,"user":"u"}`)},
		want: RequestInfo{Endpoint: EndpointChatCompletions, Model: "gemini-2.0-flash", Stream: true, User: "u", TextRunes: 3, MaxOutputTokens: 9, OpenAICompatible: true,
			OverheadTokens: openAIMessageTokens + openAIReplyTokens},
	},
	{
		name:     "gemini list models",
		provider: Gemini{},
		req:      Request{Method: "GET", Path: "/v1beta/models"},
		want:     RequestInfo{Endpoint: EndpointOther},
	},
}

func TestParseRequest(t *testing.T) {
	for _, tc := range requestCases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.provider.ParseRequest(tc.req)
			got.TextTokens = 0 // priced separately, see TestTextTokens
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseRequestEscapes(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    int64
	}{
		{name: "simple escapes", content: `a\n\t\"\\\/b`, want: 7},
		{name: "bmp escape", content: `\u00e9t\u00E9`, want: 3},
		{name: "surrogate pair is one code point", content: `\ud83d\ude00`, want: 1},
		{name: "lone high surrogate", content: `\ud800x`, want: 2},
		{name: "lone low surrogate", content: `\udc00\ud83d`, want: 2},
		{name: "high then non-low escape", content: `\ud83d\u0041`, want: 2},
		{name: "raw multibyte", content: "日本語😀é", want: 5},
		{name: "long ascii over SWAR words", content: strings.Repeat("abcdefgh", 50) + "x", want: 401},
		{name: "long mixed", content: strings.Repeat("añ😀", 40), want: 120},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"messages":[{"role":"user","content":"` + tt.content + `"}]}`
			info := OpenAI{}.ParseRequest(Request{Path: "/v1/chat/completions", Body: []byte(body)})
			require.False(t, info.Malformed)
			require.Equal(t, tt.want, info.TextRunes)
			ref := refParseRequest(OpenAI{}, Request{Path: "/v1/chat/completions", Body: []byte(body)})
			info.WideRunes = 0 // weighted separately, see TestWideRunes
			var decoded string
			require.NoError(t, json.Unmarshal([]byte(`"`+tt.content+`"`), &decoded))
			if want := refTextTokens(&o200kTokenizer, decoded); int64(len(tt.content)) <= pricedPrefix {
				require.Equal(t, want, info.TextTokens, "the pieces of the decoded text")
			} else {
				require.InDelta(t, want, info.TextTokens, float64(want)/20, "past pricedPrefix: priced at the prefix's rate")
			}
			info.TextTokens = 0
			require.Equal(t, ref, info)
		})
	}
}

func TestParseRequestBadInput(t *testing.T) {
	tests := []struct {
		name string
		body string
		want RequestInfo // Endpoint and Malformed are checked by the loop
		// notGemini is set for shape errors in fields Gemini does not
		// read ("messages", "stream").
		notGemini bool
	}{
		{name: "empty", body: ""},
		{name: "spaces", body: "  \n"},
		{name: "not an object", body: `[{"model":"m"}]`},
		{name: "string", body: `"hello"`},
		{name: "truncated", body: `{"model":"gpt-4o","messages":[{"role":"user","content":"hello"},{"content":`, want: RequestInfo{Model: "gpt-4o", TextRunes: 5, OverheadTokens: 2*openAIMessageTokens + openAIReplyTokens}},
		{name: "trailing garbage", body: `{"model":"m"} x`, want: RequestInfo{Model: "m"}},
		{name: "two objects", body: `{"model":"m"}{}`, want: RequestInfo{Model: "m"}},
		{name: "messages object", body: `{"model":"m","messages":{"content":"hi"}}`, want: RequestInfo{Model: "m", OverheadTokens: openAIReplyTokens}, notGemini: true},
		{name: "content number", body: `{"messages":[{"content":5},{"content":"ok"}]}`, want: RequestInfo{TextRunes: 2, OverheadTokens: 2*openAIMessageTokens + openAIReplyTokens}, notGemini: true},
		{name: "message not object", body: `{"messages":["hi",{"content":"ok"}]}`, want: RequestInfo{TextRunes: 2, OverheadTokens: 2*openAIMessageTokens + openAIReplyTokens}, notGemini: true},
		{name: "model number", body: `{"model":5,"messages":[]}`, want: RequestInfo{OverheadTokens: openAIReplyTokens}},
		{name: "non-utf8 in content", body: "{\"messages\":[{\"content\":\"a\xffb\"}]}", want: RequestInfo{TextRunes: 3, OverheadTokens: openAIMessageTokens + openAIReplyTokens}},
		{name: "non-utf8 in model", body: "{\"model\":\"m\xff\"}", want: RequestInfo{Model: "m\uFFFD"}},
		{name: "control char in string", body: "{\"messages\":[{\"content\":\"a\nb\"}]}", want: RequestInfo{TextRunes: 1, OverheadTokens: openAIMessageTokens + openAIReplyTokens}},
		{name: "bad escape", body: `{"messages":[{"content":"a\qb"}]}`, want: RequestInfo{TextRunes: 1, OverheadTokens: openAIMessageTokens + openAIReplyTokens}},
		{name: "bad unicode escape", body: `{"messages":[{"content":"a\u12G4"}]}`, want: RequestInfo{TextRunes: 1, OverheadTokens: openAIMessageTokens + openAIReplyTokens}},
		{name: "bad number", body: `{"max_tokens":01}`},
		{name: "bad literal", body: `{"stream":tru}`},
		{name: "stream string", body: `{"stream":"true"}`, notGemini: true},
		{name: "missing colon", body: `{"model" "m"}`},
		{name: "missing comma", body: `{"model":"m" "user":"u"}`, want: RequestInfo{Model: "m"}},
		{name: "trailing comma", body: `{"model":"m",}`, want: RequestInfo{Model: "m"}},
		{name: "unclosed string", body: `{"model":"m`},
		{name: "deep nesting", body: `{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`},
	}
	endpoints := []struct {
		p    Provider
		path string
		ep   Endpoint
	}{
		{OpenAI{}, "/v1/chat/completions", EndpointChatCompletions},
		{OpenAI{}, "/v1/responses", EndpointResponses},
		{Anthropic{}, "/v1/messages", EndpointMessages},
		{Gemini{}, "/v1beta/models/g:generateContent", EndpointGenerateContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, e := range endpoints {
				if tt.notGemini && e.p.Name() == "gemini" {
					continue
				}
				got := e.p.ParseRequest(Request{Path: e.path, Body: []byte(tt.body)})
				require.True(t, got.Malformed, "%s %s", e.p.Name(), e.path)
				require.Equal(t, e.ep, got.Endpoint)
				got.TextTokens = 0 // priced separately, see TestTextTokens
				if e.ep == EndpointChatCompletions {
					want := tt.want
					want.Endpoint, want.Malformed = e.ep, true
					require.Equal(t, want, got)
				}
			}
		})
	}
}

func TestParseRequestGeminiShapes(t *testing.T) {
	for _, body := range []string{
		`{"contents":{"parts":[]}}`,
		`{"contents":[{"parts":[{"text":5}]}]}`,
		`{"contents":[{"parts":{"text":"a"}}]}`,
		`{"systemInstruction":"be nice"}`,
		`{"generationConfig":{"maxOutputTokens":"64"}}`,
	} {
		t.Run(body, func(t *testing.T) {
			got := Gemini{}.ParseRequest(Request{Path: "/v1beta/models/g:generateContent", Body: []byte(body)})
			require.True(t, got.Malformed)
			require.Equal(t, "g", got.Model)
		})
	}
}

func TestResolve(t *testing.T) {
	reg := Default()
	tests := []struct {
		name     string
		path     string
		ok       bool
		provider string
		rest     string
		user     string
	}{
		{name: "openai", path: "/openai/v1/chat/completions", ok: true, provider: "openai", rest: "/v1/chat/completions"},
		{name: "gemini", path: "/gemini/v1beta/models/g:generateContent", ok: true, provider: "gemini", rest: "/v1beta/models/g:generateContent"},
		{name: "meta user", path: "/meta/alice/anthropic/v1/messages", ok: true, provider: "anthropic", rest: "/v1/messages", user: "alice"},
		{name: "meta empty user", path: "/meta//anthropic/v1/messages"},
		{name: "unknown", path: "/mistral/v1/chat"},
		{name: "bare", path: "/openai"},
		{name: "root", path: "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, ok := reg.Resolve(tt.path)
			require.Equal(t, tt.ok, ok)
			if !ok {
				return
			}
			require.Equal(t, tt.provider, res.Provider.Name())
			require.Equal(t, tt.rest, res.Path)
			require.Equal(t, tt.user, res.User)
		})
	}
}

func TestDefaultUpstreams(t *testing.T) {
	reg := Default()
	require.Len(t, reg, 3)
	require.Equal(t, DefaultOpenAIURL, reg["openai"].UpstreamURL())
	require.Equal(t, DefaultAnthropicURL, reg["anthropic"].UpstreamURL())
	require.Equal(t, DefaultGeminiURL, reg["gemini"].UpstreamURL())
	require.Equal(t, "http://127.0.0.1:8080", OpenAI{BaseURL: "http://127.0.0.1:8080"}.UpstreamURL())
	for name, p := range reg {
		require.Equal(t, name, p.Name())
	}
}

func TestWideRunes(t *testing.T) {
	tests := []struct {
		name string
		text string
		want int64
	}{
		{"ascii", "hello world", 0},
		{"latin accents", "café über", 0},
		{"cyrillic", "привет", 0},
		{"chinese", "你好世界", 4},
		{"japanese kana and kanji", "こんにちは世界", 7},
		{"korean", "안녕하세요", 5},
		{"emoji", "ok 👍🎉", 2},
		{"escaped cjk", `\u4f60\u597d`, 2},
		{"escaped surrogate pair", `\ud83d\udc4d`, 1},
		{"escaped latin", `caf\u00e9`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(`{"model":"m","messages":[{"role":"user","content":"` + tt.text + `"}]}`)
			info := OpenAI{}.ParseRequest(Request{Path: "/v1/chat/completions", Body: body})
			require.False(t, info.Malformed)
			require.Equal(t, tt.want, info.WideRunes)
		})
	}
}

// TestGeminiDigitsWide: Gemini's tokenizer splits every digit, so digits
// count among WideRunes there (text, function call arguments, valid or
// not UTF-8), and not for OpenAI.
func TestGeminiDigitsWide(t *testing.T) {
	tests := []struct {
		name string
		body string
		want int64
	}{
		{"text", `{"contents":[{"role":"user","parts":[{"text":"pay 12.34 now"}]}]}`, 4},
		{"function call arguments", `{"contents":[{"role":"model","parts":[{"functionCall":{"name":"f2","args":{"n":42}}}]}]}`, 3},
		{"invalid utf-8", "{\"contents\":[{\"parts\":[{\"text\":\"a\xff 2026\"}]}]}", 4},
		{"digits and cjk", `{"contents":[{"parts":[{"text":"第1"}]}]}`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := Gemini{}.ParseRequest(Request{Path: "/v1beta/models/gemini-2.5-flash:generateContent", Body: []byte(tt.body)})
			require.Equal(t, tt.want, info.WideRunes)
			require.LessOrEqual(t, info.WideRunes, info.TextRunes)
		})
	}
	info := OpenAI{}.ParseRequest(Request{Path: "/v1/chat/completions", Body: []byte(`{"messages":[{"role":"user","content":"pay 12.34"}]}`)})
	require.Zero(t, info.WideRunes, "OpenAI: digits are narrow text")
}

// TestPiecesEveryByte checks the word-at-a-time piece count against the
// byte loop on every byte value at every position of a word.
func TestPiecesEveryByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 11; pos++ {
			b := []byte("a9/:0Zé\x7f\xff12")
			b[pos] = byte(c)
			var got pieces
			var cr carry
			got.text(b, &cr)
			require.Equal(t, refPieces(b), got, "byte %#x at %d", c, pos)
		}
	}
}

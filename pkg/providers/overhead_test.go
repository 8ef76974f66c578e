package providers

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/png"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// pngBase64 is a w x h PNG as base64, for request bodies.
func pngBase64(w, h int) string {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// overheadCases exercise the documented and measured overheads; they run
// in TestParseRequest and against the encoding/json reference.
var overheadCases = []requestCase{
	{
		name:     "anthropic claude 3 opus, tool choice any, bash, deferred tool, thinking, format",
		provider: Anthropic{},
		req: Request{Path: "/v1/messages", Body: []byte(`{
			"model": "claude-3-opus-20240229", "max_tokens": 100,
			"messages": [{"role": "user", "content": [
				{"type": "text", "text": "go"},
				{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "` + pngBase64(1500, 300) + `"}}
			]}],
			"tools": [
				{"name": "f", "description": "d", "input_schema": {"type": "object"}},
				{"type": "bash_20250124", "name": "bash"},
				{"name": "later", "description": "not loaded", "input_schema": {}, "defer_loading": true}
			],
			"tool_choice": {"type": "any"},
			"thinking": {"type": "enabled", "budget_tokens": 1024},
			"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}
		}`)},
		want: RequestInfo{
			Endpoint: EndpointMessages, Model: "claude-3-opus-20240229", MaxOutputTokens: 100,
			TextRunes: runes("go", "f", "d", `{"type": "object"}`, `{"type": "json_schema", "schema": {"type": "object"}}`),
			OverheadTokens: anthropicMessageTokens + 281 + anthropicBashToolTokens +
				anthropicThinkingTokens + anthropicFormatTokens,
			// 1500x300 fits 1568 px and 1.15 MP: 1500*300/750.
			Images: 1, ImageTokens: 600,
		},
	},
	{
		name:     "anthropic sonnet 4.5 drops an earlier turn's thinking, keeps the tool loop's",
		provider: Anthropic{},
		req: Request{Path: "/v1/messages", Body: []byte(`{
			"model": "claude-sonnet-4-5", "max_tokens": 2048,
			"thinking": {"type": "enabled", "budget_tokens": 1024},
			"messages": [
				{"role": "user", "content": "q1"},
				{"role": "assistant", "content": [{"type": "thinking", "thinking": "earlier", "signature": "s"}, {"type": "text", "text": "a1"}]},
				{"role": "user", "content": [{"type": "text", "text": "q2"}]},
				{"role": "assistant", "content": [{"type": "thinking", "thinking": "current", "signature": "s"}, {"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
				{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}, {"type": "text", "text": "and?"}]}
			]
		}`)},
		want: RequestInfo{
			Endpoint: EndpointMessages, Model: "claude-sonnet-4-5", MaxOutputTokens: 2048,
			TextRunes:      runes("q1", "a1", "q2", "current", "f", "{}", "ok", "and?"),
			OverheadTokens: 5*anthropicMessageTokens + 2*anthropicToolBlockTokens + anthropicThinkingTokens,
		},
	},
	{
		name:     "anthropic opus 4.6 keeps every turn's thinking; adaptive thinking costs nothing",
		provider: Anthropic{},
		req: Request{Path: "/v1/messages", Body: []byte(`{
			"model": "claude-opus-4-6", "max_tokens": 2048,
			"thinking": {"type": "adaptive"},
			"messages": [
				{"role": "user", "content": "q1"},
				{"role": "assistant", "content": [{"type": "thinking", "thinking": "earlier", "signature": "s"}, {"type": "text", "text": "a1"}]},
				{"role": "user", "content": "q2"}
			]
		}`)},
		want: RequestInfo{
			Endpoint: EndpointMessages, Model: "claude-opus-4-6", MaxOutputTokens: 2048,
			TextRunes:      runes("q1", "earlier", "a1", "q2"),
			OverheadTokens: 3 * anthropicMessageTokens,
		},
	},
	{
		name:     "anthropic task budget",
		provider: Anthropic{},
		req: Request{Path: "/v1/messages", Body: []byte(`{
			"model": "claude-opus-4-7", "max_tokens": 4096,
			"messages": [{"role": "user", "content": "What is 2+2?"}],
			"output_config": {"effort": "high", "task_budget": {"type": "tokens", "total": 20000}}
		}`)},
		want: RequestInfo{
			Endpoint: EndpointMessages, Model: "claude-opus-4-7", MaxOutputTokens: 4096,
			TextRunes:      runes("What is 2+2?"),
			OverheadTokens: anthropicMessageTokens + anthropicTaskBudgetTokens,
		},
	},
	{
		name:     "anthropic computer use and text editor only",
		provider: Anthropic{},
		req: Request{Path: "/v1/messages", Body: []byte(`{
			"model": "claude-sonnet-4-5", "max_tokens": 10,
			"messages": [{"role": "user", "content": "hi"}],
			"tools": [
				{"type": "computer_20250124", "name": "computer", "display_width_px": 1024, "display_height_px": 768},
				{"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
				{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
			]
		}`)},
		want: RequestInfo{
			Endpoint: EndpointMessages, Model: "claude-sonnet-4-5", MaxOutputTokens: 10, TextRunes: 2,
			OverheadTokens: anthropicMessageTokens + anthropicToolPromptDefault.auto +
				anthropicComputerToolTokens + anthropicComputerSystemTokens + anthropicTextEditorToolTokens + 1860,
		},
	},
	{
		name:     "anthropic server tool result with object content",
		provider: Anthropic{},
		req: Request{Path: "/v1/messages", Body: []byte(`{
			"model": "claude-sonnet-4-6", "max_tokens": 10,
			"messages": [{"role": "assistant", "content": [
				{"type": "server_tool_use", "id": "s1", "name": "bash_code_execution", "input": {"command": "ls"}},
				{"type": "bash_code_execution_tool_result", "tool_use_id": "s1",
				 "content": {"type": "bash_code_execution_result", "stdout": "a.csv", "stderr": "", "return_code": 0, "content": []}},
				{"type": "redacted_thinking", "data": "opaque"}
			]}]
		}`)},
		want: RequestInfo{
			Endpoint: EndpointMessages, Model: "claude-sonnet-4-6", MaxOutputTokens: 10,
			TextRunes:      runes("bash_code_execution", `{"command": "ls"}`, "a.csv"),
			OverheadTokens: anthropicMessageTokens + anthropicToolBlockTokens,
		},
	},
	{
		name:     "gemini 3 counts the current turn's thought signatures",
		provider: Gemini{},
		req: Request{Path: "/v1beta/models/gemini-3-flash-preview:generateContent", Body: []byte(`{
			"contents": [
				{"role": "user", "parts": [{"text": "q1"}]},
				{"role": "model", "parts": [{"text": "a1", "thoughtSignature": "` + strings.Repeat("A", 470) + `"}]},
				{"role": "user", "parts": [{"text": "q2"}]},
				{"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "` + strings.Repeat("B", 94) + `"}]},
				{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": true}}}]}
			],
			"tools": {"functionDeclarations": [{"name": "f", "description": "does f", "parameters": {"type": "object", "properties": {"x": {"type": "string", "enum": ["p", "q"]}}}}]}
		}`)},
		want: RequestInfo{
			Endpoint: EndpointGenerateContent, Model: "gemini-3-flash-preview",
			TextRunes: runes("q1", "a1", "q2", "f", "{}", "f", `{"ok": true}`,
				"f", "does f", `{"type": "object", "properties": {"x": {"type": "string", "enum": ["p", "q"]}}}`),
			OverheadTokens: int64(math.Ceil(94/geminiSignatureCharsPerToken)) + geminiFunctionTokens,
		},
	},
	{
		name:     "gemini 3: an image sent after a function response starts a turn",
		provider: Gemini{},
		req: Request{Path: "/v1beta/models/gemini-3-flash-preview:generateContent", Body: []byte(`{
			"contents": [
				{"role": "user", "parts": [{"text": "q"}]},
				{"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "` + strings.Repeat("A", 470) + `"}]},
				{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": true}}}]},
				{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "` + pngBase64(64, 64) + `"}}]}
			]
		}`)},
		want: RequestInfo{
			Endpoint: EndpointGenerateContent, Model: "gemini-3-flash-preview",
			TextRunes: runes("q", "f", "{}", "f", `{"ok": true}`),
			Images:    1, ImageTokens: gemini3ImageTokens,
		},
	},
	{
		name:     "gemini 2.5: an explicit function calling config",
		provider: Gemini{},
		req: Request{Path: "/v1beta/models/gemini-2.5-flash:generateContent", Body: []byte(`{
			"contents": [{"role": "user", "parts": [{"text": "q"}]}],
			"toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
			"tools": [{"functionDeclarations": [{"name": "f", "description": "d"}]}]
		}`)},
		want: RequestInfo{
			Endpoint: EndpointGenerateContent, Model: "gemini-2.5-flash", TextRunes: runes("q", "f", "d"),
			OverheadTokens: geminiFunctionTokens + geminiCallingConfigTokens,
		},
	},
	{
		name:     "gemini 2.0: a function calling config costs nothing",
		provider: Gemini{},
		req: Request{Path: "/v1beta/models/gemini-2.0-flash:generateContent", Body: []byte(`{
			"contents": [{"role": "user", "parts": [{"text": "q"}]}],
			"tool_config": {"function_calling_config": {"mode": "ANY"}},
			"tools": [{"function_declarations": [{"name": "f", "description": "d"}]}]
		}`)},
		want: RequestInfo{Endpoint: EndpointGenerateContent, Model: "gemini-2.0-flash", TextRunes: runes("q", "f", "d")},
	},
	{
		name:     "gemini 2.5 signatures cost nothing, images by size",
		provider: Gemini{},
		req: Request{Path: "/v1beta/models/gemini-2.5-flash:generateContent", Body: []byte(`{
			"contents": [
				{"role": "model", "parts": [{"text": "a", "thoughtSignature": "c2ln"}]},
				{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "` + pngBase64(1600, 800) + `"}}]}
			]
		}`)},
		want: RequestInfo{
			Endpoint: EndpointGenerateContent, Model: "gemini-2.5-flash", TextRunes: 1,
			// 1600x800: 3x2 tiles of 768 px
			Images: 1, ImageTokens: 6 * geminiImageTokens,
		},
	},
	{
		name:     "openai responses: reasoning of the current turn, json schema format, data url image",
		provider: OpenAI{},
		req: Request{Path: "/v1/responses", Body: []byte(`{
			"model": "gpt-4o",
			"input": [
				{"role": "user", "content": "q1"},
				{"type": "reasoning", "summary": [], "encrypted_content": "` + strings.Repeat("x", 3000) + `"},
				{"role": "assistant", "content": "a1"},
				{"role": "user", "content": [
					{"type": "input_text", "text": "q2"},
					{"type": "input_image", "image_url": "data:image/png;base64,` + pngBase64(512, 512) + `", "detail": "auto"}
				]},
				{"type": "reasoning", "summary": [], "encrypted_content": "` + strings.Repeat("y", 2000) + `"},
				{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
				{"type": "function_call_output", "call_id": "c1", "output": "done"}
			],
			"tools": [{"type": "function", "name": "f", "description": "", "parameters": {"type": "object", "properties": {}}, "strict": true}],
			"text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object", "properties": {"v": {"type": "number"}}}}}
		}`)},
		want: RequestInfo{
			Endpoint: EndpointResponses, Model: "gpt-4o",
			// The empty property list of f renders as "()" and costs
			// nothing; "object" is structure, not text.
			TextRunes: runes("q1", "a1", "q2", "f", "{}", "done", "f", "out", "v", "number"),
			// the replayed call and its output are messages of their own
			// f has no properties: "() => any".
			OverheadTokens: 4*openAIMessageTokens + openAIResponsesCallTokens + (2000-openAIReasoningBaseChars)/openAIReasoningCharsPerToken +
				layoutFuncEmpty + layoutFuncEnd + openAIFormatTokens + layoutPropInit + layoutPropKey + openAIResponsesReplyTokens,
			// 512x512 at high detail: one tile
			Images: 1, ImageTokens: 85 + 170,
		},
	},
	{
		name:     "openai responses: deferred tools wait for a tool search; tools an input item adds count",
		provider: OpenAI{},
		req: Request{Path: "/v1/responses", Body: []byte(`{
			"model": "gpt-5.4",
			"input": [
				{"role": "user", "content": "q"},
				{"type": "additional_tools", "role": "developer", "tools": [{"type": "function", "name": "g", "description": "d", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}]}
			],
			"tools": [{"type": "function", "name": "later", "description": "not loaded", "parameters": {"type": "object"}, "defer_loading": true}]
		}`)},
		want: RequestInfo{
			Endpoint: EndpointResponses, Model: "gpt-5.4",
			TextRunes: runes("q", "g", "d", "x", "string"),
			OverheadTokens: 2*openAIMessageTokens + openAIAdditionalToolsTokens + layoutFuncInit + layoutPropInit + layoutPropKey +
				layoutFuncEnd + openAIResponsesReplyTokens,
		},
	},
	{
		name:     "openai responses: empty instructions add no message",
		provider: OpenAI{},
		req:      Request{Path: "/v1/responses", Body: []byte(`{"model": "gpt-5", "instructions": "", "input": [{"role": "user", "content": "What is 2+2?"}]}`)},
		want: RequestInfo{
			Endpoint: EndpointResponses, Model: "gpt-5", TextRunes: runes("What is 2+2?"),
			OverheadTokens: openAIMessageTokens + openAIResponsesReplyTokens,
		},
	},
	{
		name:     "openai chat: reasoning model with tools, legacy functions, named message",
		provider: OpenAI{},
		req: Request{Path: "/v1/chat/completions", Body: []byte(`{
			"model": "o3-mini",
			"messages": [{"role": "user", "name": "ann", "content": "hi"}],
			"functions": [{"name": "g", "parameters": {"type": "object"}}],
			"response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true, "schema": {"type": "string"}}}
		}`)},
		want: RequestInfo{
			Endpoint: EndpointChatCompletions, Model: "o3-mini",
			TextRunes: runes("ann", "hi", "g", "r", "string"),
			OverheadTokens: openAIMessageTokens + openAINameTokens + openAIReplyTokens +
				layoutFuncEmpty + layoutFuncEnd + openAIReasoningChatToolTokens + openAIFormatTokens,
		},
	},
}

func TestParseRequestOverheads(t *testing.T) {
	for _, tc := range overheadCases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.provider.ParseRequest(tc.req)
			require.False(t, got.Malformed)
			got.WideRunes = 0
			got.TextTokens = 0 // priced separately, see TestTextTokens
			require.Equal(t, tc.want, got)
			ref := refParseRequest(tc.provider, tc.req)
			require.Equal(t, tc.want, ref, "the encoding/json reference agrees")
		})
	}
}

func TestAnthropicToolPromptByFamily(t *testing.T) {
	tests := []struct {
		model, choice string
		want          int64
	}{
		{"claude-3-opus-20240229", "auto", 530},
		{"claude-3-opus-20240229", "tool", 281},
		{"claude-3-sonnet-20240229", "any", 235},
		{"claude-3-haiku-20240307", "auto", 264},
		{"claude-3-5-haiku-latest", "any", 340},
		{"claude-sonnet-4-5", "none", anthropicToolPromptDefault.auto},
		{"claude-opus-4-1", "any", anthropicToolPromptDefault.any},
	}
	for _, tt := range tests {
		f := anthropicFields{tools: 1, toolChoice: []byte(tt.choice)}
		require.Equal(t, tt.want, anthropicOverhead(tt.model, &f), "%s %s", tt.model, tt.choice)
	}
	require.Zero(t, anthropicOverhead("claude-sonnet-4-5", &anthropicFields{}), "no tools, no tool prompt")
}

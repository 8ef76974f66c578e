package providers

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// refParseRequest is ParseRequest written the obvious way: encoding/json
// into structs, with json.RawMessage where a field has several shapes. It
// states what every count means, checks the scanner in
// TestParseRequestAgreesWithEncodingJSON and is the baseline of
// BenchmarkParseRequest. It only has to agree on well-formed bodies.
func refParseRequest(p Provider, r Request) RequestInfo {
	switch p.(type) {
	case OpenAI:
		ep := openAIEndpoint(r.Path)
		return refOpenAI(r, ep, openAIStreamable(ep))
	case Anthropic:
		return refAnthropic(r)
	case Gemini:
		return refGemini(r)
	}
	panic("unknown provider")
}

func refIsNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

func refRaw(raw json.RawMessage) int64 {
	if refIsNull(raw) {
		return 0
	}
	return int64(utf8.RuneCount(raw))
}

func refText(raw json.RawMessage, bad *bool) int64 {
	if refIsNull(raw) {
		return 0
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		*bad = true
		return 0
	}
	return int64(utf8.RuneCountInString(s))
}

func refInt(raw json.RawMessage) int64 {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func refStr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func refOpenAI(r Request, ep Endpoint, streamable bool) RequestInfo {
	info := RequestInfo{Endpoint: ep}
	info.Stream = acceptsEventStream(r.Accept) && (streamable || ep == EndpointOther)
	if r.Body == nil {
		return info
	}
	if ep == EndpointOther {
		var loose struct {
			Model string `json:"model"`
			User  string `json:"user"`
		}
		_ = json.Unmarshal(r.Body, &loose)
		info.Model, info.User = loose.Model, loose.User
		return info
	}
	var body struct {
		Model         string          `json:"model"`
		User          string          `json:"user"`
		SafetyID      string          `json:"safety_identifier"`
		Stream        json.RawMessage `json:"stream"`
		MaxTokens     json.RawMessage `json:"max_tokens"`
		MaxCompletion json.RawMessage `json:"max_completion_tokens"`
		MaxOutput     json.RawMessage `json:"max_output_tokens"`
		Messages      []struct {
			Content      json.RawMessage `json:"content"`
			ToolCalls    json.RawMessage `json:"tool_calls"`
			FunctionCall json.RawMessage `json:"function_call"`
		} `json:"messages"`
		Input        json.RawMessage `json:"input"`
		Instructions json.RawMessage `json:"instructions"`
		Prompt       json.RawMessage `json:"prompt"`
		Tools        json.RawMessage `json:"tools"`
		Functions    json.RawMessage `json:"functions"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		info.Malformed = true
		return info
	}
	bad := false
	info.Model = body.Model
	info.User = firstNonEmpty(body.User, body.SafetyID)
	info.Stream = info.Stream || (streamable && string(body.Stream) == "true")
	switch mc, mo := refInt(body.MaxCompletion), refInt(body.MaxOutput); {
	case mc > 0:
		info.MaxOutputTokens = mc
	case mo > 0:
		info.MaxOutputTokens = mo
	default:
		info.MaxOutputTokens = max(refInt(body.MaxTokens), 0)
	}
	for _, m := range body.Messages {
		refOAContent(m.Content, &info, &bad)
		info.TextRunes += refRaw(m.ToolCalls) + refRaw(m.FunctionCall)
	}
	if len(body.Input) > 0 && body.Input[0] == '[' {
		var items []json.RawMessage
		bad = bad || json.Unmarshal(body.Input, &items) != nil
		for _, it := range items {
			switch it[0] {
			case '"':
				info.TextRunes += refText(it, &bad)
			case '{':
				refOAPart(it, &info, &bad)
			}
		}
	} else {
		info.TextRunes += refText(body.Input, &bad)
	}
	info.TextRunes += refText(body.Instructions, &bad)
	switch {
	case len(body.Prompt) > 0 && body.Prompt[0] == '"':
		info.TextRunes += refText(body.Prompt, &bad)
	case len(body.Prompt) > 0 && body.Prompt[0] == '[':
		var items []json.RawMessage
		bad = bad || json.Unmarshal(body.Prompt, &items) != nil
		for _, it := range items {
			if it[0] == '"' {
				info.TextRunes += refText(it, &bad)
			}
		}
	}
	info.TextRunes += refRaw(body.Tools) + refRaw(body.Functions)
	info.Malformed = bad
	return info
}

func refOAContent(raw json.RawMessage, info *RequestInfo, bad *bool) {
	if len(raw) > 0 && raw[0] == '[' {
		var parts []json.RawMessage
		*bad = *bad || json.Unmarshal(raw, &parts) != nil
		for _, p := range parts {
			refOAPart(p, info, bad)
		}
		return
	}
	info.TextRunes += refText(raw, bad)
}

func refOAPart(raw json.RawMessage, info *RequestInfo, bad *bool) {
	var p struct {
		Type      *string         `json:"type"`
		Text      json.RawMessage `json:"text"`
		Refusal   json.RawMessage `json:"refusal"`
		Detail    *string         `json:"detail"`
		ImageURL  json.RawMessage `json:"image_url"`
		Content   json.RawMessage `json:"content"`
		Output    json.RawMessage `json:"output"`
		Arguments json.RawMessage `json:"arguments"`
		Input     json.RawMessage `json:"input"`
	}
	if json.Unmarshal(raw, &p) != nil {
		*bad = true
		return
	}
	refOAContent(p.Content, info, bad)
	refOAContent(p.Output, info, bad)
	for _, a := range []json.RawMessage{p.Arguments, p.Input} {
		if len(a) > 0 && (a[0] == '"' || a[0] == 'n') {
			info.TextRunes += refText(a, bad)
		} else {
			info.TextRunes += refRaw(a)
		}
	}
	detail := refStr(p.Detail)
	if len(p.ImageURL) > 0 && p.ImageURL[0] == '{' {
		var u struct {
			Detail *string `json:"detail"`
		}
		_ = json.Unmarshal(p.ImageURL, &u)
		detail = refStr(u.Detail)
	}
	switch refStr(p.Type) {
	case "text", "input_text", "output_text":
		info.TextRunes += refText(p.Text, bad)
	case "refusal":
		info.TextRunes += refText(p.Refusal, bad)
	case "image_url", "input_image":
		info.Images++
		if detail == "low" {
			info.ImageTokens += openAIImageLowTokens
		} else {
			info.ImageTokens += openAIImageHighTokens
		}
	}
}

func refAnthropic(r Request) RequestInfo {
	switch strings.TrimSuffix(r.Path, "/") {
	case "/v1/chat/completions":
		info := refOpenAI(r, EndpointChatCompletions, true)
		info.OpenAICompatible = true
		return info
	case "/v1/messages", "/v1/messages/count_tokens":
	default:
		return Anthropic{}.ParseRequest(r) // not compared: the loose path
	}
	info := Anthropic{}.ParseRequest(Request{Path: r.Path, Accept: r.Accept})
	if r.Body == nil {
		return info
	}
	var body struct {
		Model     string          `json:"model"`
		Stream    json.RawMessage `json:"stream"`
		MaxTokens json.RawMessage `json:"max_tokens"`
		Metadata  *struct {
			UserID string `json:"user_id"`
		} `json:"metadata"`
		System   json.RawMessage `json:"system"`
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Tools json.RawMessage `json:"tools"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		info.Malformed = true
		return info
	}
	bad := false
	info.Model = body.Model
	info.Stream = info.Stream || (info.Endpoint == EndpointMessages && string(body.Stream) == "true")
	info.MaxOutputTokens = max(refInt(body.MaxTokens), 0)
	if body.Metadata != nil {
		info.User = body.Metadata.UserID
	}
	refANContent(body.System, &info, &bad)
	for _, m := range body.Messages {
		refANContent(m.Content, &info, &bad)
	}
	info.TextRunes += refRaw(body.Tools)
	info.Malformed = bad
	return info
}

func refANContent(raw json.RawMessage, info *RequestInfo, bad *bool) {
	if len(raw) == 0 || raw[0] != '[' {
		info.TextRunes += refText(raw, bad)
		return
	}
	var blocks []struct {
		Type    *string         `json:"type"`
		Text    json.RawMessage `json:"text"`
		Input   json.RawMessage `json:"input"`
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &blocks) != nil {
		*bad = true
		return
	}
	for _, b := range blocks {
		info.TextRunes += refRaw(b.Input)
		refANContent(b.Content, info, bad)
		switch refStr(b.Type) {
		case "text":
			info.TextRunes += refText(b.Text, bad)
		case "image":
			info.Images++
			info.ImageTokens += anthropicImageTokens
		}
	}
}

type refGeminiBlob struct {
	MimeType  string `json:"mimeType"`
	MimeType2 string `json:"mime_type"`
}

type refGeminiContent struct {
	Parts []struct {
		Text              json.RawMessage `json:"text"`
		InlineData        *refGeminiBlob  `json:"inlineData"`
		InlineData2       *refGeminiBlob  `json:"inline_data"`
		FileData          *refGeminiBlob  `json:"fileData"`
		FileData2         *refGeminiBlob  `json:"file_data"`
		FunctionCall      json.RawMessage `json:"functionCall"`
		FunctionCall2     json.RawMessage `json:"function_call"`
		FunctionResponse  json.RawMessage `json:"functionResponse"`
		FunctionResponse2 json.RawMessage `json:"function_response"`
	} `json:"parts"`
}

type refGeminiConfig struct {
	MaxOutputTokens  json.RawMessage `json:"maxOutputTokens"`
	MaxOutputTokens2 json.RawMessage `json:"max_output_tokens"`
}

type refGeminiBody struct {
	Model                   string             `json:"model"`
	Contents                []refGeminiContent `json:"contents"`
	SystemInstruction       *refGeminiContent  `json:"systemInstruction"`
	SystemInstruction2      *refGeminiContent  `json:"system_instruction"`
	Content                 *refGeminiContent  `json:"content"`
	Tools                   json.RawMessage    `json:"tools"`
	GenerationConfig        *refGeminiConfig   `json:"generationConfig"`
	GenerationConfig2       *refGeminiConfig   `json:"generation_config"`
	GenerateContentRequest  *refGeminiBody     `json:"generateContentRequest"`
	GenerateContentRequest2 *refGeminiBody     `json:"generate_content_request"`
}

func refGemini(r Request) RequestInfo {
	ep, model, compat := geminiEndpoint(r.Path)
	if compat {
		info := refOpenAI(r, ep, ep == EndpointChatCompletions)
		info.OpenAICompatible = true
		return info
	}
	if ep == EndpointOther {
		return Gemini{}.ParseRequest(r) // not compared: the loose path
	}
	info := Gemini{}.ParseRequest(Request{Path: r.Path, Accept: r.Accept, RawQuery: r.RawQuery})
	if r.Body == nil {
		return info
	}
	var body refGeminiBody
	if err := json.Unmarshal(r.Body, &body); err != nil {
		info.Malformed = true
		return info
	}
	bad := false
	refGeminiWalk(&body, &info, &bad)
	info.Model = firstNonEmpty(model, strings.TrimPrefix(body.Model, "models/"))
	info.MaxOutputTokens = max(info.MaxOutputTokens, 0)
	info.Malformed = bad
	return info
}

func refGeminiWalk(body *refGeminiBody, info *RequestInfo, bad *bool) {
	contents := append([]refGeminiContent(nil), body.Contents...)
	for _, c := range []*refGeminiContent{body.SystemInstruction, body.SystemInstruction2, body.Content} {
		if c != nil {
			contents = append(contents, *c)
		}
	}
	for _, c := range contents {
		for _, p := range c.Parts {
			info.TextRunes += refText(p.Text, bad)
			for _, raw := range []json.RawMessage{p.FunctionCall, p.FunctionCall2, p.FunctionResponse, p.FunctionResponse2} {
				info.TextRunes += refRaw(raw)
			}
			for _, blob := range []*refGeminiBlob{p.InlineData, p.InlineData2, p.FileData, p.FileData2} {
				if blob != nil && strings.HasPrefix(blob.MimeType+blob.MimeType2, "image/") {
					info.Images++
					info.ImageTokens += geminiImageTokens
				}
			}
		}
	}
	info.TextRunes += refRaw(body.Tools)
	for _, g := range []*refGeminiConfig{body.GenerationConfig, body.GenerationConfig2} {
		if g != nil {
			for _, raw := range []json.RawMessage{g.MaxOutputTokens, g.MaxOutputTokens2} {
				if len(raw) > 0 {
					info.MaxOutputTokens = refInt(raw)
				}
			}
		}
	}
	for _, sub := range []*refGeminiBody{body.GenerateContentRequest, body.GenerateContentRequest2} {
		if sub != nil {
			refGeminiWalk(sub, info, bad)
		}
	}
}

// Realistic request bodies for the agreement test and the benchmarks.

var benchWords = []string{
	"the", "proxy", "counts", "tokens", "before", "forwarding", "a", "request", "to", "upstream",
	"naïve", "café", "Zürich", "日本語", "テキスト", "😀", "🚀", "résumé", "<b>bold</b>", "a&b",
	`"quoted"`, "tab\there", "line\nbreak", `back\slash`, "price: $4.99", "{json: [1, 2]}",
	"Kubernetes", "Envoy", "gRPC", "latency", "p99", "throughput", "cache", "stream",
}

func benchText(rng *rand.Rand, words int) string {
	var sb strings.Builder
	for i := range words {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(benchWords[rng.IntN(len(benchWords))])
	}
	return sb.String()
}

type jsonObj = map[string]any

var benchSchema = jsonObj{
	"type": "object",
	"properties": jsonObj{
		"city":  jsonObj{"type": "string", "description": "City name, e.g. Zürich"},
		"units": jsonObj{"type": "string", "enum": []string{"metric", "imperial"}},
		"days":  jsonObj{"type": "integer", "minimum": 1, "maximum": 14},
	},
	"required": []string{"city"},
}

// benchBody returns a multi-turn conversation body for the provider of at
// least size bytes: system prompt, user and assistant turns with Unicode and
// escapes, tool definitions, tool calls and tool results.
func benchBody(provider string, size int) []byte {
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	system := benchText(rng, 60)
	var turns []any
	var body jsonObj
	est := len(system)
	build := func() []byte {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		return b
	}
	for turn := 0; ; turn++ {
		user, answer := benchText(rng, 20+rng.IntN(80)), benchText(rng, 40+rng.IntN(120))
		args := fmt.Sprintf(`{"city":%q,"days":%d}`, benchWords[rng.IntN(len(benchWords))], 1+rng.IntN(14))
		result := benchText(rng, 30)
		switch provider {
		case "openai":
			if turn%3 == 0 {
				turns = append(turns, jsonObj{"role": "user", "content": []any{jsonObj{"type": "text", "text": user}}})
			} else {
				turns = append(turns, jsonObj{"role": "user", "content": user})
			}
			if turn%4 == 1 {
				turns = append(turns,
					jsonObj{"role": "assistant", "content": nil, "tool_calls": []any{jsonObj{"id": "call_" + strconv.Itoa(turn), "type": "function", "function": jsonObj{"name": "get_weather", "arguments": args}}}},
					jsonObj{"role": "tool", "tool_call_id": "call_" + strconv.Itoa(turn), "content": result})
			}
			turns = append(turns, jsonObj{"role": "assistant", "content": answer})
			body = jsonObj{
				"model": "gpt-4o-2024-08-06", "user": "user-1234", "stream": true, "max_completion_tokens": 1024,
				"temperature": 0.7, "stream_options": jsonObj{"include_usage": true},
				"messages": append([]any{jsonObj{"role": "system", "content": system}}, turns...),
				"tools":    []any{jsonObj{"type": "function", "function": jsonObj{"name": "get_weather", "description": "Weather forecast", "parameters": benchSchema}}},
			}
		case "anthropic":
			if turn%3 == 0 {
				turns = append(turns, jsonObj{"role": "user", "content": []any{jsonObj{"type": "text", "text": user}}})
			} else {
				turns = append(turns, jsonObj{"role": "user", "content": user})
			}
			if turn%4 == 1 {
				var input any
				_ = json.Unmarshal([]byte(args), &input)
				turns = append(turns,
					jsonObj{"role": "assistant", "content": []any{jsonObj{"type": "text", "text": answer}, jsonObj{"type": "tool_use", "id": "toolu_" + strconv.Itoa(turn), "name": "get_weather", "input": input}}},
					jsonObj{"role": "user", "content": []any{jsonObj{"type": "tool_result", "tool_use_id": "toolu_" + strconv.Itoa(turn), "content": []any{jsonObj{"type": "text", "text": result}}}}})
			} else {
				turns = append(turns, jsonObj{"role": "assistant", "content": answer})
			}
			body = jsonObj{
				"model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": true, "metadata": jsonObj{"user_id": "user-1234"},
				"system":   []any{jsonObj{"type": "text", "text": system, "cache_control": jsonObj{"type": "ephemeral"}}},
				"messages": turns,
				"tools":    []any{jsonObj{"name": "get_weather", "description": "Weather forecast", "input_schema": benchSchema}},
			}
		case "gemini":
			turns = append(turns, jsonObj{"role": "user", "parts": []any{jsonObj{"text": user}}})
			if turn%4 == 1 {
				var input any
				_ = json.Unmarshal([]byte(args), &input)
				turns = append(turns,
					jsonObj{"role": "model", "parts": []any{jsonObj{"functionCall": jsonObj{"name": "get_weather", "args": input}}}},
					jsonObj{"role": "user", "parts": []any{jsonObj{"functionResponse": jsonObj{"name": "get_weather", "response": jsonObj{"forecast": result}}}}})
			}
			turns = append(turns, jsonObj{"role": "model", "parts": []any{jsonObj{"text": answer}}})
			body = jsonObj{
				"contents":          turns,
				"systemInstruction": jsonObj{"parts": []any{jsonObj{"text": system}}},
				"tools":             []any{jsonObj{"functionDeclarations": []any{jsonObj{"name": "get_weather", "description": "Weather forecast", "parameters": benchSchema}}}},
				"generationConfig":  jsonObj{"temperature": 0.7, "maxOutputTokens": 2048},
			}
		default:
			panic(provider)
		}
		// Marshal the whole body only once it should be large enough.
		if est += len(user) + len(answer) + len(args) + len(result) + 200; est >= size {
			if b := build(); len(b) >= size {
				return b
			}
		}
	}
}

type benchCase struct {
	provider Provider
	path     string
}

var benchProviders = map[string]benchCase{
	"openai":    {OpenAI{}, "/v1/chat/completions"},
	"anthropic": {Anthropic{}, "/v1/messages"},
	"gemini":    {Gemini{}, "/v1beta/models/gemini-2.5-flash:streamGenerateContent"},
}

var benchSizes = []struct {
	name string
	size int
}{{"2KiB", 2 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}}

func TestParseRequestAgreesWithEncodingJSON(t *testing.T) {
	type item struct {
		name string
		p    Provider
		req  Request
	}
	var corpus []item
	for _, tc := range requestCases {
		corpus = append(corpus, item{tc.name, tc.provider, tc.req})
	}
	for name, bc := range benchProviders {
		for _, sz := range benchSizes {
			corpus = append(corpus, item{name + " " + sz.name, bc.provider, Request{Path: bc.path, Body: benchBody(name, sz.size)}})
		}
		for size := 100; size < 20000; size = size*3/2 + 1 {
			corpus = append(corpus, item{fmt.Sprintf("%s %d", name, size), bc.provider, Request{Path: bc.path, Body: benchBody(name, size)}})
		}
	}
	for _, it := range corpus {
		t.Run(it.name, func(t *testing.T) {
			want := refParseRequest(it.p, it.req)
			require.False(t, want.Malformed)
			got := it.p.ParseRequest(it.req)
			// WideRunes is a weighting of TextRunes, tested on its own in
			// TestWideRunes; the reference does not compute it.
			require.LessOrEqual(t, got.WideRunes, got.TextRunes)
			got.WideRunes = 0
			require.Equal(t, want, got)
		})
	}
}

// BenchmarkParseRequest compares the scanner with the encoding/json
// reference on the same bodies.
func BenchmarkParseRequest(b *testing.B) {
	for _, name := range []string{"openai", "anthropic", "gemini"} {
		bc := benchProviders[name]
		for _, sz := range benchSizes {
			req := Request{Path: bc.path, Body: benchBody(name, sz.size)}
			b.Run(name+"/"+sz.name+"/scan", func(b *testing.B) {
				b.SetBytes(int64(len(req.Body)))
				b.ReportAllocs()
				for b.Loop() {
					bc.provider.ParseRequest(req)
				}
			})
			b.Run(name+"/"+sz.name+"/encoding-json", func(b *testing.B) {
				b.SetBytes(int64(len(req.Body)))
				b.ReportAllocs()
				for b.Loop() {
					refParseRequest(bc.provider, req)
				}
			})
		}
	}
}

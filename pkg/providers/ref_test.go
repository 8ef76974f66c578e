package providers

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// refParseRequest is ParseRequest written the obvious way: encoding/json
// into structs and maps, with json.RawMessage where a field has several
// shapes. It states what every count means, checks the scanner in
// TestParseRequestAgreesWithEncodingJSON and is the baseline of
// BenchmarkParseRequest. It only has to agree on well-formed bodies. The
// pricing tables (image rules, documented and measured overheads) are
// shared with the scanner; the walk that decides what they apply to is
// written again here.
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

func refString(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
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

func refObject(raw json.RawMessage) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

func refArray(raw json.RawMessage) []json.RawMessage {
	var a []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &a) != nil {
		return nil
	}
	return a
}

// refImageSize decodes base64 data whole and reads its header the way the
// image formats define it.
func refImageSize(data string) (w, h int, ok bool) {
	b, err := refB64(data)
	if err != nil && len(b) == 0 {
		return 0, 0, false
	}
	be16 := func(i int) int { return int(b[i])<<8 | int(b[i+1]) }
	le16 := func(i int) int { return int(b[i+1])<<8 | int(b[i]) }
	switch {
	case len(b) >= 24 && string(b[:8]) == "\x89PNG\r\n\x1a\n":
		return be16(16)<<16 | be16(18), be16(20)<<16 | be16(22), true
	case len(b) >= 10 && string(b[:4]) == "GIF8":
		return le16(6), le16(8), true
	case len(b) >= 4 && b[0] == 0xff && b[1] == 0xd8:
		for i := 2; i+9 < len(b); {
			if b[i] != 0xff {
				return 0, 0, false
			}
			m := b[i+1]
			switch {
			case m == 0xff:
				i++
				continue
			case m == 0xd8 || m == 0x01 || m >= 0xd0 && m <= 0xd7:
				i += 2
				continue
			case m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc:
				return be16(i + 7), be16(i + 5), true
			}
			i += 2 + be16(i+2)
		}
	}
	return 0, 0, false
}

func refB64(s string) ([]byte, error) {
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var out []byte
	var acc, n int
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '=' {
			break
		}
		if c == '-' {
			c = '+'
		} else if c == '_' {
			c = '/'
		}
		v := strings.IndexByte(std, c)
		if v < 0 {
			return out, fmt.Errorf("not base64")
		}
		acc = acc<<6 | v
		if n++; n == 4 {
			out = append(out, byte(acc>>16), byte(acc>>8), byte(acc))
			acc, n = 0, 0
		}
	}
	return out, nil
}

// refSchema is schemaLayout on decoded JSON.
func refSchema(raw json.RawMessage, info *RequestInfo, bad *bool) {
	m := refObject(raw)
	for k, v := range m {
		switch k {
		case "type":
			switch {
			case len(v) > 0 && v[0] == '"':
				info.TextRunes += refType(v, bad)
			case len(v) > 0 && v[0] == '[':
				for _, e := range refArray(v) {
					info.TextRunes += refType(e, bad)
				}
			}
		case "description", "format", "const":
			if len(v) > 0 && v[0] == '"' {
				info.TextRunes += refText(v, bad)
			}
		case "properties", "$defs", "definitions", "patternProperties":
			props := refObject(v)
			if props == nil {
				continue
			}
			if len(props) > 0 {
				info.OverheadTokens += layoutPropInit
			}
			for name, pv := range props {
				info.OverheadTokens += layoutPropKey
				info.TextRunes += int64(utf8.RuneCountInString(name))
				refSchema(pv, info, bad)
			}
		case "items", "additionalProperties", "not", "if", "then", "else":
			refSchema(v, info, bad)
		case "anyOf", "oneOf", "allOf", "prefixItems":
			for _, e := range refArray(v) {
				refSchema(e, info, bad)
			}
		case "enum":
			items := refArray(v)
			if items == nil {
				continue
			}
			info.OverheadTokens += layoutEnumInit
			for _, e := range items {
				info.OverheadTokens += layoutEnumItem
				if e[0] == '"' {
					info.TextRunes += refText(e, bad)
				} else {
					info.TextRunes += refRaw(e)
				}
			}
		case "$ref":
			info.TextRunes += refText(v, bad)
		}
	}
}

// refType is schemaType on decoded JSON.
func refType(raw json.RawMessage, bad *bool) int64 {
	if t := strings.ToLower(refString(raw)); t == "object" || t == "array" {
		return 0
	}
	return refText(raw, bad)
}

// refToolCall is toolCall on decoded JSON.
func refToolCall(raw json.RawMessage, info *RequestInfo, bad *bool) {
	m := refObject(raw)
	if m == nil {
		return
	}
	info.OverheadTokens += openAIToolCallTokens
	for _, k := range []string{"name", "arguments"} {
		if v := m[k]; len(v) > 0 && v[0] == '"' {
			info.TextRunes += refText(v, bad)
		} else {
			info.TextRunes += refRaw(v)
		}
	}
}

type refOAState struct {
	info      *RequestInfo
	bad       *bool
	images    openAIImages
	reasoning int64
	functions int
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
		Messages      *[]struct {
			Content      json.RawMessage `json:"content"`
			Name         json.RawMessage `json:"name"`
			ToolCalls    json.RawMessage `json:"tool_calls"`
			FunctionCall json.RawMessage `json:"function_call"`
		} `json:"messages"`
		Input          json.RawMessage `json:"input"`
		Instructions   json.RawMessage `json:"instructions"`
		Prompt         json.RawMessage `json:"prompt"`
		Tools          json.RawMessage `json:"tools"`
		Functions      json.RawMessage `json:"functions"`
		ResponseFormat json.RawMessage `json:"response_format"`
		Text           *struct {
			Format json.RawMessage `json:"format"`
		} `json:"text"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		info.Malformed = true
		return info
	}
	bad := false
	st := &refOAState{info: &info, bad: &bad}
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
	if body.Messages == nil && (info.Endpoint == EndpointResponses || info.Endpoint == EndpointCountTokens) {
		info.OverheadTokens += openAIResponsesReplyTokens
	}
	if body.Messages != nil {
		info.OverheadTokens += openAIReplyTokens
		for _, m := range *body.Messages {
			info.OverheadTokens += openAIMessageTokens
			st.content(m.Content)
			if !refIsNull(m.Name) {
				info.OverheadTokens += openAINameTokens
				info.TextRunes += refText(m.Name, &bad)
			}
			for _, c := range refArray(m.ToolCalls) {
				refToolCall(refObject(c)["function"], &info, &bad)
			}
			refToolCall(m.FunctionCall, &info, &bad)
		}
	}
	if len(body.Input) > 0 && body.Input[0] == '[' {
		for _, it := range refArray(body.Input) {
			switch it[0] {
			case '"':
				info.TextRunes += refText(it, &bad)
			case '{':
				st.part(it)
			}
		}
	} else {
		info.TextRunes += refText(body.Input, &bad)
	}
	if len(body.Instructions) > 0 && body.Instructions[0] == '"' && string(body.Instructions) != `""` {
		info.OverheadTokens += openAIInstructionsTokens
	}
	info.TextRunes += refText(body.Instructions, &bad)
	switch {
	case len(body.Prompt) > 0 && body.Prompt[0] == '"':
		info.TextRunes += refText(body.Prompt, &bad)
	case len(body.Prompt) > 0 && body.Prompt[0] == '[':
		for _, it := range refArray(body.Prompt) {
			if it[0] == '"' {
				info.TextRunes += refText(it, &bad)
			}
		}
	}
	for _, list := range []json.RawMessage{body.Tools, body.Functions} {
		for _, t := range refArray(list) {
			st.tool(t)
		}
	}
	st.format(body.ResponseFormat)
	if body.Text != nil {
		st.format(body.Text.Format)
	}
	if st.functions > 0 {
		info.OverheadTokens += layoutFuncEnd
		if body.Messages != nil && openAIReasoningModel(info.Model) {
			info.OverheadTokens += openAIReasoningChatToolTokens
		}
	}
	info.OverheadTokens += st.reasoning
	info.ImageTokens = st.images.tokens(info.Model)
	info.Malformed = bad
	return info
}

func (st *refOAState) format(raw json.RawMessage) {
	m := refObject(raw)
	if m == nil {
		return
	}
	if js, ok := m["json_schema"]; ok {
		st.format(js)
	}
	st.info.TextRunes += refText(m["name"], st.bad) + refText(m["description"], st.bad)
	if s, ok := m["schema"]; ok {
		refSchema(s, st.info, st.bad)
	}
	if refString(m["type"]) == "json_schema" {
		st.info.OverheadTokens += openAIFormatTokens
	}
}

func (st *refOAState) tool(raw json.RawMessage) {
	m := refObject(raw)
	if m == nil {
		return
	}
	typ := refString(m["type"])
	fn, nested := m["function"]
	nested = nested && len(fn) > 0 && fn[0] == '{'
	if nested {
		st.tool(fn)
	}
	if string(m["defer_loading"]) == "true" {
		return
	}
	st.info.TextRunes += refText(m["name"], st.bad) + refText(m["description"], st.bad)
	before := st.info.OverheadTokens
	if p, ok := m["parameters"]; ok {
		refSchema(p, st.info, st.bad)
	}
	switch {
	case nested:
	case typ == "" || typ == "function":
		st.functions++
		if st.info.OverheadTokens == before {
			st.info.OverheadTokens += layoutFuncEmpty
		} else {
			st.info.OverheadTokens += layoutFuncInit
		}
	default:
		for k, v := range m {
			switch k {
			case "type", "function", "name", "description", "parameters", "strict", "defer_loading":
			default:
				st.info.TextRunes += refRaw(v)
			}
		}
		st.info.OverheadTokens += openAIHostedToolTokens([]byte(typ))
	}
}

func (st *refOAState) content(raw json.RawMessage) {
	if len(raw) > 0 && raw[0] == '[' {
		for _, p := range refArray(raw) {
			st.part(p)
		}
		return
	}
	st.info.TextRunes += refText(raw, st.bad)
}

func (st *refOAState) part(raw json.RawMessage) {
	var p struct {
		Type      *string         `json:"type"`
		Role      *string         `json:"role"`
		Name      json.RawMessage `json:"name"`
		Text      json.RawMessage `json:"text"`
		Refusal   json.RawMessage `json:"refusal"`
		Detail    *string         `json:"detail"`
		ImageURL  json.RawMessage `json:"image_url"`
		Content   json.RawMessage `json:"content"`
		Output    json.RawMessage `json:"output"`
		Arguments json.RawMessage `json:"arguments"`
		Input     json.RawMessage `json:"input"`
		Encrypted *string         `json:"encrypted_content"`
		Tools     json.RawMessage `json:"tools"`
	}
	if json.Unmarshal(raw, &p) != nil {
		*st.bad = true
		return
	}
	info := st.info
	if p.Role != nil {
		info.OverheadTokens += openAIMessageTokens
	}
	info.TextRunes += refText(p.Name, st.bad)
	st.content(p.Content)
	st.content(p.Output)
	for _, t := range refArray(p.Tools) {
		st.tool(t)
	}
	for _, a := range []json.RawMessage{p.Arguments, p.Input} {
		if len(a) > 0 && (a[0] == '"' || a[0] == 'n') {
			info.TextRunes += refText(a, st.bad)
		} else {
			info.TextRunes += refRaw(a)
		}
	}
	detail, url := refStr(p.Detail), ""
	switch {
	case len(p.ImageURL) > 0 && p.ImageURL[0] == '{':
		var u struct {
			Detail *string `json:"detail"`
			URL    *string `json:"url"`
		}
		_ = json.Unmarshal(p.ImageURL, &u)
		detail, url = refStr(u.Detail), refStr(u.URL)
	case len(p.ImageURL) > 0 && p.ImageURL[0] == '"':
		url = refString(p.ImageURL)
	}
	switch {
	case refStr(p.Role) == "user":
		st.reasoning = 0
	case refStr(p.Type) == "reasoning" && len(refStr(p.Encrypted)) > openAIReasoningBaseChars:
		st.reasoning += int64((len(refStr(p.Encrypted)) - openAIReasoningBaseChars) / openAIReasoningCharsPerToken)
	}
	switch refStr(p.Type) {
	case "additional_tools":
		st.info.OverheadTokens += openAIAdditionalToolsTokens
	case "function_call", "custom_tool_call":
		st.info.OverheadTokens += openAIResponsesCallTokens
	case "function_call_output", "custom_tool_call_output":
		st.info.OverheadTokens += openAIMessageTokens
	case "text", "input_text", "output_text":
		info.TextRunes += refText(p.Text, st.bad)
	case "refusal":
		info.TextRunes += refText(p.Refusal, st.bad)
	case "image_url", "input_image":
		info.Images++
		var w, h int
		var sized bool
		if _, data, ok := strings.Cut(url, ";base64,"); ok && strings.HasPrefix(url, "data:") {
			w, h, sized = refImageSize(data)
		}
		st.images.add(w, h, sized, detail == "low")
	}
}

type refANState struct {
	info *RequestInfo
	bad  *bool
	f    anthropicFields
	// thinking is the runes of the current message's thinking blocks;
	// results is set when a message has tool_result blocks.
	thinking int64
	results  bool
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
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Tools      []json.RawMessage `json:"tools"`
		ToolChoice *struct {
			Type *string `json:"type"`
		} `json:"tool_choice"`
		Thinking *struct {
			Type *string `json:"type"`
		} `json:"thinking"`
		OutputFormat json.RawMessage `json:"output_format"`
		OutputConfig *struct {
			Format     json.RawMessage `json:"format"`
			TaskBudget json.RawMessage `json:"task_budget"`
		} `json:"output_config"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		info.Malformed = true
		return info
	}
	bad := false
	st := &refANState{info: &info, bad: &bad}
	info.Model = body.Model
	info.Stream = info.Stream || (info.Endpoint == EndpointMessages && string(body.Stream) == "true")
	info.MaxOutputTokens = max(refInt(body.MaxTokens), 0)
	if body.Metadata != nil {
		info.User = body.Metadata.UserID
	}
	st.content(body.System)
	var past, turn int64
	for _, m := range body.Messages {
		info.OverheadTokens += anthropicMessageTokens
		st.thinking, st.results = 0, false
		st.content(m.Content)
		if m.Role == "user" && !st.results {
			past, turn = past+turn, 0
		}
		turn += st.thinking
	}
	info.TextRunes += turn
	if anthropicKeepsThinking(body.Model) {
		info.TextRunes += past
	}
	for _, t := range body.Tools {
		st.tool(t)
	}
	if body.ToolChoice != nil {
		st.f.toolChoice = []byte(refStr(body.ToolChoice.Type))
	}
	if body.Thinking != nil {
		st.f.thinkingEnabled = refStr(body.Thinking.Type) == "enabled"
	}
	for _, f := range []json.RawMessage{body.OutputFormat, func() json.RawMessage {
		if body.OutputConfig == nil {
			return nil
		}
		return body.OutputConfig.Format
	}()} {
		if len(f) > 0 {
			st.f.format = st.f.format || f[0] == '{'
			info.TextRunes += refRaw(f)
		}
	}
	if body.OutputConfig != nil && len(body.OutputConfig.TaskBudget) > 0 {
		st.f.taskBudget = body.OutputConfig.TaskBudget[0] == '{'
	}
	info.OverheadTokens += anthropicOverhead(info.Model, &st.f)
	info.Malformed = bad
	return info
}

func (st *refANState) tool(raw json.RawMessage) {
	var t struct {
		Type        *string         `json:"type"`
		Name        json.RawMessage `json:"name"`
		Description json.RawMessage `json:"description"`
		InputSchema json.RawMessage `json:"input_schema"`
		Defer       json.RawMessage `json:"defer_loading"`
	}
	if json.Unmarshal(raw, &t) != nil {
		*st.bad = true
		return
	}
	if string(t.Defer) == "true" {
		return
	}
	runes := refText(t.Name, st.bad) + refText(t.Description, st.bad) + refRaw(t.InputSchema)
	typ := refStr(t.Type)
	if typ == "" || typ == "custom" {
		st.f.tools++
		st.info.TextRunes += runes
		return
	}
	tokens, computer := anthropicBuiltinTool(typ)
	st.f.builtin += tokens
	st.f.computer = st.f.computer || computer
	if tokens == 0 {
		st.info.TextRunes += runes
	}
}

func (st *refANState) content(raw json.RawMessage) {
	switch {
	case len(raw) > 0 && raw[0] == '[':
		for _, b := range refArray(raw) {
			st.block(b)
		}
	case len(raw) > 0 && raw[0] == '{':
		st.block(raw)
	default:
		st.info.TextRunes += refText(raw, st.bad)
	}
}

func (st *refANState) block(raw json.RawMessage) {
	m := refObject(raw)
	if m == nil {
		*st.bad = true
		return
	}
	info := st.info
	typ := refString(m["type"])
	for _, k := range []string{"name", "title", "context", "stdout", "stderr", "url"} {
		info.TextRunes += refText(m[k], st.bad)
	}
	info.TextRunes += refRaw(m["input"])
	if c, ok := m["content"]; ok {
		st.content(c)
	}
	var w, h int
	var sized bool
	if src := refObject(m["source"]); src != nil {
		switch refString(src["type"]) {
		case "text":
			info.TextRunes += refText(src["data"], st.bad)
		case "base64":
			w, h, sized = refImageSize(refString(src["data"]))
		}
		if c, ok := src["content"]; ok {
			st.content(c)
		}
	}
	switch typ {
	case "text":
		info.TextRunes += refText(m["text"], st.bad)
	case "thinking":
		st.thinking += refText(m["thinking"], st.bad)
	case "tool_result":
		st.results = true
		info.OverheadTokens += anthropicToolBlockTokens
	case "tool_use", "server_tool_use":
		info.OverheadTokens += anthropicToolBlockTokens
	case "image":
		info.Images++
		info.ImageTokens += anthropicImageTokensFor(w, h, sized)
	}
}

type refGeminiBlob struct {
	MimeType  string `json:"mimeType"`
	MimeType2 string `json:"mime_type"`
	Data      string `json:"data"`
}

type refGeminiPart struct {
	Text              json.RawMessage `json:"text"`
	Signature         *string         `json:"thoughtSignature"`
	Signature2        *string         `json:"thought_signature"`
	InlineData        *refGeminiBlob  `json:"inlineData"`
	InlineData2       *refGeminiBlob  `json:"inline_data"`
	FileData          *refGeminiBlob  `json:"fileData"`
	FileData2         *refGeminiBlob  `json:"file_data"`
	FunctionCall      json.RawMessage `json:"functionCall"`
	FunctionCall2     json.RawMessage `json:"function_call"`
	FunctionResponse  json.RawMessage `json:"functionResponse"`
	FunctionResponse2 json.RawMessage `json:"function_response"`
}

type refGeminiContent struct {
	Role  string          `json:"role"`
	Parts []refGeminiPart `json:"parts"`
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
	ToolConfig              map[string]any     `json:"toolConfig"`
	ToolConfig2             map[string]any     `json:"tool_config"`
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
	var sig int64
	var decls int
	var calling bool
	refGeminiWalk(&body, &info, &bad, &sig, &decls, &calling)
	info.Model = firstNonEmpty(model, strings.TrimPrefix(body.Model, "models/"))
	if calling && decls > 0 && !isGeminiCompactTools(info.Model) {
		info.OverheadTokens += geminiCallingConfigTokens
	}
	if isGemini3(info.Model) {
		info.OverheadTokens += int64(math.Ceil(float64(sig) / geminiSignatureCharsPerToken))
	}
	info.MaxOutputTokens = max(info.MaxOutputTokens, 0)
	info.Malformed = bad
	return info
}

// refGeminiParts counts parts and returns their signature bytes and
// whether any has standard content (text, inline or file data).
func refGeminiParts(parts []refGeminiPart, info *RequestInfo, bad *bool) (sig int64, text bool) {
	for _, p := range parts {
		if !refIsNull(p.Text) || p.InlineData != nil || p.InlineData2 != nil || p.FileData != nil || p.FileData2 != nil {
			text = true
		}
		info.TextRunes += refText(p.Text, bad)
		sig += int64(len(refStr(p.Signature)) + len(refStr(p.Signature2)))
		for _, raw := range []json.RawMessage{p.FunctionCall, p.FunctionCall2, p.FunctionResponse, p.FunctionResponse2} {
			for k, v := range refObject(raw) {
				switch k {
				case "name":
					info.TextRunes += refText(v, bad)
				case "parts":
					var sub []refGeminiPart
					_ = json.Unmarshal(v, &sub)
					refGeminiParts(sub, info, bad)
				case "id":
				default:
					info.TextRunes += refRaw(v)
				}
			}
		}
		for _, blob := range []*refGeminiBlob{p.InlineData, p.InlineData2, p.FileData, p.FileData2} {
			if blob != nil && strings.HasPrefix(blob.MimeType+blob.MimeType2, "image/") {
				w, h, sized := refImageSize(blob.Data)
				info.Images++
				info.ImageTokens += geminiImageTokensFor(info.Model, w, h, sized)
			}
		}
	}
	return sig, text
}

func refGeminiWalk(body *refGeminiBody, info *RequestInfo, bad *bool, turnSig *int64, decls *int, calling *bool) {
	for _, tc := range []map[string]any{body.ToolConfig, body.ToolConfig2} {
		for _, k := range []string{"functionCallingConfig", "function_calling_config"} {
			if _, ok := tc[k].(map[string]any); ok {
				*calling = true
			}
		}
	}
	for _, c := range body.Contents {
		sig, text := refGeminiParts(c.Parts, info, bad)
		if c.Role == "user" && text {
			*turnSig = 0
		} else {
			*turnSig += sig
		}
	}
	for _, c := range []*refGeminiContent{body.SystemInstruction, body.SystemInstruction2, body.Content} {
		if c != nil {
			refGeminiParts(c.Parts, info, bad)
		}
	}
	tools := refArray(body.Tools)
	if len(body.Tools) > 0 && body.Tools[0] == '{' {
		tools = []json.RawMessage{body.Tools}
	}
	for _, t := range tools {
		for k, v := range refObject(t) {
			if k != "functionDeclarations" && k != "function_declarations" {
				continue
			}
			compact := isGeminiCompactTools(info.Model)
			for _, d := range refArray(v) {
				*decls++
				if !compact {
					info.OverheadTokens += geminiFunctionTokens
				}
				for dk, dv := range refObject(d) {
					switch dk {
					case "name", "description":
						info.TextRunes += refText(dv, bad)
					case "parameters", "parametersJsonSchema", "parameters_json_schema", "response", "responseJsonSchema":
						if compact {
							var layout RequestInfo
							refSchema(dv, &layout, bad)
							info.TextRunes += layout.TextRunes
						} else {
							info.TextRunes += refRaw(dv)
						}
					}
				}
			}
		}
	}
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
			refGeminiWalk(sub, info, bad, turnSig, decls, calling)
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
			// TextTokens prices the same text by its pieces, tested on its
			// own in TestTextTokens; the reference does not compute it.
			require.Equal(t, got.TextRunes > 0, got.TextTokens > 0)
			got.TextTokens = 0
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

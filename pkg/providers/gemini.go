package providers

import "strings"

// DefaultGeminiURL is the Gemini API base URL used when [Gemini.BaseURL] is
// empty.
const DefaultGeminiURL = "https://generativelanguage.googleapis.com"

// geminiImageTokens is the input cost charged per image: Gemini 2.x counts an
// image whose sides are both at most 384 px as 258 tokens and tiles larger
// images into 768x768 crops of 258 tokens each. The size is not known without
// decoding the image, so every image is charged one tile.
const geminiImageTokens = 258

// Gemini reads the Gemini API (models/{model}:generateContent,
// :streamGenerateContent, :countTokens, :embedContent under /v1beta, /v1 or
// /v1alpha) and its OpenAI-compatible /v1beta/openai/ endpoints. The zero
// value is ready to use and talks to [DefaultGeminiURL]. It is immutable and
// safe for concurrent use.
type Gemini struct {
	// BaseURL overrides the upstream base URL; empty means DefaultGeminiURL.
	BaseURL string
}

var _ Provider = Gemini{}

// Name implements [Provider.Name]; it returns "gemini".
func (Gemini) Name() string { return "gemini" }

// UpstreamURL implements [Provider.UpstreamURL].
func (g Gemini) UpstreamURL() string {
	if g.BaseURL != "" {
		return g.BaseURL
	}
	return DefaultGeminiURL
}

// ParseRequest implements [Provider.ParseRequest]. The model comes from the
// URL path (the body "model" is used only when the path has none). Input text
// is contents[].parts[].text, the system instruction, function calls and
// responses (JSON as sent) and the tool definitions. Streaming is
// :streamGenerateContent, alt=sse, or an Accept of text/event-stream on an
// endpoint that can stream; Gemini requests carry no user id. Both the
// lowerCamelCase and snake_case field names of the REST API are read.
func (Gemini) ParseRequest(r Request) RequestInfo {
	ep, model, compat := geminiEndpoint(r.Path)
	if compat {
		info := readOpenAIRequest(r, ep, ep == EndpointChatCompletions)
		info.OpenAICompatible = true
		return info
	}
	info := RequestInfo{Endpoint: ep, Model: model}
	switch ep {
	case EndpointStreamGenerateContent:
		info.Stream = true
	case EndpointOther:
		info.Stream = acceptsEventStream(r.Accept) || altSSE(r.RawQuery)
	}
	if r.Body == nil {
		return info
	}
	if ep == EndpointOther {
		readLooseModel(r.Body, &info)
		info.Model = firstNonEmpty(model, info.Model)
		info.User = ""
		return info
	}
	w := geminiReader{s: newScan(r.Body), info: &info}
	var bodyModel string
	w.s.document(func(i int) int { return w.top(i, &bodyModel) })
	info.Model = firstNonEmpty(model, strings.TrimPrefix(bodyModel, "models/"))
	info.MaxOutputTokens = max(info.MaxOutputTokens, 0)
	info.Malformed = w.s.bad || !w.s.valid
	info.WideRunes = w.s.wide
	return info
}

// NewUsageParser implements [Provider.NewUsageParser]. It reads a
// GenerateContentResponse as JSON, as an event stream (alt=sse) or as the
// JSON array :streamGenerateContent sends without alt=sse, element by
// element; the last usageMetadata wins, as stated: a count it leaves out
// (candidatesTokenCount after server-side tool turns) is zero. The OpenAI-compatible endpoint's
// Chat Completions shapes are read too.
//
// Gemini's candidatesTokenCount leaves out thinking tokens and its
// promptTokenCount leaves out tool-use prompt tokens, both billed; Usage
// adds thoughtsTokenCount to OutputTokens (and reports it as
// ReasoningTokens) and toolUsePromptTokenCount to InputTokens, so that
// InputTokens + OutputTokens matches totalTokenCount. CacheReadTokens is
// cachedContentTokenCount, which InputTokens includes.
func (Gemini) NewUsageParser(_ Request, info RequestInfo, contentType string) UsageParser {
	return newUsageParser(geminiUsage, info, contentType)
}

var geminiUsage = newPaths(mergePaths(chatUsagePaths, map[string]field{
	"responseId":                            fieldID,
	"modelVersion":                          fieldModel,
	"candidates.[0].finishReason":           fieldFinish,
	"promptFeedback.blockReason":            fieldBlockReason,
	"usageMetadata":                         fieldUsageBlock,
	"usageMetadata.promptTokenCount":        fieldInput,
	"usageMetadata.candidatesTokenCount":    fieldOutput,
	"usageMetadata.totalTokenCount":         fieldTotal,
	"usageMetadata.cachedContentTokenCount": fieldCacheRead,
	"usageMetadata.thoughtsTokenCount":      fieldThoughts,
	"usageMetadata.toolUsePromptTokenCount": fieldToolPrompt,
}))

// geminiEndpoint reads a Gemini path. compat is true for the
// OpenAI-compatible endpoints.
func geminiEndpoint(path string) (ep Endpoint, model string, compat bool) {
	path = strings.TrimSuffix(path, "/")
	rest, ok := strings.CutPrefix(path, "/v1beta/")
	if !ok {
		if rest, ok = strings.CutPrefix(path, "/v1/"); !ok {
			if rest, ok = strings.CutPrefix(path, "/v1alpha/"); !ok {
				return EndpointOther, "", false
			}
		}
	}
	switch rest {
	case "openai/chat/completions":
		return EndpointChatCompletions, "", true
	case "openai/embeddings":
		return EndpointEmbeddings, "", true
	}
	name, ok := strings.CutPrefix(rest, "models/")
	if !ok {
		if name, ok = strings.CutPrefix(rest, "tunedModels/"); !ok {
			return EndpointOther, "", false
		}
	}
	i := strings.LastIndexByte(name, ':')
	if i < 0 {
		return EndpointOther, name, false
	}
	model = name[:i]
	switch name[i+1:] {
	case "generateContent":
		return EndpointGenerateContent, model, false
	case "streamGenerateContent":
		return EndpointStreamGenerateContent, model, false
	case "countTokens":
		return EndpointCountTokens, model, false
	case "embedContent":
		return EndpointEmbeddings, model, false
	}
	return EndpointOther, model, false
}

// altSSE reports whether a raw query has alt=sse.
func altSSE(q string) bool {
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		if kv == "alt=sse" {
			return true
		}
	}
	return false
}

type geminiReader struct {
	s    *jscan
	info *RequestInfo
}

func (w geminiReader) top(i int, model *string) int {
	s := w.s
	return s.object(i, func(k []byte, v int) int {
		var end int
		switch string(keyBytes(k)) {
		case "model":
			*model, end = s.strValue(v)
		case "contents":
			end = s.array(v, w.content)
		case "systemInstruction", "system_instruction", "content":
			end = w.content(v)
		case "tools":
			var n int64
			n, end = s.rawRunes(v)
			w.info.TextRunes += n
		case "generationConfig", "generation_config":
			end = s.object(v, func(k []byte, v int) int {
				switch string(keyBytes(k)) {
				case "maxOutputTokens", "max_output_tokens":
					var e int
					w.info.MaxOutputTokens, _, e = s.integer(v)
					return e
				}
				return s.skip(v)
			})
		case "generateContentRequest", "generate_content_request":
			end = w.top(v, model)
		default:
			end = s.skip(v)
		}
		return end
	})
}

// content reads a Content object: {"role": ..., "parts": [...]}.
func (w geminiReader) content(i int) int {
	s := w.s
	return s.object(i, func(k []byte, v int) int {
		if keyIs(k, "parts") {
			return s.array(v, w.part)
		}
		return s.skip(v)
	})
}

// part reads one Part: text, inline or file data (images counted by MIME
// type), or a function call or response (JSON as sent).
func (w geminiReader) part(i int) int {
	s := w.s
	return s.object(i, func(k []byte, v int) int {
		switch string(keyBytes(k)) {
		case "text":
			return s.text(v, &w.info.TextRunes)
		case "inlineData", "inline_data", "fileData", "file_data":
			var mime []byte
			end := s.object(v, func(k []byte, v int) int {
				switch string(keyBytes(k)) {
				case "mimeType", "mime_type":
					var e int
					mime, e = s.optStr(v)
					return e
				}
				return s.skip(v)
			})
			if strings.HasPrefix(string(mime), "image/") {
				w.info.Images++
				w.info.ImageTokens += geminiImageTokens
			}
			return end
		case "functionCall", "function_call", "functionResponse", "function_response":
			n, end := s.rawRunes(v)
			w.info.TextRunes += n
			return end
		}
		return s.skip(v)
	})
}

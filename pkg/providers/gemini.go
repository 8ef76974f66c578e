package providers

import (
	"math"
	"strings"
)

// DefaultGeminiURL is the Gemini API base URL used when [Gemini.BaseURL] is
// empty.
const DefaultGeminiURL = "https://generativelanguage.googleapis.com"

// Gemini image costs (Gemini API docs, "Image understanding" and "Media
// resolution"). Gemini 2.x counts an image whose sides are both at most
// 384 px as 258 tokens and tiles larger images into 768x768 crops of 258
// tokens each; an image whose size cannot be read in place is charged one
// tile. Gemini 3 charges by media resolution, high (1120 tokens) by default
// for images.
const (
	geminiImageTokens       = 258
	geminiImageSmallSide    = 384
	geminiImageTile         = 768
	gemini3ImageTokens      = 1120
	gemini3ImageLowTokens   = 280
	gemini3ImageMediumToken = 560
)

// geminiImageTokensFor prices one image of w x h pixels for model.
// Gemini 2.0 bills a tiled image one tile more than its tiles (measured:
// a 3008x2000 image of the real-traffic corpus's training split costs 13
// tiles, not 12, and a 1980x1380 one on Google's developer forum about
// 7, not 6; Gemini 2.5 bills its tiles as documented).
func geminiImageTokensFor(model string, w, h int, sized bool) int64 {
	if isGemini3(model) {
		return gemini3ImageTokens
	}
	if !sized || w <= geminiImageSmallSide && h <= geminiImageSmallSide {
		return geminiImageTokens
	}
	tiles := int64(math.Ceil(float64(w)/geminiImageTile) * math.Ceil(float64(h)/geminiImageTile))
	if strings.HasPrefix(model, "gemini-2.0") {
		tiles++
	}
	return tiles * geminiImageTokens
}

// isGemini3 reports whether a model is of the Gemini 3 generation or later.
func isGemini3(model string) bool {
	v, ok := strings.CutPrefix(model, "gemini-")
	return ok && len(v) > 0 && v[0] >= '3' && v[0] <= '9'
}

// isGeminiCompactTools reports whether a model counts function
// declarations compactly: Gemini 1.x and 2.0 bill a declaration's name,
// description and the text of its schema (property names, types,
// descriptions, enum values), not the schema's JSON and no fixed cost per
// declaration; 2.5 and later bill the JSON (see geminiReader.tool).
// Measured on the training split of the real-traffic corpus; Google does
// not document how declarations are rendered.
func isGeminiCompactTools(model string) bool {
	v, ok := strings.CutPrefix(model, "gemini-")
	return ok && (strings.HasPrefix(v, "1.") || strings.HasPrefix(v, "2.0"))
}

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
	var (
		turn geminiTurn
		f    geminiFields
	)
	w := geminiReader{s: newScan(r.Body), info: &info, turn: &turn, f: &f}
	w.s.tok = &geminiTokenizer
	// Gemini's tokenizer (shared with Gemma, whose report documents it)
	// splits every digit into a token of its own: digits weigh as wide
	// text.
	w.s.digitsWide = true
	var bodyModel string
	w.s.document(func(i int) int { return w.top(i, &bodyModel) })
	info.Model = firstNonEmpty(model, strings.TrimPrefix(bodyModel, "models/"))
	if f.callingConfig && f.decls > 0 && !isGeminiCompactTools(info.Model) {
		info.OverheadTokens += geminiCallingConfigTokens
	}
	if isGemini3(info.Model) {
		info.OverheadTokens += int64(math.Ceil(float64(turn.sig) / geminiSignatureCharsPerToken))
	}
	info.MaxOutputTokens = max(info.MaxOutputTokens, 0)
	info.Malformed = w.s.bad || !w.s.valid
	info.WideRunes = w.s.wide
	info.finishText()
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
	"responseId":                                          fieldID,
	"modelVersion":                                        fieldModel,
	"candidates.[0].finishReason":                         fieldFinish,
	"promptFeedback.blockReason":                          fieldBlockReason,
	"usageMetadata":                                       fieldUsageBlock,
	"usageMetadata.promptTokenCount":                      fieldInput,
	"usageMetadata.candidatesTokenCount":                  fieldOutput,
	"usageMetadata.totalTokenCount":                       fieldTotal,
	"usageMetadata.cachedContentTokenCount":               fieldCacheRead,
	"usageMetadata.thoughtsTokenCount":                    fieldThoughts,
	"usageMetadata.toolUsePromptTokenCount":               fieldToolPrompt,
	"usageMetadata.promptTokensDetails.[]":                fieldPromptModalityElem,
	"usageMetadata.cacheTokensDetails.[]":                 fieldCacheModalityElem,
	"usageMetadata.candidatesTokensDetails.[]":            fieldOutputModalityElem,
	"usageMetadata.promptTokensDetails.[].modality":       fieldPromptModality,
	"usageMetadata.promptTokensDetails.[].tokenCount":     fieldPromptModalityCount,
	"usageMetadata.cacheTokensDetails.[].modality":        fieldCacheModality,
	"usageMetadata.cacheTokensDetails.[].tokenCount":      fieldCacheModalityCount,
	"usageMetadata.candidatesTokensDetails.[].modality":   fieldOutputModality,
	"usageMetadata.candidatesTokensDetails.[].tokenCount": fieldOutputModalityCount,
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
	turn *geminiTurn
	f    *geminiFields
}

// geminiFields holds what the walk learns for the overheads priced after
// it: the function declarations counted, and whether the request sets a
// toolConfig.functionCallingConfig.
type geminiFields struct {
	decls         int
	callingConfig bool
}

// geminiCallingConfigTokens is what an explicit functionCallingConfig
// (any mode: AUTO, ANY, VALIDATED, NONE, with or without
// allowedFunctionNames) adds to a request with function declarations on
// the models that bill declarations as JSON (2.5 and later): measured on
// the training split of the real-traffic corpus (2026-12-07; 41 calls,
// where requests without one were overestimated and requests with one
// underestimated by 10-30 tokens); Google does not document it. Gemini
// 1.x and 2.0 show no such cost.
const geminiCallingConfigTokens = 12

// geminiTurn tracks the thought signatures of the current turn: the model
// and function contents after the last user content with standard content
// (text, inline or file data; Google's thought signatures guide: a turn is
// one exchange with the user, function calls and responses are steps
// within it).
type geminiTurn struct {
	// partSig and partText are set by part for the content being read:
	// its signature bytes, and whether it is standard content.
	partSig  int64
	partText bool
	// nested counts the function call or response parts being read
	// inside a part, which are not the content's own.
	nested int
	// sig is the signature bytes of the current turn so far.
	sig int64
}

// Gemini 3 bills the thoughts a signature replays, in the current turn
// only: about one token per geminiSignatureCharsPerToken characters of
// signature, measured on the real-traffic corpus (Google documents that
// signatures must be sent back, not what they cost). Earlier turns'
// signatures cost nothing; a user content with an image or file and no
// text also starts a turn (2026-12-07: three training calls whose image
// followed a function response were estimated 1.9-2.6 times their count
// when it did not).
const geminiSignatureCharsPerToken = 4.7

func (w geminiReader) top(i int, model *string) int {
	s := w.s
	return s.object(i, func(k []byte, v int) int {
		var end int
		switch string(keyBytes(k)) {
		case "model":
			*model, end = s.strValue(v)
		case "contents":
			end = s.array(v, w.turnContent)
		case "systemInstruction", "system_instruction", "content":
			end = w.content(v)
		case "tools":
			// A list of Tools; the API also takes a single Tool object.
			if s.at(v) == '{' {
				end = w.tool(v)
			} else {
				end = s.array(v, w.tool)
			}
		case "toolConfig", "tool_config":
			end = s.object(v, func(k []byte, v int) int {
				switch string(keyBytes(k)) {
				case "functionCallingConfig", "function_calling_config":
					w.f.callingConfig = s.at(v) == '{'
				}
				return s.skip(v)
			})
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

// tool reads one Tool. A function declaration counts its name,
// description and schemas (their JSON as sent: on the real-traffic corpus
// that fits Gemini's counts better than the compact layout OpenAI uses,
// which underestimates large schemas) plus geminiFunctionTokens; built-in
// tools (googleSearch, codeExecution, urlContext, ...) carry no text.
func (w geminiReader) tool(i int) int {
	s := w.s
	return s.object(i, func(k []byte, v int) int {
		switch string(keyBytes(k)) {
		case "functionDeclarations", "function_declarations":
			return s.array(v, func(v int) int {
				w.f.decls++
				if !isGeminiCompactTools(w.info.Model) {
					w.info.OverheadTokens += geminiFunctionTokens
				}
				return s.object(v, func(k []byte, v int) int {
					switch string(keyBytes(k)) {
					case "name", "description":
						return s.text(v, &w.info.text)
					case "parameters", "parametersJsonSchema", "parameters_json_schema", "response", "responseJsonSchema":
						return w.schema(v)
					}
					return s.skip(v)
				})
			})
		}
		return s.skip(v)
	})
}

// schema counts a function declaration's schema at i: its
// text only for the models that count it compactly (isGeminiCompactTools;
// schemaLayout's fixed costs are OpenAI's and are left out), its JSON as
// sent for the others.
func (w geminiReader) schema(i int) int {
	s := w.s
	if isGeminiCompactTools(w.info.Model) {
		var layout RequestInfo
		e := schemaLayout(s, &layout, i)
		w.info.text.add(layout.text)
		return e
	}
	n, e := s.rawRunes(i)
	w.info.text.add(n)
	return e
}

// geminiFunctionTokens is the fixed rendering cost of one function
// declaration, measured on the real-traffic corpus: Google does not
// document it.
const geminiFunctionTokens = 5

// turnContent reads one Content of the conversation and keeps the thought
// signatures of the current turn.
func (w geminiReader) turnContent(i int) int {
	s := w.s
	t := w.turn
	var role []byte
	var sig int64
	var text bool
	end := s.object(i, func(k []byte, v int) int {
		switch string(keyBytes(k)) {
		case "parts":
			return s.array(v, func(v int) int {
				t.partSig, t.partText = 0, false
				e := w.part(v)
				sig += t.partSig
				text = text || t.partText
				return e
			})
		case "role":
			var e int
			role, e = s.optStr(v)
			return e
		}
		return s.skip(v)
	})
	if string(role) == "user" && text {
		t.sig = 0
	} else {
		t.sig += sig
	}
	return end
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

// part reads one Part: text, inline or file data (images priced by
// geminiImageTokensFor), a function call (its name and arguments as sent)
// or a function response (its name, response as sent, and media parts).
// Thought signatures count nothing.
func (w geminiReader) part(i int) int {
	s := w.s
	return s.object(i, func(k []byte, v int) int {
		switch string(keyBytes(k)) {
		case "text":
			if w.turn != nil && w.turn.nested == 0 {
				w.turn.partText = true
			}
			return s.text(v, &w.info.text)
		case "thoughtSignature", "thought_signature":
			raw, end := s.optStr(v)
			if w.turn != nil {
				w.turn.partSig += int64(len(raw))
			}
			return end
		case "inlineData", "inline_data", "fileData", "file_data":
			if w.turn != nil && w.turn.nested == 0 {
				w.turn.partText = true
			}
			var mime, data []byte
			end := s.object(v, func(k []byte, v int) int {
				var e int
				switch string(keyBytes(k)) {
				case "mimeType", "mime_type":
					mime, e = s.optStr(v)
				case "data":
					data, e = s.optStr(v)
				default:
					e = s.skip(v)
				}
				return e
			})
			if strings.HasPrefix(string(mime), "image/") {
				var iw, ih int
				var sized bool
				if len(data) > 0 && !containsByte(data, '\\') {
					iw, ih, sized = imageSize(data)
				}
				w.info.Images++
				w.info.ImageTokens += geminiImageTokensFor(w.info.Model, iw, ih, sized)
			}
			return end
		case "functionCall", "function_call", "functionResponse", "function_response":
			return s.object(v, func(k []byte, v int) int {
				switch string(keyBytes(k)) {
				case "name":
					return s.text(v, &w.info.text)
				case "parts":
					if w.turn == nil {
						return s.array(v, w.part)
					}
					w.turn.nested++
					e := s.array(v, w.part)
					w.turn.nested--
					return e
				case "id":
					return s.skip(v)
				}
				n, end := s.rawRunes(v)
				w.info.text.add(n)
				return end
			})
		}
		return s.skip(v)
	})
}

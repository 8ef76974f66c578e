package providers

import (
	"math"
	"strings"
)

// DefaultOpenAIURL is the OpenAI API base URL used when [OpenAI.BaseURL] is
// empty.
const DefaultOpenAIURL = "https://api.openai.com"

// OpenAI image costs, by OpenAI's "Images and vision" guide (calculating
// costs). Tile models scale an image to fit 2048x2048, then its short side
// down to 768 px, and charge base + per-tile tokens for each 512-px tile;
// "low" detail is the base alone. Patch models cut the image into 32-px
// patches (at most 1536, scaling down beyond) and charge the patches times a
// per-model multiplier. An image whose size cannot be read in place (a URL,
// a file id) is charged as 1024x1024. For gpt-5-mini and gpt-5-nano the
// guide's table gives 1.62 and 2.46, the image cost calculator on OpenAI's
// pricing page 1.2 and 1.5; the calculator is used: the real-traffic
// corpus's training split bills gpt-5-mini images of 342 and 130 patches
// at 1.25 and 1.35 tokens a patch, with the text around them.
const (
	openAIUnknownImageSide = 1024
	openAIMaxPatches       = 1536
)

// openAIImageModels lists image pricing by model name prefix, most
// specific first; the last entry is the default (gpt-4o, gpt-4.1, gpt-4.5).
var openAIImageModels = []struct {
	prefix     string
	base, tile int64
	patchMult  float64 // non-zero for patch models
}{
	{prefix: "gpt-4.1-mini", patchMult: 1.62},
	{prefix: "gpt-4.1-nano", patchMult: 2.46},
	{prefix: "gpt-5-mini", patchMult: 1.2},
	{prefix: "gpt-5-nano", patchMult: 1.5},
	{prefix: "o4-mini", patchMult: 1.72},
	{prefix: "gpt-4o-mini", base: 2833, tile: 5667},
	{prefix: "computer-use", base: 65, tile: 129},
	{prefix: "o1", base: 75, tile: 150},
	{prefix: "o3", base: 75, tile: 150},
	{prefix: "gpt-5", base: 70, tile: 140},
	{prefix: "", base: 85, tile: 170},
}

// openAIImages accumulates the images of a request until the model is known
// (member order is free).
type openAIImages struct {
	high, low int64 // images at high (or auto) and low detail
	tiles     int64 // 512-px tiles of the high-detail images
	patches   int64 // 32-px patches of all images
}

func (a *openAIImages) add(w, h int, sized, low bool) {
	if !sized {
		w, h = openAIUnknownImageSide, openAIUnknownImageSide
	}
	a.patches += openAIPatches(float64(w), float64(h))
	if low {
		a.low++
		return
	}
	a.high++
	fw, fh := fitWithin(float64(w), float64(h), 2048, 2048)
	if short := math.Min(fw, fh); short > 768 {
		fw, fh = fw*768/short, fh*768/short
	}
	a.tiles += int64(math.Ceil(fw/512) * math.Ceil(fh/512))
}

func openAIPatches(w, h float64) int64 {
	p := math.Ceil(w/32) * math.Ceil(h/32)
	if p <= openAIMaxPatches {
		return int64(p)
	}
	r := math.Sqrt(32 * 32 * openAIMaxPatches / (w * h))
	r *= math.Min(math.Floor(w*r/32)/(w*r/32), math.Floor(h*r/32)/(h*r/32))
	return min(int64(math.Ceil(w*r/32)*math.Ceil(h*r/32)), openAIMaxPatches)
}

// tokens prices the images for model.
func (a *openAIImages) tokens(model string) int64 {
	for _, m := range openAIImageModels {
		if !strings.HasPrefix(model, m.prefix) {
			continue
		}
		if m.patchMult > 0 {
			return int64(math.Ceil(float64(a.patches) * m.patchMult))
		}
		return (a.high+a.low)*m.base + a.tiles*m.tile
	}
	return 0
}

// OpenAI chat framing (OpenAI cookbook, "How to count tokens with
// tiktoken"): every message costs 3 tokens besides its content, its role
// one more, a name one more, and the reply is primed with 3. A Responses
// request (and its input_tokens count) is primed with
// openAIResponsesReplyTokens instead: OpenAI does not document it; 1 is
// measured on the training split of the real-traffic corpus (2026-12-07;
// 0 to 3 tried with the message framing at 3 to 5).
const (
	openAIMessageTokens        = 3 + 1
	openAINameTokens           = 1
	openAIReplyTokens          = 3
	openAIResponsesReplyTokens = 1
)

// openAIAdditionalToolsTokens is what a Responses "additional_tools" input
// item (tools added mid-conversation, tool search guide) costs besides the
// rendering of the functions it carries: measured on the training split of
// the real-traffic corpus (2026-12-07; gpt-5, gpt-5.4, gpt-5.6: 80-130
// tokens a call above the rendered functions, 95 the best fit).
const openAIAdditionalToolsTokens = 95

// OpenAI reads the OpenAI API: Chat Completions, legacy Completions,
// Responses and Embeddings. The zero value is ready to use and talks to
// [DefaultOpenAIURL]. It is immutable and safe for concurrent use.
type OpenAI struct {
	// BaseURL overrides the upstream base URL; empty means DefaultOpenAIURL.
	BaseURL string
}

var _ Provider = OpenAI{}

// Name implements [Provider.Name]; it returns "openai".
func (OpenAI) Name() string { return "openai" }

// UpstreamURL implements [Provider.UpstreamURL].
func (o OpenAI) UpstreamURL() string {
	if o.BaseURL != "" {
		return o.BaseURL
	}
	return DefaultOpenAIURL
}

// ParseRequest implements [Provider.ParseRequest]. Endpoints:
// /v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings and
// /v1/responses/input_tokens (count tokens).
func (OpenAI) ParseRequest(r Request) RequestInfo {
	ep := openAIEndpoint(r.Path)
	return readOpenAIRequest(r, ep, openAIStreamable(ep))
}

// NewUsageParser implements [Provider.NewUsageParser]. It reads Chat
// Completions, Completions, Embeddings and Responses bodies, as JSON or as an
// event stream.
func (OpenAI) NewUsageParser(_ Request, info RequestInfo, contentType string) UsageParser {
	return newUsageParser(openAIUsage, info, contentType)
}

func openAIEndpoint(path string) Endpoint {
	switch strings.TrimSuffix(path, "/") {
	case "/v1/chat/completions":
		return EndpointChatCompletions
	case "/v1/completions":
		return EndpointCompletions
	case "/v1/responses":
		return EndpointResponses
	case "/v1/embeddings":
		return EndpointEmbeddings
	case "/v1/responses/input_tokens":
		return EndpointCountTokens
	}
	return EndpointOther
}

func openAIStreamable(ep Endpoint) bool {
	switch ep {
	case EndpointChatCompletions, EndpointCompletions, EndpointResponses:
		return true
	}
	return false
}

// openAIUsage maps OpenAI response fields to usage. Chat Completions (and
// the Anthropic and Gemini compatible endpoints) report usage.prompt_tokens
// and friends; the Responses API reports usage.input_tokens and friends at
// the top level of a JSON body and under "response" in its stream events.
var openAIUsage = newPaths(map[string]field{
	"id":                        fieldID,
	"model":                     fieldModel,
	"choices.[0].finish_reason": fieldFinish,
	"usage.prompt_tokens":       fieldInput,
	"usage.completion_tokens":   fieldOutput,
	"usage.total_tokens":        fieldTotal,
	"usage.prompt_tokens_details.cached_tokens":        fieldCacheRead,
	"usage.completion_tokens_details.reasoning_tokens": fieldReasoning,
	"usage.prompt_tokens_details.audio_tokens":         fieldInputAudio,
	"usage.prompt_tokens_details.cache_write_tokens":   fieldCacheWrite,
	"usage.completion_tokens_details.audio_tokens":     fieldOutputAudio,
	"service_tier":                                  fieldServiceTier,
	"usage.input_tokens":                            fieldInput,
	"usage.output_tokens":                           fieldOutput,
	"usage.input_tokens_details.cached_tokens":      fieldCacheRead,
	"usage.output_tokens_details.reasoning_tokens":  fieldReasoning,
	"usage.input_tokens_details.audio_tokens":       fieldInputAudio,
	"usage.input_tokens_details.cache_write_tokens": fieldCacheWrite,
	"usage.output_tokens_details.audio_tokens":      fieldOutputAudio,
	"status":                                                 fieldStatus,
	"incomplete_details.reason":                              fieldIncomplete,
	"response.id":                                            fieldID,
	"response.model":                                         fieldModel,
	"response.status":                                        fieldStatus,
	"response.incomplete_details.reason":                     fieldIncomplete,
	"response.usage.input_tokens":                            fieldInput,
	"response.usage.output_tokens":                           fieldOutput,
	"response.usage.total_tokens":                            fieldTotal,
	"response.usage.input_tokens_details.cached_tokens":      fieldCacheRead,
	"response.usage.output_tokens_details.reasoning_tokens":  fieldReasoning,
	"response.usage.input_tokens_details.audio_tokens":       fieldInputAudio,
	"response.usage.input_tokens_details.cache_write_tokens": fieldCacheWrite,
	"response.usage.output_tokens_details.audio_tokens":      fieldOutputAudio,
	"response.service_tier":                                  fieldServiceTier,
})

// openAIReader reads an OpenAI-shaped request body. The Anthropic and Gemini
// OpenAI-compatible endpoints use it too.
type openAIReader struct {
	s      *jscan
	info   *RequestInfo
	images *openAIImages
	// reasoning is the estimated tokens of the reasoning items replayed
	// since the last user message of a Responses input.
	reasoning *int64
	// fields collects the top-level fields, and the function count of
	// tools that input items add (Responses "additional_tools").
	fields *openAIFields
}

// Reasoning items replayed in a Responses input carry the model's
// reasoning encrypted. OpenAI keeps the reasoning of the current turn
// (since the last user message) in context and drops earlier turns'. On
// the real-traffic corpus an item costs about one token per
// openAIReasoningCharsPerToken characters of encrypted_content beyond an
// empty item's openAIReasoningBaseChars (measured; OpenAI documents the
// dropping, not the size).
const (
	openAIReasoningBaseChars     = 1000
	openAIReasoningCharsPerToken = 5
)

// readOpenAIRequest fills a RequestInfo from an OpenAI-shaped request.
// streamable says whether the endpoint honours "stream": true.
func readOpenAIRequest(r Request, ep Endpoint, streamable bool) RequestInfo {
	info := RequestInfo{Endpoint: ep}
	info.Stream = acceptsEventStream(r.Accept) && (streamable || ep == EndpointOther)
	if r.Body == nil {
		return info
	}
	if ep == EndpointOther {
		readLooseModel(r.Body, &info)
		return info
	}
	var (
		f   openAIFields
		img openAIImages
	)
	var reasoning int64
	w := openAIReader{s: newScan(r.Body), info: &info, images: &img, reasoning: &reasoning, fields: &f}
	w.s.document(func(i int) int { return w.top(i, &f) })
	info.OverheadTokens += reasoning
	info.ImageTokens = img.tokens(info.Model)
	switch {
	case f.messages:
		info.OverheadTokens += openAIReplyTokens
	case ep == EndpointResponses || ep == EndpointCountTokens:
		info.OverheadTokens += openAIResponsesReplyTokens
	}
	if f.functions > 0 {
		info.OverheadTokens += layoutFuncEnd
		if f.messages && openAIReasoningModel(info.Model) {
			info.OverheadTokens += openAIReasoningChatToolTokens
		}
	}
	if f.stream && streamable {
		info.Stream = true
	}
	info.User = firstNonEmpty(f.user, f.safetyID)
	switch {
	case f.maxCompletion > 0:
		info.MaxOutputTokens = f.maxCompletion
	case f.maxOutput > 0:
		info.MaxOutputTokens = f.maxOutput
	default:
		info.MaxOutputTokens = max(f.maxTokens, 0)
	}
	info.Malformed = w.s.bad || !w.s.valid
	info.WideRunes = w.s.wide
	info.finishText()
	return info
}

// openAIFields holds top-level fields resolved after the walk, as JSON
// member order is free.
type openAIFields struct {
	user, safetyID                      string
	stream                              bool
	maxTokens, maxCompletion, maxOutput int64
	// messages is set for a chat (messages list); functions counts the
	// function definitions.
	messages  bool
	functions int
}

func (w openAIReader) top(i int, f *openAIFields) int {
	s := w.s
	return s.object(i, func(k []byte, v int) int {
		var end int
		switch string(keyBytes(k)) {
		case "model":
			w.info.Model, end = s.strValue(v)
		case "user":
			f.user, end = s.strValue(v)
		case "safety_identifier":
			f.safetyID, end = s.strValue(v)
		case "stream":
			f.stream, end = s.boolean(v)
		case "max_tokens":
			f.maxTokens, _, end = s.integer(v)
		case "max_completion_tokens":
			f.maxCompletion, _, end = s.integer(v)
		case "max_output_tokens":
			f.maxOutput, _, end = s.integer(v)
		case "messages":
			f.messages = true
			end = s.array(v, w.message)
		case "input":
			end = w.input(v)
		case "instructions":
			// Empty instructions add no system message.
			if s.at(v) == '"' && s.at(v+1) != '"' {
				w.info.OverheadTokens += openAIInstructionsTokens
			}
			end = s.text(v, &w.info.text)
		case "prompt":
			end = w.prompt(v)
		case "tools", "functions":
			end = s.array(v, func(v int) int { return w.tool(v, f) })
		case "response_format":
			end = w.format(v)
		case "text":
			end = s.object(v, func(k []byte, v int) int {
				if keyIs(k, "format") {
					return w.format(v)
				}
				return s.skip(v)
			})
		default:
			end = s.skip(v)
		}
		return end
	})
}

// openAIReasoningChatToolTokens is what reasoning models (gpt-5, o-series)
// add on Chat Completions when function tools are present, measured on the
// real-traffic corpus; it matches the size of the tool-channel
// instructions of the harmony prompt format these models use.
const openAIReasoningChatToolTokens = 75

// openAIReasoningModel reports whether a model is a reasoning model
// (gpt-5 family, o1, o3, o4).
func openAIReasoningModel(model string) bool {
	return strings.HasPrefix(model, "gpt-5") || strings.HasPrefix(model, "o1") ||
		strings.HasPrefix(model, "o3") || strings.HasPrefix(model, "o4")
}

// openAIFormatTokens is the fixed cost of a JSON-schema response format
// (its framing in the system message), measured on the real-traffic
// corpus: OpenAI does not document it.
const openAIFormatTokens = 20

// format reads a structured-output format (response_format, or the
// Responses text.format): a JSON schema is counted in the layout OpenAI
// renders (schemaLayout), with its name and description.
func (w openAIReader) format(i int) int {
	s := w.s
	if s.at(i) != '{' {
		return s.skip(i)
	}
	var typ []byte
	end := s.object(i, func(k []byte, v int) int {
		switch string(keyBytes(k)) {
		case "type":
			var e int
			typ, e = s.optStr(v)
			return e
		case "json_schema": // Chat Completions nests the schema
			return w.format(v)
		case "name", "description":
			return s.text(v, &w.info.text)
		case "schema":
			return schemaLayout(s, w.info, v)
		}
		return s.skip(v)
	})
	if string(typ) == "json_schema" {
		w.info.OverheadTokens += openAIFormatTokens
	}
	return end
}

// tool reads one tool definition. Functions (the Chat Completions
// {"type":"function","function":{...}}, the flat Responses form and legacy
// "functions") are counted in OpenAI's rendering layout: their name,
// description and parameters (schemaLayout) plus layoutFuncInit, or
// layoutFuncEmpty when the parameters have no properties; a tool
// with "defer_loading": true counts nothing. Other
// tools count their name and description, and the rest of their JSON as
// sent.
func (w openAIReader) tool(i int, f *openAIFields) int {
	s := w.s
	if s.at(i) != '{' {
		return s.skip(i)
	}
	var (
		typ              []byte
		other            textCount
		nested, deferred bool
		// def holds the definition's counts until defer_loading is known.
		def RequestInfo
	)
	end := s.object(i, func(k []byte, v int) int {
		switch string(keyBytes(k)) {
		case "type":
			var e int
			typ, e = s.optStr(v)
			return e
		case "function":
			if s.at(v) != '{' {
				return s.skip(v)
			}
			nested = true
			return w.tool(v, f)
		case "name", "description":
			return s.text(v, &def.text)
		case "parameters":
			return schemaLayout(s, &def, v)
		case "strict":
			return s.skip(v)
		case "defer_loading":
			var e int
			deferred, e = s.boolean(v)
			return e
		}
		n, e := s.rawRunes(v)
		other.add(n)
		return e
	})
	if deferred {
		// Not in the prompt until a tool search loads it (OpenAI tool
		// search guide); the loaded definition arrives as an input item.
		return end
	}
	w.info.text.add(def.text)
	w.info.OverheadTokens += def.OverheadTokens
	switch {
	case nested:
	case len(typ) == 0 || string(typ) == "function":
		f.functions++
		if def.OverheadTokens == 0 {
			// No property list or enum was rendered: "() => any".
			w.info.OverheadTokens += layoutFuncEmpty
		} else {
			w.info.OverheadTokens += layoutFuncInit
		}
	default:
		w.info.text.add(other)
		w.info.OverheadTokens += openAIHostedToolTokens(typ)
	}
	return end
}

// openAIHostedToolTokens is the definition cost of a tool OpenAI hosts,
// measured on the real-traffic corpus (calls that declare the tool where
// it did not run); OpenAI does not document these. Unknown types cost 0.
func openAIHostedToolTokens(typ []byte) int64 {
	switch string(typ) {
	case "image_generation":
		return 340
	case "web_search", "web_search_preview":
		return 300
	case "tool_search":
		return 150
	}
	return 0
}

// message reads one Chat Completions message: its framing
// (openAIMessageTokens), content, name and tool calls.
func (w openAIReader) message(i int) int {
	s := w.s
	w.info.OverheadTokens += openAIMessageTokens
	return s.object(i, func(k []byte, v int) int {
		switch string(keyBytes(k)) {
		case "content":
			return w.content(v)
		case "name":
			w.info.OverheadTokens += openAINameTokens
			return s.text(v, &w.info.text)
		case "tool_calls":
			if s.at(v) != '[' {
				return s.skip(v)
			}
			return s.array(v, func(e int) int {
				if s.at(e) != '{' {
					return s.skip(e)
				}
				return s.object(e, func(k []byte, fv int) int {
					if string(keyBytes(k)) == "function" {
						return w.toolCall(fv)
					}
					return s.skip(fv) // id and type are not rendered
				})
			})
		case "function_call":
			return w.toolCall(v)
		}
		return s.skip(v)
	})
}

// openAIToolCallTokens frames one tool call replayed in an assistant
// message: the recipient ("to=functions.") and the content type around the
// name and arguments (OpenAI's harmony response format). The call's id and
// type are not part of the prompt. The o200k count of that framing alone
// is 5; 6 is measured on the training split of the real-traffic corpus
// (2026-12-07).
const openAIToolCallTokens = 6

// Responses framing OpenAI does not document, measured on the training
// split of the real-traffic corpus (2026-12-07): the system (developer)
// message that non-empty instructions become, and a replayed
// function_call or custom_tool_call item, a message of its own addressed
// to the function (harmony's channel, recipient and constraint tokens
// around the name and arguments; 17 where a chat message and a chat tool
// call would give 4 + 6).
const (
	openAIInstructionsTokens  = 5
	openAIResponsesCallTokens = 17
)

// toolCall reads a replayed call {"name":..., "arguments":"..."}: its name
// and its arguments as text, plus openAIToolCallTokens.
func (w openAIReader) toolCall(i int) int {
	s := w.s
	if s.at(i) != '{' {
		return s.skip(i)
	}
	w.info.OverheadTokens += openAIToolCallTokens
	return s.object(i, func(k []byte, v int) int {
		switch string(keyBytes(k)) {
		case "name", "arguments":
			if c := s.at(v); c == '"' || c == 'n' {
				return s.text(v, &w.info.text)
			}
			n, end := s.rawRunes(v)
			w.info.text.add(n)
			return end
		}
		return s.skip(v)
	})
}

// content reads message content: a string, an array of parts, or null.
func (w openAIReader) content(i int) int {
	switch w.s.at(i) {
	case '[':
		return w.s.array(i, w.part)
	default:
		return w.s.text(i, &w.info.text)
	}
}

// input reads the Responses "input" (a string or a list of items) and the
// Embeddings "input" (a string, or a list of strings or token arrays).
func (w openAIReader) input(i int) int {
	if w.s.at(i) != '[' {
		return w.s.text(i, &w.info.text)
	}
	return w.s.array(i, func(v int) int {
		switch w.s.at(v) {
		case '"':
			n, end := w.s.runes(v)
			w.info.text.add(n)
			return end
		case '{':
			return w.part(v)
		}
		return w.s.skip(v) // token ids
	})
}

// prompt reads the Completions prompt: a string or a list of strings (token
// arrays count nothing). The Responses prompt template reference (an
// object) carries no text and is skipped.
func (w openAIReader) prompt(i int) int {
	switch w.s.at(i) {
	case '"':
		return w.s.text(i, &w.info.text)
	case '[':
		return w.s.array(i, func(v int) int {
			if w.s.at(v) == '"' {
				return w.s.text(v, &w.info.text)
			}
			return w.s.skip(v)
		})
	}
	return w.s.skip(i)
}

// part reads a content part or a Responses input item. Text parts ("text",
// "input_text", "output_text"), refusals and images are counted by type;
// nested content, tool-call arguments and tool outputs always count.
func (w openAIReader) part(i int) int {
	s := w.s
	var (
		typ           []byte
		text, refusal textCount
		detail, url   []byte
		hasText       bool
		role          []byte
		encrypted     int
	)
	end := s.object(i, func(k []byte, v int) int {
		var end int
		switch string(keyBytes(k)) {
		case "type":
			typ, end = s.optStr(v)
			typ = keyBytes(typ)
		case "text":
			hasText = true
			end = s.text(v, &text)
		case "refusal":
			end = s.text(v, &refusal)
		case "detail":
			detail, end = s.optStr(v)
		case "role":
			// A Responses input message item: framed like a chat message.
			w.info.OverheadTokens += openAIMessageTokens
			role, end = s.optStr(v)
		case "encrypted_content":
			var raw []byte
			raw, end = s.optStr(v)
			encrypted = len(raw)
		case "name":
			end = s.text(v, &w.info.text)
		case "image_url":
			switch s.at(v) {
			case '{':
				end = s.object(v, func(k []byte, v int) int {
					switch string(keyBytes(k)) {
					case "detail":
						var e int
						detail, e = s.optStr(v)
						return e
					case "url":
						var e int
						url, e = s.optStr(v)
						return e
					}
					return s.skip(v)
				})
			case '"':
				url, end = s.str(v)
			default:
				end = s.skip(v)
			}
		case "content", "output":
			end = w.content(v)
		case "tools":
			// Tools an input item adds mid-conversation (Responses
			// "additional_tools", a tool_search_output's loaded tools):
			// rendered like the request's own.
			end = s.array(v, func(v int) int { return w.tool(v, w.fields) })
		case "arguments", "input":
			if c := s.at(v); c == '"' || c == 'n' {
				end = s.text(v, &w.info.text)
			} else {
				var n textCount
				n, end = s.rawRunes(v)
				w.info.text.add(n)
			}
		default:
			end = s.skip(v)
		}
		return end
	})
	switch {
	case string(role) == "user":
		*w.reasoning = 0
	case string(typ) == "reasoning" && encrypted > openAIReasoningBaseChars:
		*w.reasoning += int64((encrypted - openAIReasoningBaseChars) / openAIReasoningCharsPerToken)
	}
	switch string(typ) {
	case "additional_tools":
		w.info.OverheadTokens += openAIAdditionalToolsTokens
	case "function_call", "custom_tool_call":
		// A replayed call is a message of its own, addressed to the
		// function (harmony format), like a Chat Completions tool call.
		w.info.OverheadTokens += openAIResponsesCallTokens
	case "function_call_output", "custom_tool_call_output":
		// Its output is a message of its own too.
		w.info.OverheadTokens += openAIMessageTokens
	case "text", "input_text", "output_text":
		if hasText {
			w.info.text.add(text)
		}
	case "refusal":
		w.info.text.add(refusal)
	case "image_url", "input_image":
		w.info.Images++
		var iw, ih int
		var sized bool
		if data, ok := base64Payload(url); ok && !containsByte(data, '\\') {
			iw, ih, sized = imageSize(data)
		}
		w.images.add(iw, ih, sized, string(detail) == "low")
	}
	return end
}

// readLooseModel reads model and user from the top level of a JSON object
// body of an endpoint the provider does not model. It never marks the
// request malformed: such bodies may be multipart or binary.
func readLooseModel(b []byte, info *RequestInfo) {
	s := newScan(b)
	i := s.ws(0)
	if s.at(i) != '{' {
		return
	}
	s.object(i, func(k []byte, v int) int {
		switch string(keyBytes(k)) {
		case "model":
			m, end := s.strValue(v)
			if !s.bad {
				info.Model = m
			}
			return end
		case "user":
			u, end := s.strValue(v)
			if !s.bad {
				info.User = u
			}
			return end
		}
		return s.skip(v)
	})
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// acceptsEventStream reports whether an Accept header value names
// text/event-stream, ignoring ASCII case.
func acceptsEventStream(accept string) bool {
	const want = "text/event-stream"
	for i := 0; i+len(want) <= len(accept); i++ {
		if strings.EqualFold(accept[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

package providers

import "strings"

// DefaultOpenAIURL is the OpenAI API base URL used when [OpenAI.BaseURL] is
// empty.
const DefaultOpenAIURL = "https://api.openai.com"

// OpenAI image costs. The high-detail cost depends on the image size, which
// is not known without fetching and decoding the image, so every image that
// is not "low" detail is charged as a 1024x1024 image at high detail: 85 base
// tokens plus 170 per 512-px tile, 4 tiles (OpenAI vision pricing for
// GPT-4o-class models). "low" detail is a flat 85 tokens.
const (
	openAIImageLowTokens  = 85
	openAIImageHighTokens = 85 + 4*170
)

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
	"usage.input_tokens":                               fieldInput,
	"usage.output_tokens":                              fieldOutput,
	"usage.input_tokens_details.cached_tokens":         fieldCacheRead,
	"usage.output_tokens_details.reasoning_tokens":     fieldReasoning,
	"status":                                                fieldStatus,
	"incomplete_details.reason":                             fieldIncomplete,
	"response.id":                                           fieldID,
	"response.model":                                        fieldModel,
	"response.status":                                       fieldStatus,
	"response.incomplete_details.reason":                    fieldIncomplete,
	"response.usage.input_tokens":                           fieldInput,
	"response.usage.output_tokens":                          fieldOutput,
	"response.usage.total_tokens":                           fieldTotal,
	"response.usage.input_tokens_details.cached_tokens":     fieldCacheRead,
	"response.usage.output_tokens_details.reasoning_tokens": fieldReasoning,
})

// openAIReader reads an OpenAI-shaped request body. The Anthropic and Gemini
// OpenAI-compatible endpoints use it too.
type openAIReader struct {
	s    *jscan
	info *RequestInfo
}

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
	var f openAIFields
	w := openAIReader{s: newScan(r.Body), info: &info}
	w.s.document(func(i int) int { return w.top(i, &f) })
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
	return info
}

// openAIFields holds top-level fields resolved after the walk, as JSON
// member order is free.
type openAIFields struct {
	user, safetyID                      string
	stream                              bool
	maxTokens, maxCompletion, maxOutput int64
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
			end = s.array(v, w.message)
		case "input":
			end = w.input(v)
		case "instructions":
			end = s.text(v, &w.info.TextRunes)
		case "prompt":
			end = w.prompt(v)
		case "tools", "functions":
			var n int64
			n, end = s.rawRunes(v)
			w.info.TextRunes += n
		default:
			end = s.skip(v)
		}
		return end
	})
}

// message reads one Chat Completions message.
func (w openAIReader) message(i int) int {
	s := w.s
	return s.object(i, func(k []byte, v int) int {
		switch string(keyBytes(k)) {
		case "content":
			return w.content(v)
		case "tool_calls", "function_call":
			n, end := s.rawRunes(v)
			w.info.TextRunes += n
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
		return w.s.text(i, &w.info.TextRunes)
	}
}

// input reads the Responses "input" (a string or a list of items) and the
// Embeddings "input" (a string, or a list of strings or token arrays).
func (w openAIReader) input(i int) int {
	if w.s.at(i) != '[' {
		return w.s.text(i, &w.info.TextRunes)
	}
	return w.s.array(i, func(v int) int {
		switch w.s.at(v) {
		case '"':
			n, end := w.s.runes(v)
			w.info.TextRunes += n
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
		return w.s.text(i, &w.info.TextRunes)
	case '[':
		return w.s.array(i, func(v int) int {
			if w.s.at(v) == '"' {
				return w.s.text(v, &w.info.TextRunes)
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
		text, refusal int64
		detail        []byte
		hasText       bool
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
		case "image_url":
			if s.at(v) == '{' {
				end = s.object(v, func(k []byte, v int) int {
					if keyIs(k, "detail") {
						var e int
						detail, e = s.optStr(v)
						return e
					}
					return s.skip(v)
				})
			} else {
				end = s.skip(v)
			}
		case "content", "output":
			end = w.content(v)
		case "arguments", "input":
			if c := s.at(v); c == '"' || c == 'n' {
				end = s.text(v, &w.info.TextRunes)
			} else {
				var n int64
				n, end = s.rawRunes(v)
				w.info.TextRunes += n
			}
		default:
			end = s.skip(v)
		}
		return end
	})
	switch string(typ) {
	case "text", "input_text", "output_text":
		if hasText {
			w.info.TextRunes += text
		}
	case "refusal":
		w.info.TextRunes += refusal
	case "image_url", "input_image":
		w.info.Images++
		if string(detail) == "low" {
			w.info.ImageTokens += openAIImageLowTokens
		} else {
			w.info.ImageTokens += openAIImageHighTokens
		}
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

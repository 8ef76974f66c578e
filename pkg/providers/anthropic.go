package providers

import "strings"

// DefaultAnthropicURL is the Anthropic API base URL used when
// [Anthropic.BaseURL] is empty.
const DefaultAnthropicURL = "https://api.anthropic.com"

// anthropicImageTokens is the input cost charged per image. Anthropic bills
// about width*height/750 tokens per image and scales images down until they
// fit about 1.15 megapixels (1092x1092 px), so one image costs at most about
// 1600 tokens; the size is not known without decoding the image, so every
// image is charged that ceiling.
const anthropicImageTokens = 1600

// Anthropic reads the Anthropic Messages API (/v1/messages, with
// /v1/messages/count_tokens) and its OpenAI-compatible
// /v1/chat/completions. The zero value is ready to use and talks to
// [DefaultAnthropicURL]. It is immutable and safe for concurrent use.
type Anthropic struct {
	// BaseURL overrides the upstream base URL; empty means
	// DefaultAnthropicURL.
	BaseURL string
}

var _ Provider = Anthropic{}

// Name implements [Provider.Name]; it returns "anthropic".
func (Anthropic) Name() string { return "anthropic" }

// UpstreamURL implements [Provider.UpstreamURL].
func (a Anthropic) UpstreamURL() string {
	if a.BaseURL != "" {
		return a.BaseURL
	}
	return DefaultAnthropicURL
}

// ParseRequest implements [Provider.ParseRequest]. Input text is the system
// prompt (string or blocks), message content (string or blocks: text,
// tool_use input JSON, tool_result content) and the tool definitions.
func (Anthropic) ParseRequest(r Request) RequestInfo {
	var ep Endpoint
	switch strings.TrimSuffix(r.Path, "/") {
	case "/v1/messages":
		ep = EndpointMessages
	case "/v1/messages/count_tokens":
		ep = EndpointCountTokens
	case "/v1/chat/completions":
		info := readOpenAIRequest(r, EndpointChatCompletions, true)
		info.OpenAICompatible = true
		return info
	default:
		ep = EndpointOther
	}
	streamable := ep == EndpointMessages
	info := RequestInfo{Endpoint: ep}
	info.Stream = acceptsEventStream(r.Accept) && (streamable || ep == EndpointOther)
	if r.Body == nil {
		return info
	}
	if ep == EndpointOther {
		readLooseModel(r.Body, &info)
		return info
	}
	w := anthropicReader{s: newScan(r.Body), info: &info}
	var stream bool
	w.s.document(func(i int) int { return w.top(i, &stream) })
	if stream && streamable {
		info.Stream = true
	}
	info.MaxOutputTokens = max(info.MaxOutputTokens, 0)
	info.Malformed = w.s.bad || !w.s.valid
	info.WideRunes = w.s.wide
	return info
}

// NewUsageParser implements [Provider.NewUsageParser]. It reads Messages
// bodies as JSON or as an event stream, and the OpenAI-compatible endpoint's
// Chat Completions shapes.
//
// Anthropic reports input_tokens without the cached part: cache reads and
// cache writes are separate counts, billed at their own prices. Usage keeps
// that split, so InputTokens excludes cache and TotalTokens is InputTokens +
// OutputTokens. message_start carries the input and cache counts and an
// output seed; message_delta carries cumulative counts, which overwrite.
func (Anthropic) NewUsageParser(_ Request, info RequestInfo, contentType string) UsageParser {
	return newUsageParser(anthropicUsage, info, contentType)
}

// chatUsagePaths are the Chat Completions usage fields, shared by the
// OpenAI-compatible endpoints of Anthropic and Gemini.
var chatUsagePaths = map[string]field{
	"id":                        fieldID,
	"model":                     fieldModel,
	"choices.[0].finish_reason": fieldFinish,
	"usage.prompt_tokens":       fieldInput,
	"usage.completion_tokens":   fieldOutput,
	"usage.total_tokens":        fieldTotal,
	"usage.prompt_tokens_details.cached_tokens":        fieldCacheRead,
	"usage.completion_tokens_details.reasoning_tokens": fieldReasoning,
}

var anthropicUsage = newPaths(mergePaths(chatUsagePaths, map[string]field{
	// JSON body, and message_delta events (usage and delta at the top).
	"stop_reason":                       fieldFinish,
	"usage.input_tokens":                fieldInput,
	"usage.output_tokens":               fieldOutput,
	"usage.cache_read_input_tokens":     fieldCacheRead,
	"usage.cache_creation_input_tokens": fieldCacheWrite,
	"delta.stop_reason":                 fieldFinish,
	// message_start events.
	"message.id":                                fieldID,
	"message.model":                             fieldModel,
	"message.stop_reason":                       fieldFinish,
	"message.usage.input_tokens":                fieldInput,
	"message.usage.output_tokens":               fieldOutput,
	"message.usage.cache_read_input_tokens":     fieldCacheRead,
	"message.usage.cache_creation_input_tokens": fieldCacheWrite,
}))

type anthropicReader struct {
	s    *jscan
	info *RequestInfo
}

func (w anthropicReader) top(i int, stream *bool) int {
	s := w.s
	return s.object(i, func(k []byte, v int) int {
		var end int
		switch string(keyBytes(k)) {
		case "model":
			w.info.Model, end = s.strValue(v)
		case "stream":
			*stream, end = s.boolean(v)
		case "max_tokens":
			w.info.MaxOutputTokens, _, end = s.integer(v)
		case "metadata":
			end = s.object(v, func(k []byte, v int) int {
				if keyIs(k, "user_id") {
					var e int
					w.info.User, e = s.strValue(v)
					return e
				}
				return s.skip(v)
			})
		case "system":
			end = w.content(v)
		case "messages":
			end = s.array(v, func(v int) int {
				return s.object(v, func(k []byte, v int) int {
					if keyIs(k, "content") {
						return w.content(v)
					}
					return s.skip(v)
				})
			})
		case "tools":
			var n int64
			n, end = s.rawRunes(v)
			w.info.TextRunes += n
		default:
			end = s.skip(v)
		}
		return end
	})
}

// content reads a string or a list of content blocks.
func (w anthropicReader) content(i int) int {
	if w.s.at(i) == '[' {
		return w.s.array(i, w.block)
	}
	return w.s.text(i, &w.info.TextRunes)
}

// block reads one content block. Text blocks count their text, image blocks
// their image; tool_use input (JSON as sent) and tool_result content count
// whatever the type.
func (w anthropicReader) block(i int) int {
	s := w.s
	var (
		typ  []byte
		text int64
	)
	end := s.object(i, func(k []byte, v int) int {
		var end int
		switch string(keyBytes(k)) {
		case "type":
			typ, end = s.optStr(v)
			typ = keyBytes(typ)
		case "text":
			end = s.text(v, &text)
		case "input":
			var n int64
			n, end = s.rawRunes(v)
			w.info.TextRunes += n
		case "content":
			end = w.content(v)
		default:
			end = s.skip(v)
		}
		return end
	})
	switch string(typ) {
	case "text":
		w.info.TextRunes += text
	case "image":
		w.info.Images++
		w.info.ImageTokens += anthropicImageTokens
	}
	return end
}

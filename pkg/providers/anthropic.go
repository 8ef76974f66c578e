package providers

import (
	"math"
	"strings"
)

// DefaultAnthropicURL is the Anthropic API base URL used when
// [Anthropic.BaseURL] is empty.
const DefaultAnthropicURL = "https://api.anthropic.com"

// Anthropic image costs (Claude docs, "Vision": evaluate image size).
// Claude bills width*height/750 tokens for an image, after scaling it down
// (keeping its aspect) until its long edge is at most 1568 px and it has
// at most about 1.15 megapixels, so one image costs at most about 1600
// tokens. An image whose size cannot be read in place (a URL, a file id,
// an unknown format) is charged that ceiling.
const (
	anthropicImageTokens    = 1600
	anthropicImageLongEdge  = 1568
	anthropicImageMaxPixels = 1_150_000
	anthropicPixelsPerToken = 750
)

// anthropicImageTokensFor prices one image of w x h pixels; sized is false
// when the size is unknown.
func anthropicImageTokensFor(w, h int, sized bool) int64 {
	if !sized {
		return anthropicImageTokens
	}
	fw, fh := fitWithin(float64(w), float64(h), anthropicImageLongEdge, anthropicImageLongEdge)
	if px := fw * fh; px > anthropicImageMaxPixels {
		r := math.Sqrt(anthropicImageMaxPixels / px)
		fw, fh = fw*r, fh*r
	}
	return int64(math.Ceil(fw * fh / anthropicPixelsPerToken))
}

// anthropicMessageTokens is the framing of one message (its role turn
// markers), measured on the training split of the real-traffic corpus
// (2026-12-07, with text priced by its pieces): Anthropic does not
// document it.
const anthropicMessageTokens = 6

// Tool-use system prompt, in tokens, that Anthropic adds whenever a request
// has tools (Claude docs, "Tool use": pricing table), by model family and
// tool_choice: the first value for auto and none, the second for any and
// tool.
var anthropicToolPrompt = []struct {
	prefix    string
	auto, any int64
}{
	{"claude-3-opus", 530, 281},
	{"claude-3-sonnet", 159, 235},
	{"claude-3-haiku", 264, 340},
	{"claude-3-5-haiku", 264, 340},
}

// anthropicToolPromptDefault is the tool-use system prompt of every later
// model (Claude 3.5 and 3.7 Sonnet, the Claude 4 family and on). The
// pricing table gives 346 (auto, none) and 313 (any, tool); on the
// training split of the real-traffic corpus (Claude 4.x, one to four
// client tools) the cost that fits best is 164 tokens more for auto and
// 312 more for any (re-measured on 2026-12-07 with text priced by its
// pieces), so the measured values are used.
var anthropicToolPromptDefault = struct{ auto, any int64 }{346 + 164, 313 + 312}

// Measured on the training split of the real-traffic corpus (Anthropic
// does not document them; re-measured on 2026-12-07 with text priced by
// its pieces): the framing of each tool_use and tool_result block, the
// extended-thinking instructions a request with thinking enabled gets, and
// the instructions of a structured-output format besides its schema.
//
// anthropicThinkingTokens is what thinking {"type": "enabled"} (a fixed
// budget_tokens) adds: 28-31 tokens over the same request without it on
// the training split (Claude Sonnet 4, 4.5, 4.6). Adaptive thinking
// ({"type": "adaptive"}) adds nothing measurable (Opus 4.6 with tools, 4.7,
// 4.8, 5: 0 to 5 tokens) and is not charged.
const (
	anthropicToolBlockTokens = 28
	anthropicThinkingTokens  = 30
	anthropicFormatTokens    = 140
)

// anthropicKeepsThinking reports whether a model keeps the thinking blocks
// of earlier assistant turns in its context (Claude docs, "Extended
// thinking" and "Context windows"): Opus 4.5 and later, Sonnet 4.6 and
// later and the later families do; Claude 3.7, Opus 4 and 4.1, Sonnet 4 and
// 4.5 and every Haiku through 4.5 drop them, the API stripping them from
// the input, and keep only the current assistant turn's (the thinking of a
// tool-use loop, since the last user message that carries no tool
// results).
func anthropicKeepsThinking(model string) bool {
	for _, p := range []string{"claude-3", "claude-haiku-", "claude-opus-4-0", "claude-opus-4-1", "claude-opus-4-2",
		"claude-sonnet-4-0", "claude-sonnet-4-5", "claude-sonnet-4-2"} {
		if strings.HasPrefix(model, p) {
			return false
		}
	}
	return true
}

// anthropicTaskBudgetTokens is what an output_config.task_budget adds: the
// model is told the budget it has left (Claude docs, "Task budgets"); the
// size of that notice is measured on the training split of the
// real-traffic corpus (Claude Opus 4.7, "What is 2+2?": 53 tokens with a
// budget, 13-14 without).
const anthropicTaskBudgetTokens = 40

// Anthropic-defined tools: tokens their definitions add (Claude docs, the
// pages of the bash, text editor and computer use tools). Computer use also
// adds a beta system prompt of 466-499 tokens; the upper bound is charged.
const (
	anthropicBashToolTokens       = 245
	anthropicTextEditorToolTokens = 700
	anthropicComputerToolTokens   = 735
	anthropicComputerSystemTokens = 499
)

// Server and memory tools whose definition cost Anthropic does not
// publish: tokens measured on the real-traffic corpus (bench/estimation,
// calls that declare the tool but where no server tool ran), net of the
// tool-use system prompt. The BM25 tool search was re-measured on the
// training split on 2026-12-07 (21 calls, with the re-measured framing and
// tool-use prompt: 250, was 300); each of the others has one training call
// and keeps its value of 2026-12-02 (those calls cost ~160 tokens less
// than estimated, as the recordings with the smaller tool-use prompt do,
// so a value fitted to them would not carry).
var anthropicMeasuredTools = []struct {
	prefix string
	tokens int64
}{
	{"web_search_", 1860},
	{"web_fetch_", 520},
	{"memory_", 1220},
	{"tool_search_tool_bm25_", 250},
	{"tool_search_tool_regex_", 360},
}

// anthropicBuiltinTool returns the definition cost of an Anthropic-defined
// tool type and whether it is computer use: documented for bash, text
// editor and computer use, measured for the tools in
// anthropicMeasuredTools, 0 for the rest.
func anthropicBuiltinTool(typ string) (tokens int64, computer bool) {
	for _, t := range anthropicMeasuredTools {
		if strings.HasPrefix(typ, t.prefix) {
			return t.tokens, false
		}
	}
	switch {
	case strings.HasPrefix(typ, "bash_"):
		return anthropicBashToolTokens, false
	case strings.HasPrefix(typ, "text_editor_"):
		return anthropicTextEditorToolTokens, false
	case strings.HasPrefix(typ, "computer_"):
		return anthropicComputerToolTokens, true
	}
	return 0, false
}

// anthropicOverhead prices what Anthropic adds around the counted text:
// the tool-use system prompt when tools are sent, built-in tool
// definitions, the computer-use system prompt.
func anthropicOverhead(model string, f *anthropicFields) int64 {
	var n int64
	if f.tools > 0 || f.builtin > 0 {
		cost := anthropicToolPromptDefault
		for _, p := range anthropicToolPrompt {
			if strings.HasPrefix(model, p.prefix) {
				cost.auto, cost.any = p.auto, p.any
				break
			}
		}
		switch string(f.toolChoice) {
		case "any", "tool":
			n += cost.any
		default:
			n += cost.auto
		}
	}
	n += f.builtin
	if f.computer {
		n += anthropicComputerSystemTokens
	}
	if f.thinkingEnabled {
		n += anthropicThinkingTokens
	}
	if f.format {
		n += anthropicFormatTokens
	}
	if f.taskBudget {
		n += anthropicTaskBudgetTokens
	}
	return n
}

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
	var f anthropicFields
	w := anthropicReader{s: newScan(r.Body), info: &info, f: &f}
	w.s.tok = &claudeTokenizer
	w.s.document(func(i int) int { return w.top(i, &f) })
	info.text.add(f.turnThinking)
	if anthropicKeepsThinking(info.Model) {
		info.text.add(f.pastThinking)
	}
	if f.stream && streamable {
		info.Stream = true
	}
	info.OverheadTokens += anthropicOverhead(info.Model, &f)
	info.MaxOutputTokens = max(info.MaxOutputTokens, 0)
	info.Malformed = w.s.bad || !w.s.valid
	info.WideRunes = w.s.wide
	info.finishText()
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
	"stop_reason":                                    fieldFinish,
	"usage.input_tokens":                             fieldInput,
	"usage.output_tokens":                            fieldOutput,
	"usage.cache_read_input_tokens":                  fieldCacheRead,
	"usage.cache_creation_input_tokens":              fieldCacheWrite,
	"usage.cache_creation.ephemeral_1h_input_tokens": fieldCacheWrite1h,
	"delta.stop_reason":                              fieldFinish,
	// message_start events.
	"message.id":                                             fieldID,
	"message.model":                                          fieldModel,
	"message.stop_reason":                                    fieldFinish,
	"message.usage.input_tokens":                             fieldInput,
	"message.usage.output_tokens":                            fieldOutput,
	"message.usage.cache_read_input_tokens":                  fieldCacheRead,
	"message.usage.cache_creation_input_tokens":              fieldCacheWrite,
	"message.usage.cache_creation.ephemeral_1h_input_tokens": fieldCacheWrite1h,
}))

type anthropicReader struct {
	s    *jscan
	info *RequestInfo
	f    *anthropicFields
}

// anthropicFields holds what the walk learns before it can price the
// overheads, as member order is free.
type anthropicFields struct {
	stream bool
	// tools counts custom (client) tools whose definitions are sent;
	// builtin is the documented overhead of Anthropic-defined tools.
	tools      int
	builtin    int64
	computer   bool
	toolChoice []byte
	// thinkingEnabled is set for thinking {"type": "enabled"}.
	thinkingEnabled bool
	// pastThinking and turnThinking are the replayed thinking blocks'
	// text before and since the last user message without tool results
	// (see anthropicKeepsThinking); msgThinking is the current message's,
	// toolResults whether it has tool_result blocks.
	pastThinking, turnThinking, msgThinking textCount
	toolResults                             bool
	// format is set when the request asks for structured output
	// (output_config.format or output_format).
	format bool
	// taskBudget is set when output_config carries a task_budget object.
	taskBudget bool
}

func (w anthropicReader) top(i int, f *anthropicFields) int {
	s := w.s
	return s.object(i, func(k []byte, v int) int {
		var end int
		switch string(keyBytes(k)) {
		case "model":
			w.info.Model, end = s.strValue(v)
		case "stream":
			f.stream, end = s.boolean(v)
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
				w.info.OverheadTokens += anthropicMessageTokens
				f.msgThinking, f.toolResults = textCount{}, false
				var role []byte
				e := s.object(v, func(k []byte, v int) int {
					switch string(keyBytes(k)) {
					case "content":
						return w.content(v)
					case "role":
						var e int
						role, e = s.optStr(v)
						return e
					}
					return s.skip(v)
				})
				if string(role) == "user" && !f.toolResults {
					f.pastThinking.add(f.turnThinking)
					f.turnThinking = textCount{}
				}
				f.turnThinking.add(f.msgThinking)
				return e
			})
		case "tools":
			end = s.array(v, func(v int) int { return w.tool(v, f) })
		case "tool_choice":
			end = s.object(v, func(k []byte, v int) int {
				if keyIs(k, "type") {
					var e int
					f.toolChoice, e = s.optStr(v)
					return e
				}
				return s.skip(v)
			})
		case "thinking":
			end = s.object(v, func(k []byte, v int) int {
				if keyIs(k, "type") {
					t, e := s.optStr(v)
					f.thinkingEnabled = string(t) == "enabled"
					return e
				}
				return s.skip(v)
			})
		case "output_format":
			f.format = s.at(v) == '{'
			end = w.schema(v)
		case "output_config":
			end = s.object(v, func(k []byte, v int) int {
				switch string(keyBytes(k)) {
				case "format":
					f.format = s.at(v) == '{'
					return w.schema(v)
				case "task_budget":
					f.taskBudget = s.at(v) == '{'
				}
				return s.skip(v)
			})
		default:
			end = s.skip(v)
		}
		return end
	})
}

// schema counts a structured-output format (its JSON as sent).
func (w anthropicReader) schema(i int) int {
	n, end := w.s.rawRunes(i)
	w.info.text.add(n)
	return end
}

// tool reads one tool definition. A custom tool counts its name,
// description and input schema (JSON as sent); an Anthropic-defined tool
// (a versioned "type" such as "bash_20250124") costs its documented
// definition tokens instead; a tool with "defer_loading": true is left out
// of the prompt until tool search loads it, so it costs nothing here.
func (w anthropicReader) tool(i int, f *anthropicFields) int {
	s := w.s
	var (
		typ      []byte
		runes    textCount
		deferred bool
	)
	end := s.object(i, func(k []byte, v int) int {
		var end int
		switch string(keyBytes(k)) {
		case "type":
			typ, end = s.optStr(v)
			typ = keyBytes(typ)
		case "name", "description":
			end = s.text(v, &runes)
		case "input_schema":
			var n textCount
			n, end = s.rawRunes(v)
			runes.add(n)
		case "defer_loading":
			deferred, end = s.boolean(v)
		default:
			end = s.skip(v)
		}
		return end
	})
	if deferred {
		return end
	}
	if len(typ) == 0 || string(typ) == "custom" {
		f.tools++
		w.info.text.add(runes)
		return end
	}
	tokens, computer := anthropicBuiltinTool(string(typ))
	f.builtin += tokens
	f.computer = f.computer || computer
	if tokens == 0 {
		// No documented cost: the definition is what the client sent.
		w.info.text.add(runes)
	}
	return end
}

// content reads a string, a list of content blocks, or a single block (the
// content of some server tool results).
func (w anthropicReader) content(i int) int {
	switch w.s.at(i) {
	case '[':
		return w.s.array(i, w.block)
	case '{':
		return w.block(i)
	}
	return w.s.text(i, &w.info.text)
}

// block reads one content block. Text blocks count their text, thinking
// blocks theirs where the model keeps them (anthropicKeepsThinking);
// tool_use input (JSON as sent), tool names and tool_result content count
// whatever the type; images cost by their size (anthropicImageTokensFor);
// text documents count their text. Signatures, encrypted and binary data
// count nothing.
func (w anthropicReader) block(i int) int {
	s := w.s
	var (
		typ    []byte
		text   textCount
		w0, h0 int
		sized  bool
	)
	end := s.object(i, func(k []byte, v int) int {
		var end int
		switch string(keyBytes(k)) {
		case "type":
			typ, end = s.optStr(v)
			typ = keyBytes(typ)
		case "text", "thinking":
			end = s.text(v, &text)
		case "name", "title", "context", "stdout", "stderr", "url":
			end = s.text(v, &w.info.text)
		case "input":
			var n textCount
			n, end = s.rawRunes(v)
			w.info.text.add(n)
		case "content":
			end = w.content(v)
		case "source":
			end = w.source(v, &w0, &h0, &sized)
		default:
			end = s.skip(v)
		}
		return end
	})
	switch string(typ) {
	case "text":
		w.info.text.add(text)
	case "thinking":
		w.f.msgThinking.add(text)
	case "tool_result":
		w.f.toolResults = true
		w.info.OverheadTokens += anthropicToolBlockTokens
	case "tool_use", "server_tool_use":
		w.info.OverheadTokens += anthropicToolBlockTokens
	case "image":
		w.info.Images++
		w.info.ImageTokens += anthropicImageTokensFor(w0, h0, sized)
	}
	return end
}

// source reads an image or document source: base64 image data is sized in
// place; a text document's data counts as text.
func (w anthropicReader) source(i int, width, height *int, sized *bool) int {
	s := w.s
	if s.at(i) != '{' {
		return s.skip(i)
	}
	var (
		typ, data []byte
		dataAt    = -1
	)
	end := s.object(i, func(k []byte, v int) int {
		var end int
		switch string(keyBytes(k)) {
		case "type":
			typ, end = s.optStr(v)
		case "data":
			dataAt = v
			data, end = s.optStr(v)
		case "content":
			end = w.content(v)
		default:
			end = s.skip(v)
		}
		return end
	})
	switch {
	case string(typ) == "text" && dataAt >= 0:
		w.s.text(dataAt, &w.info.text)
	case string(typ) == "base64" && !containsByte(data, '\\'):
		*width, *height, *sized = imageSize(data)
	}
	return end
}

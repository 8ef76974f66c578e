package providers

import "strings"

// Provider describes one vendor API family: where it lives, how to read its
// requests, and how to read usage from its responses.
//
// Implementations are immutable after construction and safe for concurrent use.
type Provider interface {
	// Name is the lower-case provider name used in paths, metrics and config
	// ("openai", "anthropic", "gemini").
	Name() string
	// UpstreamURL is the vendor's base URL, for example "https://api.openai.com".
	UpstreamURL() string
	// ParseRequest inspects a request. It never fails: what cannot be read is
	// left at its zero value and RequestInfo.Malformed says why.
	ParseRequest(r Request) RequestInfo
	// NewUsageParser returns an incremental usage reader for one response
	// body with the given Content-Type (the value, without parameters being
	// required). The parser holds a bounded amount of memory.
	NewUsageParser(r Request, info RequestInfo, contentType string) UsageParser
	// ErrorBody renders a gateway error in the vendor's own JSON error
	// shape (the OpenAI shape on the vendor's OpenAI-compatible endpoints),
	// so each official SDK raises its native error type. message is plain
	// text; it is JSON-escaped here.
	ErrorBody(info RequestInfo, kind ErrorKind, message string) []byte
}

// ErrorKind classifies a gateway-generated error for ErrorBody.
type ErrorKind int

// Error kinds. Each maps to the vendor's error type for the HTTP status the
// gateway answers with.
const (
	// ErrorRateLimited goes with HTTP 429.
	ErrorRateLimited ErrorKind = iota
	// ErrorUnavailable goes with HTTP 503.
	ErrorUnavailable
	// ErrorBudgetExceeded goes with HTTP 402.
	ErrorBudgetExceeded
	// ErrorRequestTooLarge goes with HTTP 413.
	ErrorRequestTooLarge
	// ErrorUnauthenticated goes with HTTP 401: a missing, unknown, expired
	// or revoked gateway key.
	ErrorUnauthenticated
	// ErrorPermissionDenied goes with HTTP 403: a gateway key that may not
	// use the provider or model it asked for.
	ErrorPermissionDenied
)

// Request is what the processor knows about a client request when it asks a
// Provider to read it. Path is the vendor path with the provider prefix
// removed ("/v1/chat/completions"), without the query.
type Request struct {
	Method      string
	Path        string
	RawQuery    string
	Accept      string
	ContentType string
	// Body is the decoded (not compressed) request body, or nil when the
	// body was not seen (no body, too large to sample, or undecodable).
	Body []byte
}

// Endpoint names the kind of API call.
type Endpoint string

// Endpoints the providers recognise. Anything else is EndpointOther.
const (
	EndpointChatCompletions       Endpoint = "chat_completions"
	EndpointCompletions           Endpoint = "completions"
	EndpointResponses             Endpoint = "responses"
	EndpointEmbeddings            Endpoint = "embeddings"
	EndpointMessages              Endpoint = "messages"
	EndpointCountTokens           Endpoint = "count_tokens"
	EndpointGenerateContent       Endpoint = "generate_content"
	EndpointStreamGenerateContent Endpoint = "stream_generate_content"
	EndpointOther                 Endpoint = "other"
)

// RequestInfo is what a Provider read from a request.
type RequestInfo struct {
	Endpoint Endpoint
	// Model as the client named it (body field, or the Gemini URL path).
	Model string
	// Stream is true when the client asked for a streamed response.
	Stream bool
	// User is the end-user id carried in the body (OpenAI "user",
	// Anthropic "metadata.user_id"), empty when absent.
	User string
	// TextRunes counts the Unicode code points of every text the vendor bills
	// as input: messages in string or part form, system prompts and
	// instructions, tool calls and results, replayed thinking, tool
	// definitions and output schemas (OpenAI: the names, descriptions, types
	// and enum values its rendering shows; Anthropic and Gemini: their JSON
	// as sent).
	TextRunes int64
	// TextTokens estimates the tokens of that text from its pre-tokenizer
	// pieces (words, number groups, punctuation runs, line breaks; see
	// pieces.go), priced for the vendor's tokenizer family, rounded up.
	TextTokens int64
	// WideRunes counts, among TextRunes, the code points of scripts that
	// tokenizers split into about one token per one or two characters
	// (CJK ideographs, kana, hangul, emoji; Gemini: and digits), in the
	// priced prefix of each text (see pricedPrefix): TextTokens prices
	// them; this count is informational.
	WideRunes int64
	// ImageTokens is the input-token cost of images, by the vendor's
	// documented rule or a stated constant per image.
	ImageTokens int64
	// Images counts image parts.
	Images int
	// OverheadTokens is the input the vendor adds around the counted text
	// by a documented rule, in tokens: per-message framing (OpenAI), the
	// tool-use system prompt and built-in tool definitions (Anthropic),
	// the fixed part of each function or schema rendering. Estimates add
	// it as it is, like ImageTokens.
	OverheadTokens int64
	// MaxOutputTokens is the output limit the client asked for
	// (max_tokens, max_completion_tokens, max_output_tokens,
	// generationConfig.maxOutputTokens); 0 when absent.
	MaxOutputTokens int64
	// OpenAICompatible is set on a vendor's OpenAI-compatible endpoint
	// (Anthropic /v1/chat/completions, Gemini /v1beta/openai/...): requests,
	// responses and errors there have OpenAI's shape.
	OpenAICompatible bool
	// Malformed is set when a body was given but is not a JSON object of the
	// expected shape; the other fields then hold what could be read.
	Malformed bool

	// text accumulates TextRunes and TextTokens while a body is read;
	// finishText moves it to them.
	text textCount
}

// finishText sets TextRunes and TextTokens from the text counted.
func (r *RequestInfo) finishText() {
	r.TextRunes += r.text.runes
	r.TextTokens += r.text.tokens()
	r.text = textCount{}
}

// Usage is the token accounting a vendor reported for one response.
// Token counts are in tokens; zero means not reported.
//
// Vendors split the counts differently and Usage keeps each vendor's billing
// split rather than forcing one:
//   - OpenAI: InputTokens includes CacheReadTokens; OutputTokens includes
//     ReasoningTokens.
//   - Anthropic: InputTokens excludes the cache: CacheReadTokens and
//     CacheWriteTokens are separate, billed at their own prices.
//   - Gemini: InputTokens (promptTokenCount + toolUsePromptTokenCount)
//     includes CacheReadTokens; OutputTokens (candidatesTokenCount +
//     thoughtsTokenCount) includes ReasoningTokens.
//
// TotalTokens is the vendor's total when it reports one, else
// InputTokens + OutputTokens (for Anthropic: without the cache counts).
// Model falls back to the request's model when the response names none;
// FinishReason is the vendor's own value (finish_reason, stop_reason,
// finishReason, or for the Responses API incomplete_details.reason or the
// final status).
type Usage struct {
	InputTokens      int64
	OutputTokens     int64
	TotalTokens      int64
	CacheReadTokens  int64
	CacheWriteTokens int64
	ReasoningTokens  int64
	// CacheWrite1hTokens is the part of CacheWriteTokens written with
	// Anthropic's 1-hour TTL (usage.cache_creation.ephemeral_1h_input_tokens);
	// the rest of CacheWriteTokens is 5-minute writes.
	CacheWrite1hTokens int64
	// InputAudioTokens and InputImageTokens are the audio and image parts
	// of the prompt (OpenAI prompt_tokens_details.audio_tokens; Gemini
	// promptTokensDetails by modality), counted in InputTokens (for
	// Anthropic's split: in the prompt). CacheReadAudioTokens and
	// CacheReadImageTokens are their parts of CacheReadTokens (Gemini
	// cacheTokensDetails). OutputAudioTokens and OutputImageTokens are the
	// audio and image parts of OutputTokens (OpenAI
	// completion_tokens_details.audio_tokens; Gemini candidatesTokensDetails).
	// Gemini's other modalities (TEXT, VIDEO, DOCUMENT) are billed as text
	// and stay in the plain counts.
	InputAudioTokens     int64
	InputImageTokens     int64
	CacheReadAudioTokens int64
	CacheReadImageTokens int64
	OutputAudioTokens    int64
	OutputImageTokens    int64
	// ServiceTier is the processing tier OpenAI reports for the response
	// (its top-level service_tier: "default", "flex", "priority"); "" when
	// not reported.
	ServiceTier  string
	Model        string
	RequestID    string
	FinishReason string
	// Found is true when the response carried a usage block.
	Found bool
}

// UsageParser reads usage from a response body delivered in chunks of any
// size. Write never fails and never retains more than a bounded number of
// bytes (see Held). A parser is not safe for concurrent use.
type UsageParser interface {
	// Write consumes the next chunk of the response body.
	Write(chunk []byte)
	// Usage returns what was read so far; after the last Write it is final.
	Usage() Usage
	// Held reports the bytes currently buffered by the parser.
	Held() int
}

// Releaser is implemented by parsers that can be recycled once their
// response is done (see [ReleaseUsageParser]).
type Releaser interface{ Release() }

// ReleaseUsageParser recycles p when it supports it. p must not be used
// afterwards.
func ReleaseUsageParser(p UsageParser) {
	if r, ok := p.(Releaser); ok {
		r.Release()
	}
}

// Registry maps provider names to providers.
type Registry map[string]Provider

// Resolved is the outcome of matching a request path against a Registry.
type Resolved struct {
	Provider Provider
	// Path is the vendor path with the routing prefix removed.
	Path string
	// User is the user id named by a /meta/{user}/{provider}/ path.
	User string
}

// Resolve matches path (the request :path without query) against the
// provider prefixes "/<name>/" and "/meta/<user>/<name>/". ok is false when
// no provider matches.
func (r Registry) Resolve(path string) (res Resolved, ok bool) {
	if rest, found := strings.CutPrefix(path, "/meta/"); found {
		user, tail, found := strings.Cut(rest, "/")
		if !found || user == "" {
			return Resolved{}, false
		}
		res, ok = r.Resolve("/" + tail)
		if ok {
			res.User = user
		}
		return res, ok
	}
	if len(path) < 2 || path[0] != '/' {
		return Resolved{}, false
	}
	name, tail, found := strings.Cut(path[1:], "/")
	if !found {
		return Resolved{}, false
	}
	p, ok := r[name]
	if !ok {
		return Resolved{}, false
	}
	return Resolved{Provider: p, Path: "/" + tail}, true
}

// Default returns a Registry of the three providers with their public
// upstream URLs: "openai", "anthropic" and "gemini".
func Default() Registry {
	return Registry{
		"openai":    OpenAI{},
		"anthropic": Anthropic{},
		"gemini":    Gemini{},
	}
}

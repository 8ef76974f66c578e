// Package providers knows the three vendor APIs the gateway fronts (OpenAI,
// Anthropic and Gemini): which endpoint a request calls, what it asks for,
// and how many tokens the vendor says the response used.
//
// A [Registry] maps provider names to [Provider] values; [Default] returns
// the three with their public upstream URLs, and [Registry.Resolve] matches a
// request path ("/openai/...", "/meta/{user}/gemini/...") to a provider.
//
// Request side: [Provider.ParseRequest] reads the endpoint from the path and
// the model, user, stream flag, output limit, input text size (Unicode code
// points of every text the vendor bills as input, tool definitions included),
// images (priced by each vendor's rule from the size read in the base64
// header) and the tokens the vendor adds by rule around the text
// ([RequestInfo.OverheadTokens]: message framing, tool-use system prompts,
// built-in tool definitions) from the body. It walks the body in place with a
// validating scanner instead of decoding it, so it allocates only the model
// and user strings and runs about ten times faster than encoding/json (see
// BenchmarkParseRequest). It never fails: bad input sets
// [RequestInfo.Malformed] and keeps what was read before the error.
//
// Response side: [Provider.NewUsageParser] returns a [UsageParser] that is fed
// the response body in chunks split anywhere: a JSON body, an event stream, or
// the JSON array Gemini streams without alt=sse. It holds no line or event in
// memory; a streaming JSON state machine keeps only the path to the usage
// fields and the scalar being read, so [UsageParser.Held] stays below a few
// hundred bytes however long the stream or its lines. See [Usage] for how each
// vendor's counts map onto it.
//
// The package depends on the standard library only and must not import the
// processor or any transport code. Providers are immutable and safe for
// concurrent use; a UsageParser belongs to one response.
package providers

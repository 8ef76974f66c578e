// Package failover holds the failover chains of the rules: for a requested
// provider:model, the ordered targets that may serve the call instead when
// the requested one is degraded, and the conditions that move a call down
// its chain.
//
// A chain is flat. "openai:gpt-4o": [A, B, C] means a call for gpt-4o is
// served by the first of gpt-4o, A, B, C that is healthy; the chains of A, B
// and C are not followed. Two models may back each other up (X: [Y] and
// Y: [X]) without any risk of a loop, because a call only ever walks the
// list of the model it asked for. A chain that names its own key is refused
// at load, as are duplicate targets, unknown providers and cross-vendor hops
// to a provider whose vendor key the gateway does not hold.
//
// Cross-vendor hops carry only requests in OpenAI's chat-completions shape
// (OpenAI's /v1/chat/completions, and the OpenAI-compatible endpoints of
// Anthropic and Gemini): they are sent to the target vendor's
// OpenAI-compatible endpoint with only the model changed. Every other API
// (Responses, Messages, generateContent, embeddings, ...) fails over only to
// targets of its own vendor, where the request is valid as it is once the
// model is swapped.
//
// [Set] is immutable after [Compile] and safe for concurrent use.
package failover

// Package fakevendor is a fake LLM vendor upstream for tests: an
// http.Handler that answers like the OpenAI, Anthropic and Gemini HTTP APIs
// closely enough for the vendors' official Go SDKs, streaming and not, and
// records every request it served together with the exact usage it sent.
// It follows the vendors' public API documents only and shares no code with
// the gateway it is meant to test.
//
// # Vendor selection
//
// [Options].Vendor fixes the vendor for a dedicated listener. Otherwise the
// Host header picks it (api.openai.com, api.anthropic.com,
// generativelanguage.googleapis.com, any port), and for any other host a
// leading /openai, /anthropic or /gemini path segment does and is stripped.
// A request no vendor claims gets a 404 with a fakevendor_error body.
//
// # Endpoints
//
//	OpenAI     POST /v1/chat/completions   JSON, or SSE "data: {chunk}" ending "data: [DONE]"; the
//	                                       usage chunk (empty choices) only with stream_options.include_usage
//	           POST /v1/responses          JSON, or SSE typed events response.created, response.in_progress,
//	                                       response.output_item.added, response.content_part.added,
//	                                       response.output_text.delta, ... response.completed
//	                                       (response.incomplete when max_output_tokens cut the answer)
//	           POST /v1/embeddings         float or base64 vectors (dimensions, default 1536)
//	           GET  /v1/models
//	Anthropic  POST /v1/messages           JSON, or SSE message_start, content_block_start, ping,
//	                                       content_block_delta..., content_block_stop, message_delta
//	                                       (cumulative usage), message_stop
//	           POST /v1/messages/count_tokens
//	           POST /v1/chat/completions   OpenAI-compatible; Anthropic headers and error bodies
//	           GET  /v1/models
//	Gemini     POST /v1beta/models/{model}:generateContent
//	           POST /v1beta/models/{model}:streamGenerateContent   alt=sse: SSE "data: {...}\r\n\r\n";
//	                                       otherwise a JSON array written element by element
//	           POST /v1beta/models/{model}:countTokens
//	           POST /v1beta/openai/chat/completions   OpenAI-compatible; Gemini headers, error bodies
//	                                       as a one-element JSON array like the real endpoint
//	           (the same under /v1/ instead of /v1beta/)
//
// Every Gemini stream chunk carries usageMetadata with the usage so far;
// the last one carries the final usage and the finish reason. Gemini JSON
// bodies are indented as Gemini indents them. Unknown paths get the
// vendor's 404 body; a malformed body or missing required field the
// vendor's 400 body.
//
// # Usage
//
// Usage numbers are deterministic:
//
//   - Input tokens, unless forced by x-fake-input-tokens: one token per
//     started group of four Unicode characters of the prompt text, at
//     least 1. Prompt text is every text the request carries: OpenAI chat
//     message contents (strings or "text" parts), Responses instructions and
//     input, Anthropic system and message contents (text blocks, tool_result
//     contents), Gemini systemInstruction and contents parts' text. For
//     OpenAI and Gemini, which count cached tokens inside the prompt, the
//     derived input is raised to at least the cached tokens. Embeddings
//     count every input string the same way and one token per token id.
//   - Visible output tokens, unless x-fake-output-tokens forces the output
//     count: Options.DefaultOutputTokens (12), lowered so that visible plus
//     reasoning tokens fit the request's max tokens (max_completion_tokens,
//     max_tokens, max_output_tokens, generationConfig.maxOutputTokens); the
//     answer then ends with length / max_tokens / MAX_TOKENS. The reported
//     output count is visible + reasoning for OpenAI and Anthropic, and the
//     visible count (candidatesTokenCount) for Gemini, which reports
//     thoughtsTokenCount besides it and adds it to the total. A forced output
//     count is sent verbatim; the visible text then has forced-reasoning
//     words (OpenAI, Anthropic) or forced words (Gemini).
//   - Cache-read, cache-write and reasoning tokens: 0 unless set by
//     x-fake-cached-tokens, x-fake-cache-write-tokens, x-fake-reasoning-tokens.
//
// The answer text is one generated word per visible token (at most 1024
// words) and streams one word per delta (three per Gemini chunk).
// [Usage] documents which wire field each number is; [Call] records the
// usage each response carried and the usage actually delivered.
//
// # Fault injection headers
//
// Request headers, honoured also when an Envoy route forwards them:
//
//	x-fake-status: N              answer status N (400-599) with the vendor's real error body for N
//	x-fake-error-type: T          pick the error variant: OpenAI 429 rate_limit_exceeded (default),
//	                              tokens, insufficient_quota; OpenAI 503 slow_down; Gemini 400
//	                              API_KEY_INVALID; Gemini 429 quota (QuotaFailure + RetryInfo details).
//	                              Any other T replaces the OpenAI type and code, the Anthropic
//	                              error.type or the Gemini status string.
//	x-fake-header: name: value    add a response header; repeatable, and a comma-joined value
//	                              "a: 1, b: 2" is split back into items (dates keep their commas)
//	x-fake-ratelimit-headers: 1   add the vendor's rate-limit headers (x-ratelimit-*, anthropic-ratelimit-*)
//	x-fake-latency-ms: N          wait N ms before the response headers
//	x-fake-ttfb-ms: N             wait N ms between the headers and the first body byte
//	x-fake-chunk-delay-ms: N      wait N ms between body writes
//	x-fake-reset-after-bytes: N   abort the connection after N body bytes (counted before gzip;
//	                              with N >= body length after the whole body, so a chunked
//	                              response still lacks its end)
//	x-fake-reset-before-headers: 1  close the connection without any response
//	x-fake-stream-error-after: N  end a stream after N events with the vendor's in-stream error
//	                              (OpenAI data {"error":...} / Responses "error" event, Anthropic
//	                              "event: error" overloaded_error, Gemini {"error":...} UNAVAILABLE)
//	x-fake-fail-times: N          with x-fake-fail-key: K (default ""), only the first N requests
//	                              with key K get the failure directives above (status,
//	                              resets, stream error; none given: OpenAI 503, Anthropic 529,
//	                              Gemini 503); later ones succeed. Reset clears the counts.
//	x-fake-input-tokens, x-fake-output-tokens, x-fake-cached-tokens,
//	x-fake-cache-write-tokens, x-fake-reasoning-tokens: N   force usage numbers (see Usage)
//	x-fake-gzip: 1                gzip the response body (content-encoding: gzip) whatever the
//	                              request's accept-encoding
//	x-fake-gzip: auto             gzip only when accept-encoding admits gzip (q > 0), as the real
//	                              vendors do (Options.GzipWhenAccepted: for every request)
//	x-fake-chunked: 1             send a JSON body without content-length: chunked on HTTP/1.1,
//	                              ended by END_STREAM on HTTP/2 (Options.ChunkedJSON: always)
//	x-fake-trailer: name: value   add a response trailer (repeatable and comma-split like
//	                              x-fake-header); the body then has no content-length, since
//	                              HTTP/1.1 trailers need chunked; framing, routing and content
//	                              fields (RFC 9110 6.5.1) are refused with a 400
//	x-fake-seed: N                seed this request's write splits and ids
//	x-fake-max-write-bytes: N     cap one body write at N bytes
//
// Without x-fake-fail-times the failure directives apply to every request.
// A malformed x-fake-* value is answered with the vendor's 400 body naming
// the header. The fake never requires a credential; it records the one it
// saw in Call.APIKey.
//
// # Realism
//
// Stream bodies are written in several writes, each flushed: every event
// is cut once at a pseudo-random inner offset so no write ends on an event
// boundary, and Options.MaxWriteBytes splits further. JSON bodies carry
// content-length unless gzipped, chunked or followed by trailers. The
// handler speaks whatever the listener does: serve it with
// http.Protocols.SetUnencryptedHTTP2 (as cmd/fakellm does) for h2c;
// Call.Proto records the protocol of each request, Call.ContentLength,
// Call.ContentEncoding and Call.Trailers the response's shape. Responses
// carry the vendor's headers: OpenAI x-request-id, openai-processing-ms,
// openai-version; Anthropic request-id, anthropic-organization-id; Gemini
// server-timing and Google's security headers.
//
// # Inspection
//
// [Server.Calls] returns what was served; [Server.Reset] forgets it. Over
// the network, GET /__fake/calls returns the calls as JSON (body as text)
// and POST /__fake/reset resets, on any host.
package fakevendor

package providers

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type usageCase struct {
	name     string
	provider Provider
	file     string
	ctype    string
	want     Usage
}

var usageCases = []usageCase{
	{
		name: "openai chat json", provider: OpenAI{}, file: "openai_chat.json", ctype: "application/json",
		want: Usage{
			InputTokens: 1117, OutputTokens: 46, TotalTokens: 1163, CacheReadTokens: 1024, ServiceTier: "default",
			Model: "gpt-4o-2024-08-06", RequestID: "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", FinishReason: "stop", Found: true,
		},
	},
	{
		name: "openai chat sse", provider: OpenAI{}, file: "openai_chat_stream.sse", ctype: "text/event-stream",
		want: Usage{
			InputTokens: 31, OutputTokens: 300, TotalTokens: 331, ReasoningTokens: 256, ServiceTier: "default",
			Model: "o3-mini-2025-01-31", RequestID: "chatcmpl-AqX3vYw9mFbq2", FinishReason: "length", Found: true,
		},
	},
	{
		name: "openai responses json", provider: OpenAI{}, file: "openai_responses.json", ctype: "application/json",
		want: Usage{
			InputTokens: 36, OutputTokens: 64, TotalTokens: 100, CacheReadTokens: 12, ReasoningTokens: 40,
			Model: "gpt-4.1-2025-04-14", RequestID: "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
			FinishReason: "max_output_tokens", Found: true,
		},
	},
	{
		name: "openai responses sse", provider: OpenAI{}, file: "openai_responses_stream.sse", ctype: "text/event-stream",
		want: Usage{
			InputTokens: 2048, OutputTokens: 210, TotalTokens: 2258, CacheReadTokens: 1920, ReasoningTokens: 192,
			Model: "gpt-5-mini-2025-08-07", RequestID: "resp_68a1f0c2b5e48193", FinishReason: "completed", Found: true,
		},
	},
	{
		name: "openai embeddings", provider: OpenAI{}, file: "openai_embeddings.json", ctype: "application/json",
		want: Usage{InputTokens: 8, TotalTokens: 8, Model: "text-embedding-3-small", Found: true},
	},
	{
		// Recorded: usage.prompt_tokens_details.cache_write_tokens.
		name: "openai chat json with cache writes", provider: OpenAI{}, file: "openai_chat_cache_write.json", ctype: "application/json",
		want: Usage{
			InputTokens: 4020, OutputTokens: 4, TotalTokens: 4024, CacheWriteTokens: 4012, ServiceTier: "default",
			Model: "gpt-5.6-sol", RequestID: "chatcmpl-E1mBLGr3Ql1FsH8cdc76XdGw3PleH", FinishReason: "stop", Found: true,
		},
	},
	{
		// Shaped after OpenAI's documented gpt-4o-audio-preview response:
		// audio_tokens in both details objects.
		name: "openai chat json with audio", provider: OpenAI{}, file: "openai_chat_audio.json", ctype: "application/json",
		want: Usage{
			InputTokens: 73, OutputTokens: 128, TotalTokens: 201, InputAudioTokens: 56, OutputAudioTokens: 116, ServiceTier: "default",
			Model: "gpt-4o-audio-preview-2024-12-17", RequestID: "chatcmpl-AxU4Ob1mYdYTb7PfGhiMmlTAuPQ1b", FinishReason: "stop", Found: true,
		},
	},
	{
		// Recorded: a Responses stream on the flex tier
		// (response.service_tier in every event).
		name: "openai responses sse flex", provider: OpenAI{}, file: "openai_responses_flex_stream.sse", ctype: "text/event-stream",
		want: Usage{
			InputTokens: 53, OutputTokens: 469, TotalTokens: 522, ReasoningTokens: 448, ServiceTier: "flex",
			Model: "gpt-5-2025-08-07", RequestID: "resp_0050471a34b36ae60068c97b94a480819587a9d70cf2979b33", FinishReason: "completed", Found: true,
		},
	},
	{
		name: "anthropic messages json", provider: Anthropic{}, file: "anthropic_messages.json", ctype: "application/json",
		want: Usage{
			InputTokens: 472, OutputTokens: 89, TotalTokens: 561, CacheReadTokens: 12000, CacheWriteTokens: 1800,
			Model: "claude-sonnet-4-5-20250929", RequestID: "msg_01XFDUDYJgAACzvnptvVoYEL", FinishReason: "tool_use", Found: true,
		},
	},
	{
		name: "anthropic messages sse", provider: Anthropic{}, file: "anthropic_messages_stream.sse", ctype: "text/event-stream",
		want: Usage{
			InputTokens: 1503, OutputTokens: 512, TotalTokens: 2015, CacheReadTokens: 2048,
			Model: "claude-opus-4-1-20250805", RequestID: "msg_014p7gG3wDgGV9EUtLvnow3U", FinishReason: "max_tokens", Found: true,
		},
	},
	{
		// A recorded response with its cache_creation object, the 1-hour
		// count raised from 0 (the corpus has no non-zero one).
		name: "anthropic messages json with 1h cache writes", provider: Anthropic{}, file: "anthropic_messages_cache_1h.json", ctype: "application/json",
		want: Usage{
			InputTokens: 4, OutputTokens: 193, TotalTokens: 197, CacheReadTokens: 8845, CacheWriteTokens: 2054, CacheWrite1hTokens: 2048,
			Model: "claude-sonnet-4-6", RequestID: "msg_01M1FyhwiuF17tS3UFD15cM4", FinishReason: "end_turn", Found: true,
		},
	},
	{
		// A recorded stream, its cache counts raised from 0: message_start
		// carries cache_creation, message_delta only the cumulative total.
		name: "anthropic messages sse with 1h cache writes", provider: Anthropic{}, file: "anthropic_messages_cache_1h_stream.sse", ctype: "text/event-stream",
		want: Usage{
			InputTokens: 1591, OutputTokens: 175, TotalTokens: 1766, CacheWriteTokens: 1536, CacheWrite1hTokens: 1024,
			Model: "claude-sonnet-4-6", RequestID: "msg_01E3Wn1NynZw9FALZ68znj9S", FinishReason: "tool_use", Found: true,
		},
	},
	{
		name: "anthropic openai-compatible", provider: Anthropic{}, file: "anthropic_compat_chat.json", ctype: "application/json",
		want: Usage{
			InputTokens: 19, OutputTokens: 12, TotalTokens: 31,
			Model: "claude-3-7-sonnet-20250219", RequestID: "msg_01EnYxLU6sM6ZtRmD3g5hsYm", FinishReason: "stop", Found: true,
		},
	},
	{
		name: "anthropic error body", provider: Anthropic{}, file: "anthropic_error.json", ctype: "application/json",
		want: Usage{Model: "request-model"},
	},
	{
		name: "gemini json", provider: Gemini{}, file: "gemini_generate.json", ctype: "application/json",
		want: Usage{
			InputTokens: 130, OutputTokens: 60, TotalTokens: 190, CacheReadTokens: 64, ReasoningTokens: 30,
			Model: "gemini-2.5-pro", RequestID: "mKyoaLzgNo2hz7IPo5yK6Ak", FinishReason: "MAX_TOKENS", Found: true,
		},
	},
	{
		// Recorded: promptTokensDetails and cacheTokensDetails with IMAGE.
		name: "gemini json with image and cached image", provider: Gemini{}, file: "gemini_image_cache.json", ctype: "application/json",
		want: Usage{
			InputTokens: 373, OutputTokens: 256, TotalTokens: 629, CacheReadTokens: 204, ReasoningTokens: 167,
			InputImageTokens: 258, CacheReadImageTokens: 141,
			Model: "gemini-2.5-flash", RequestID: "L-uTaaHQEdOLqtsP_efNqAg", FinishReason: "STOP", Found: true,
		},
	},
	{
		// The recorded response above as two stream chunks: the details of
		// the first usage block must not add to the last one's.
		name: "gemini sse with image details", provider: Gemini{}, file: "gemini_image_stream.sse", ctype: "text/event-stream",
		want: Usage{
			InputTokens: 373, OutputTokens: 256, TotalTokens: 629, CacheReadTokens: 204, ReasoningTokens: 167,
			InputImageTokens: 258, CacheReadImageTokens: 141,
			Model: "gemini-2.5-flash", RequestID: "L-uTaaHQEdOLqtsP_efNqAg", FinishReason: "STOP", Found: true,
		},
	},
	{
		name: "gemini sse", provider: Gemini{}, file: "gemini_stream.sse", ctype: "text/event-stream",
		want: Usage{
			InputTokens: 9, OutputTokens: 424, TotalTokens: 433, CacheReadTokens: 4, ReasoningTokens: 413,
			Model: "gemini-2.5-flash", RequestID: "9WqcaNqbEMGTqtsPj4bq8A4", FinishReason: "STOP", Found: true,
		},
	},
	{
		// Shaped after a recorded stream with server-side tool turns (code
		// execution): the final chunk's usageMetadata has no
		// candidatesTokenCount, and its total is prompt + thoughts. An
		// earlier chunk's candidatesTokenCount must not survive into it.
		name: "gemini sse with server-side tool turns", provider: Gemini{}, file: "gemini_stream_server_tools.sse", ctype: "text/event-stream",
		want: Usage{
			InputTokens: 87, OutputTokens: 78, TotalTokens: 165, ReasoningTokens: 78,
			Model: "gemini-2.5-flash", RequestID: "q0TvaPr3LJ2c1e8PsK2x4Qk", FinishReason: "STOP", Found: true,
		},
	},
	{
		name: "gemini json array stream", provider: Gemini{}, file: "gemini_stream_array.json", ctype: "application/json",
		want: Usage{
			InputTokens: 8, OutputTokens: 250, TotalTokens: 258,
			Model: "gemini-2.0-flash", RequestID: "AbCdEfGh123", FinishReason: "STOP", Found: true,
		},
	},
	{
		name: "gemini openai-compatible sse", provider: Gemini{}, file: "gemini_compat_stream.sse", ctype: "text/event-stream",
		want: Usage{
			InputTokens: 5, OutputTokens: 2, TotalTokens: 7,
			Model: "gemini-2.0-flash", RequestID: "7MFDaJ6-GJ2nqtsP5pbfwQE", FinishReason: "stop", Found: true,
		},
	},
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// parseChunks feeds body to a fresh parser in the given pieces.
func parseChunks(p Provider, ctype string, chunks ...[]byte) (Usage, UsageParser) {
	up := p.NewUsageParser(Request{}, RequestInfo{Model: "request-model"}, ctype)
	for _, c := range chunks {
		up.Write(c)
	}
	return up.Usage(), up
}

func TestUsageParserFixtures(t *testing.T) {
	for _, tc := range usageCases {
		t.Run(tc.name, func(t *testing.T) {
			body := readFixture(t, tc.file)
			got, up := parseChunks(tc.provider, tc.ctype, body)
			require.Equal(t, tc.want, got)
			require.Zero(t, up.Held(), "nothing pending after a complete body")
		})
	}
}

// TestUsageTotalsAgreeWithTheirParts is a property over every recorded
// fixture, however it is chunked: the total is input + output, the
// normalisation every vendor's usage is reported in.
func TestUsageTotalsAgreeWithTheirParts(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range usageCases {
		t.Run(tc.name, func(t *testing.T) {
			body := readFixture(t, tc.file)
			for range 50 {
				var chunks [][]byte
				for rest := body; len(rest) > 0; {
					n := 1 + rng.IntN(min(len(rest), 64))
					chunks = append(chunks, rest[:n])
					rest = rest[n:]
				}
				got, _ := parseChunks(tc.provider, tc.ctype, chunks...)
				if !got.Found {
					continue
				}
				require.Equal(t, got.InputTokens+got.OutputTokens, got.TotalTokens, "total = input + output")
				require.LessOrEqual(t, got.ReasoningTokens, got.OutputTokens, "reasoning is part of the output")
			}
		})
	}
}

// TestUsageParserLineEndings rewrites every event stream with CRLF and CR
// line ends.
func TestUsageParserLineEndings(t *testing.T) {
	for _, tc := range usageCases {
		if !strings.HasSuffix(tc.file, ".sse") {
			continue
		}
		body := bytes.ReplaceAll(readFixture(t, tc.file), []byte("\r\n"), []byte("\n"))
		for _, eol := range []string{"\n", "\r\n", "\r"} {
			t.Run(tc.name+" "+strings.NewReplacer("\r", "CR", "\n", "LF").Replace(eol), func(t *testing.T) {
				b := bytes.ReplaceAll(body, []byte("\n"), []byte(eol))
				got, _ := parseChunks(tc.provider, tc.ctype, b)
				require.Equal(t, tc.want, got)
				// And split between the CR and the LF of every CRLF.
				got, _ = parseChunks(tc.provider, tc.ctype, splitEvery(b, 1)...)
				require.Equal(t, tc.want, got)
			})
		}
	}
}

func splitEvery(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// TestUsageParserSplitAnywhere feeds every fixture split at every byte
// boundary, and in random chunkings, and expects the same usage.
func TestUsageParserSplitAnywhere(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range usageCases {
		t.Run(tc.name, func(t *testing.T) {
			body := readFixture(t, tc.file)
			for i := 0; i <= len(body); i++ {
				got, _ := parseChunks(tc.provider, tc.ctype, body[:i], body[i:])
				require.Equal(t, tc.want, got, "split at %d", i)
			}
			for range 200 {
				var chunks [][]byte
				rest := body
				for len(rest) > 0 {
					n := 1 + rng.IntN(min(len(rest), 1+rng.IntN(64)))
					chunks = append(chunks, rest[:n])
					rest = rest[n:]
				}
				got, up := parseChunks(tc.provider, tc.ctype, chunks...)
				require.Equal(t, tc.want, got)
				require.LessOrEqual(t, up.Held(), maxKey+maxScalar+maxFieldName)
			}
		})
	}
}

func TestUsageParserSSEDetails(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Usage
	}{
		{
			name: "data without space and comments",
			body: ": keep-alive\n:\nevent: message_start\nid: 7\nretry: 1000\ndata:{\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
			want: Usage{InputTokens: 5, OutputTokens: 1, TotalTokens: 6, Model: "request-model", Found: true},
		},
		{
			name: "multi-line data joined",
			body: "event: message_delta\ndata: {\"type\":\"message_delta\",\ndata: \"usage\":\ndata: {\"output_tokens\":\ndata: 42}}\n\n",
			want: Usage{OutputTokens: 42, TotalTokens: 42, Model: "request-model", Found: true},
		},
		{
			name: "unterminated last event still counts",
			body: "data: {\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}",
			want: Usage{InputTokens: 3, OutputTokens: 4, TotalTokens: 7, Model: "request-model", Found: true},
		},
		{
			name: "usage split over two events does not leak between them",
			body: "data: {\"usage\":{\"input_tokens\":3,\n\ndata: \"output_tokens\":4}}\n\n",
			want: Usage{InputTokens: 3, TotalTokens: 3, Model: "request-model", Found: true},
		},
		{
			name: "message_delta overwrites cumulative counts",
			body: "data: {\"message\":{\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n" +
				"data: {\"usage\":{\"output_tokens\":15}}\n\n" +
				"data: {\"usage\":{\"output_tokens\":30,\"cache_read_input_tokens\":7}}\n\n",
			want: Usage{InputTokens: 10, OutputTokens: 30, TotalTokens: 40, CacheReadTokens: 7, Model: "request-model", Found: true},
		},
		{
			name: "null usage and unknown fields ignored",
			body: "data: {\"usage\":null,\"x\":[1,{\"usage\":{\"input_tokens\":9}}]}\n\ndata: [DONE]\n\n",
			want: Usage{Model: "request-model"},
		},
		{
			name: "long field name ignored",
			body: "datadatadata: {\"usage\":{\"input_tokens\":9}}\n\ndata: {\"usage\":{\"output_tokens\":2}}\n\n",
			want: Usage{OutputTokens: 2, TotalTokens: 2, Model: "request-model", Found: true},
		},
		{
			name: "field named data without colon is an empty data line",
			body: "data\ndata: {\"usage\":{\"output_tokens\":2}}\n\n",
			want: Usage{OutputTokens: 2, TotalTokens: 2, Model: "request-model", Found: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i <= len(tt.body); i++ {
				got, _ := parseChunks(Anthropic{}, "text/event-stream", []byte(tt.body[:i]), []byte(tt.body[i:]))
				require.Equal(t, tt.want, got, "split at %d", i)
			}
		})
	}
}

func TestUsageParserBadInput(t *testing.T) {
	huge := bytes.Repeat([]byte("x"), 5<<20)
	tests := []struct {
		name string
		body [][]byte
		want Usage
	}{
		{name: "empty", body: nil, want: Usage{Model: "request-model"}},
		{name: "blank", body: [][]byte{[]byte(" \n\r\n")}, want: Usage{Model: "request-model"}},
		{name: "truncated json", body: [][]byte{[]byte(`{"model":"m","usage":{"prompt_tokens":4`)}, want: Usage{Model: "m"}},
		{name: "malformed json", body: [][]byte{[]byte(`{"model" "m", "usage":{"prompt_tokens":4}}`)}, want: Usage{Model: "request-model"}},
		{name: "wrong shapes", body: [][]byte{[]byte(`{"model":5,"usage":"lots","choices":{"0":1}}`)}, want: Usage{Model: "request-model"}},
		{name: "string and float counts", body: [][]byte{[]byte(`{"usage":{"prompt_tokens":"4","completion_tokens":1.5,"total_tokens":-3}}`)}, want: Usage{Model: "request-model"}},
		{name: "non-utf8", body: [][]byte{[]byte("{\"model\":\"\xff\xfe\",\"usage\":{\"prompt_tokens\":2}}")}, want: Usage{InputTokens: 2, TotalTokens: 2, Model: "\uFFFD", Found: true}},
		{name: "binary garbage", body: [][]byte{{0, 1, 2, 0xff, '\n', '\n', 0x80}}, want: Usage{Model: "request-model"}},
		{
			name: "huge sse line then usage",
			body: [][]byte{[]byte(`data: {"choices":[{"delta":{"content":"`), huge, []byte("\"}}]}\n\ndata: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n")},
			want: Usage{InputTokens: 1, OutputTokens: 2, TotalTokens: 3, Model: "request-model", Found: true},
		},
		{
			name: "huge garbage line then usage",
			body: [][]byte{[]byte("data: "), huge, []byte("\n\ndata: {\"usage\":{\"prompt_tokens\":1}}\n\n")},
			want: Usage{InputTokens: 1, TotalTokens: 1, Model: "request-model", Found: true},
		},
		{
			name: "huge model value dropped",
			body: [][]byte{[]byte(`{"model":"`), huge, []byte(`","usage":{"prompt_tokens":1}}`)},
			want: Usage{InputTokens: 1, TotalTokens: 1, Model: "request-model", Found: true},
		},
		{
			name: "deep nesting",
			body: [][]byte{bytes.Repeat([]byte("["), 100000), bytes.Repeat([]byte("]"), 100000)},
			want: Usage{Model: "request-model"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range []Provider{OpenAI{}, Anthropic{}, Gemini{}} {
				got, up := parseChunks(p, "application/json", tt.body...)
				require.Equal(t, tt.want, got, p.Name())
				require.LessOrEqual(t, up.Held(), maxKey+maxScalar+maxFieldName)
			}
		})
	}
}

func TestUsageParserHeldStaysSmall(t *testing.T) {
	chunk := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"some words of text"},"finish_reason":null}],"usage":null}` + "\n\n")
	up := OpenAI{}.NewUsageParser(Request{}, RequestInfo{}, "text/event-stream")
	peak := 0
	for i := range 100000 {
		// Split each event in two so a partial value is pending in between.
		cut := i % len(chunk)
		up.Write(chunk[:cut])
		peak = max(peak, up.Held())
		up.Write(chunk[cut:])
	}
	up.Write([]byte("data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":100000}}\n\n"))
	require.Equal(t, int64(100000), up.Usage().OutputTokens)
	require.Zero(t, up.Held())
	require.LessOrEqual(t, peak, 64, "peak held bytes")
}

// BenchmarkUsageParserSSEChunk measures the cost of one typical streamed
// event on a long-lived parser, and reports the bytes it holds afterwards.
func BenchmarkUsageParserSSEChunk(b *testing.B) {
	chunks := []struct {
		name  string
		p     Provider
		chunk string
	}{
		{"openai", OpenAI{}, `data: {"id":"chatcmpl-AqX3vYw9mFbq2","object":"chat.completion.chunk","created":1737012345,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_42bfad963b","choices":[{"index":0,"delta":{"content":" tokens"},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n"},
		{"openai-responses", OpenAI{}, `event: response.output_text.delta` + "\n" + `data: {"type":"response.output_text.delta","sequence_number":42,"item_id":"msg_68a1f0c3","output_index":0,"content_index":0,"delta":" tokens","logprobs":[]}` + "\n\n"},
		{"anthropic", Anthropic{}, `event: content_block_delta` + "\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" some streamed words"}}` + "\n\n"},
		{"gemini", Gemini{}, `data: {"candidates": [{"content": {"parts": [{"text": " quick brown fox"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9},"modelVersion": "gemini-2.5-flash","responseId": "9WqcaNqbEMGTqtsPj4bq8A4"}` + "\r\n\r\n"},
	}
	for _, c := range chunks {
		b.Run(c.name, func(b *testing.B) {
			chunk := []byte(c.chunk)
			up := c.p.NewUsageParser(Request{}, RequestInfo{}, "text/event-stream")
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				up.Write(chunk)
			}
			b.ReportMetric(float64(len(chunk)), "chunk-bytes")
			b.ReportMetric(float64(up.Held()), "held-bytes")
		})
	}
}

// BenchmarkUsageParserJSON reads whole JSON responses.
func BenchmarkUsageParserJSON(b *testing.B) {
	for _, tc := range usageCases {
		if !strings.HasSuffix(tc.file, ".json") {
			continue
		}
		body := readFixture(b, tc.file)
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				up := tc.provider.NewUsageParser(Request{}, RequestInfo{}, tc.ctype)
				up.Write(body)
				_ = up.Usage()
			}
		})
	}
}

func TestUsageParserGeminiShapes(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Usage
	}{
		{
			name: "blocked prompt",
			body: `{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7},"modelVersion":"gemini-2.0-flash"}`,
			want: Usage{InputTokens: 7, TotalTokens: 7, Model: "gemini-2.0-flash", FinishReason: "SAFETY", Found: true},
		},
		{
			name: "compact array, last usage wins",
			body: `[{"usageMetadata":{"promptTokenCount":1}},{"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":3}}]`,
			want: Usage{InputTokens: 2, OutputTokens: 3, TotalTokens: 5, Model: "request-model", Found: true},
		},
		{
			name: "empty array",
			body: `[]`,
			want: Usage{Model: "request-model"},
		},
		{
			name: "second candidate ignored",
			body: `{"candidates":[{"index":0},{"finishReason":"OTHER","index":1}],"usageMetadata":{"promptTokenCount":1}}`,
			want: Usage{InputTokens: 1, TotalTokens: 1, Model: "request-model", Found: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i <= len(tt.body); i++ {
				got, _ := parseChunks(Gemini{}, "application/json", []byte(tt.body[:i]), []byte(tt.body[i:]))
				require.Equal(t, tt.want, got, "split at %d", i)
			}
		})
	}
}

// TestGeminiModalityDetails covers the modality lists of Gemini's
// usageMetadata: AUDIO and IMAGE are counted apart, every other modality
// (TEXT, VIDEO, DOCUMENT) stays text, a modality without its tokenCount
// (proto3 JSON leaves out zeros) is attributed nothing, and a tokenCount
// without a modality is text.
func TestGeminiModalityDetails(t *testing.T) {
	cases := []struct {
		name  string
		usage string
		want  Usage
	}{
		{
			// Recorded (a YouTube video with its sound track, cached).
			name:  "video and audio, cached",
			usage: `{"cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 1881}, {"modality": "TEXT", "tokenCount": 15}, {"modality": "VIDEO", "tokenCount": 15483}], "cachedContentTokenCount": 17379, "candidatesTokenCount": 68, "promptTokenCount": 17713, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 16}, {"modality": "VIDEO", "tokenCount": 15780}, {"modality": "AUDIO", "tokenCount": 1917}], "serviceTier": "standard", "thoughtsTokenCount": 821, "totalTokenCount": 18602}`,
			want: Usage{InputTokens: 17713, OutputTokens: 889, TotalTokens: 18602, CacheReadTokens: 17379, ReasoningTokens: 821,
				InputAudioTokens: 1917, CacheReadAudioTokens: 1881},
		},
		{
			name:  "audio and image output",
			usage: `{"promptTokenCount": 12, "candidatesTokenCount": 1400, "totalTokenCount": 1412, "promptTokensDetails": [{"modality": "DOCUMENT", "tokenCount": 12}], "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}, {"modality": "AUDIO", "tokenCount": 100}, {"modality": "TEXT", "tokenCount": 10}]}`,
			want:  Usage{InputTokens: 12, OutputTokens: 1400, TotalTokens: 1412, OutputImageTokens: 1290, OutputAudioTokens: 100},
		},
		{
			name:  "zero count left out, count without modality",
			usage: `{"promptTokenCount": 30, "candidatesTokenCount": 1, "promptTokensDetails": [{"modality": "AUDIO"}, {"tokenCount": 20}, {"modality": "IMAGE", "tokenCount": 10}]}`,
			want:  Usage{InputTokens: 30, OutputTokens: 1, TotalTokens: 31, InputImageTokens: 10},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(`{"candidates": [{"finishReason": "STOP"}], "usageMetadata": ` + tc.usage + `, "modelVersion": "gemini-2.5-flash"}`)
			for split := range len(body) {
				got, _ := parseChunks(Gemini{}, "application/json", body[:split], body[split:])
				want := tc.want
				want.Model, want.FinishReason, want.Found = "gemini-2.5-flash", "STOP", true
				require.Equal(t, want, got, "split at %d", split)
			}
		})
	}
}
